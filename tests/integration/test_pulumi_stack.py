"""`pulumi preview` and `pulumi up` of the lab stack with the locally built engine.

Real CLI, real Python language host, real dynamic provider running the real
preflight playbook; only the backend is a throwaway local directory.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from importlib import metadata

import pytest

from infra.config import load_versions
from infra.paths import repo_root

pytestmark = pytest.mark.integration


def engine_env() -> dict[str, str]:
    """Build (or reuse) the engine and return an environment that uses it."""
    py = sys.executable
    subprocess.run([py, "-m", "infra.pulumi_engine", "build"], check=True, cwd=repo_root())
    out = subprocess.run(
        [py, "-m", "infra.pulumi_engine", "env"],
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


@pytest.fixture(scope="module")
def pulumi(tmp_path_factory: pytest.TempPathFactory) -> object:
    env = engine_env()
    env["PULUMI_BACKEND_URL"] = tmp_path_factory.mktemp("backend").as_uri()
    env["PULUMI_CONFIG_PASSPHRASE"] = ""
    env.pop("PULUMI_ACCESS_TOKEN", None)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=repo_root(),
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

    stack_file = repo_root() / "Pulumi.lab.yaml"
    before = stack_file.read_bytes()
    run("stack", "init", "lab")
    yield run
    run("destroy", "--yes", "--stack", "lab", check=False)
    run("stack", "rm", "--yes", "--force", "--preserve-config", "lab", check=False)
    assert stack_file.read_bytes() == before, "the engine rewrote the tracked stack file"


def test_preview_plans_the_host_layer(pulumi) -> None:  # type: ignore[no-untyped-def]
    proc = pulumi("preview", "--stack", "lab", "--diff")
    assert "depcon:host:Layer" in proc.stdout
    assert "host-preflight" in proc.stdout
    assert "create" in proc.stdout


def test_up_runs_the_preflight_and_is_idempotent(pulumi) -> None:  # type: ignore[no-untyped-def]
    pulumi("up", "--yes", "--skip-preview", "--stack", "lab")
    outputs = json.loads(pulumi("stack", "output", "--json", "--stack", "lab").stdout)
    assert outputs["kubernetesVersion"] == load_versions().kubernetes.version
    assert outputs["sloResource"] == "example.com/SLO"
    assert outputs["nodes"] == ["lab-cp1", "lab-w1"]
    (stats,) = outputs["hostLayer"]
    assert stats["hosts"] == ["localhost"]
    assert stats["changed"] == 0 and stats["ok"] >= 8
    # Nothing changed on disk, so nothing to do: the playbook is not re-run.
    pulumi("preview", "--expect-no-changes", "--stack", "lab")


def test_engine_matches_the_locked_sdks(pulumi) -> None:  # type: ignore[no-untyped-def]
    assert pulumi("version").stdout.strip() == "v" + metadata.version("pulumi")
    listing = pulumi("plugin", "ls").stdout
    kube = [line.split() for line in listing.splitlines() if line.startswith("kubernetes")]
    assert kube, listing
    assert kube[0][1] == "resource"
    assert kube[0][2] == metadata.version("pulumi_kubernetes")
