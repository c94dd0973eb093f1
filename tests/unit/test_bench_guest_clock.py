"""harness/bench/guest_clock.py: alternating order, paired ratios, the guest's output read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.bench import guest_clock as bench
from harness.vm import runner

pytestmark = pytest.mark.unit


def _run(ns: float, loop: float, source: str) -> dict[str, Any]:
    return {"clock_ns_per_call": ns, "loop_s": loop, "clocksource": source}


def test_each_configuration_goes_first_every_other_repetition() -> None:
    assert [bench.order(rep)[0] for rep in range(4)] == [
        "default",
        "tsc=reliable",
        "default",
        "tsc=reliable",
    ]


def test_ratios_are_paired_per_repetition() -> None:
    runs = [
        {"default": _run(2000, 0.2, "hpet"), "tsc=reliable": _run(100, 0.2, "tsc")},
        {"default": _run(1000, 0.1, "hpet"), "tsc=reliable": _run(100, 0.1, "tsc")},
    ]
    s = bench.summarize(runs)
    # (0.05 + 0.1) / 2, not 100 / 1500.
    assert s["tsc=reliable"]["clock_ns_per_call_ratio"]["mean"] == pytest.approx(0.075)
    assert s["tsc=reliable"]["clocksources"] == ["tsc"]
    assert s["default"]["clocksources"] == ["hpet"]


def test_the_kernel_parameters_reach_the_command_line(tmp_path: Path) -> None:
    def append_of(argv: list[str]) -> str:
        return argv[argv.index("-append") + 1]

    plain = runner.kernel_command(tmp_path / "k", tmp_path / "i", smp=2, mem_mb=512)
    extra = runner.kernel_command(
        tmp_path / "k", tmp_path / "i", smp=2, mem_mb=512, append=bench.CONFIGS["tsc=reliable"]
    )
    assert append_of(extra) == append_of(plain) + " tsc=reliable clocksource=tsc"
    assert not append_of(plain).endswith(" ")


def test_a_failed_guest_run_is_an_error_not_a_number(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class Failed:
        rc = None
        output = ""
        console = "Kernel panic"

    monkeypatch.setattr(bench, "run_script", lambda *a, **k: Failed())
    with pytest.raises(RuntimeError, match="Kernel panic"):
        bench.measure(tmp_path / "b", tmp_path / "s", "")
