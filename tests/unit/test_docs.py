"""docs/architecture.md matches the tree: named paths exist, modules and stages are listed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from harness import lab

pytestmark = pytest.mark.unit

ARCH = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
CONTROLLER_PACKAGES = ("depcon", "buildtools", "harness")
PACKAGES = (*CONTROLLER_PACKAGES, "program", "nodeagent")


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


def test_every_controller_module_is_owned_in_the_doc(root: Path) -> None:
    text = ARCH.read_text()
    modules = [
        p.relative_to(root).as_posix()
        for d in CONTROLLER_PACKAGES
        for p in (root / d).glob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    ]
    assert modules, "no controller modules?"
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


def _places(text: str) -> dict[str, tuple[list[str], set[str]]]:
    section = text.split("## Where code runs", 1)[1].split("\n## ", 1)[0]
    places: dict[str, tuple[list[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("Place", "") or set(cells[0]) <= {"-"}:
            continue
        name = cells[0].split(" (")[0]
        members = re.findall(r"`([^`]+)`", cells[1])
        allowed = {a.strip().split(" (")[0] for a in re.sub(r"\(.*?\)", "", cells[2]).split(",")}
        places[name] = (members, allowed)
    return places


def _project_imports(path: Path) -> set[str]:
    """Every project module the file imports; ``from pkg import mod`` counts as ``pkg.mod``."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in PACKAGES:
                found.update(f"{node.module}.{a.name}" for a in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def test_each_place_imports_only_what_it_may(root: Path) -> None:
    places = _places(ARCH.read_text())
    assert set(places) == {"node", "shared", "build", "harness", "Pulumi program"}
    owner: dict[str, str] = {}  # module path prefix -> place
    for place, (members, _) in places.items():
        for m in members:
            owner[m.removesuffix(".py").removesuffix("/").replace("/", ".")] = place

    def place_of(module: str) -> str | None:
        best = max(
            (k for k in owner if module == k or module.startswith(k + ".")), key=len, default=None
        )
        return owner[best] if best else None

    files = [
        p for d in PACKAGES for p in (root / d).rglob("*.py") if "__pycache__" not in p.parts
    ] + [root / "__main__.py"]
    wrong = []
    for f in files:
        rel = (
            f.relative_to(root)
            .with_suffix("")
            .as_posix()
            .replace("/", ".")
            .removesuffix(".__init__")
        )
        here = "Pulumi program" if rel == "__main__" else place_of(rel)
        if here is None:
            wrong.append(f"{rel}: in no place of the table")
            continue
        allowed = places[here][1] | {here}
        for imported in _project_imports(f):
            there = place_of(imported)
            if there not in allowed:
                wrong.append(f"{rel} ({here}) imports {imported} ({there})")
    assert wrong == []
