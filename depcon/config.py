"""The project's configuration, loaded once and validated into typed objects.

Three files feed it, and data flows one way from them:

* ``versions.yml``: every pinned version and checksum (:class:`Versions`).
* ``Pulumi.<stack>.yaml``: the stack's ``depcon:*`` settings (:class:`StackConfig`).
* the Ansible inventory the stack names: the nodes (:class:`Node`).

Ansible reads ``versions.yml`` itself (roles/depcon_versions) and the same
inventory, so nothing here is copied anywhere. Bad input raises
:class:`~depcon.schema.ConfigError` naming the file and the key.

``python -m depcon.config check [--stack lab]`` validates everything and prints
a summary; it is the first stage of ``make lab``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from depcon.paths import repo_root
from depcon.schema import ConfigError, build
from nodeagent.names import validate_extended_resource_name

__all__ = [
    "ConfigError",
    "DebianPin",
    "GoModulePin",
    "KernelPin",
    "Node",
    "ProjectConfig",
    "StackConfig",
    "Versions",
    "load_inventory",
    "load_project",
    "load_stack",
    "load_versions",
    "validate_extended_resource_name",
]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GO_SUM = re.compile(r"^h1:[A-Za-z0-9+/]{43}=$")
_SEMVER = re.compile(r"^v\d+\.\d+\.\d+$")
# Linux interface names: at most 15 bytes, no '/', ':' or whitespace.
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _check(cond: bool, message: str) -> None:
    # Raised as ValueError so schema.build() attaches the file and key.
    if not cond:
        raise ValueError(message)


# --------------------------------------------------------------------------
# versions.yml


@dataclass(frozen=True)
class GoModulePin:
    """Source fetched through the Go module proxy, verified by its go.sum hashes."""

    version: str
    source: Literal["gomod"]
    module: str
    module_sum: str
    module_gomod_sum: str

    def __post_init__(self) -> None:
        _check(bool(_SEMVER.match(self.version)), f"version {self.version!r} is not vX.Y.Z")
        for name in ("module_sum", "module_gomod_sum"):
            _check(
                bool(_GO_SUM.match(getattr(self, name))),
                f"{name} must be a go.sum 'h1:' hash, got {getattr(self, name)!r}",
            )


@dataclass(frozen=True)
class KubernetesPin(GoModulePin):
    staging_version: str = ""
    pause_version: str = ""
    coredns_version: str = ""
    image_repository: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        major_minor_patch = self.version[1:].split(".")
        expected = f"v0.{major_minor_patch[1]}.{major_minor_patch[2]}"
        _check(
            self.staging_version == expected,
            f"staging_version must be {expected} for kubernetes {self.version}, "
            f"got {self.staging_version!r}",
        )
        for name in ("pause_version", "coredns_version", "image_repository"):
            _check(bool(getattr(self, name)), f"{name} is required")

    @property
    def minor(self) -> str:
        """``1.2`` for ``v1.2.3``."""
        return ".".join(self.version[1:].split(".")[:2])


@dataclass(frozen=True)
class EtcdPin(GoModulePin):
    image_tag: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(
            self.image_tag.startswith(self.version[1:] + "-"),
            f"image_tag {self.image_tag!r} does not match version {self.version}",
        )


@dataclass(frozen=True)
class DebianPin:
    """A Debian 12 package at an exact version (apt verifies the archive signature)."""

    source: Literal["debian"]
    package: str
    version: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        _check(
            self.sha256 is None or bool(_SHA256.match(self.sha256)),
            f"sha256 must be 64 lowercase hex digits, got {self.sha256!r}",
        )

    @property
    def apt_spec(self) -> str:
        return f"{self.package}={self.version}"


@dataclass(frozen=True)
class DebianRelease:
    release: str
    version: str
    mirror: str


@dataclass(frozen=True)
class KernelPin:
    """A Debian kernel (image + matching headers) the VMs boot and vif builds for."""

    name: str
    primary: bool
    abi: str
    version: str
    image_package: str
    image_sha256: str
    headers_package: str
    headers_sha256: str

    def __post_init__(self) -> None:
        for name in ("image_sha256", "headers_sha256"):
            _check(
                bool(_SHA256.match(getattr(self, name))), f"{name} must be 64 lowercase hex digits"
            )
        _check(
            self.image_package == f"linux-image-{self.abi}",
            f"image_package must be linux-image-{self.abi}",
        )
        _check(
            self.headers_package == f"linux-headers-{self.abi}",
            f"headers_package must be linux-headers-{self.abi}",
        )

    @property
    def vmlinuz(self) -> Path:
        return Path("/boot") / f"vmlinuz-{self.abi}"

    @property
    def headers_dir(self) -> Path:
        return Path("/usr/src") / f"linux-headers-{self.abi}"


@dataclass(frozen=True)
class GoPin:
    version: str
    toolchain_sha256: str

    def __post_init__(self) -> None:
        _check(
            bool(re.match(r"^go\d+\.\d+\.\d+$", self.version)),
            f"version {self.version!r} is not goX.Y.Z",
        )
        _check(
            bool(_SHA256.match(self.toolchain_sha256)),
            "toolchain_sha256 must be 64 lowercase hex digits",
        )


@dataclass(frozen=True)
class SloPin:
    resource_name: str
    unit: Literal["Mbps"]
    max_mbps: int

    def __post_init__(self) -> None:
        validate_extended_resource_name(self.resource_name)
        _check(self.max_mbps > 0, "max_mbps must be positive")


@dataclass(frozen=True)
class PulumiSdkSums:
    """go.sum hashes of the CLI's modules for one pulumi SDK version."""

    pkg_sum: str
    sdk_sum: str

    def __post_init__(self) -> None:
        for name in ("pkg_sum", "sdk_sum"):
            _check(bool(_GO_SUM.match(getattr(self, name))), f"{name} must be a go.sum 'h1:' hash")


