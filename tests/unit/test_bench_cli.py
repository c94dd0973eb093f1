"""harness/bench/cli.py: a short run may not overwrite a report."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from harness.bench import cli
from harness.bench.stats import MIN_REPS

pytestmark = pytest.mark.unit


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench-test")
    parser.add_argument("--reps", type=int, default=MIN_REPS)
    cli.add_out(parser)
    return parser


def test_too_few_reps_into_the_report_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = _parser()
    args = parser.parse_args(["--reps", str(MIN_REPS - 1)])
    with pytest.raises(SystemExit) as exc:
        cli.require_reps(parser, args, args.reps, MIN_REPS)
    assert exc.value.code == 2
    assert f"at least {MIN_REPS} repetitions" in capsys.readouterr().err


def test_enough_reps_or_another_directory_pass(tmp_path: Path) -> None:
    parser = _parser()
    args = parser.parse_args([])
    cli.require_reps(parser, args, args.reps, MIN_REPS + 1)
    args = parser.parse_args(["--reps", "2", "--out", str(tmp_path)])
    cli.require_reps(parser, args, args.reps)


@pytest.mark.parametrize("reps", ["1", "0", "-3"])
def test_a_run_without_an_interval_is_a_usage_error_wherever_it_goes(
    reps: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = _parser()
    args = parser.parse_args(["--reps", reps, "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        cli.require_reps(parser, args, args.reps)
    assert exc.value.code == 2
    assert "an interval needs two" in capsys.readouterr().err


def test_make_bench_runs_the_benchmark_programs_and_not_their_helpers() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", "bench"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    loop = next(line for line in out.splitlines() if line.startswith("for b in "))
    benches = set(loop.removeprefix("for b in ").split(";")[0].split())
    programs = {
        f"bench-{p.stem}"
        for p in (root / "harness" / "bench").glob("*.py")
        if 'if __name__ == "__main__":' in p.read_text()
    }
    assert benches == programs
    assert {"bench-lab_cpu", "bench-vif"} <= benches
    assert not benches & {"bench-stats", "bench-cli", "bench-host", "bench-__init__"}


def test_parse_reps_checks_the_count_and_makes_the_report_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.parse_reps("demo", "A demo.\n\nMore.", ["--reps", "1", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "make bench-demo" in capsys.readouterr().err
    args = cli.parse_reps("demo", "A demo.", ["--reps", "2", "--out", str(tmp_path / "r")])
    assert args.reps == 2
    assert (tmp_path / "r").is_dir()
