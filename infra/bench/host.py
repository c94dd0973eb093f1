"""Where and when a benchmark ran: date, commit, kernel, CPUs, pins, load."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from typing import Any

from infra.config import load_versions
from infra.paths import repo_root


def _git(*args: str) -> str:
    proc = subprocess.run(
        ["git", *args], cwd=repo_root(), capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def host() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "tree_dirty": bool(_git("status", "--porcelain", "--", "infra/bench")),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "kubernetes": load_versions().kubernetes.version,
        "go": load_versions().go.version,
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
