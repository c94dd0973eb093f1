"""Where the project keeps things: the repository itself and the cache outside it.

Every cache entry is put in place the same way: built in a staging directory
next to it (:func:`staged`), renamed onto it when complete, with one builder
at a time where builders could race (:func:`locked`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def repo_root() -> Path:
    """The checkout this package lives in (depcon/ sits at its top level)."""
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


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """An exclusive lock on ``lock_file``: two builders would race on the same entries."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def staged(final: Path) -> Iterator[Path]:
    """A temp directory next to ``final``, renamed onto it on success.

    An interrupted build leaves only a ``.tmp-*`` directory, never something
    that looks finished. An older ``final`` (stale content) is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}.", dir=final.parent))
    try:
        yield tmp
        # mkdtemp makes it 0700; other users read the cache too.
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


# A cache entry another checkout used this recently may be in use by its run
# (a lab, a molecule scenario, a test tier): pruning keeps it.
PRUNE_AFTER_S = 24 * 3600


def mark_used(entry: Path) -> None:
    """Record that a run uses ``entry`` now, so no other checkout prunes it."""
    with contextlib.suppress(OSError):
        os.utime(entry)


def idle(entry: Path) -> bool:
    """No run used ``entry`` for PRUNE_AFTER_S (see :func:`mark_used`)."""
    try:
        return time.time() - entry.stat().st_mtime > PRUNE_AFTER_S
    except OSError:
        return False
