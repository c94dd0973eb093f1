"""Where the bundle and its parts live in the cache, and how an entry is put in place."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.artifacts.recipes import Part, Plan, plan
from infra.paths import cache_dir

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


@contextmanager
def _lock() -> Iterator[None]:
    """One build at a time per cache: two would race on the same entries."""
    _root().mkdir(parents=True, exist_ok=True)
    with (_root() / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A temp directory next to ``final``, renamed onto it on success.

    An interrupted build leaves only a ``.tmp-*`` directory, never something
    that looks finished. An older ``final`` (stale content) is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}.", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if final.exists():
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
