"""depcon/config.py: the real files load; every kind of bad input names file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from depcon.config import (
    ConfigError,
    load_inventory,
    load_project,
    load_stack,
    load_versions,
    validate_extended_resource_name,
)

pytestmark = pytest.mark.unit


def edit(path: Path, change: object) -> None:
    """Apply ``change`` (a function of the parsed YAML) to a YAML file in place."""
    data = yaml.safe_load(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_repository_configuration_loads(root: Path) -> None:
    cfg = load_project("lab", root)
    assert cfg.versions.kubernetes.version.startswith("v1.")
    assert cfg.versions.kubernetes.staging_version == "v0." + cfg.versions.kubernetes.version[3:]
    assert cfg.slo_resource_name == "example.com/SLO"
    assert cfg.versions.slo.unit == "Mbps"
    assert {n.role for n in cfg.nodes} == {"control-plane", "worker"}
    assert "localhost" not in {n.name for n in cfg.nodes}  # controller is not a node
    assert cfg.versions.primary_kernel.abi.startswith("6.1.")


def test_lab_inventory_names_its_vms(root: Path) -> None:
    nodes = {n.name: n for n in load_inventory(root / "inventory/lab/hosts.yml")}
    assert {n: (v.ssh_port, v.lab_vm_ip) for n, v in nodes.items()} == {
        "lab-cp1": (2221, "10.10.0.11/24"),
        "lab-w1": (2222, "10.10.0.12/24"),
    }


def test_sample_inventory_loads(root: Path) -> None:
    nodes = {n.name: n for n in load_inventory(root / "inventory/sample/hosts.yml")}
    assert nodes["node2"].slo_capacity_mbps == 10000
    assert nodes["node1"].slo_capacity_mbps is None
    assert nodes["cp1"].role == "control-plane"
    assert nodes["node2"].interface == "ens1f0"


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (lambda d: d["kubernetes"].update(colour="blue"), "kubernetes.colour", "unknown key"),
        (lambda d: d.update(extra=1), "extra", "unknown key"),
        (lambda d: d["kubernetes"].update(version=1.36), "kubernetes.version", "must be a string"),
        (lambda d: d["kubernetes"].update(version="1.36.5"), "kubernetes", "is not vX.Y.Z"),
        (lambda d: d["kubernetes"].pop("module_sum"), "kubernetes.module_sum", "required"),
        (lambda d: d["kubernetes"].update(module_sum="deadbeef"), "kubernetes", "h1:"),
        (lambda d: d["kubernetes"].update(staging_version="v0.35.0"), "kubernetes", "v0.36"),
        (lambda d: d["kernels"][0].update(primary="yes"), "kernels[0].primary", "true or false"),
        (lambda d: d["kernels"][1].update(primary=True), "", "kernels: exactly one kernel"),
        (lambda d: d["kernels"][0].update(image_sha256="x" * 64), "kernels[0]", "hex"),
        (lambda d: d["netperf"].update(source="pip"), "netperf.source", "one of"),
        (lambda d: d["slo"].update(resource_name="SLO"), "slo", "domain prefix"),
        (lambda d: d["slo"].update(unit="Gbps"), "slo.unit", "one of"),
        (lambda d: d["etcd"].update(image_tag="3.5.0-0"), "etcd", "does not match"),
        (lambda d: d["go"].update(version="1.26"), "go", "goX.Y.Z"),
    ],
)
def test_bad_versions_file(scratch: Path, change: object, key: str, problem: str) -> None:
    path = scratch / "versions.yml"
    edit(path, change)
    with pytest.raises(ConfigError) as err:
        load_versions(path)
    assert err.value.file == str(path)
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(path) in str(err.value)


def test_versions_file_not_yaml(scratch: Path) -> None:
    path = scratch / "versions.yml"
    path.write_text("kubernetes: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_versions(path)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("depcon:colour", "blue", "unknown key"),
        ("depcon:schedulerMode", "research", "one of"),
        ("depcon:sloResourceName", "kubernetes.io/slo", "reserved"),
        ("depcon:sloResourceName", "Example.com/SLO", "DNS subdomain"),
        ("depcon:labVmMemoryMiB", "2048MiB", "must be an integer"),
        ("depcon:labVmMemoryMiB", "-1", "must be an integer"),
        ("depcon:labVmMemoryMiB", 64, "512-16384"),
        ("depcon:install", "everything", "one of"),
        ("depcon:verify", "perhaps", "must be true or false"),
        ("depcon:ansibleStrategy", "free", "one of"),
        ("depcon:hostPlaybooks", ["playbooks/site.yml"], "unknown key"),
    ],
)
def test_bad_stack_file(scratch: Path, key: str, value: object, problem: str) -> None:
    edit(scratch / "Pulumi.lab.yaml", lambda d: d["config"].update({key: value}))
    with pytest.raises(ConfigError) as err:
        load_stack("lab", scratch)
    assert err.value.file.endswith("Pulumi.lab.yaml")
    assert problem in str(err.value)
    if problem == "unknown key":
        assert err.value.key == f"config.{key}"


def test_provider_keys_are_not_ours(scratch: Path) -> None:
    edit(scratch / "Pulumi.lab.yaml", lambda d: d["config"].update({"kubernetes:context": "x"}))
    assert load_stack("lab", scratch).scheduler_mode == "second-profile"


def test_pulumi_string_numbers_are_integers(scratch: Path) -> None:
    edit(
        scratch / "Pulumi.lab.yaml", lambda d: d["config"].update({"depcon:labVmMemoryMiB": "4096"})
    )
    assert load_stack("lab", scratch).lab_vm_memory_mib == 4096


def test_install_and_verify(scratch: Path) -> None:
    stack = load_project("lab", scratch).stack
    assert (stack.install, stack.verify) == ("cluster", True)
    edit(
        scratch / "Pulumi.lab.yaml",
        lambda d: d["config"].update({"depcon:install": "depcon", "depcon:verify": "false"}),
    )
    stack = load_project("lab", scratch).stack
    assert (stack.install, stack.verify) == ("depcon", False)


def test_stack_settings_reach_ansible_as_one_mapping(scratch: Path) -> None:
    assert load_project("lab", scratch).ansible_vars() == {
        "depcon_scheduler_mode": "second-profile",
        "depcon_slo_resource_name": "example.com/SLO",
    }
    edit(
        scratch / "Pulumi.lab.yaml",
        lambda d: d["config"].update(
            {"depcon:schedulerMode": "default-profile", "depcon:sloResourceName": "lab.io/net"}
        ),
    )
    cfg = load_project("lab", scratch)
    assert cfg.ansible_vars() == {
        "depcon_scheduler_mode": "default-profile",
        "depcon_slo_resource_name": "lab.io/net",
    }
    assert cfg.scheduler_profile == "default-scheduler"


def test_missing_stack_file(scratch: Path) -> None:
    with pytest.raises(ConfigError, match=r"Pulumi\.prod\.yaml: file not found"):
        load_stack("prod", scratch)


def worker(d: dict) -> dict:  # type: ignore[type-arg]
    return d["all"]["children"]["kube_node"]["hosts"]["lab-w1"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: worker(d).pop("depcon_node_interface"), "is required but missing"),
        (lambda d: worker(d).update(depcon_node_interface="eth0:1"), "not a Linux interface"),
        (lambda d: worker(d).update(depcon_node_interface="a" * 16), "not a Linux interface"),
        (lambda d: worker(d).update(depcon_slo_capacity_mbps=-5), "positive number of Mbps"),
        (lambda d: worker(d).update(depcon_slo_capacity_mbps=1_000_001), "slo.max_mbps"),
        (lambda d: worker(d).update(depcon_verify_netperf_mbps=10_000_000), "more than a node"),
        (lambda d: worker(d).update(depcon_slo_capacity_mbps="fast"), "must be an integer"),
        (lambda d: worker(d).update(depcon_slo_mbps=100), "unknown key"),
        (lambda d: worker(d).update(depcon_verify_netperf_mbps=0), "depcon_verify_netperf_mbps"),
        (lambda d: worker(d).update(depcon_lab_vm_ip="10.10.0.12"), "not an IPv4 address/prefix"),
        (lambda d: worker(d).update(depcon_lab_vm_ip="10.10.0.300/24"), "not an IPv4"),
        (lambda d: worker(d).update(ansible_port="ssh"), "must be a port number"),
        (lambda d: worker(d).update(ansible_port=70000), "must be 1-65535"),
    ],
)
def test_bad_inventory(scratch: Path, change: object, problem: str) -> None:
    path = scratch / "inventory/lab/hosts.yml"
    edit(path, change)
    with pytest.raises(ConfigError) as err:
        load_project("lab", scratch)
    assert err.value.file == str(path.resolve())
    assert err.value.key.startswith("all.children.kube_node.hosts.lab-w1")
    assert problem in str(err.value)


def test_group_vars_are_inherited(scratch: Path) -> None:
    path = scratch / "inventory/lab/hosts.yml"

    def move_to_group(d: dict) -> None:  # type: ignore[type-arg]
        worker(d).pop("depcon_node_interface")
        d["all"]["children"]["kube_node"]["vars"] = {"depcon_node_interface": "ens3"}

    edit(path, move_to_group)
    nodes = {n.name: n for n in load_inventory(path)}
    assert nodes["lab-w1"].interface == "ens3"
    assert nodes["lab-cp1"].interface == "eth0"


def test_inventory_without_control_plane(scratch: Path) -> None:
    path = scratch / "inventory/lab/hosts.yml"
    edit(path, lambda d: d["all"]["children"].pop("kube_control_plane"))
    with pytest.raises(ConfigError, match="at least one control-plane host"):
        load_inventory(path)


@pytest.mark.parametrize(
    "name", ["example.com/SLO", "depcon.io/net-mbps", "a.b.c/x_y.z", "requests.example.com/s"]
)
def test_valid_extended_resource_names(name: str) -> None:
    validate_extended_resource_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "cpu",
        "/SLO",
        "example.com/",
        "example.com/-SLO",
        "EXAMPLE.com/SLO",
        "kubernetes.io/SLO",
        "x.kubernetes.io/SLO",
        "example.com/a/b",
        "exa_mple.com/SLO",
        "example.com/" + "s" * 64,
    ],
)
def test_invalid_extended_resource_names(name: str) -> None:
    with pytest.raises(ValueError):
        validate_extended_resource_name(name)


def test_versions_live_only_in_versions_yml(root: Path) -> None:
    """No second copy: pinned version strings appear in no other tracked source file."""
    v = load_versions()
    pins = [
        v.kubernetes.version[1:],
        v.etcd.version[1:],
        v.containerd.version[1:],
        v.primary_kernel.abi,
        v.go.version,
        v.netperf.version,
    ]
    suffixes = {".py", ".yml", ".yaml", ".go", ".c", ".h", ".j2", ".cfg", ".toml", ".mod"}
    # Go cannot read versions.yml: this go.mod must carry the pin, and
    # tests/unit/test_bench_scheduler.py holds it equal to versions.yml's.
    guarded = {Path("harness/bench/schedulerframework/go.mod")}
    offenders = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix not in suffixes
            or rel.parts[0].startswith(".")
            or rel == Path("versions.yml")
            or rel.parts[0] in ("tests", "docs")
            or rel in guarded
        ):
            continue
        text = path.read_text(errors="replace")
        offenders += [f"{rel}: {pin}" for pin in pins if re.search(re.escape(pin), text)]
    assert offenders == []


def test_one_mbps_bound_for_inventory_module_and_kubelet(root: Path) -> None:
    """versions.yml's slo.max_mbps is the bound vif and the kubelet enforce."""
    bound = load_versions(root / "versions.yml").slo.max_mbps
    header = (root / "kernel_module/vif.h").read_text()
    spec = (root / "kubelet_patch/depcon/spec.go").read_text()
    assert re.search(rf"#define VIF_GOAL_MAX\s+{bound}\b", header)
    assert re.search(rf"MaxGoalMbps\s*=\s*{bound}\b", spec)


def test_host_key_checking_is_off_for_the_lab_only(root: Path) -> None:
    """Users' inventories run from this checkout keep OpenSSH's host key checks."""
    assert "host_key_checking" not in (root / "ansible.cfg").read_text()
    lab = yaml.safe_load((root / "inventory/lab/group_vars/all.yml").read_text())
    assert lab["ansible_host_key_checking"] is False
    sample = (root / "inventory/sample/hosts.yml").read_text()
    assert "host_key_checking" not in sample