@dataclass(frozen=True)
class PulumiKubernetesSums:
    """The provider's module (a pseudo-version) and its SDK for one pulumi-kubernetes version."""

    provider_version: str
    provider_sum: str
    sdk_version: str
    sdk_sum: str
    sdk_gomod_sum: str

    def __post_init__(self) -> None:
        for name in ("provider_sum", "sdk_sum", "sdk_gomod_sum"):
            _check(bool(_GO_SUM.match(getattr(self, name))), f"{name} must be a go.sum 'h1:' hash")


@dataclass(frozen=True)
class PulumiEngineTable:
    """Checksums for the locally built Pulumi engine, keyed by locked SDK version.

    The versions themselves come from requirements.lock (buildtools/pulumi_engine.py).
    """

    pulumi: dict[str, PulumiSdkSums]
    pulumi_kubernetes: dict[str, PulumiKubernetesSums]


@dataclass(frozen=True)
class Versions:
    schema: Literal[1]
    kubernetes: KubernetesPin
    etcd: EtcdPin
    containerd: GoModulePin
    runc: DebianPin
    cni_plugins: DebianPin
    netperf: DebianPin
    iperf3: DebianPin
    debian: DebianRelease
    kernels: list[KernelPin]
    go: GoPin
    slo: SloPin
    pulumi_engine: PulumiEngineTable

    def __post_init__(self) -> None:
        primaries = [k.name for k in self.kernels if k.primary]
        _check(
            len(primaries) == 1,
            f"kernels: exactly one kernel must be primary, found {primaries or 'none'}",
        )
        names = [k.name for k in self.kernels]
        _check(len(set(names)) == len(names), f"kernels: duplicate names in {names}")

    @property
    def primary_kernel(self) -> KernelPin:
        return next(k for k in self.kernels if k.primary)

    def debian_pins(self) -> dict[str, DebianPin]:
        return {
            "runc": self.runc,
            "cni_plugins": self.cni_plugins,
            "netperf": self.netperf,
            "iperf3": self.iperf3,
        }


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None


def load_versions(path: Path | None = None) -> Versions:
    """Load and validate the pinned-versions file (default: versions.yml at the repo root)."""
    path = path or repo_root() / "versions.yml"
    return build(Versions, _read_yaml(path), path)


