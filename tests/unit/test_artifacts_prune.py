"""infra/artifacts.py's cache pruning never removes what another checkout may be using."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from infra import artifacts

pytestmark = pytest.mark.unit


def test_prune_keeps_recently_used_entries_of_other_checkouts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifacts, "_root", lambda: tmp_path)
    (tmp_path / "parts").mkdir()
    ours = tmp_path / "v1.36.5-ours"
    theirs_now = tmp_path / "v1.36.5-theirs"  # a concurrent lab run reads it
    theirs_old = tmp_path / "v1.36.5-forgotten"
    part_ours = tmp_path / "parts" / "kubelet-aaa"
    part_theirs = tmp_path / "parts" / "kubelet-bbb"
    part_old = tmp_path / "parts" / "kubelet-ccc"
    images = tmp_path / "parts" / "images-ddd"
    for d in (ours, theirs_now, theirs_old, part_ours, part_theirs, part_old, images):
        d.mkdir()
    day_ago = time.time() - artifacts.PRUNE_AFTER_S - 60
    for d in (theirs_old, part_old, ours, part_ours):
        os.utime(d, (day_ago, day_ago))
    plan: Any = SimpleNamespace(
        versions=SimpleNamespace(kubernetes=SimpleNamespace(version="v1.36.5"))
    )
    artifacts._prune(plan, ours, {"kubelet": part_ours}, images)
    left = {p.name for p in tmp_path.iterdir()} | {p.name for p in (tmp_path / "parts").iterdir()}
    assert left == {
        "parts",
        "v1.36.5-ours",
        "v1.36.5-theirs",
        "kubelet-aaa",
        "kubelet-bbb",
        "images-ddd",
    }
    # What this build uses is marked used now, so the next one keeps it.
    assert time.time() - ours.stat().st_mtime < 60
