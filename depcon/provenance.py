"""What every report records of where it came from: the commit, the time, the host's load."""

from __future__ import annotations

import os
import subprocess
import time

from depcon.paths import repo_root


def git(*args: str) -> str:
    """``git ARGS`` in this checkout, its output stripped; empty outside a checkout."""
    proc = subprocess.run(
        ["git", *args], cwd=repo_root(), capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def commit() -> str:
    return git("rev-parse", "HEAD")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def stamp() -> dict[str, object]:
    """The commit, the UTC time and this host's load average, for the top of a report."""
    return {
        "commit": commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": loadavg(),
    }
