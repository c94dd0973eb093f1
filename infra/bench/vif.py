"""``make bench-vif``: vif against static limits, no limit and tc rate limiting, in the test VM.

One VM run (infra.vm, the primary pinned kernel) executes vif_bench.sh: a quota sweep
of one sender, then N = 2, 4, 8 containers (own netns, veth to a server netns, iperf3
sender in its own cgroup) with the same SLO next to a two-thread CPU hog, under
(a) vif, (b) a static CPU limit (the node split evenly between the containers and the
hog, as Guaranteed pods sized to fill a node would get), (b') the smallest static
limit the sweep found meeting the SLO (``staticmin``: vif's CPU is compared with it
over the same window), (c) no limit, (d) the CNI bandwidth plugin's method (tc token
bucket at the SLO). The SLO is what one sender gets from 20% of a CPU in the sweep.
Then vif alone again at N = 2 (with the goal change) with the module reloaded at
period_ms 100, 200 and 500, and at tol_pct 1, 2 and 5 (``--tol-repeats`` times, taking
turns; N = 2 or ``--tol-n``): convergence and spread per setting, the measurements
behind the defaults. And N = 4 with mixed goals (half and one and a half times the SLO,
``BENCH_MIX`` in the VM) under vif, an even static split, no limit and tbf: where vif
can be ahead on SLOs met. A container's mean bandwidth over the steady window comes from
its veth's byte counters (vif's stat, sampled every 0.5 s, sees 200 ms of each 500 ms).
Writes reports/bench/vif.json and vif.png.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from infra.paths import repo_root
from infra.vm import VM_LIB, kernel_by_name, run_script

HERE = Path(__file__).resolve().parent
SETTLE_S = 4.0  # samples before this are convergence, not steady state
CONFIGS = ("vif", "static", "staticmin", "none", "tbf")
# Parameter sweep runs: cfg vifp<period_ms>, vift<tol_pct>r<repetition>.
SWEEPS = {"vifp": "period_ms", "vift": "tol_pct"}
MIXED = "mix"  # cfg suffix of the mixed-goals runs: vifmix, staticmix, nonemix, tbfmix
_SWEEP_CFG = re.compile(r"(\d+)(?:r(\d+))?$")
CPU_TARGET_RATIO = 1.2  # vif's CPU at most 1.2x the smallest static quota meeting the goal


def _records(output: str, kind: str) -> list[dict[str, str]]:
    out = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0] == "#" and parts[1] == kind:
            out.append(dict(p.split("=", 1) for p in parts[2:] if "=" in p))
    return out


def _convergence(
    ts: list[float], bws: list[float], goal: float, start: float = 0.0
) -> float | None:
    """Seconds from ``start`` until the 2-sample mean first reaches 95% of the goal."""
    for k in range(1, len(ts)):
        if ts[k] >= start and (bws[k] + bws[k - 1]) / 2 >= 0.95 * goal:
            return ts[k] - start
    return None


def _worst(times: list[float | None]) -> float | None:
    """The slowest convergence; None (never) if any container did not converge."""
    if not times or any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


def _spread(means: list[float], goals: list[float]) -> float:
    """Between the containers, in % of the goal (of each one's own goal when they differ)."""
    shares = [m / g for m, g in zip(means, goals, strict=True)]
    return round((max(shares) - min(shares)) * 100, 1)


def _counted_means(output: str) -> dict[tuple[str, int], list[float]]:
    """Each run's per-container mean Mbps over the steady window, from the first and
    last byte-counter snapshot of the run (device wI is container I)."""
    snaps: dict[tuple[str, int], list[dict[str, str]]] = defaultdict(list)
    for r in _records(output, "bytes"):
        snaps[(r["cfg"], int(r["n"]))].append(r)
    means = {}
    for (cfg, n), (first, *_, last) in ((k, v) for k, v in snaps.items() if len(v) >= 2):
        seconds = float(last["t"]) - float(first["t"])
        means[(cfg, n)] = [
            (int(last[f"w{i}"]) - int(first[f"w{i}"])) * 8 / seconds / 1e6 for i in range(1, n + 1)
        ]
    return means


def summarize(output: str) -> dict[str, Any]:
    goal = float(_records(output, "goal")[0]["goal_mbps"])
    sweep = {int(r["quota_pct"]): float(r["bw_mbps"]) for r in _records(output, "sweep")}
    meeting = [q for q, bw in sorted(sweep.items()) if bw >= 0.95 * goal]
    smallest_static = min(meeting) if meeting else None
    samples: dict[tuple[str, int], dict[int, list[dict[str, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in _records(output, "s"):
        samples[(r["cfg"], int(r["n"]))][int(r["i"])].append(r)
    cpu: dict[tuple[str, int], float] = defaultdict(float)
    for r in _records(output, "cpu"):
        cpu[(r["cfg"], int(r["n"]))] += int(r["usec"]) / 1e6
    # A run that goes on past the shared window (vif at N = 2, goal change)
    # prints its CPU at the window's end; every other run is the window.
    window: dict[tuple[str, int], float] = defaultdict(float)
    for r in _records(output, "cpu_window"):
        window[(r["cfg"], int(r["n"]))] += int(r["usec"]) / 1e6
    for key, seconds in cpu.items():
        window.setdefault(key, seconds)
    changes = {(r["cfg"], int(r["n"])): float(r["t"]) for r in _records(output, "goal_change")}
    counted = _counted_means(output)

    configs: list[dict[str, Any]] = []
    for (cfg, n), per in sorted(samples.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        change_t = changes.get((cfg, n), float("inf"))
        means, conv, conv_change = [], [], []
        # each container's own goal: the SLO, or its share in a mixed run
        goals = [float(rows[0]["goal"]) for rows in per.values()]
        for rows, own in zip(per.values(), goals, strict=True):
            ts = [float(r["t"]) for r in rows]
            bws = [float(r["bw_mbps"]) for r in rows]
            steady = [b for t, b in zip(ts, bws, strict=True) if SETTLE_S <= t < change_t]
            means.append(statistics.fmean(steady) if steady else 0.0)
            conv.append(_convergence(ts, bws, own))
            if change_t != float("inf"):
                after = [(t, b) for t, b in zip(ts, bws, strict=True) if t >= change_t]
                new_goal = float(rows[-1]["goal"])
                # lowering the goal: converged when back under 105% of the new goal
                conv_change.append(
                    next((t - change_t for t, b in after if b <= 1.05 * new_goal), None)
                )
        # The byte counters' means where the run has them; the samples' otherwise
        # (a log from before they were printed).
        sampled = means
        means = counted.get((cfg, n), sampled)
        met = [m >= 0.95 * own for m, own in zip(means, goals, strict=True)]
        configs.append(
            {
                "config": cfg,
                "n": n,
                "goal_mbps": goals,
                "slo_met_share": sum(met) / len(met),
                "mean_bw_mbps": [round(m, 1) for m in means],
                "spread_pct_of_goal": _spread(means, goals),
                "mean_from": "byte counters" if (cfg, n) in counted else "samples",
                "sampled_mean_bw_mbps": [round(m, 1) for m in sampled],
                "sampled_spread_pct_of_goal": _spread(sampled, goals),
                "total_mbps": round(sum(means), 1),
                "cpu_seconds": round(cpu[(cfg, n)], 2),
                "cpu_seconds_shared_window": round(window[(cfg, n)], 2),
                "convergence_s": [None if c is None else round(c, 1) for c in conv],
                "convergence_after_goal_change_s": [
                    None if c is None else round(c, 1) for c in conv_change
                ]
                or None,
            }
        )
    sweeps = {
        param: _sweep([c for c in configs if c["config"].startswith(prefix)], prefix, param)
        for prefix, param in SWEEPS.items()
    }
    mixed = [c for c in configs if c["config"].endswith(MIXED)]
    configs = [
        c
        for c in configs
        if not c["config"].startswith(tuple(SWEEPS)) and not c["config"].endswith(MIXED)
    ]
    overhead = _records(output, "overhead")
    over: dict[str, Any] = {}
    if overhead:
        o = overhead[0]
        cpu_s = int(o["kworker_ticks"]) / int(o["hz"])
        over = {
            "slots": int(o["slots"]),
            "kworker_cpu_pct_of_one_cpu": round(cpu_s / float(o["seconds"]) * 100, 2),
            "note": "all kworkers in the VM over the window: an upper bound on vif's own cost",
        }
    return {
        "goal_mbps": goal,
        "sweep_bw_mbps_by_quota_pct": sweep,
        "smallest_static_quota_pct_meeting_goal": smallest_static,
        "configs": configs,
        "cpu_vs_smallest_static": _cpu_ratios(configs),
        "period_sweep": sweeps["period_ms"],
        "tol_sweep": sweeps["tol_pct"],
        "tol_by_setting": _by_setting(sweeps["tol_pct"], "tol_pct"),
        "mixed_goals": {
            "goal_pct": [int(p) for r in _records(output, "mix") for p in r["goal_pct"].split(",")],
            "configs": mixed,
        },
        "overhead": over,
    }


def _cpu_ratios(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """vif's CPU over staticmin's, per N, both over the window every run shares."""
    by = {(c["config"], c["n"]): c for c in configs}
    out = []
    for (cfg, n), c in sorted(by.items(), key=lambda kv: kv[0][1]):
        ref = by.get(("staticmin", n))
        if cfg != "vif" or not ref or not ref["cpu_seconds_shared_window"]:
            continue
        ratio = c["cpu_seconds_shared_window"] / ref["cpu_seconds_shared_window"]
        out.append(
            {
                "n": n,
                "vif_cpu_s": c["cpu_seconds_shared_window"],
                "smallest_static_cpu_s": ref["cpu_seconds_shared_window"],
                "ratio": round(ratio, 2),
                "within_target": ratio <= CPU_TARGET_RATIO,
                "smallest_static_slo_met_share": ref["slo_met_share"],
            }
        )
    return out


def _sweep(cfgs: list[dict[str, Any]], prefix: str, param: str) -> list[dict[str, Any]]:
    def setting(c: dict[str, Any]) -> tuple[int, int]:
        m = _SWEEP_CFG.match(c["config"][len(prefix) :])
        if not m:
            raise ValueError(f"sweep run {c['config']!r} is not {prefix}<value>[r<repetition>]")
        return int(m.group(1)), int(m.group(2) or 1)

    return sorted(
        (
            {
                param: value,
                "run": run,
                "n": c["n"],
                "slo_met_share": c["slo_met_share"],
                "spread_pct_of_goal": c["spread_pct_of_goal"],
                "total_mbps": c["total_mbps"],
                "cpu_seconds": c["cpu_seconds"],
                "convergence_s": c["convergence_s"],
                "convergence_after_goal_change_s": c["convergence_after_goal_change_s"],
                "worst_convergence_s": _worst(
                    c["convergence_s"] + (c["convergence_after_goal_change_s"] or [])
                ),
            }
            for c in cfgs
            for value, run in [setting(c)]
        ),
        key=lambda r: (r[param], r["run"]),
    )


def _by_setting(rows: list[dict[str, Any]], param: str) -> list[dict[str, Any]]:
    """Repeated sweep runs per setting: every run's spread, their mean and worst."""
    out = []
    for value in sorted({r[param] for r in rows}):
        runs = [r for r in rows if r[param] == value]
        spreads = [r["spread_pct_of_goal"] for r in runs]
        conv = [r["worst_convergence_s"] for r in runs]
        out.append(
            {
                param: value,
                "runs": len(runs),
                "spread_pct_of_goal": spreads,
                "mean_spread_pct_of_goal": round(statistics.fmean(spreads), 1),
                "worst_spread_pct_of_goal": max(spreads),
                "slo_met_share_min": min(r["slo_met_share"] for r in runs),
                "worst_convergence_s": None if None in conv else max(conv),
            }
        )
    return out


def _plot_slo_met(ax: Any, summary: dict[str, Any], ns: list[int]) -> None:
    """Share of containers meeting their goal: one group per N, the mixed-goals run last."""
    width = 0.16
    met = {(c["config"], c["n"]): c["slo_met_share"] for c in summary["configs"]}
    met.update(
        {
            (c["config"].removesuffix(MIXED), MIXED): c["slo_met_share"]
            for c in summary.get("mixed_goals", {}).get("configs", [])
        }
    )
    groups: list[int | str] = [*ns, *([MIXED] if any(g == MIXED for _, g in met) else [])]
    for k, cfg in enumerate(CONFIGS):
        vals = [met.get((cfg, g), 0) for g in groups]
        ax.bar([x + k * width for x in range(len(groups))], vals, width, label=cfg)
    ax.set_xticks(
        [x + 2 * width for x in range(len(groups))],
        [f"N={g}" if g != MIXED else "N=4, mixed goals" for g in groups],
    )
    ax.set_title(f"share of containers meeting {summary['goal_mbps']:.0f} Mbps (or their own goal)")
    ax.legend(fontsize=7, loc="lower left", framealpha=0.9)


def plot(output: str, summary: dict[str, Any], path: Path) -> None:
    ns = sorted({c["n"] for c in summary["configs"]})
    fig = Figure(figsize=(5 * (len(ns) + 1), 7))
    axes = fig.subplots(2, len(ns) + 1, squeeze=False)
    rows = _records(output, "s")
    for col, n in enumerate(ns):
        ax_bw, ax_q = axes[0][col], axes[1][col]
        per: dict[int, list[dict[str, str]]] = defaultdict(list)
        for r in rows:
            if r["cfg"] == "vif" and int(r["n"]) == n:
                per[int(r["i"])].append(r)
        for i, rs in sorted(per.items()):
            ts = [float(r["t"]) for r in rs]
            ax_bw.plot(ts, [float(r["bw_mbps"]) for r in rs], label=f"c{i}")
            q = [0.0 if r["quota_us"] == "max" else int(r["quota_us"]) / 1000 for r in rs]
            ax_q.plot(ts, q, label=f"c{i}")
            ax_bw.step(ts, [float(r["goal"]) for r in rs], "k--", where="post", lw=1)
        ax_bw.set_title(f"vif, N={n}: bandwidth (goal dashed)")
        ax_bw.set_ylabel("Mbps")
        ax_q.set_title(f"vif, N={n}: quota")
        ax_q.set_ylabel("ms per 100 ms")
        ax_q.set_xlabel("s")
        ax_bw.legend(fontsize=6)
    _plot_slo_met(axes[0][len(ns)], summary, ns)
    ax = axes[1][len(ns)]
    sweep = (summary.get("period_sweep") or []) + (summary.get("tol_sweep") or [])
    if sweep:
        xs = [
            f"p{r['period_ms']}" if "period_ms" in r else f"t{r['tol_pct']}.{r['run']}"
            for r in sweep
        ]
        conv = [r["worst_convergence_s"] or 0.0 for r in sweep]
        spread = [r["spread_pct_of_goal"] for r in sweep]
        ax.bar([x - 0.2 for x in range(len(xs))], conv, 0.4, label="worst convergence (s)")
        ax2 = ax.twinx()
        ax2.bar(
            [x + 0.2 for x in range(len(xs))], spread, 0.4, color="C1", label="spread (% of goal)"
        )
        ax.set_xticks(range(len(xs)), xs)
        ax.set_xlabel("pP: period_ms P (default tol, N=2); tT.K: tol_pct T, run K; vif")
        ax.set_ylabel("s")
        ax2.set_ylabel("% of goal")
        ax.set_ylim(0, max([*conv, 0.1]) * 1.5)
        ax2.set_ylim(0, max([*spread, 0.1]) * 1.5)
        ax.set_title("parameter sweeps (0 s: never converged)")
        ax.legend(loc="upper left", fontsize=7)
        ax2.legend(loc="upper right", fontsize=7)
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-vif", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--from-log",
        type=Path,
        help="re-summarize a saved run (reports/bench/vif.log) instead of running the VM",
    )
    parser.add_argument(
        "--tol-repeats",
        type=int,
        default=3,
        metavar="K",
        help="runs per tol_pct setting, taking turns (default 3; 1 to 20)",
    )
    parser.add_argument(
        "--tol-n",
        type=int,
        choices=(2, 4, 8),
        default=2,
        metavar="N",
        help="containers in each tol_pct run (default 2, which also changes the goal; 4 or 8)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.tol_repeats <= 20:
        parser.error(f"--tol-repeats {args.tol_repeats}: between 1 and 20")
    if args.from_log and not args.from_log.is_file():
        parser.error(f"--from-log {args.from_log}: no such file (a saved reports/bench/vif.log)")
    if args.from_log:
        output = args.from_log.read_text()
        saved = json.loads((repo_root() / "reports" / "bench" / "vif.json").read_text())
        kernel, vm_seconds = saved.get("kernel"), saved.get("vm_seconds")
    else:
        result = run_script(
            HERE / "vif_bench.sh",
            kernel=kernel_by_name(),
            files={"lib.sh": VM_LIB},
            env={"BENCH_TOL_REPEATS": str(args.tol_repeats), "BENCH_TOL_N": str(args.tol_n)},
            # About 25 s per run: 15 comparison runs, 4 mixed-goal runs, 3 period
            # runs, the tol runs (the whole run took 1,060 s at 3 repeats).
            timeout=1200 + 60 * 3 * args.tol_repeats,
        )
        result.check()
        output, kernel, vm_seconds = result.output, result.kernel, round(result.total_seconds, 1)
    summary = summarize(output)
    summary["kernel"] = kernel
    summary["vm_seconds"] = vm_seconds
    out = repo_root() / "reports" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "vif.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "vif.log").write_text(output)
    plot(output, summary, out / "vif.png")
    for c in summary["configs"]:
        print(
            f"N={c['n']} {c['config']:7s} SLO met {c['slo_met_share']:.0%} "
            f"spread {c['spread_pct_of_goal']}% total {c['total_mbps']} Mbps "
            f"CPU {c['cpu_seconds']} s"
        )
    for param in ("period_ms", "tol_pct"):
        for r in summary[param.split("_")[0] + "_sweep"]:
            print(
                f"{param}={r[param]} run {r['run']} convergence {r['convergence_s']} "
                f"after goal change {r['convergence_after_goal_change_s']} "
                f"spread {r['spread_pct_of_goal']}% SLO met {r['slo_met_share']:.0%}"
            )
    for r in summary["tol_by_setting"]:
        print(
            f"tol_pct={r['tol_pct']} over {r['runs']} runs: spread {r['spread_pct_of_goal']}% "
            f"(mean {r['mean_spread_pct_of_goal']}%), SLO met >= {r['slo_met_share_min']:.0%}"
        )
    for c in summary["mixed_goals"]["configs"]:
        print(
            f"mixed goals {summary['mixed_goals']['goal_pct']}% N={c['n']} {c['config']:9s} "
            f"SLO met {c['slo_met_share']:.0%} mean {c['mean_bw_mbps']} Mbps "
            f"for goals {[round(g) for g in c['goal_mbps']]} CPU {c['cpu_seconds']} s"
        )
    for r in summary["cpu_vs_smallest_static"]:
        print(
            f"N={r['n']} vif CPU {r['vif_cpu_s']} s vs smallest static "
            f"{r['smallest_static_cpu_s']} s: {r['ratio']}x (target <= {CPU_TARGET_RATIO}x)"
        )
    print(f"wrote {out / 'vif.json'} and {out / 'vif.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