# --------------------------------------------------------------------------
# Pulumi.<stack>.yaml


@dataclass(frozen=True)
class StackConfig:
    """The ``depcon:*`` keys of a Pulumi stack file."""

    inventory: str = field(metadata={"key": "depcon:inventory"})
    scheduler_mode: Literal["second-profile", "default-profile"] = field(
        default="second-profile", metadata={"key": "depcon:schedulerMode"}
    )
    slo_resource_name: str | None = field(default=None, metadata={"key": "depcon:sloResourceName"})
    lab_vm_memory_mib: int = field(default=2048, metadata={"key": "depcon:labVmMemoryMiB"})
    # What `pulumi up` installs on the inventory's nodes: a kubeadm cluster and
    # DepCon on it, DepCon on an existing kubeadm cluster, or nothing (the
    # controller checks only).
    install: Literal["cluster", "depcon", "none"] = field(
        default="cluster", metadata={"key": "depcon:install"}
    )
    # Run the verification workload after an install (program/verification.py).
    verify: bool = field(default=True, metadata={"key": "depcon:verify"})
    # How ansible-playbook runs each play's tasks (depcon/ansible_run.py STRATEGIES).
    ansible_strategy: Literal["linear", "mitogen_linear"] = field(
        default="linear", metadata={"key": "depcon:ansibleStrategy"}
    )

    def __post_init__(self) -> None:
        if self.slo_resource_name is not None:
            validate_extended_resource_name(self.slo_resource_name)
        _check(
            512 <= self.lab_vm_memory_mib <= 16384,
            f"depcon:labVmMemoryMiB must be 512-16384, got {self.lab_vm_memory_mib}",
        )


_INT_STACK_KEYS = ("depcon:labVmMemoryMiB",)
_BOOL_STACK_KEYS = ("depcon:verify",)


def load_stack(stack: str, root: Path | None = None) -> StackConfig:
    """Read ``Pulumi.<stack>.yaml``; keys outside ``depcon:`` belong to providers."""
    root = root or repo_root()
    path = root / f"Pulumi.{stack}.yaml"
    data = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ConfigError(path, "config", "must be a mapping of stack settings")
    ours = {k: v for k, v in data["config"].items() if str(k).startswith("depcon:")}
    # Pulumi keeps every config value as a string (`pulumi config set` and the
    # CLI's own rewrites of this file quote numbers), so a decimal string is
    # an integer here too, as pulumi.Config.get_int would read it.
    for key in _INT_STACK_KEYS:
        value = ours.get(key)
        if isinstance(value, str) and value.isdigit():
            ours[key] = int(value)
    for key in _BOOL_STACK_KEYS:
        value = ours.get(key)
        if isinstance(value, str) and value in ("true", "false"):
            ours[key] = value == "true"
    return build(StackConfig, ours, path, "config")


# --------------------------------------------------------------------------
# Inventory


@dataclass(frozen=True)
class HostVars:
    """The ``depcon_*`` host variables a node may carry (others are Ansible's)."""

    depcon_node_interface: str
    depcon_slo_capacity_mbps: int | None = None
    # Local lab only: this host is a qemu VM make lab boots, its eth0 at this address/prefix.
    depcon_lab_vm_ip: str | None = None
    # Local lab only: 127.0.0.1:<port> on the controller forwards to this VM's API server.
    depcon_lab_api_port: int | None = None
    # verify.yml's netperf goal on this node (default: its SLO capacity, the promise).
    depcon_verify_netperf_mbps: int | None = None

    def __post_init__(self) -> None:
        _check(
            bool(_IFNAME.match(self.depcon_node_interface)),
            f"depcon_node_interface {self.depcon_node_interface!r} is not a Linux "
            "interface name (1-15 of A-Z a-z 0-9 _ . -)",
        )
        for key in ("depcon_slo_capacity_mbps", "depcon_verify_netperf_mbps"):
            mbps = getattr(self, key)
            if mbps is not None:
                _check(mbps > 0, f"{key} must be a positive number of Mbps")
        if self.depcon_lab_vm_ip is not None:
            try:
                ipaddress.IPv4Interface(self.depcon_lab_vm_ip)
                ok = "/" in self.depcon_lab_vm_ip
            except ValueError:
                ok = False
            _check(ok, f"depcon_lab_vm_ip {self.depcon_lab_vm_ip!r} is not an IPv4 address/prefix")
        if self.depcon_lab_api_port is not None:
            _check(
                1024 <= self.depcon_lab_api_port <= 65535,
                f"depcon_lab_api_port must be 1024-65535, got {self.depcon_lab_api_port}",
            )


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    role: Literal["control-plane", "worker"]
    interface: str
    slo_capacity_mbps: int | None
    ssh_port: int = 22
    lab_vm_ip: str | None = None
    lab_api_port: int | None = None


