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
