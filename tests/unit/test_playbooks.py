"""The playbooks' shape where a node can be left half done: drains and the rollback check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit


def _load(root: Path, path: str) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load((root / path).read_text())
    return loaded


def _walk(
    tasks: list[dict[str, Any]], parents: tuple[dict[str, Any], ...] = ()
) -> Iterator[tuple[dict[str, Any], tuple[dict[str, Any], ...]]]:
    """Every task with the blocks around it, outermost first."""
    for task in tasks:
        yield task, parents
        for key in ("block", "rescue", "always"):
            yield from _walk(task.get(key) or [], (*parents, task))


def _includes(tasks: list[dict[str, Any]]) -> list[str]:
    return [
        t["ansible.builtin.include_tasks"]
        for t, _ in _walk(tasks)
        if "ansible.builtin.include_tasks" in t
    ]


def _play(root: Path, path: str, name: str) -> dict[str, Any]:
    (play,) = [p for p in _load(root, path) if p.get("name") == name]
    return play


def test_a_failed_drain_uncordons_the_node_and_stops(root: Path) -> None:
    """A refused eviction or the timeout leaves the node cordoned: uncordon it, then fail."""
    tasks = _load(root, "playbooks/tasks/drain.yml")
    (drain, parents) = next(
        (t, p) for t, p in _walk(tasks) if " drain " in str(t.get("ansible.builtin.command"))
    )
    guards = [p for p in parents if drain in p.get("block", [])]
    assert guards, "the drain command is in no block"
    rescue = guards[-1].get("rescue") or []
    assert _includes(rescue) == ["uncordon.yml"]
    fails = [t for t, _ in _walk(rescue) if "ansible.builtin.fail" in t]
    assert len(fails) == 1 and "{{ inventory_hostname }}" in fails[0]["ansible.builtin.fail"]["msg"]
    # The report runs even when the uncordon fails too.
    (report_block,) = [t for t, _ in _walk(rescue) if fails[0] in (t.get("always") or [])]
    assert _includes(report_block["block"]) == ["uncordon.yml"]


@pytest.mark.parametrize(
    ("path", "play"),
    [
        (
            "playbooks/depcon.yml",
            "Install the vif module and the patched kubelet, one node at a time",
        ),
        ("playbooks/rollback.yml", "Roll DepCon back, one node at a time"),
    ],
)
def test_the_drain_runs_first_and_outside_the_way_back(root: Path, path: str, play: str) -> None:
    """A failed drain changed nothing: no rescue may put the node back to stock after it."""
    tasks = _play(root, path, play)["tasks"]
    assert tasks[0].get("ansible.builtin.include_tasks") == "tasks/drain.yml"
    assert not any(
        "tasks/drain.yml" in _includes(t.get(k) or [])
        for t in tasks
        for k in ("block", "rescue", "always")
    )
    # Every way out of the play's node block uncordons (the drain's own way out is tested above).
    (block,) = [t for t in tasks if "block" in t]
    ways_out = [*block.get("rescue", []), *block.get("always", [])]
    assert "tasks/uncordon.yml" in _includes(ways_out)


def test_rolled_back_checks_the_kubelets_slot_record_is_gone(root: Path) -> None:
    """The kubelet's record of its vif slots: the rollback removes it, rolled_back.yml checks."""
    manager = (root / "kubelet_patch" / "depcon" / "manager.go").read_text()
    (name,) = re.findall(r'StateFileName = "([^"]+)"', manager)
    assert 'filepath.Join(kubeletRootDir, "depcon", StateFileName)' in manager
    role = root / "roles" / "depcon_kubelet"
    state_dir = yaml.safe_load((role / "defaults" / "main.yml").read_text())[
        "depcon_kubelet_state_dir"
    ]
    assert state_dir == "/var/lib/kubelet/depcon"  # the kubelet's default --root-dir, then depcon/
    removed = [
        t["ansible.builtin.file"]
        for t in yaml.safe_load((role / "tasks" / "rollback.yml").read_text())
        if "ansible.builtin.file" in t
    ]
    assert {"path": "{{ depcon_kubelet_state_dir }}", "state": "absent"} in removed

    check = _play(root, "playbooks/rolled_back.yml", "Check each node is as before DepCon")
    (leftovers,) = [t for t in check["tasks"] if t.get("register") == "rb_leftovers"]
    assert f"{state_dir}/{name}" in leftovers["loop"]
    (assertion,) = [t for t in check["tasks"] if "ansible.builtin.assert" in t]
    assert any("rb_leftovers" in cond for cond in assertion["ansible.builtin.assert"]["that"])
