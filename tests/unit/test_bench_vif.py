"""harness/bench/vif_analysis.py: metrics and intervals, on synthetic vif_bench.sh records."""

from __future__ import annotations

import math

import pytest

from harness.bench import vif_analysis as va

pytestmark = pytest.mark.unit


def _counter(rates: list[tuple[float, float]], step: float = 0.1, end: float = 20.0):
    """Byte-counter samples from (start time, Mbps) steps."""
    ts, counts, c = [], [], 0.0
    for j in range(round(end / step) + 1):
        t = round(j * step, 6)
        ts.append(t)
        counts.append(c)
        rate = [r for s, r in rates if s <= t + 1e-9][-1]
        c += rate * 1e6 / 8 * step
    return ts, counts


def test_mbps_interpolates_the_counter() -> None:
    ts, counts = _counter([(0.0, 100.0)])
    assert va.mbps(ts, counts, 1.05, 3.05) == pytest.approx(100.0)
    assert va.mbps(ts, counts, -1.0, 3.0) is None


def test_cv() -> None:
    assert va.cv([1.0, 1.0, 1.0]) == 0.0
    assert va.cv([1.0]) is None
    assert va.cv([90.0, 110.0]) == pytest.approx(math.sqrt(200) / 100)


def test_settling_on_a_step() -> None:
    # 100 Mbps, at t=10 the goal goes to 150 and the bandwidth follows at t=10.6
    ts, counts = _counter([(0.0, 100.0), (10.6, 151.0)])
    s = va.settling(ts, counts, 10.0, 150.0)
    # the centred mean is in 0.95-1.10 x 150 once (142.5 - 100) / 51 of its window
    # is past the step: the smoothing adds (0.83 - 0.5) x SMOOTH_S, ~0.17 s
    lag = ((142.5 - 100) / 51 - 0.5) * va.SMOOTH_S
    assert s == pytest.approx(0.6 + lag, abs=0.11)


def test_settling_needs_two_seconds_in_the_band() -> None:
    # enters the band at once, drops out after 1 s, comes back at 13 s
    ts, counts = _counter([(0.0, 150.0), (11.0, 100.0), (13.0, 150.0)])
    s = va.settling(ts, counts, 10.0, 150.0)
    assert s is not None and 2.9 <= s <= 3.6
    # never in the band: over-delivering at 2x
    ts, counts = _counter([(0.0, 300.0)])
    assert va.settling(ts, counts, 10.0, 150.0) is None


def _run(
    rid: int, cfg: str, rep: int, rates: list[float], *, goals: list[int], hog: int, cpu: int
) -> str:
    n = len(rates)
    lines = [f"# run id={rid} scenario=n4l50 config={cfg} n={n} load_pct=50 batch=0 rep={rep} t=0"]
    for i, g in enumerate(goals, 1):
        cl = "low" if i <= n // 2 else "high"
        lines.append(f"# ctr run={rid} i={i} class={cl} goal={g} request_m=100 weight=4")
    t0 = 100.0 * rid
    marks = {"start": 0.0, "steady_start": 4.0, "steady_end": 9.0, "end": 14.0}
    for k, dt in marks.items():
        used = ",".join(str(int(cpu * dt)) for _ in rates)
        lines.append(
            f"# mark run={rid} k={k} t={t0 + dt} cpu={used} hog_cpu={int(5e5 * dt)} "
            f"batch_cpu= hog_units={int(hog * dt)}"
        )
        if k == "steady_end":
            lines.append(f"# change run={rid} t={t0 + dt} goal_low={goals[0]}")
    for j in range(141):
        t = j * 0.1
        lines.append(f"# d t={t0 + t:.3f} " + " ".join(f"{r * 1e6 / 8 * t:.0f}" for r in rates))
    lines.append(f"# end run={rid} t={t0 + 14}")
    return "\n".join(lines)


def test_summary_pairs_repetitions_and_judges_targets() -> None:
    goals = [100, 100, 200, 200]
    parts = ["# capacity n=4 mbps=1200", "# curve quota_pct=10 mbps=100"]
    rid = 0
    for rep in range(1, 6):
        for cfg, rates, cpu in (
            ("requests", [150 + rep, 150 - rep, 250 + rep, 250 - rep], 200_000),
            ("limits", [95, 96, 190, 191], 100_000),
            ("tbf", [97, 97, 194, 194], 100_000),
            ("vif", [101, 101, 202, 202], 100_000 + 1000 * rep),
        ):
            rid += 1
            parts.append(
                _run(rid, cfg, rep, [float(r) for r in rates], goals=goals, hog=10, cpu=cpu)
            )
    parsed = va.parse("\n".join(parts))
    assert len(parsed["runs"]) == 20
    vif_run = next(r for r in parsed["runs"] if r["config"] == "vif")
    assert vif_run["mean_mbps"] == pytest.approx([101, 101, 202, 202], rel=1e-3)
    assert vif_run["slo_met_share"] == 1.0
    assert vif_run["worst_settling_s"] == 0.0
    assert vif_run["hog_units_per_s"] == pytest.approx(10.0)
    limits = next(r for r in parsed["runs"] if r["config"] == "limits")
    assert (limits["slo_met_share"], limits["slo_met95_share"]) == (0.0, 1.0)
    s = va.summarize(parsed)
    assert s["reps"] == 5
    met = s["scenarios"]["n4l50"]["vif"]["slo_met_share"]
    assert (met["n"], met["mean"]) == (5, 1.0)
    t = s["targets"]["n4l50"]
    assert t["vif_meets_every_slo"]["met"]
    # steady rates: vif's CV is 0, requests' is not
    assert t["spread_le_tenth_of_requests"]["low"]["met"]
    # vif uses 1.01-1.05x tbf's CPU per Mbps for 202/194 of its bandwidth
    cpu = s["comparisons"]["n4l50"]["vif_over_tbf"]["mcpu_per_mbps"]
    assert cpu["n"] == 5 and cpu["mean"] < 1.05
    assert t["settling_le_1_s"]["runs_settled"] == 5


def test_interleaved_order_is_kept_per_repetition() -> None:
    a = [{"rep": 1, "x": 2.0, "by_class": {}}, {"rep": 2, "x": 4.0, "by_class": {}}]
    b = [{"rep": 2, "x": 2.0, "by_class": {}}, {"rep": 1, "x": 1.0, "by_class": {}}]
    r = va._paired(a, b, "x")
    assert (r["n"], r["mean"]) == (2, 2.0)


def test_side_of_a_difference() -> None:
    assert va.side({"mean": -0.5, "ci95": [-0.8, -0.2]}) == "loses"
    assert va.side({"mean": 0.5, "ci95": [0.2, 0.8]}) == "wins"
    assert va.side({"mean": 0.1, "ci95": [-0.2, 0.4]}) == "cannot be told apart"
    assert va.side({"mean": None, "ci95": None}) == "no data"


def test_batch_verdict_pairs_repetitions() -> None:
    def r(cfg: str, rep: int, met: float) -> dict[str, object]:
        return {"config": cfg, "rep": rep, "slo_met_share": met, "slo_met95_share": met}

    per = {
        "vif": [r("vif", k, 0.25) for k in range(1, 6)],
        "requests": [r("requests", k, 0.5 + 0.01 * k) for k in range(1, 6)],
    }
    v = va.batch_verdict(per)  # type: ignore[arg-type]
    assert v["vif_minus_requests_slo_met_share"]["vif"] == "loses"
    assert v["vif_minus_requests_slo_met_share"]["n"] == 5
