"""docs/architecture.md matches the tree: named paths exist, modules and stages are listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra import lab

pytestmark = pytest.mark.unit

ARCH = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def named_paths(text: str) -> set[str]:
    names = set(re.findall(r"`([^`\s]+)`", text))
    return {n for n in names if "/" in n or re.search(r"\.(py|ya?ml|toml|lock|txt|md)$", n)}


def test_every_named_path_exists(root: Path) -> None:
    text = ARCH.read_text()
    missing = [
        p
        for p in sorted(named_paths(text))
        if not p.startswith(("$", "~", ".lab/")) and not (root / p).exists()
    ]
    assert missing == []


def test_every_infra_module_is_owned_in_the_doc(root: Path) -> None:
    text = ARCH.read_text()
    modules = [
        p.relative_to(root).as_posix()
        for p in (root / "infra").glob("*.py")
        if p.name != "__init__.py"
    ]
    assert modules, "infra/ has no modules?"
    assert [m for m in modules if f"`{m}`" not in text] == []


def test_every_role_and_playbook_is_in_the_doc(root: Path) -> None:
    text = ARCH.read_text()
    roles = [f"roles/{p.name}" for p in (root / "roles").iterdir() if p.is_dir()]
    books = [p.relative_to(root).as_posix() for p in (root / "playbooks").glob("*.yml")]
    assert [x for x in roles + books if f"`{x}`" not in text] == []


def test_every_lab_stage_is_in_the_doc() -> None:
    text = ARCH.read_text()
    section = text.split("## `make lab` stages", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| ([a-z-]+) \|", section, flags=re.M)
    assert listed == [s.name for s in lab.stages()]
