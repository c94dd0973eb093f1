"""harness/bench/go_env.py: rotated order, ratios paired within a repetition."""

from __future__ import annotations

from typing import Any

import pytest

from harness.bench import go_env as bench

pytestmark = pytest.mark.unit


def _cp(startup: float, idle: float) -> dict[str, Any]:
    return {
        "startup_cpu_total_s": startup,
        "idle_cores_total": idle,
        "startup_cpu_s": {"etcd": startup / 4, "kube-apiserver": startup * 3 / 4},
    }


def test_every_configuration_leads_one_repetition_in_turn() -> None:
    firsts = [bench.order(rep)[0] for rep in range(len(bench.CONFIGS))]
    assert sorted(firsts) == sorted(bench.CONFIGS)
    assert all(sorted(bench.order(rep)) == sorted(bench.CONFIGS) for rep in range(7))


def test_ratios_are_paired_per_repetition_not_ratios_of_means() -> None:
    runs = [
        {"default": _cp(2.0, 0.02), "GOGC=400": _cp(1.0, 0.02), "GOMAXPROCS=1": _cp(2.0, 0.01)},
        {"default": _cp(4.0, 0.04), "GOGC=400": _cp(3.0, 0.04), "GOMAXPROCS=1": _cp(4.0, 0.02)},
    ]
    m = bench.summarize(runs)
    # (1/2 + 3/4) / 2, not (1 + 3) / (2 + 4)
    assert m["GOGC=400"]["startup_cpu_total_s_ratio"]["mean"] == pytest.approx(0.625)
    assert m["GOMAXPROCS=1"]["idle_cores_total_ratio"]["mean"] == pytest.approx(0.5)
    assert m["default"]["startup_cpu_total_s_ratio"]["mean"] == pytest.approx(1.0)
    assert m["GOGC=400"]["startup_cpu_s_by_component"]["kube-apiserver"]["mean"] == pytest.approx(
        1.5
    )
