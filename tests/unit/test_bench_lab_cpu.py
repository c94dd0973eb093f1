"""harness/bench/lab_cpu.py: pairing each repetition's slowdown with its native demand."""

from __future__ import annotations

from typing import Any

import pytest

from harness.bench import lab_cpu as bench

pytestmark = pytest.mark.unit


def _run(host_loop: float, guest_loop: float, idle: float, startup: float) -> dict[str, Any]:
    return {
        "host": {"loop_s": host_loop, "sha256_s": 1.0},
        "guest": {"loop_s": guest_loop, "sha256_s": 40.0},
        "native": {"idle_cores_total": idle, "startup_cpu_total_s": startup},
    }


def test_summarize_multiplies_within_a_repetition_not_across() -> None:
    runs = [_run(0.1, 1.0, 0.02, 3.0), _run(0.2, 4.0, 0.04, 2.0), _run(0.1, 1.5, 0.03, 4.0)]
    m = bench.summarize(runs)
    assert m["slowdown"]["loop_s"]["mean"] == pytest.approx((10 + 20 + 15) / 3)
    # paired per repetition: 10*0.02, 20*0.04, 15*0.03 (not mean x mean = 0.45)
    assert m["tcg_idle_cores"]["loop_s"]["mean"] == pytest.approx((0.2 + 0.8 + 0.45) / 3)
    assert m["tcg_startup_cpu_s"]["loop_s"]["mean"] == pytest.approx((30 + 40 + 60) / 3)
    assert m["slowdown"]["sha256_s"]["mean"] == pytest.approx(40.0)
    assert m["native_idle_cores"]["n"] == 3
    lo, hi = m["tcg_idle_cores"]["loop_s"]["ci95"]
    assert lo < m["tcg_idle_cores"]["loop_s"]["mean"] < hi


def test_the_probe_prints_both_timings() -> None:
    timings = bench.probe_host()
    assert set(timings) == set(bench.PROBES)
    assert all(v > 0 for v in timings.values())
