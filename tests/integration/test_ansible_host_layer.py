"""The host layer's real path: ansible-runner running the project's playbooks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from infra import lab
from infra.ansible_run import PlaybookError, run_playbook, run_playbook_isolated
from infra.config import load_versions

pytestmark = pytest.mark.integration


def test_preflight_passes_on_a_set_up_controller() -> None:
    stats = run_playbook("playbooks/preflight.yml", "inventory/lab/hosts.yml", {})
    assert stats["hosts"] == ["localhost"]
    assert stats["ok"] >= 8
    assert stats["changed"] == 0  # a check changes nothing


def test_preflight_names_what_is_missing() -> None:
    with pytest.raises(PlaybookError, match="no-such-tool-xyz is not on PATH; run scripts/setup"):
        run_playbook(
            "playbooks/preflight.yml",
            "inventory/lab/hosts.yml",
            {"controller_preflight_programs": '["sh", "no-such-tool-xyz"]'},
        )


def test_isolated_run_returns_stats_and_names_failures() -> None:
    """The Pulumi provider's path: the same run in a fresh process, same results."""
    stats = run_playbook_isolated("playbooks/preflight.yml", "inventory/lab/hosts.yml", {})
    assert stats["hosts"] == ["localhost"]
    assert stats["changed"] == 0
    with pytest.raises(PlaybookError, match="no-such-tool-xyz is not on PATH"):
        run_playbook_isolated(
            "playbooks/preflight.yml",
            "inventory/lab/hosts.yml",
            {"controller_preflight_programs": '["sh", "no-such-tool-xyz"]'},
        )


def test_bad_role_variable_fails_before_any_task() -> None:
    # argument_specs: a string where a bool belongs is refused up front.
    with pytest.raises(PlaybookError, match="controller_preflight_go"):
        run_playbook(
            "playbooks/preflight.yml",
            "inventory/lab/hosts.yml",
            {"controller_preflight_go": "perhaps"},
        )


def test_ansible_reads_the_same_versions_as_python(tmp_path: Path, root: Path) -> None:
    dump = tmp_path / "versions.json"
    book = root / "playbooks" / ".dump-versions-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Dump versions",
                    "hosts": "controller",
                    "gather_facts": False,
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "roles": ["depcon_versions"],
                    "tasks": [
                        {
                            "name": "Write them",
                            "ansible.builtin.copy": {
                                "content": "{{ depcon_versions | to_json }}",
                                "dest": str(dump),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    try:
        run_playbook(str(book.relative_to(root)), "inventory/lab/hosts.yml", {})
    finally:
        book.unlink()
    seen = json.loads(dump.read_text())
    assert seen == yaml.safe_load((root / "versions.yml").read_text())
    assert seen["kubernetes"]["version"] == load_versions().kubernetes.version


def _lab_playbook(tmp_path: Path, tasks: list[dict[str, object]]) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(
        yaml.safe_dump(
            [{"name": "probe", "hosts": "controller", "gather_facts": False, "tasks": tasks}]
        )
    )
    return path


def test_lab_playbook_shows_tasks_and_returns_the_recap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """make lab's runner (infra/lab.py) with the real ansible-playbook on the lab inventory."""
    monkeypatch.setattr(lab, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(lab, "_lab_key", lambda: "/nonexistent-key")  # localhost needs none
    monkeypatch.setattr(lab, "_bundle_dir", lambda: tmp_path / "bundle")
    monkeypatch.delenv("DEPCON_BUNDLE_DIR", raising=False)
    # inventory/lab reads both from the environment instead of running Python per task.
    probe = "{{ lookup('env', 'DEPCON_LAB_SSH_KEY') }} {{ depcon_bundle_dir }}"
    play = _lab_playbook(tmp_path, [{"name": "say hello", "ansible.builtin.debug": {"msg": probe}}])
    ctx = lab.LabContext(stack="lab", env=dict(os.environ))
    recap = lab._playbook(ctx, str(play), "probe.log")
    assert recap.startswith("localhost : ok=1 changed=0 unreachable=0 failed=0")
    assert "TASK [say hello]" in capsys.readouterr().out
    log = (tmp_path / "lab" / "probe.log").read_text()
    assert "ok: [localhost]" in log
    assert f"/nonexistent-key {tmp_path / 'bundle'}" in log


def test_lab_playbook_failure_names_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(lab, "_lab_key", lambda: "/nonexistent-key")
    monkeypatch.setattr(lab, "_bundle_dir", lambda: tmp_path / "bundle")
    play = _lab_playbook(tmp_path, [{"name": "break", "ansible.builtin.fail": {"msg": "no disk"}}])
    ctx = lab.LabContext(stack="lab", env=dict(os.environ))
    with pytest.raises(lab.StageError) as err:
        lab._playbook(ctx, str(play), "probe.log")
    assert f"log {tmp_path / 'lab' / 'probe.log'}" in str(err.value)
    assert "no disk" in str(err.value)
