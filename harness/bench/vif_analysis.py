"""Per-run metrics and the summary of ``make bench-vif``, from vif_bench.sh's records.

A run's record stream: ``# run`` (scenario, config, repetition), one ``# ctr`` per
container (class, goal, request), ``# mark`` at start / steady_start / steady_end /
end (CPU of every cgroup, the hog's work units), ``# change`` (the goal change) and
``# d`` every ~100 ms (uptime and every container's veth byte count), then ``# end``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from harness.bench.stats import interval, target

CONFIGS = ("requests", "limits", "tbf", "vif")
NATIVE = ("requests", "limits")
FEASIBLE = ("n4l50", "n8l50")  # total goals at half the node's capacity
SWEEP = ("n4l50", "n4l100", "n4l150")
BATCH = "n4batch"
PERIOD_S = 1.0  # the periods the spread across time is taken over
SMOOTH_S = 0.5  # settling: bandwidth as the centred mean over this window (noise vs blur)
STEP_S = 0.1  # settling resolution
STAY_S = 2.0  # settled: in the band for this long
BAND = (0.95, 1.10)  # of the new goal; vif aims at 1.01
SPREAD_TARGET = 0.1  # vif's per-class CV at most 1/10 of native's
CPU_TARGET = 1.05  # vif's CPU per delivered Mbps at most 1.05x tbf's
SETTLE_TARGET_S = 1.0


def records(output: str) -> list[tuple[str, dict[str, str], list[str]]]:
    """Every ``# kind k=v ... bare`` line: (kind, key-values, bare words)."""
    out = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "#":
            continue
        kv = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
        out.append((parts[1], kv, [p for p in parts[2:] if "=" not in p]))
    return out


