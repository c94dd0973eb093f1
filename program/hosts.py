"""What the program does on hosts: the controller preflight, the kubeadm cluster, DepCon on it.

Each component is one playbook run (``program/playbook.py``) with the
playbook that takes it back, keyed on a hash of exactly the files that run
reads, so an edit re-runs the component that reads it and no other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi

from depcon.ansible_run import inputs_hash
from depcon.paths import repo_root
from program.playbook import HostPlaybook, PlaybookArgs

# What every run reads besides its own playbooks and roles.
COMMON_INPUTS = (
    "versions.yml",
    "ansible.cfg",
    # The inventory checks, the control plane's settings among them.
    "playbooks/checks.yml",
    "roles/control_plane/tasks/checks.yml",
    "roles/control_plane/defaults",
)
# Per component: its playbooks (the run and the way back) and the roles they use.
PREFLIGHT_INPUTS = (
    "playbooks/preflight.yml",
    "roles/depcon_versions",
    "roles/controller_preflight",
)
# The way back (reset.yml, rollback.yml) is read when it runs, at destroy: an
# edit to it changes nothing on the hosts now, so it is not an input.
CLUSTER_INPUTS = (
    "playbooks/cluster.yml",
    *(f"roles/{r}" for r in ("depcon_versions", "common", "containerd", "bundle_binaries")),
    *(f"roles/{r}" for r in ("kubernetes", "control_plane", "worker", "kube_proxy")),
)
DEPCON_INPUTS = (
    "playbooks/depcon.yml",
    "playbooks/tasks/drain.yml",
    "playbooks/tasks/uncordon.yml",
    *(f"roles/{r}" for r in ("depcon_versions", "ship_files", "vif_module", "depcon_kubelet")),
    *(f"roles/{r}" for r in ("depcon_scheduler", "slo_capacity")),
    # Shipped to the nodes: the vif sources and the node agent.
    "kernel_module",
    "nodeagent",
)


@dataclass(frozen=True)
class HostsArgs:
    """Typed inputs shared by the host components."""

    inventory: str  # relative to the repo root
    extra_vars: dict[str, str] = field(default_factory=dict)
    bundle_dir: str | None = None  # the offline bundle the nodes get their binaries from
    strategy: str = "linear"  # the stack's depcon:ansibleStrategy


def component_hash(args: HostsArgs, own: tuple[str, ...]) -> str:
    """The hash of every file one component's run reads."""
    root = repo_root()
    paths = [root / p for p in (*COMMON_INPUTS, *own)]
    paths.append((root / args.inventory).parent)  # hosts file, group_vars/, host_vars/
    if args.bundle_dir:
        paths.append(Path(args.bundle_dir) / "SHA256SUMS")
    return inputs_hash(paths)


def bundle_dir() -> str:
    """The bundle the inventory's nodes install from (make artifacts builds it)."""
    explicit = os.environ.get("DEPCON_BUNDLE_DIR")
    if explicit:
        return explicit
    from buildtools.artifacts import bundle_path  # noqa: PLC0415 -- heavy, only for a cluster

    return str(bundle_path())


class _HostsComponent(pulumi.ComponentResource):
    """A component of one playbook run, its way back, and its outputs."""

    run: HostPlaybook
    stats: pulumi.Output[dict[str, Any]]
    run_id: pulumi.Output[str]

    def __init__(
        self,
        token: str,
        name: str,
        args: HostsArgs,
        *,
        playbook: str,
        delete_playbook: str | None,
        inputs: tuple[str, ...],
        opts: pulumi.ResourceOptions | None,
    ) -> None:
        super().__init__(token, name, None, opts)
        self.run = HostPlaybook(
            f"{name}-run",
            PlaybookArgs(
                playbook=playbook,
                inventory=args.inventory,
                extra_vars=args.extra_vars,
                inputs_hash=component_hash(args, inputs),
                delete_playbook=delete_playbook,
                strategy=args.strategy,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.stats = self.run.stats
        self.run_id = self.run.run_id
        self.register_outputs({"stats": self.stats, "runId": self.run_id})


class ControllerPreflight(_HostsComponent):
    """This machine checked against versions.yml; changes nothing, so nothing to undo."""

    def __init__(
        self, name: str, args: HostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "depcon:hosts:Preflight",
            name,
            args,
            playbook="playbooks/preflight.yml",
            delete_playbook=None,
            inputs=PREFLIGHT_INPUTS,
            opts=opts,
        )


class KubeadmCluster(_HostsComponent):
    """The kubeadm cluster on the inventory's nodes (cluster.yml); destroy resets them."""

    def __init__(
        self, name: str, args: HostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "depcon:hosts:Cluster",
            name,
            args,
            playbook="playbooks/cluster.yml",
            delete_playbook="playbooks/reset.yml",
            inputs=CLUSTER_INPUTS,
            opts=opts,
        )


class DepconOnHosts(_HostsComponent):
    """vif, the patched kubelet, the scheduler profile, SLO capacity (depcon.yml).

    Destroy runs rollback.yml: the cluster is left as it was before DepCon.
    """

    def __init__(
        self, name: str, args: HostsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            "depcon:hosts:Depcon",
            name,
            args,
            playbook="playbooks/depcon.yml",
            delete_playbook="playbooks/rollback.yml",
            inputs=DEPCON_INPUTS,
            opts=opts,
        )
