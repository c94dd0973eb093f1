"""The bundle and engine caches: pruning spares what another checkout uses; keys follow the code."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from buildtools import pulumi_engine
from buildtools.artifacts import bundle as artifacts
from buildtools.artifacts import recipes
from depcon import paths

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
    day_ago = time.time() - paths.PRUNE_AFTER_S - 60
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


def _key_edits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, old: str, new: str
) -> Any:
    """The plan's keys before and after one edit of a sibling module's source."""
    before = recipes.plan().bundle_key  # keys are properties: read them now
    code = tmp_path / "code"
    shutil.copytree(recipes._CODE_DIR, code)
    src = code / f"{module}.py"
    text = src.read_text()
    src.write_text(text.replace(old, new, 1))
    assert src.read_text() != text
    monkeypatch.setattr(recipes, "_CODE_DIR", code)
    recipes.code_hash.cache_clear()
    try:
        after = recipes.plan().bundle_key
    finally:
        recipes.code_hash.cache_clear()
    return {k for k, v in before.items() if after[k] != v}


def test_an_edit_to_one_builder_changes_only_its_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = _key_edits(
        tmp_path, monkeypatch, "builders", "def _build_netperf(", "def _build_netperf(  "
    )
    assert changed == {"netperf", "images"}  # the netperf image holds its files


def test_an_edit_to_the_oci_writer_changes_the_images_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = _key_edits(tmp_path, monkeypatch, "oci", '"""', '"""  ')
    assert changed == {"images"}


def test_engine_prune_keeps_a_build_another_checkout_uses(tmp_path: Path) -> None:
    """A lab's engine (same versions, other code) survives a test run's new build."""
    ours = tmp_path / "3.257.0-4.25.0-ours"
    theirs = tmp_path / "3.257.0-4.25.0-theirs"  # a lab's pulumi up runs on it
    forgotten = tmp_path / "3.257.0-4.25.0-forgotten"
    other_versions = tmp_path / "3.256.0-4.24.0-old"
    for d in (ours, theirs, forgotten, other_versions):
        d.mkdir()
    day_ago = time.time() - paths.PRUNE_AFTER_S - 60
    for d in (forgotten, other_versions):
        os.utime(d, (day_ago, day_ago))
    pulumi_engine._prune_stale(pulumi_engine.Engine(root=ours, pulumi_home=tmp_path / "home"))
    assert {p.name for p in tmp_path.iterdir()} == {ours.name, theirs.name, other_versions.name}
