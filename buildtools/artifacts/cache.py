"""Where the bundle and its parts live in the cache (entries go in place through depcon.paths)."""

from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager
from pathlib import Path

from buildtools.artifacts.recipes import Part, Plan, plan
from depcon.paths import cache_dir, locked

# --- locations ---------------------------------------------------------------------


def _root() -> Path:
    return cache_dir() / "artifacts"


def _part_dir(part: Part) -> Path:
    return _root() / "parts" / f"{part.name}-{part.key}"


def _images_dir(p: Plan) -> Path:
    return _root() / "parts" / f"images-{p.images_key}"


def bundle_path(p: Plan | None = None) -> Path:
    p = p or plan()
    return _root() / f"{p.versions.kubernetes.version}-{p.patch_hash}"


def _lock() -> AbstractContextManager[None]:
    """One build at a time per cache."""
    return locked(_root() / ".lock")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
