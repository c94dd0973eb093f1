"""The Pulumi program under pulumi.runtime.set_mocks: what it composes, and with which inputs."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from depcon.ansible_run import inputs_hash, strategy_env
from depcon.config import ConfigError
from depcon.paths import repo_root
from harness.lab import PROBE_SELECTOR
from program import hosts

pytestmark = pytest.mark.unit

DYNAMIC = "pulumi-python:dynamic:Resource"


class Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outputs = dict(args.inputs)
        if args.typ == DYNAMIC:
            outputs["stats"] = {"ok": 9, "changed": 0, "hosts": ["localhost"]}
            outputs["run_id"] = f"run-{args.name}"
            if "endpoint" in args.inputs:
                outputs["kubeconfig"] = "apiVersion: v1\nkind: Config\n"
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        return {}, []


@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = tmp_path / "bundle"
    b.mkdir()
    (b / "SHA256SUMS").write_text("0" * 64 + "  bin/kubelet\n")
    monkeypatch.setenv("DEPCON_BUNDLE_DIR", str(b))
    return b


def run_program(stack: str, mocks: Mocks | None = None) -> tuple[Any, Mocks]:
    mocks = mocks or Mocks()
    pulumi.runtime.set_mocks(mocks, project="depcon", stack=stack, preview=False)
    spec = importlib.util.spec_from_file_location("depcon_program", repo_root() / "__main__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["depcon_program"] = module
    spec.loader.exec_module(module)
    return module, mocks


def runs(mocks: Mocks) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in mocks.resources if r.typ == DYNAMIC}


@pulumi.runtime.test
def test_lab_stack_composes_the_whole_cluster(bundle: Path) -> Any:
    program, mocks = run_program("lab")

    def check(_: Any) -> None:
        types = [r.typ for r in mocks.resources]
        for token in (
            "depcon:hosts:Preflight",
            "depcon:hosts:Cluster",
            "depcon:hosts:Depcon",
            "depcon:kubernetes:Api",
            "depcon:verify:Workload",
            "pulumi:providers:kubernetes",
            "kubernetes:core/v1:Namespace",
            "kubernetes:core/v1:ServiceAccount",
        ):
            assert token in types, token
        plays = runs(mocks)
        assert {k: (v.get("playbook"), v.get("delete_playbook")) for k, v in plays.items()} == {
            "preflight-run": ("playbooks/preflight.yml", None),
            "cluster-run": ("playbooks/cluster.yml", "playbooks/reset.yml"),
            "depcon-run": ("playbooks/depcon.yml", "playbooks/rollback.yml"),
            "api-kubeconfig": (None, None),
            "verify-check": ("playbooks/verify.yml", None),
        }
        settings = {
            "depcon_scheduler_mode": "second-profile",
            "depcon_slo_resource_name": "example.com/SLO",
        }
        for name in ("preflight-run", "cluster-run", "depcon-run"):
            assert plays[name]["extra_vars"] == settings
        for name in ("preflight-run", "cluster-run", "depcon-run", "verify-check"):
            assert plays[name]["strategy"] == "mitogen_linear", name
            assert plays[name]["inventory"] == "inventory/lab/hosts.yml"
        assert plays["verify-check"]["extra_vars"]["verify_probe_managed"] == "true"
        assert plays["api-kubeconfig"]["endpoint"] == "https://127.0.0.1:16443"
        # The kubeconfig is read again after each provisioning of the hosts.
        assert plays["api-kubeconfig"]["trigger"] == "run-cluster-run-run-depcon-run"
        pods = [r for r in mocks.resources if r.typ == "kubernetes:core/v1:Pod"]
        assert sorted(p.inputs["metadata"]["name"] for p in pods) == ["slo-fits", "slo-too-big"]
        for pod in pods:
            assert pod.inputs["spec"]["schedulerName"] == "depcon-scheduler"
            # The smoke deletes them by this label before its rollback (harness/lab.py).
            key, _, value = PROBE_SELECTOR.partition("=")
            assert pod.inputs["metadata"]["labels"][key] == value
            limits = pod.inputs["spec"]["containers"][0]["resources"]["limits"]
            assert list(limits) == ["example.com/SLO"]
        # verify.yml looks for the probe's slot by the goal the pod asked for.
        fits = next(p for p in pods if p.inputs["metadata"]["name"] == "slo-fits")
        goal = fits.inputs["spec"]["containers"][0]["resources"]["limits"]["example.com/SLO"]
        assert plays["verify-check"]["extra_vars"]["verify_probe_mbps"] == goal

    return pulumi.Output.all(program.verification.verdict, program.api.kubeconfig).apply(check)


@pulumi.runtime.test
def test_controller_stack_runs_the_preflight_only(bundle: Path) -> Any:
    program, mocks = run_program("controller")

    def check(_: Any) -> None:
        assert list(runs(mocks)) == ["preflight-run"]
        assert not [r for r in mocks.resources if r.typ.startswith("kubernetes:")]

    return program.preflight.stats.apply(check)


@pytest.fixture
def edited_lab_stack() -> Iterator[Path]:
    path = repo_root() / "Pulumi.lab.yaml"
    before = path.read_bytes()
    doc = yaml.safe_load(before)
    doc["config"]["depcon:schedulerMode"] = "default-profile"
    doc["config"]["depcon:sloResourceName"] = "lab.example.org/net"
    doc["config"]["depcon:ansibleStrategy"] = "linear"
    path.write_text(yaml.safe_dump(doc))
    try:
        yield path
    finally:
        path.write_bytes(before)


@pulumi.runtime.test
def test_stack_settings_reach_every_run_and_the_pods(bundle: Path, edited_lab_stack: Path) -> Any:
    program, mocks = run_program("lab")

    def check(_: Any) -> None:
        want = {
            "depcon_scheduler_mode": "default-profile",
            "depcon_slo_resource_name": "lab.example.org/net",
        }
        for name, props in runs(mocks).items():
            if "extra_vars" in props:
                assert want.items() <= props["extra_vars"].items(), name
                assert props["strategy"] == "linear", name
        pods = [r for r in mocks.resources if r.typ == "kubernetes:core/v1:Pod"]
        for pod in pods:
            limits = pod.inputs["spec"]["containers"][0]["resources"]["limits"]
            assert list(limits) == ["lab.example.org/net"]
            # Mode (b): the default profile is DepCon's, so the probe asks for no other.
            assert pod.inputs["spec"]["schedulerName"] == "default-scheduler"

    return program.verification.verdict.apply(check)


def test_a_bad_stack_key_fails_before_any_resource(bundle: Path, edited_lab_stack: Path) -> None:
    doc = yaml.safe_load(edited_lab_stack.read_text())
    doc["config"]["depcon:colour"] = "blue"
    edited_lab_stack.write_text(yaml.safe_dump(doc))
    mocks = Mocks()
    with pytest.raises(ConfigError, match="depcon:colour: unknown key"):
        run_program("lab", mocks)
    assert mocks.resources == []


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundle: Path) -> Path:
    """A copy of what the host components read, for edits."""
    src = repo_root()
    dst = tmp_path / "tree"
    for name in ("versions.yml", "ansible.cfg"):
        dst.mkdir(exist_ok=True)
        shutil.copy(src / name, dst / name)
    for d in (
        "playbooks",
        "roles",
        "inventory",
        "kernel_module",
        "depcon",
        "buildtools",
        "harness",
        "nodeagent",
    ):
        shutil.copytree(src / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(hosts, "repo_root", lambda: dst)
    monkeypatch.setattr("depcon.ansible_run.repo_root", lambda: dst)
    return dst


def _hashes(bundle_dir: Path) -> dict[str, str]:
    args = hosts.HostsArgs("inventory/lab/hosts.yml", bundle_dir=str(bundle_dir))
    return {
        "preflight": hosts.component_hash(args, hosts.PREFLIGHT_INPUTS),
        "cluster": hosts.component_hash(args, hosts.CLUSTER_INPUTS),
        "depcon": hosts.component_hash(args, hosts.DEPCON_INPUTS),
    }


@pytest.mark.parametrize(
    ("edit", "changed"),
    [
        ("kernel_module/vif_ctl.c", {"depcon"}),
        ("nodeagent/slo.py", {"depcon"}),
        ("roles/vif_module/defaults/main.yml", {"depcon"}),
        ("roles/containerd/defaults/main.yml", {"cluster"}),
        ("playbooks/cluster.yml", {"cluster"}),
        ("roles/controller_preflight/tasks/main.yml", {"preflight"}),
        ("versions.yml", {"preflight", "cluster", "depcon"}),
        ("inventory/lab/group_vars/all.yml", {"preflight", "cluster", "depcon"}),
        ("BUNDLE", {"preflight", "cluster", "depcon"}),
        # The way back is read when it runs (destroy): an edit re-runs nothing now.
        ("playbooks/rollback.yml", set()),
        # The verification's own tasks re-run the verification only.
        ("playbooks/tasks/verify_proof_node.yml", set()),
        ("playbooks/tasks/drain.yml", {"depcon"}),
        ("roles/control_plane/tasks/checks.yml", {"preflight", "cluster", "depcon"}),
    ],
)
def test_an_edit_reruns_exactly_the_components_that_read_it(
    tree: Path, bundle: Path, edit: str, changed: set[str]
) -> None:
    before = _hashes(bundle)
    target = bundle / "SHA256SUMS" if edit == "BUNDLE" else tree / edit
    target.write_text(target.read_text() + "\n# edited\n")
    after = _hashes(bundle)
    assert {k for k in before if before[k] != after[k]} == changed


def test_every_role_a_playbook_uses_is_an_input() -> None:
    """The input lists follow the playbooks: a role added to one is hashed too."""
    root = repo_root()
    pattern = re.compile(r"(?:role|name): ([a-z_]+)$", re.M)
    roles = {p.name for p in (root / "roles").iterdir()}
    for playbook, inputs in (
        ("playbooks/preflight.yml", hosts.PREFLIGHT_INPUTS),
        ("playbooks/cluster.yml", hosts.CLUSTER_INPUTS),
        ("playbooks/depcon.yml", hosts.DEPCON_INPUTS),
    ):
        used = set(pattern.findall((root / playbook).read_text())) & roles
        assert used, playbook
        assert {f"roles/{r}" for r in used} <= set(inputs), playbook


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
    second = inputs_hash([a, d])
    (d / "r" / "__pycache__").mkdir()
    (d / "r" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"\x00")
    assert inputs_hash([a, d]) == second  # bytecode Python wrote is nobody's edit
    with pytest.raises(FileNotFoundError, match="does not exist"):
        inputs_hash([tmp_path / "missing.yml"])


def test_strategy_env_names_a_real_plugin() -> None:
    assert strategy_env("linear") == {"ANSIBLE_STRATEGY": "linear"}
    env = strategy_env("mitogen_linear")
    assert env["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(env["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    with pytest.raises(ValueError, match="one of linear, mitogen_linear"):
        strategy_env("free")