CONTROL_PLANE_GROUP = "kube_control_plane"
WORKER_GROUP = "kube_node"


_HostEntry = tuple[dict[str, Any], set[str], str]  # merged vars, groups, key path


def _walk_groups(
    group: dict[str, Any],
    name: str,
    path: str,
    *,
    file: Path,
    inherited: dict[str, Any],
    out: dict[str, _HostEntry],
) -> None:
    if not isinstance(group, dict):
        raise ConfigError(file, path, "must be a mapping with hosts/children/vars")
    unknown = set(group) - {"hosts", "children", "vars"}
    if unknown:
        raise ConfigError(
            file,
            f"{path}.{sorted(unknown)[0]}",
            "unknown key (a group has hosts, children and vars)",
        )
    gvars = {**inherited, **(group.get("vars") or {})}
    for host, hvars in (group.get("hosts") or {}).items():
        merged, groups, hpath = out.get(str(host), ({}, set(), f"{path}.hosts.{host}"))
        out[str(host)] = ({**gvars, **merged, **(hvars or {})}, groups | {name}, hpath)
    for child, body in (group.get("children") or {}).items():
        _walk_groups(
            body or {}, str(child), f"{path}.children.{child}", file=file, inherited=gvars, out=out
        )


def _port(value: object, file: Path, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ConfigError(file, f"{path}.ansible_port", f"must be a port number, got {value!r}")
    if not 0 < int(value) < 65536:
        raise ConfigError(file, f"{path}.ansible_port", f"must be 1-65535, got {value}")
    return int(value)


def load_inventory(path: Path, versions: Versions | None = None) -> list[Node]:
    """Nodes of an Ansible YAML inventory (kubespray group names), validated."""
    max_mbps = (versions or load_versions()).slo.max_mbps
    data = _read_yaml(path)
    if not isinstance(data, dict) or "all" not in data:
        raise ConfigError(path, "all", "an inventory needs a top-level 'all' group")
    hosts: dict[str, _HostEntry] = {}
    _walk_groups(data["all"], "all", "all", file=path, inherited={}, out=hosts)
    nodes = []
    for name, (hvars, groups, hpath) in sorted(hosts.items()):
        is_cp = CONTROL_PLANE_GROUP in groups
        if not (is_cp or WORKER_GROUP in groups):
            continue  # e.g. a bastion: not a Kubernetes node
        ours = {k: v for k, v in hvars.items() if str(k).startswith("depcon_")}
        hv = build(HostVars, ours, path, hpath)
        for key in ("depcon_slo_capacity_mbps", "depcon_verify_netperf_mbps"):
            mbps = getattr(hv, key)
            if mbps is not None and mbps > max_mbps:
                raise ConfigError(
                    path,
                    f"{hpath}.{key}",
                    f"{mbps} Mbps is more than a node takes ({max_mbps}, versions.yml "
                    "slo.max_mbps: vif's and the kubelet's bound)",
                )
        nodes.append(
            Node(
                name=name,
                address=str(hvars.get("ansible_host", name)),
                role="control-plane" if is_cp else "worker",
                interface=hv.depcon_node_interface,
                slo_capacity_mbps=hv.depcon_slo_capacity_mbps,
                ssh_port=_port(hvars.get("ansible_port", 22), path, hpath),
                lab_vm_ip=hv.depcon_lab_vm_ip,
                lab_api_port=hv.depcon_lab_api_port,
            )
        )
    if not any(n.role == "control-plane" for n in nodes):
        raise ConfigError(
            path,
            f"all.children.{CONTROL_PLANE_GROUP}",
            "the inventory needs at least one control-plane host",
        )
    return nodes


# --------------------------------------------------------------------------
# Everything together


@dataclass(frozen=True)
class ProjectConfig:
    stack_name: str
    stack: StackConfig
    versions: Versions
    inventory_path: Path
    nodes: list[Node]

    @property
    def slo_resource_name(self) -> str:
        """The stack's override, else the pinned default."""
        return self.stack.slo_resource_name or self.versions.slo.resource_name

    @property
    def inventory(self) -> str:
        """The inventory as the playbook runs take it: relative to the checkout if inside it."""
        root = repo_root()
        path = self.inventory_path
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    @property
    def scheduler_profile(self) -> str:
        """The schedulerName that reaches the DepCon profile's placement by default."""
        return (
            "depcon-scheduler"
            if self.stack.scheduler_mode == "second-profile"
            else ("default-scheduler")
        )

    def api_endpoint(self) -> str | None:
        """Where the controller reaches the API server, if not at kubeadm's address."""
        cp = next(n for n in self.nodes if n.role == "control-plane")
        return f"https://127.0.0.1:{cp.lab_api_port}" if cp.lab_api_port else None

    def node_summary(self) -> dict[str, dict[str, object]]:
        return {
            n.name: {"role": n.role, "sloCapacityMbps": n.slo_capacity_mbps or "link speed"}
            for n in self.nodes
        }

    def ansible_vars(self) -> dict[str, str]:
        """The stack settings as the Ansible variables the roles read: the one mapping.

        The Pulumi program passes these as extra vars to every playbook it
        runs; anyone running the playbooks by hand passes the same with -e
        (``python -m depcon.config ansible-vars``).
        """
        return {
            "depcon_scheduler_mode": self.stack.scheduler_mode,
            "depcon_slo_resource_name": self.slo_resource_name,
        }


def load_project(stack: str, root: Path | None = None) -> ProjectConfig:
    root = root or repo_root()
    stack_cfg = load_stack(stack, root)
    versions = load_versions(root / "versions.yml")
    inventory_path = (root / stack_cfg.inventory).resolve()
    nodes = load_inventory(inventory_path, versions)
    return ProjectConfig(
        stack_name=stack,
        stack=stack_cfg,
        versions=versions,
        inventory_path=inventory_path,
        nodes=nodes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="depcon-config", description="Validate the project configuration."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate versions, stack file and inventory")
    check.add_argument("--stack", default="lab")
    avars = sub.add_parser(
        "ansible-vars", help="the stack's settings as Ansible extra vars (JSON, for -e @file)"
    )
    avars.add_argument("--stack", default="lab")
    args = parser.parse_args(argv)
    try:
        cfg = load_project(args.stack)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "ansible-vars":
        print(json.dumps(cfg.ansible_vars(), indent=2))
        return 0
    v = cfg.versions
    print(f"stack {cfg.stack_name}: inventory {cfg.inventory_path}")
    print(
        f"  kubernetes {v.kubernetes.version}, etcd {v.etcd.version}, "
        f"containerd {v.containerd.version}, kernel {v.primary_kernel.abi}"
    )
    print(
        f"  SLO resource {cfg.slo_resource_name} ({v.slo.unit}), "
        f"scheduler mode {cfg.stack.scheduler_mode}, installs {cfg.stack.install}"
    )
    for n in cfg.nodes:
        cap = f"{n.slo_capacity_mbps} Mbps (override)" if n.slo_capacity_mbps else "link speed"
        print(f"  node {n.name} [{n.role}] {n.address} if={n.interface} SLO capacity: {cap}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
