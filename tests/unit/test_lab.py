"""harness/lab.py: the stage table never reports a stage that did not run as passed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from depcon.config import load_project
from harness import lab
from tests.unit.test_config import edit

pytestmark = pytest.mark.unit


def ok(_ctx: lab.LabContext) -> str:
    return "fine"


def boom(_ctx: lab.LabContext) -> str:
    raise lab.StageError("disk on fire\nmore detail")


def table(capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    out = capsys.readouterr().out
    rows = {}
    for line in out.splitlines():
        parts = line.split(maxsplit=1)
        if len(parts) == 2 and parts[0] in {"a", "b", "c"}:
            rows[parts[0]] = parts[1]
    return rows


def test_failure_skips_later_stages(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        lab,
        "stages",
        lambda: [
            lab.Stage("a", "first", ok),
            lab.Stage("b", "second", boom),
            lab.Stage("c", "third", ok),
        ],
    )
    assert lab.main([]) == 1
    rows = table(capsys)
    assert rows["a"].startswith("passed")
    assert rows["b"].startswith("FAILED") and "disk on fire" in rows["b"]
    assert rows["c"].startswith("skipped")


def test_all_passed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(lab, "stages", lambda: [lab.Stage("a", "first", ok)])
    assert lab.main([]) == 0
    assert "all 1 stages passed" in capsys.readouterr().out


def test_the_lab_is_the_pulumi_program() -> None:
    """make lab provisions through `pulumi up`, not by running playbooks itself."""
    assert [s.name for s in lab.stages()] == ["config", "engine", "artifacts", "vms", "pulumi-up"]
    source = Path(lab.__file__).read_text()
    assert "ansible-playbook" not in source and "site.yml" not in source


def test_config_stage_reports_bad_config(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = lab.LabContext(stack="no-such-stack", env={})
    with pytest.raises(lab.StageError, match=r"Pulumi\.no-such-stack\.yaml: file not found"):
        lab.stage_config(ctx)


def test_stages_share_one_config_load(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    loads: list[str] = []

    def load(stack: str) -> Any:
        loads.append(stack)
        return load_project(stack, scratch)

    monkeypatch.setattr(lab, "load_project", load)
    ctx = lab.LabContext(stack="lab", env={})
    first = lab.stage_config(ctx)
    assert lab.stage_config(ctx) == first
    assert ctx.config() is ctx.config()
    assert loads == ["lab"]


def test_vms_stage_needs_lab_vms(monkeypatch: pytest.MonkeyPatch, scratch: Path) -> None:
    """An inventory of real servers is not booted: the stage says what to run instead."""
    edit(
        scratch / "Pulumi.lab.yaml",
        lambda d: d["config"].update({"depcon:inventory": "inventory/sample/hosts.yml"}),
    )
    monkeypatch.setattr(lab, "load_project", lambda stack: load_project(stack, scratch))
    with pytest.raises(lab.StageError, match=r"no host has depcon_lab_vm_ip.*pulumi up"):
        lab.stage_vms(lab.LabContext(stack="lab", env={}))


def test_proof_runs_verify_with_the_proof_on_and_says_where_the_report_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: list[tuple[str, dict[str, str] | None]] = []
    monkeypatch.setattr(lab, "stage_config", ok)
    monkeypatch.setattr(lab, "stage_vms", ok)

    def run(_ctx: lab.LabContext, book: str, extra: dict[str, str] | None = None) -> Any:
        runs.append((book, extra))
        return {"hosts": ["lab-cp1"], "changed": 0}

    monkeypatch.setattr(lab, "_run_playbook", run)
    assert lab.main(["proof"]) == 0
    ((book, extra),) = runs
    assert book == "playbooks/verify.yml"
    assert extra is not None and extra["depcon_verify_netperf"] == "true"
    assert extra["verify_report"].endswith("reports/verify-lab.json")
    assert "reports/verify-lab-proof.json" in capsys.readouterr().out

    def refused(_ctx: lab.LabContext, book: str, extra: dict[str, str] | None = None) -> Any:
        raise lab.StageError("lab-w1: Check every node's SLO was held: steady mean 23.7")

    monkeypatch.setattr(lab, "_run_playbook", refused)
    assert lab.main(["proof"]) == 1
    assert "steady mean 23.7" in capsys.readouterr().err