def at(ts: Sequence[float], ys: Sequence[float], t: float) -> float | None:
    """``ys`` linearly interpolated at ``t``; None outside the samples."""
    if not ts or t < ts[0] or t > ts[-1]:
        return None
    lo, hi = 0, len(ts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ts[mid] <= t else (lo, mid)
    if ts[hi] == ts[lo]:
        return ys[lo]
    return ys[lo] + (ys[hi] - ys[lo]) * (t - ts[lo]) / (ts[hi] - ts[lo])


def mbps(ts: Sequence[float], counts: Sequence[float], a: float, b: float) -> float | None:
    """Mean Mbps between ``a`` and ``b`` from a byte counter's samples."""
    ca, cb = at(ts, counts, a), at(ts, counts, b)
    if ca is None or cb is None or b <= a:
        return None
    return (cb - ca) * 8 / (b - a) / 1e6


def cv(values: Sequence[float]) -> float | None:
    """Coefficient of variation (sample sd over mean); None below two values."""
    if len(values) < 2 or statistics.fmean(values) == 0:
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def settling(
    ts: Sequence[float], counts: Sequence[float], change: float, goal: float
) -> float | None:
    """Seconds after ``change`` until the smoothed bandwidth enters ``BAND`` x goal and
    stays there ``STAY_S``; None if it does not within the samples."""
    lo, hi = BAND[0] * goal, BAND[1] * goal
    grid: list[bool] = []
    k = 0
    while True:
        t = change + k * STEP_S
        bw = mbps(ts, counts, t - SMOOTH_S / 2, t + SMOOTH_S / 2)
        if bw is None:
            break
        grid.append(lo <= bw <= hi)
        k += 1
    stay = round(STAY_S / STEP_S)
    for j in range(len(grid) - stay):
        if all(grid[j : j + stay + 1]):
            return round(j * STEP_S, 3)
    return None


def _split_runs(output: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for kind, kv, _ in records(output):
        if kind == "run":
            cur = {"meta": kv, "ctr": [], "mark": {}, "change": None}
            runs.append(cur)
        elif cur is None:
            continue
        elif kind == "ctr":
            cur["ctr"].append(kv)
        elif kind == "mark":
            cur["mark"][kv["k"]] = kv
        elif kind == "change":
            cur["change"] = kv
        elif kind == "end":
            cur = None
    return runs


def _d_rows(output: str) -> dict[int, list[tuple[float, list[float]]]]:
    """The sampler's rows per run id (they carry bare numbers, not key=value)."""
    rows: dict[int, list[tuple[float, list[float]]]] = defaultdict(list)
    run_id: int | None = None
    for kind, kv, bare in records(output):
        if kind == "run":
            run_id = int(kv["id"])
        elif kind == "end":
            run_id = None
        elif kind == "d" and run_id is not None and "t" in kv:
            try:
                rows[run_id].append((float(kv["t"]), [float(x) for x in bare]))
            except ValueError:
                continue  # a line cut by the console
    return rows


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def _num(s: str | None) -> float:
    try:
        return float(s or 0)
    except ValueError:
        return 0.0


def run_metrics(
    run: Mapping[str, Any], rows: Sequence[tuple[float, list[float]]]
) -> dict[str, Any]:
    """One run's summary: the per-run JSON entry."""
    meta, marks = run["meta"], run["mark"]
    ctrs = sorted(run["ctr"], key=lambda c: int(c["i"]))
    n = len(ctrs)
    rows = [r for r in rows if len(r[1]) == n]
    ts = [r[0] for r in rows]
    a, b = float(marks["steady_start"]["t"]), float(marks["steady_end"]["t"])
    window = b - a
    goals = [float(c["goal"]) for c in ctrs]
    classes = [c["class"] for c in ctrs]
    means: list[float] = []
    period_cvs: list[float | None] = []
    pooled: dict[str, list[float]] = defaultdict(list)
    periods = max(1, int(window // PERIOD_S))
    for i in range(n):
        counts = [r[1][i] for r in rows]
        m = mbps(ts, counts, a, b)
        means.append(m if m is not None else 0.0)
        per = [mbps(ts, counts, a + k * PERIOD_S, a + (k + 1) * PERIOD_S) for k in range(periods)]
        vals = [p for p in per if p is not None]
        period_cvs.append(cv(vals))
        pooled[classes[i]].extend(v / goals[i] for v in vals)
    cpu0, cpu1 = _ints(marks["steady_start"]["cpu"]), _ints(marks["steady_end"]["cpu"])
    cpu_s = sum(y - x for x, y in zip(cpu0, cpu1, strict=True)) / 1e6
    total = sum(means)
    by_class: dict[str, dict[str, Any]] = {}
    for cl in sorted(set(classes)):
        idx = [i for i in range(n) if classes[i] == cl]
        pcv = [c for c in (period_cvs[i] for i in idx) if c is not None]
        by_class[cl] = {
            "goal_mbps": goals[idx[0]],
            "delivered_over_goal": statistics.fmean(means[i] / goals[i] for i in idx),
            "cv_containers": cv([means[i] for i in idx]),
            "cv_periods": statistics.fmean(pcv) if pcv else None,
            "cv_pooled": cv(pooled[cl]),
        }
    settle: list[float | None] = []
    change = run.get("change")
    if change:
        tc = float(change["t"])
        new_low = float(change["goal_low"])
        for i in range(n):
            if classes[i] == "low":
                counts = [r[1][i] for r in rows]
                settle.append(settling(ts, counts, tc, new_low))
    hog = _num(marks["steady_end"]["hog_units"]) - _num(marks["steady_start"]["hog_units"])
    hog_cpu = _num(marks["steady_end"]["hog_cpu"]) - _num(marks["steady_start"]["hog_cpu"])
    batch_cpu = _num(marks["steady_end"].get("batch_cpu")) - _num(
        marks["steady_start"].get("batch_cpu")
    )
    done = [x for x in settle if x is not None]
    worst = max(done) if settle and len(done) == len(settle) else None
    met = [m >= g for m, g in zip(means, goals, strict=True)]
    met95 = [m >= 0.95 * g for m, g in zip(means, goals, strict=True)]
    return {
        "id": int(meta["id"]),
        "scenario": meta["scenario"],
        "config": meta["config"],
        "n": n,
        "load_pct": int(meta["load_pct"]),
        "batch": meta["batch"] == "1",
        "rep": int(meta["rep"]),
        "window_s": round(window, 3),
        "samples": len(rows),
        "sample_interval_s": round((ts[-1] - ts[0]) / (len(ts) - 1), 3) if len(ts) > 1 else None,
        "goal_mbps": goals,
        "class": classes,
        "request_m": [int(c["request_m"]) for c in ctrs],
        "weight": [int(c["weight"]) for c in ctrs],
        "mean_mbps": [round(m, 2) for m in means],
        "slo_met_share": sum(met) / n,
        "slo_met95_share": sum(met95) / n,
        "by_class": by_class,
        "total_mbps": round(total, 2),
        "cpu_s": round(cpu_s, 3),
        "mcpu_per_mbps": round(cpu_s / window * 1000 / total, 4) if total else None,
        "hog_units_per_s": round(hog / window, 3),
        "hog_cpu_share": round(hog_cpu / 1e6 / window, 4),
        "batch_cpu_share": round(batch_cpu / 1e6 / window, 4),
        "settling_s": settle,
        "settled_share": (sum(s is not None for s in settle) / len(settle)) if settle else None,
        "worst_settling_s": worst,
    }


def parse(output: str) -> dict[str, Any]:
    """The calibration (capacity, curve) and every run's metrics."""
    recs = records(output)
    capacity = {int(kv["n"]): float(kv["mbps"]) for k, kv, _ in recs if k == "capacity"}
    curve = [
        {
            "quota_pct": int(kv["quota_pct"]),
            "mbps": float(kv["mbps"]),
            "used_mbps": float(kv.get("used_mbps", kv["mbps"])),
        }
        for k, kv, _ in recs
        if k == "curve"
    ]
    rows = _d_rows(output)
    runs = [
        run_metrics(r, rows[int(r["meta"]["id"])])
        for r in _split_runs(output)
        if {"steady_start", "steady_end"} <= set(r["mark"])
    ]
    return {"capacity_mbps": capacity, "curve": curve, "runs": runs}


# --- summary over repetitions -------------------------------------------------------

RUN_KEYS = (
    "slo_met_share",
    "slo_met95_share",
    "total_mbps",
    "mcpu_per_mbps",
    "hog_units_per_s",
    "hog_cpu_share",
    "batch_cpu_share",
    "worst_settling_s",
    "settled_share",
)
CLASS_KEYS = ("delivered_over_goal", "cv_containers", "cv_periods", "cv_pooled")


def _values(runs: Sequence[Mapping[str, Any]], key: str, cls: str | None = None) -> list[float]:
    out = []
    for r in sorted(runs, key=lambda r: r["rep"]):
        v = r["by_class"].get(cls, {}).get(key) if cls else r.get(key)
        if v is not None:
            out.append(float(v))
    return out


def _paired(
    a: Sequence[Mapping[str, Any]],
    b: Sequence[Mapping[str, Any]],
    key: str,
    cls: str | None = None,
) -> dict[str, Any]:
    """Interval of a/b per repetition (the two runs of one repetition side by side)."""
    ra = {r["rep"]: r for r in a}
    ratios = []
    for r in b:
        x = ra.get(r["rep"])
        if x is None:
            continue
        va = x["by_class"].get(cls, {}).get(key) if cls else x.get(key)
        vb = r["by_class"].get(cls, {}).get(key) if cls else r.get(key)
        if va is not None and vb:
            ratios.append(float(va) / float(vb))
    return interval(ratios)


def _rounded(stat: Mapping[str, Any], nd: int = 4) -> dict[str, Any]:
    def r(x: Any) -> Any:
        if isinstance(x, float):
            return None if math.isnan(x) else round(x, nd)
        if isinstance(x, list):
            return [r(v) for v in x]
        return x

    return {k: r(v) for k, v in stat.items()}


def by_config(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[Mapping[str, Any]]]]:
    out: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        out[r["scenario"]][r["config"]].append(r)
    return out


def scenario_summary(per: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cfg in CONFIGS:
        rs = per.get(cfg, [])
        if not rs:
            continue
        classes = sorted({c for r in rs for c in r["by_class"]})
        out[cfg] = {
            "runs": len(rs),
            **{k: _rounded(interval(_values(rs, k))) for k in RUN_KEYS},
            "by_class": {
                cl: {k: _rounded(interval(_values(rs, k, cl))) for k in CLASS_KEYS}
                for cl in classes
            },
        }
    return out


def summarize(parsed: Mapping[str, Any]) -> dict[str, Any]:
    runs = parsed["runs"]
    grouped = by_config(runs)
    scenarios = {s: scenario_summary(per) for s, per in sorted(grouped.items())}
    comparisons: dict[str, Any] = {}
    for s, per in grouped.items():
        vif = per.get("vif", [])
        comp: dict[str, Any] = {}
        for base in ("requests", "limits", "tbf"):
            other = per.get(base, [])
            if not vif or not other:
                continue
            comp[f"vif_over_{base}"] = {
                "slo_met_share": _rounded(_paired(vif, other, "slo_met_share")),
                "mcpu_per_mbps": _rounded(_paired(vif, other, "mcpu_per_mbps")),
                "hog_units_per_s": _rounded(_paired(vif, other, "hog_units_per_s")),
                "cv_pooled": {
                    cl: _rounded(_paired(vif, other, "cv_pooled", cl)) for cl in ("low", "high")
                },
            }
        comparisons[s] = comp
    goals = targets(grouped, comparisons)
    return {
        "capacity_mbps": parsed["capacity_mbps"],
        "curve": parsed["curve"],
        "reps": min((len(v) for per in grouped.values() for v in per.values()), default=0),
        "scenarios": scenarios,
        "comparisons": comparisons,
        "sweep": sweep_table(scenarios),
        "batch_job": batch_verdict(grouped.get(BATCH, {})),
        "targets": goals,
        "verdicts": verdicts(goals),
    }


def sweep_table(scenarios: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per total goal: each configuration's SLOs met and delivered / goal per class."""
    out = []
    for s in SWEEP:
        per = scenarios.get(s)
        if not per:
            continue
        out.append(
            {
                "scenario": s,
                "load_pct": int(s.split("l")[1]),
                **{
                    cfg: {
                        "slo_met_share": st["slo_met_share"]["mean"],
                        "slo_met95_share": st["slo_met95_share"]["mean"],
                        **{
                            f"{cl}_delivered_over_goal": st["by_class"][cl]["delivered_over_goal"][
                                "mean"
                            ]
                            for cl in st["by_class"]
                        },
                    }
                    for cfg, st in per.items()
                },
            }
        )
    return out


def side(stat: Mapping[str, Any]) -> str:
    """Which side of zero a difference's interval is on."""
    ci = stat.get("ci95")
    if stat.get("mean") is None:
        return "no data"
    if ci and ci[1] < 0:
        return "loses"
    if ci and ci[0] > 0:
        return "wins"
    return "cannot be told apart"


def batch_verdict(per: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """vif next to a Burstable batch job: SLOs met against each baseline, paired."""
    vif = {r["rep"]: r for r in per.get("vif", [])}
    out: dict[str, Any] = {}
    for base in ("requests", "limits", "tbf"):
        pairs = [(vif[r["rep"]], r) for r in per.get(base, []) if r["rep"] in vif]
        if not pairs:
            continue
        for key in ("slo_met_share", "slo_met95_share"):
            diff = interval([float(a[key]) - float(b[key]) for a, b in pairs])
            out[f"vif_minus_{base}_{key}"] = {**_rounded(diff), "vif": side(diff)}
    return out


def verdicts(goals: Mapping[str, Any]) -> list[str]:
    """One line per target and scenario: met, or missed by how much."""
    lines = []
    for s, t in goals.items():
        m = t["vif_meets_every_slo"]
        lines.append(
            f"{s}: vif met {100 * (m['vif_slo_met_share']['mean'] or 0):.0f}% of SLOs "
            f"(target 100%): {'met' if m['met'] else 'missed'}"
        )
        for cl, sp in t["spread_le_tenth_of_requests"].items():
            lines.append(
                f"{s}: {cl} class CV vif/requests {sp['mean_over_bound'] * SPREAD_TARGET:.2f} "
                f"(target <= {SPREAD_TARGET}): "
                + ("met" if sp["met"] else f"missed by {sp['mean_over_bound']:.1f}x")
            )
        c = t["cpu_per_mbps_le_1_05_tbf"]
        if c:
            lines.append(
                f"{s}: CPU per Mbps vif/tbf {c['mean_over_bound'] * CPU_TARGET:.2f} "
                f"(target <= {CPU_TARGET}): "
                + ("met" if c["met"] else f"missed by {c['mean_over_bound']:.2f}x")
            )
        st = t["settling_le_1_s"]
        lines.append(
            f"{s}: vif settled within the run in {st['runs_settled']} of {st['runs']} runs"
            + (
                f", worst container {st['mean_over_bound'] * SETTLE_TARGET_S:.2f} s on their mean"
                if st["mean_over_bound"] is not None
                else ""
            )
            + f" (target <= {SETTLE_TARGET_S} s): "
            + ("met" if st["met"] and st["runs_settled"] == st["runs"] else "missed")
        )
    return lines


def targets(
    grouped: Mapping[str, Mapping[str, Sequence[Mapping[str, Any]]]],
    comparisons: Mapping[str, Any],
) -> dict[str, Any]:
    """The issue's four targets, on the feasible scenarios."""
    out: dict[str, Any] = {}
    for s in FEASIBLE:
        per, comp = grouped.get(s), comparisons.get(s)
        if not per or not comp or "vif" not in per:
            continue
        vif_met = interval(_values(per["vif"], "slo_met_share"))
        native_met = {b: interval(_values(per[b], "slo_met_share")) for b in NATIVE if b in per}
        out[s] = {
            "vif_meets_every_slo": {
                "vif_slo_met_share": _rounded(vif_met),
                "native_slo_met_share": {b: _rounded(v) for b, v in native_met.items()},
                **_rounded(target(vif_met, 1.0, at_most=False)),
            },
            "spread_le_tenth_of_requests": {
                cl: _rounded(
                    target(comp["vif_over_requests"]["cv_pooled"][cl], SPREAD_TARGET, at_most=True)
                )
                for cl in ("low", "high")
                if comp.get("vif_over_requests", {}).get("cv_pooled", {}).get(cl, {}).get("n")
            },
            "cpu_per_mbps_le_1_05_tbf": _rounded(
                target(comp["vif_over_tbf"]["mcpu_per_mbps"], CPU_TARGET, at_most=True)
            )
            if "vif_over_tbf" in comp
            else None,
            "settling_le_1_s": {
                **_rounded(
                    target(
                        interval(_values(per["vif"], "worst_settling_s")),
                        SETTLE_TARGET_S,
                        at_most=True,
                    )
                ),
                "runs_settled": sum(r["worst_settling_s"] is not None for r in per["vif"]),
                "runs": len(per["vif"]),
            },
        }
    return out
