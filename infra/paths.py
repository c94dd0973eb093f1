"""Where the project keeps things: the repository itself and the cache outside it."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this package lives in (infra/ sits at its top level)."""
    return Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of the heavy-artifact cache (builds, VM images), outside the repo.

    Kept out of the checkout so a clean clone (CI) reuses what an earlier run
    built; every user of it keys its entries by version and content hash.
    """
    explicit = os.environ.get("DEPCON_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "depcon"
