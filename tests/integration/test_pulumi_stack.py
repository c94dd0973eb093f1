"""`pulumi preview`, `up`, a no-change `up` and `destroy` with the locally built engine.

Real CLI, real Python language host, real dynamic provider: the product's
program on the controller-only stack (the preflight playbook), and a small
program of the same host component whose create and delete playbooks leave a
mark on this machine, so the delete path is seen to run. Only the backends are
throwaway local directories.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from depcon.config import load_versions
from depcon.paths import repo_root

pytestmark = pytest.mark.integration


def engine_env() -> dict[str, str]:
    """Build (or reuse) the engine and return an environment that uses it."""
    py = sys.executable
    subprocess.run([py, "-m", "buildtools.pulumi_engine", "build"], check=True, cwd=repo_root())
    out = subprocess.run(
        [py, "-m", "buildtools.pulumi_engine", "env"],
        check=True,
        cwd=repo_root(),
        capture_output=True,
        text=True,
    ).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = shlex.split(value)[0] if value else ""
    return env


def _runner(env: dict[str, str], cwd: Path) -> Any:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"pulumi {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    return run


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = engine_env()
    env["PULUMI_BACKEND_URL"] = tmp_path_factory.mktemp("backend").as_uri()
    env["PULUMI_CONFIG_PASSPHRASE"] = ""
    env.pop("PULUMI_ACCESS_TOKEN", None)
    return env


@pytest.fixture(scope="module")
def pulumi(engine: dict[str, str]) -> Iterator[Any]:
    run = _runner(engine, repo_root())
    stack_file = repo_root() / "Pulumi.controller.yaml"
    before = stack_file.read_bytes()
    run("stack", "init", "controller")
    yield run
    run("destroy", "--yes", "--stack", "controller", check=False)
    run("stack", "rm", "--yes", "--force", "--preserve-config", "controller", check=False)
    assert stack_file.read_bytes() == before, "the engine rewrote the tracked stack file"


def test_preview_plans_the_preflight(pulumi) -> None:  # type: ignore[no-untyped-def]
    proc = pulumi("preview", "--stack", "controller", "--diff")
    assert "depcon:hosts:Preflight" in proc.stdout
    assert "preflight-run" in proc.stdout
    assert "create" in proc.stdout
    assert "depcon:hosts:Cluster" not in proc.stdout


def test_up_runs_the_preflight_and_is_idempotent(pulumi) -> None:  # type: ignore[no-untyped-def]
    proc = pulumi("up", "--yes", "--skip-preview", "--stack", "controller")
    # Each task is shown as it starts, with its host.
    assert re.search(r"\[ansible \+\s*\d+s\] localhost: controller_preflight : ", proc.stdout), (
        proc.stdout[-3000:]
    )
    outputs = json.loads(pulumi("stack", "output", "--json", "--stack", "controller").stdout)
    assert outputs["kubernetesVersion"] == load_versions().kubernetes.version
    assert outputs["sloResource"] == "example.com/SLO"
    assert outputs["schedulerMode"] == "second-profile"
    assert sorted(outputs["nodes"]) == ["lab-cp1", "lab-w1"]
    stats = outputs["preflight"]
    assert stats["hosts"] == ["localhost"]
    assert stats["changed"] == 0 and stats["ok"] >= 8
    # Nothing changed on disk, so nothing to do: the playbook is not re-run.
    pulumi("preview", "--expect-no-changes", "--stack", "controller")
    again = pulumi("up", "--yes", "--skip-preview", "--stack", "controller")
    assert "[ansible" not in again.stdout


_MARK_PROGRAM = """
import pulumi
from program.playbook import HostPlaybook, PlaybookArgs

cfg = pulumi.Config()
run = HostPlaybook(
    "mark",
    PlaybookArgs(
        playbook="{create}",
        inventory="inventory/lab/hosts.yml",
        extra_vars={{"mark_file": "{mark}", "mark_text": cfg.get("text") or "one"}},
        inputs_hash=cfg.get("hash") or "h1",
        delete_playbook="{delete}",
    ),
)
pulumi.export("stats", run.stats)
"""

_MARK_CREATE = """---
- name: Leave a mark
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the mark
      ansible.builtin.copy:
        content: "{{ mark_text }}"
        dest: "{{ mark_file }}"
        mode: "0600"
"""

_MARK_DELETE = """---
- name: Take the mark back
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Remove the mark
      ansible.builtin.file:
        path: "{{ mark_file }}"
        state: absent
"""


def test_host_playbook_create_update_delete(engine: dict[str, str], tmp_path: Path) -> None:
    """The provider's whole life on the real engine: destroy runs the way back."""
    root = repo_root()
    books = root / "playbooks" / f".test-mark-{os.getpid()}"
    books.mkdir()
    mark = tmp_path / "mark"
    project = tmp_path / "project"
    project.mkdir()
    try:
        (books / "create.yml").write_text(_MARK_CREATE)
        (books / "delete.yml").write_text(_MARK_DELETE)
        rel = books.relative_to(root)
        (project / "Pulumi.yaml").write_text(
            "name: mark\nruntime:\n  name: python\n  options:\n"
            f"    toolchain: pip\n    virtualenv: {root / '.venv'}\n"
        )
        (project / "__main__.py").write_text(
            _MARK_PROGRAM.format(create=f"{rel}/create.yml", delete=f"{rel}/delete.yml", mark=mark)
        )
        env = dict(engine, PYTHONPATH=str(root))
        run = _runner(env, project)
        run("stack", "init", "t")
        run("up", "--yes", "--skip-preview", "--stack", "t")
        assert mark.read_text() == "one"
        run("preview", "--expect-no-changes", "--stack", "t")
        run("config", "set", "text", "two", "--stack", "t")
        run("config", "set", "hash", "h2", "--stack", "t")
        run("up", "--yes", "--skip-preview", "--stack", "t")
        assert mark.read_text() == "two"
        run("destroy", "--yes", "--stack", "t")
        assert not mark.exists()
        run("stack", "rm", "--yes", "t")
    finally:
        shutil.rmtree(books, ignore_errors=True)


def test_engine_matches_the_locked_sdks(pulumi) -> None:  # type: ignore[no-untyped-def]
    assert pulumi("version").stdout.strip() == "v" + metadata.version("pulumi")
    listing = pulumi("plugin", "ls").stdout
    kube = [line.split() for line in listing.splitlines() if line.startswith("kubernetes")]
    assert kube, listing
    assert kube[0][1] == "resource"
    assert kube[0][2] == metadata.version("pulumi_kubernetes")
