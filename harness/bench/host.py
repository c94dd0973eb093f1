"""Where and when a benchmark ran: date, commit, kernel, CPUs, pins, load."""

from __future__ import annotations

import datetime
import os
import platform
from typing import Any

from depcon.config import load_versions
from depcon.provenance import commit, git


def host() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "tree_dirty": bool(git("status", "--porcelain", "--", "harness/bench")),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "kubernetes": load_versions().kubernetes.version,
        "go": load_versions().go.version,
    }
