"""The command line every bench that writes a report shares: where, and how many repetitions."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from depcon.paths import repo_root
from harness.bench.stats import MIN_REPS


def add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=repo_root() / "reports" / "bench")


def require_reps(parser: argparse.ArgumentParser, args: argparse.Namespace, *reps: int) -> None:
    """Exits with a usage error for a run with no interval, or one too short for the report."""
    if min(reps) < 2:
        parser.error("at least 2 repetitions: an interval needs two")
    if min(reps) < MIN_REPS and args.out == parser.get_default("out"):
        parser.error(f"a report needs at least {MIN_REPS} repetitions (or --out elsewhere)")


def parse_reps(name: str, doc: str | None, argv: Sequence[str] | None) -> argparse.Namespace:
    """``--reps`` and ``--out`` of ``make bench-NAME``, checked; the report directory exists."""
    parser = argparse.ArgumentParser(
        prog=f"make bench-{name}", description=(doc or "").split("\n")[0]
    )
    parser.add_argument("--reps", type=int, default=MIN_REPS)
    add_out(parser)
    args = parser.parse_args(argv)
    require_reps(parser, args, args.reps)
    args.out.mkdir(parents=True, exist_ok=True)
    return args
