"""The host layer's real path: ansible-runner running the project's playbooks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def _ship_files_book(root: Path, files: list[str]) -> Path:
    """A play on the controller running role ship_files, then noting ship_files_changed."""
    book = root / "playbooks" / ".ship-files-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Ship files",
                    "hosts": "controller",
                    "gather_facts": False,
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "tasks": [
                        {
                            "name": "Ship them",
                            "ansible.builtin.include_role": {"name": "ship_files"},
                            "vars": {
                                "ship_files_src_dir": "{{ src }}",
                                "ship_files_list": files,
                                "ship_files_dest": "{{ dest }}",
                                "ship_files_archive": "{{ archive }}",
                            },
                        },
                        {
                            "name": "Note whether they changed",
                            "ansible.builtin.copy": {
                                "content": "{{ ship_files_changed }} {{ ship_files_checksum }}",
                                "dest": "{{ report }}",
                                "mode": "0644",
                            },
                        },
                    ],
                }
            ]
        )
    )
    return book


def test_ship_files_copies_once_and_again_only_on_change(tmp_path: Path, root: Path) -> None:
    """Role ship_files (how vif_module and slo_capacity copy files), run on the controller."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "sub").mkdir(parents=True)
    (src / "a.c").write_text("one\n")
    (src / "sub" / "b.py").write_text("two\n")
    (src / "not-shipped").write_text("x\n")
    book = _ship_files_book(root, ["a.c", "sub/b.py"])
    paths = {"src": str(src), "dest": str(dest), "archive": str(tmp_path / "kept" / "x.tar")}

    def ship(run: int) -> tuple[dict[str, Any], list[str]]:
        report = tmp_path / f"report{run}"
        stats = run_playbook(
            str(book.relative_to(root)), "inventory/lab/hosts.yml", {**paths, "report": str(report)}
        )
        return stats, report.read_text().split()

    try:
        stats, (changed, first_sum) = ship(1)
        assert changed == "True"
        assert (dest / "a.c").read_text() == "one\n"
        assert (dest / "sub" / "b.py").read_text() == "two\n"
        assert not (dest / "not-shipped").exists()
        # Same files: the same archive bytes, nothing copied or unpacked (only the report).
        stats, (changed, second_sum) = ship(2)
        assert (changed, second_sum) == ("False", first_sum)
        assert stats["changed"] == 1
        # A changed source ships again.
        (src / "a.c").write_text("three\n")
        stats, (changed, third_sum) = ship(3)
        assert changed == "True" and third_sum != first_sum
        assert (dest / "a.c").read_text() == "three\n"
        # Files missing on the node ship again though the archive is unchanged.
        (dest / "a.c").unlink()
        stats, (changed, _) = ship(4)
        assert changed == "True" and (dest / "a.c").read_text() == "three\n"
    finally:
        book.unlink()


def test_ship_files_refuses_paths_outside_the_source(tmp_path: Path, root: Path) -> None:
    book = _ship_files_book(root, ["../etc/passwd"])
    try:
        with pytest.raises(PlaybookError, match="ship_files_list must name files under"):
            run_playbook(
                str(book.relative_to(root)),
                "inventory/lab/hosts.yml",
                {"src": str(tmp_path), "dest": str(tmp_path / "d"), "archive": str(tmp_path / "x")},
            )
        assert not (tmp_path / "d").exists()
    finally:
        book.unlink()
