"""verify.yml's SLO proof, the controller's half: judge one node's run, draw them all.

``python -m depcon.proof judge`` reads one node's run as JSON on stdin (the
netperf logs of the client without and with the SLO, and the node's trace
from nodeagent/vif_trace.py) and prints the verdict as JSON: every number
the proof rests on and each check that failed. The SLO client's bandwidth is
the pod's own traffic as vif counts it (bytes in and out of its devices,
sampled by the tracer every 0.1 s); netperf's interim results come seconds
apart on an emulated node, so they are kept for reference only. ``python -m depcon.proof plot
REPORT PNG`` draws every node of a verification report (bandwidth, the goal
and the container's quota over time).

The checks (docs/architecture.md, "The SLO proof"):

* the kubelet registered exactly the client's container: the slot's PID is
  the container's process and the slot's cgroup is the container's;
* the goal is at most half the natural throughput (the client without an SLO,
  same node, same hog, same run), so vif holds the pod down and the lab's
  ceiling does not;
* the steady mean, from ``settle_s`` to the halving, is within
  [goal, goal x (1 + band_pct/100)];
* after the goal is halved the trailing one-second mean is within the band
  of the halved goal within ``follow_s``, and the mean from then until
  restore-at is within [half x 0.95, half x (1 + band_pct/100)];
* the quota trace shows vif at work: the container's ``cpu.max`` leaves the
  pod's own value and its mean falls after the halving;
* the container cannot see ``/proc/oslab``;
* after vif is reloaded the kubelet registers the container again within one
  reconcile period plus ``reregister_slack_s``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from depcon.provenance import stamp

# netperf -D: "Interim result:  59.20 10^6bits/s over 0.501 seconds ending at 1764633600.123"
_INTERIM = re.compile(
    r"Interim result:\s+([0-9.]+)\s+10\^6bits/s over\s+([0-9.]+)\s+seconds ending at\s+([0-9.]+)"
)


@dataclass(frozen=True)
class Limits:
    settle_s: float = 10.0
    band_pct: float = 5.0
    follow_s: float = 2.0
    reconcile_s: float = 10.0
    reregister_slack_s: float = 5.0


def interims(log: str) -> list[tuple[float, float, float]]:
    """(end time, seconds, Mbps) for each of netperf's interim results."""
    return [
        (float(end), float(secs), float(mbps))
        for mbps, secs, end in _INTERIM.findall(log)
        if float(secs) > 0
    ]


def window_mean(series: list[tuple[float, float, float]], start: float, end: float) -> float:
    """Time-weighted mean Mbps of the intervals ending in [start, end]."""
    picked = [(s, m) for t, s, m in series if start <= t <= end]
    total = sum(s for s, _ in picked)
    return sum(s * m for s, m in picked) / total if total else math.nan


def pod_series(samples: list[list[Any]]) -> list[tuple[float, int]]:
    """(seconds, bytes) of the pod's own devices from the trace: the traffic vif counts."""
    return [(float(s[0]), int(s[5])) for s in samples if len(s) > 5 and s[5] is not None]


def pod_mean(series: list[tuple[float, int]], start: float, end: float) -> float:
    """Mbps the pod moved from its first sample at or after start to its last at or before end."""
    inside = [(t, b) for t, b in series if start <= t <= end]
    if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.5 or inside[-1][1] < inside[0][1]:
        return math.nan
    (t1, b1), (t2, b2) = inside[0], inside[-1]
    return (b2 - b1) * 8 / 1e6 / (t2 - t1)


def pod_rates(series: list[tuple[float, int]], step: float = 1.0) -> list[tuple[float, float]]:
    """Mbps per step seconds, stamped with the end of each step."""
    if not series:
        return []
    out, t = [], series[0][0] + step
    while t <= series[-1][0]:
        out.append((t, pod_mean(series, t - step, t)))
        t += step
    return [(round(t, 2), round(m, 3)) for t, m in out if math.isfinite(m)]


def _quota(sample: list[Any]) -> float | None:
    """The quota vif wrote (µs per period) from a trace sample's cpu.max."""
    cpu_max = str(sample[4] or "")
    quota = cpu_max.split(maxsplit=1)[0] if cpu_max else ""
    return float(quota) if quota.isdigit() else None


