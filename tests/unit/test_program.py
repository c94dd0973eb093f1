"""The Pulumi program under pulumi.runtime.set_mocks: what it composes, and with which inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from infra.ansible_run import inputs_hash
from infra.paths import repo_root

pytestmark = pytest.mark.unit


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == "pulumi-python:dynamic:Resource":
            outputs["stats"] = {"ok": 9, "changed": 0, "hosts": ["localhost"]}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


MOCKS = Mocks()
pulumi.runtime.set_mocks(MOCKS, project="depcon", stack="lab", preview=False)


def load_program() -> Any:
    spec = importlib.util.spec_from_file_location("depcon_program", repo_root() / "__main__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["depcon_program"] = module
    spec.loader.exec_module(module)
    return module


@pulumi.runtime.test
def test_program_composes_host_layer() -> Any:
    program = load_program()

    def check(args: list[Any]) -> None:
        stats, version, slo = args
        types = [r.typ for r in MOCKS.resources]
        assert "depcon:host:Layer" in types
        runs = [r for r in MOCKS.resources if r.typ == "pulumi-python:dynamic:Resource"]
        assert [r.inputs["playbook"] for r in runs] == ["playbooks/preflight.yml"]
        assert runs[0].inputs["inventory"] == "inventory/lab/hosts.yml"
        root = repo_root()
        expected = inputs_hash(
            [
                root / "playbooks",
                root / "roles",
                root / "versions.yml",
                root / "ansible.cfg",
                root / "inventory/lab",
            ]
        )
        assert runs[0].inputs["inputs_hash"] == expected
        assert stats == [{"ok": 9, "changed": 0, "hosts": ["localhost"]}]
        assert version == program.config.versions.kubernetes.version
        assert slo == "example.com/SLO"

    return pulumi.Output.all(
        program.host.stats,
        pulumi.Output.from_input(program.config.versions.kubernetes.version),
        pulumi.Output.from_input(program.config.slo_resource_name),
    ).apply(check)


def test_inputs_hash_follows_content(tmp_path: Path) -> None:
    a = tmp_path / "a.yml"
    d = tmp_path / "roles"
    (d / "r" / "tasks").mkdir(parents=True)
    a.write_text("x: 1\n")
    (d / "r" / "tasks" / "main.yml").write_text("- name: Do it\n")
    first = inputs_hash([a, d])
    assert inputs_hash([d, a]) == first  # order of arguments does not matter
    (d / "r" / "tasks" / "main.yml").write_text("- name: Do it again\n")
    assert inputs_hash([a, d]) != first
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inputs_hash([tmp_path / "missing.yml"])
