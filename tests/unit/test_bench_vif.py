"""infra/bench/vif.py's summary, on records shaped as vif_bench.sh prints them."""

from __future__ import annotations

import pytest

from infra.bench import vif

pytestmark = pytest.mark.unit


def _run(cfg: str, n: int, bws: list[float], usec: int, window_usec: int | None = None) -> str:
    lines = []
    for i in range(1, n + 1):
        for k, bw in enumerate(bws):
            lines.append(
                f"# s cfg={cfg} n={n} t={k * 0.5} i={i} goal=200 bw_mbps={bw} quota_us=max"
            )
        if window_usec is not None:
            lines.append(f"# cpu_window cfg={cfg} n={n} i={i} usec={window_usec}")
        lines.append(f"# cpu cfg={cfg} n={n} i={i} usec={usec} elapsed=16")
    return "\n".join(lines)


def test_cpu_ratio_uses_the_shared_window() -> None:
    steady = [250.0] * 40
    output = "\n".join(
        [
            "# goal goal_mbps=200",
            "# sweep quota_pct=10 bw_mbps=100",
            "# sweep quota_pct=20 bw_mbps=200",
            # vif runs on past the window: only its window CPU is compared.
            _run("vif", 2, steady, usec=9_000_000, window_usec=3_000_000),
            _run("staticmin", 2, steady, usec=4_000_000),
        ]
    )
    summary = vif.summarize(output)
    assert summary["smallest_static_quota_pct_meeting_goal"] == 20
    (ratio,) = summary["cpu_vs_smallest_static"]
    assert (ratio["vif_cpu_s"], ratio["smallest_static_cpu_s"], ratio["ratio"]) == (6.0, 8.0, 0.75)
    assert ratio["within_target"]


def test_spread_and_slo_met() -> None:
    output = "\n".join(
        [
            "# goal goal_mbps=200",
            _run("static", 1, [200.0] * 40, 1),
            _run("none", 1, [150.0] * 40, 1),
        ]
    )
    rows = {c["config"]: c for c in vif.summarize(output)["configs"]}
    assert rows["static"]["slo_met_share"] == 1.0
    assert rows["none"]["slo_met_share"] == 0.0
    assert vif.summarize(output)["cpu_vs_smallest_static"] == []


def test_tol_sweep_repetitions_are_kept_apart_and_summarized() -> None:
    def pair(cfg: str, a: float, b: float) -> str:
        # Two containers at their own steady bandwidth, goal 200.
        return "\n".join(
            f"# s cfg={cfg} n=2 t={k * 0.5} i={i} goal=200 bw_mbps={bw} quota_us=max"
            for i, bw in ((1, a), (2, b))
            for k in range(40)
        )

    output = "\n".join(
        [
            "# goal goal_mbps=200",
            pair("vift2r1", 200.0, 202.0),  # spread 1%
            pair("vift5r1", 200.0, 210.0),  # 5%
            pair("vift2r2", 200.0, 206.0),  # 3%
            pair("vift5r2", 200.0, 200.0),  # 0%
        ]
    )
    summary = vif.summarize(output)
    assert [(r["tol_pct"], r["run"], r["spread_pct_of_goal"]) for r in summary["tol_sweep"]] == [
        (2, 1, 1.0),
        (2, 2, 3.0),
        (5, 1, 5.0),
        (5, 2, 0.0),
    ]
    by = {r["tol_pct"]: r for r in summary["tol_by_setting"]}
    assert by[2]["spread_pct_of_goal"] == [1.0, 3.0]
    assert (by[2]["mean_spread_pct_of_goal"], by[2]["worst_spread_pct_of_goal"]) == (2.0, 3.0)
    assert (by[5]["runs"], by[5]["mean_spread_pct_of_goal"]) == (2, 2.5)
    assert by[5]["slo_met_share_min"] == 1.0
    # no configuration runs besides the sweep
    assert summary["configs"] == []


def test_a_sweep_run_without_repetition_is_run_one() -> None:
    output = "\n".join(["# goal goal_mbps=200", _run("vifp200", 2, [200.0] * 40, 1)])
    (row,) = vif.summarize(output)["period_sweep"]
    assert (row["period_ms"], row["run"]) == (200, 1)


def test_tol_repeats_out_of_range_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        vif.main(["--tol-repeats", "0"])
    assert exc.value.code == 2
    assert "--tol-repeats 0: between 1 and 20" in capsys.readouterr().err


def test_byte_counters_give_the_means_when_the_run_has_them() -> None:
    # The samples say 250 and 150 Mbps; the counters, over 10 s: 200 and 196 Mbps.
    noisy = "\n".join(
        f"# s cfg=vif n=2 t={k * 0.5} i={i} goal=200 bw_mbps={bw} quota_us=1"
        for i, bw in ((1, 250.0), (2, 150.0))
        for k in range(40)
    )
    output = "\n".join(
        [
            "# goal goal_mbps=200",
            noisy,
            "# bytes cfg=vif n=2 t=4.5 w1=1000 w2=2000",
            "# bytes cfg=vif n=2 t=9.5 w1=1000000 w2=2000",  # a middle snapshot is not used
            f"# bytes cfg=vif n=2 t=14.5 w1={1000 + 250_000_000} w2={2000 + 245_000_000}",
            _run("tbf", 1, [190.0] * 40, 1),  # no snapshots: the samples' mean
        ]
    )
    rows = {c["config"]: c for c in vif.summarize(output)["configs"]}
    assert rows["vif"]["mean_from"] == "byte counters"
    assert rows["vif"]["mean_bw_mbps"] == [200.0, 196.0]
    assert rows["vif"]["spread_pct_of_goal"] == 2.0
    assert rows["vif"]["slo_met_share"] == 1.0
    assert (rows["vif"]["sampled_mean_bw_mbps"], rows["vif"]["sampled_spread_pct_of_goal"]) == (
        [250.0, 150.0],
        50.0,
    )
    assert (rows["tbf"]["mean_from"], rows["tbf"]["mean_bw_mbps"]) == ("samples", [190.0])


def test_mixed_goals_are_judged_against_each_containers_own_goal() -> None:
    def run(cfg: str, bws: tuple[float, ...], goals: tuple[int, ...]) -> str:
        return "\n".join(
            f"# s cfg={cfg} n=2 t={k * 0.5} i={i} goal={g} bw_mbps={bw} quota_us=1"
            for i, (bw, g) in enumerate(zip(bws, goals, strict=True), start=1)
            for k in range(40)
        )

    output = "\n".join(
        [
            "# goal goal_mbps=200",
            "# mix goal_pct=50,150",
            run("vifmix", (101.0, 303.0), (100, 300)),  # both met, 1% over each
            run("nonemix", (250.0, 250.0), (100, 300)),  # the high one starved
        ]
    )
    summary = vif.summarize(output)
    assert summary["configs"] == []
    mixed = summary["mixed_goals"]
    assert mixed["goal_pct"] == [50, 150]
    rows = {c["config"]: c for c in mixed["configs"]}
    assert rows["vifmix"]["goal_mbps"] == [100.0, 300.0]
    assert (rows["vifmix"]["slo_met_share"], rows["vifmix"]["spread_pct_of_goal"]) == (1.0, 0.0)
    assert rows["nonemix"]["slo_met_share"] == 0.5
    # 250% of its goal against 83%: the spread is of each one's share of its own goal
    assert rows["nonemix"]["spread_pct_of_goal"] == 166.7