def choose_goal(baseline_log: str, cap_mbps: int, settle_s: float) -> dict[str, Any]:
    """The proof's goal: at most half the natural throughput, at most the node's cap."""
    base = interims(baseline_log)
    if not base:
        raise ValueError("the run without an SLO printed no interim results")
    natural = window_mean(base, base[0][0] + settle_s, math.inf)
    if math.isnan(natural):
        natural = window_mean(base, -math.inf, math.inf)
    goal = int(natural // 2)
    if cap_mbps > 0:
        goal = min(goal, cap_mbps)
    if goal < 2:
        raise ValueError(f"the natural throughput {natural:.1f} Mbps leaves no goal to prove")
    return {"natural_mbps": round(natural, 2), "goal_mbps": goal, "cap_mbps": cap_mbps}


def judge(run: dict[str, Any], limits: Limits) -> dict[str, Any]:
    # The tracer's output as it printed it (a JSON text), or already parsed.
    trace = run["trace"]
    if isinstance(trace, str):
        try:
            trace = json.loads(trace) if trace.strip() else {}
        except json.JSONDecodeError:
            trace = {"error": f"the tracer printed no JSON: {trace[-300:]!r}"}
    failures: list[str] = []
    if "t0" not in trace:
        reason = trace.get("error", "the tracer printed nothing")
        return {"passed": False, "failures": [f"trace: {reason}"], "node": run["node"]}
    t0 = float(trace["t0"])
    ev = trace["events"]
    halved_at, restore_at = float(ev["halved_at"]), float(run["restore_at"])
    goal, half = int(trace["goal_mbps"]), int(trace["half_mbps"])
    hi = 1 + limits.band_pct / 100

    base = interims(run["baseline_log"])
    natural = window_mean(base, base[0][0] + limits.settle_s, math.inf) if base else math.nan
    slo = [(t - t0, s, m) for t, s, m in interims(run["slo_log"])]
    samples = trace["samples"]
    pod = pod_series(samples)
    steady = pod_mean(pod, limits.settle_s, halved_at)
    follow = next(
        (
            t - halved_at
            for t, _ in pod
            if halved_at + 1.0 <= t <= restore_at and pod_mean(pod, t - 1.0, t) <= half * hi
        ),
        math.inf,
    )
    held_half = pod_mean(pod, halved_at + min(follow, limits.follow_s) + 1.0, restore_at)
    quotas_full = [q for s in samples if limits.settle_s <= s[0] < halved_at and (q := _quota(s))]
    quotas_half = [
        q for s in samples if halved_at + limits.follow_s <= s[0] < restore_at and (q := _quota(s))
    ]
    own = str(trace["cpu_max_before"])
    ctr = trace["container"]
    view = trace["container_view"]
    rereg = (
        float(ev["reregistered_at"]) - float(ev["reloaded_at"])
        if "reregistered_at" in ev and "reloaded_at" in ev
        else math.inf
    )

    def check(ok: bool, message: str) -> None:
        if not ok:
            failures.append(message)

    check(
        run.get("placed_on") == run["node"],
        f"the DepCon scheduler placed the client on {run.get('placed_on')!r}",
    )
    check(
        bool(trace["slot_cgroup"]) and trace["slot_cgroup"] == ctr["cgroup"],
        f"slot {trace['slot']} holds cgroup {trace['slot_cgroup']!r}, the container's is "
        f"{ctr['cgroup']!r}",
    )
    check(
        goal <= natural / 2,
        f"goal {goal} Mbps is more than half the natural {natural:.1f} Mbps: it would not show vif",
    )
    check(
        goal <= steady <= goal * hi,
        f"steady mean {steady:.1f} Mbps outside [{goal}, {goal * hi:.1f}]",
    )
    check(follow <= limits.follow_s, f"followed the halved goal after {follow:.1f} s")
    check(
        half * 0.95 <= held_half <= half * hi,
        f"held {held_half:.1f} Mbps at the halved goal, outside "
        f"[{half * 0.95:.1f}, {half * hi:.1f}]",
    )
    check(
        bool(quotas_full) and bool(quotas_half),
        f"cpu.max never left the pod's own value {own!r} (vif wrote no quota)",
    )
    if quotas_full and quotas_half:
        check(
            statistics.mean(quotas_half) < statistics.mean(quotas_full),
            f"the quota did not fall with the goal ({statistics.mean(quotas_full):.0f} -> "
            f"{statistics.mean(quotas_half):.0f} us)",
        )
    check(bool(view["masked"]), f"the container sees /proc/oslab: {view['entries']}")
    check(
        rereg <= limits.reconcile_s + limits.reregister_slack_s,
        f"vif could not be reloaded: {ev['reload_error']}"
        if "reload_error" in ev
        else f"registered again {rereg:.1f} s after vif was reloaded",
    )
    return {
        "node": run["node"],
        "peer": run["peer"],
        "passed": not failures,
        "failures": failures,
        "natural_mbps": round(natural, 2),
        "goal_mbps": goal,
        "steady_mean_mbps": round(steady, 2),
        "steady_ratio": round(steady / goal, 3) if goal else None,
        "steady_cv": _cv(pod_rates(pod), limits.settle_s, halved_at),
        "netperf_steady_mbps": round(window_mean(slo, limits.settle_s, halved_at), 2),
        "half_mbps": half,
        "follow_s": round(follow, 2) if math.isfinite(follow) else None,
        "held_half_mbps": round(held_half, 2),
        "quota_full_us": round(statistics.mean(quotas_full)) if quotas_full else None,
        "quota_half_us": round(statistics.mean(quotas_half)) if quotas_half else None,
        "cpu_max_own": own,
        "registration": {
            "slot": trace["slot"],
            "pid": ctr["pid"],
            "cgroup": ctr["cgroup"],
            "after_start_s": trace["registered_after_s"],
        },
        "container_sees_oslab": view["entries"],
        "reassertions": ev.get("reassertions", 0),
        "kubelet_restored_after_s": _after(ev, "restored_at", restore_at),
        "reregistered_after_reload_s": round(rereg, 2) if math.isfinite(rereg) else None,
        "series": {
            "netperf": [[round(t, 2), round(m, 2)] for t, _, m in slo],
            "pod_mbps": [list(r) for r in pod_rates(pod)],
            "trace_columns": trace["columns"],
            "trace": samples,
        },
        "timeline": {
            "settle_s": limits.settle_s,
            "halved_at": halved_at,
            "restore_at": restore_at,
            "reloaded_at": ev.get("reloaded_at"),
        },
    }


def _cv(series: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [m for t, m in series if start <= t <= end]
    if len(values) < 2 or not statistics.mean(values):
        return None
    return round(statistics.stdev(values) / statistics.mean(values), 3)


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity as None: strict JSON, which Ansible hands on as data.

    (A verdict with ``inf`` in it reaches the next task as a string.)
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _after(ev: dict[str, Any], key: str, since: float) -> float | None:
    return round(float(ev[key]) - since, 2) if key in ev else None


def write_report(nodes: list[dict[str, Any]], stem: Path) -> None:
    """<stem>.json (every node's verdict, the commit, the controller's load) and <stem>.png."""
    report = {
        "verdict": "passed" if nodes and all(n.get("passed") for n in nodes) else "failed",
        **stamp(),
        "nodes": nodes,
    }
    stem.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(finite(report), indent=1, allow_nan=False)
    stem.with_suffix(".json").write_text(text + "\n")
    drawable = [n for n in nodes if "series" in n]
    if drawable:
        plot(drawable, stem.with_suffix(".png"))


def plot(nodes: list[dict[str, Any]], png: Path) -> None:
    import matplotlib  # noqa: PLC0415 -- only for the figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(len(nodes), 1, figsize=(9, 3.2 * len(nodes)), squeeze=False)
    for ax, node in zip(axes[:, 0], nodes, strict=True):
        series, trace = node["series"]["netperf"], node["series"]["trace"]
        pod = node["series"].get("pod_mbps", [])
        ax.step([t for t, _ in pod], [m for _, m in pod], where="pre", label="pod Mbps (1 s)")
        ax.plot([t for t, _ in series], [m for _, m in series], ".", color="tab:gray",
                markersize=3, label="netperf Mbps")  # fmt: skip
        ax.step([s[0] for s in trace], [s[1] for s in trace], where="post", color="k",
                linestyle="--", label="goal (slot)")  # fmt: skip
        ax.set_ylabel("Mbps")
        ax.set_xlabel("seconds after registration")
        verdict = "passed" if node["passed"] else "FAILED"
        ax.set_title(
            f"{node['node']} -> {node['peer']}: goal {node['goal_mbps']} Mbps, natural "
            f"{node['natural_mbps']} Mbps, steady {node['steady_mean_mbps']} Mbps ({verdict})",
            fontsize=9,
        )
        ax2 = ax.twinx()
        ax2.plot([s[0] for s in trace], [_quota(s) or math.nan for s in trace], color="tab:red",
                 alpha=0.5, linewidth=0.8, label="cpu.max quota (us)")  # fmt: skip
        ax2.set_ylabel("quota us / period")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m depcon.proof", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    j = sub.add_parser("judge", help="one node's run (JSON on stdin) -> its verdict (JSON)")
    for name, default in vars(Limits()).items():
        j.add_argument(f"--{name.replace('_', '-')}", type=float, default=default)
    g = sub.add_parser("goal", help="the run without an SLO (netperf's log on stdin) -> the goal")
    g.add_argument("--cap", type=int, default=0, help="the node's goal cap in Mbps (0: none)")
    g.add_argument("--settle-s", type=float, default=Limits.settle_s)
    r = sub.add_parser("report", help="every node's verdict (JSON on stdin) -> STEM.json, STEM.png")
    r.add_argument("stem", type=Path)
    args = parser.parse_args(argv)
    if args.action == "goal":
        try:
            print(json.dumps(choose_goal(sys.stdin.read(), args.cap, args.settle_s)))
        except ValueError as exc:
            print(f"proof: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.action == "report":
        # Ansible may hand each verdict on as its JSON text.
        nodes = [json.loads(n) if isinstance(n, str) else n for n in json.load(sys.stdin)["nodes"]]
        write_report(nodes, args.stem)
        return 0
    limits = Limits(**{k: getattr(args, k) for k in vars(Limits())})
    print(json.dumps(finite(judge(json.load(sys.stdin), limits)), allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
