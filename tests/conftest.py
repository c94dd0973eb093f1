"""Shared pytest setup: the repo root and a scratch copy of the config files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from depcon.paths import repo_root


@pytest.fixture
def root() -> Path:
    return repo_root()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A directory laid out like the repo's config files, safe to corrupt."""
    src = repo_root()
    for name in ("versions.yml", "Pulumi.lab.yaml"):
        shutil.copy(src / name, tmp_path / name)
    shutil.copytree(src / "inventory", tmp_path / "inventory")
    shutil.copytree(src / "playbooks", tmp_path / "playbooks")
    return tmp_path


TIERS = ("unit", "integration", "kernel")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test has a tier: make test selects by tier, so an unmarked test would never run."""
    untiered = [i.nodeid for i in items if not any(i.get_closest_marker(t) for t in TIERS)]
    if untiered:
        raise pytest.UsageError(
            "tests without a tier marker (" + ", ".join(TIERS) + "): " + ", ".join(untiered)
        )
