"""The cluster layer: a Kubernetes provider from the cluster's own admin kubeconfig.

``AdminKubeconfig`` reads ``/etc/kubernetes/admin.conf`` from the first
control-plane node through Ansible (the inventory's own connection settings:
user, key, port, jump hosts) and keeps it as a secret. It is read again
whenever the hosts were provisioned again (``trigger``), since a reset cluster
has a new CA. ``ClusterApi`` builds the ``pulumi_kubernetes`` provider from it
and DepCon's namespace, so everything that belongs to the API rather than to
a host is a real Kubernetes resource.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from depcon.ansible_run import run_playbook_isolated

NAMESPACE = "depcon-system"


def rewrite_endpoint(kubeconfig: str, endpoint: str | None) -> str:
    """Point the kubeconfig at ``endpoint`` (e.g. the lab's forward on 127.0.0.1).

    The API server's certificate does not name the forward's address, so the
    client checks it against ``kubernetes``, a name kubeadm always puts in it.
    """
    if not endpoint:
        return kubeconfig
    doc = yaml.safe_load(kubeconfig)
    for cluster in doc.get("clusters", []):
        cluster["cluster"]["server"] = endpoint
        cluster["cluster"]["tls-server-name"] = "kubernetes"
    return str(yaml.safe_dump(doc, sort_keys=False))


class _KubeconfigProvider(ResourceProvider):
    def _read(self, props: dict[str, Any]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="depcon-kubeconfig-") as tmp:
            dest = Path(tmp) / "admin.conf"
            run_playbook_isolated(
                "playbooks/kubeconfig.yml",
                props["inventory"],
                {"kubeconfig_dest": str(dest)},
            )
            text = dest.read_text()
        return {**props, "kubeconfig": rewrite_endpoint(text, props["endpoint"])}

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=os.urandom(8).hex(), outs=self._read(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("inventory", "endpoint", "trigger")
        return DiffResult(changes=any(olds.get(k) != news.get(k) for k in keys))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._read(news))


@dataclass(frozen=True)
class ClusterApiArgs:
    """Typed inputs: where the cluster is and when to read its kubeconfig again."""

    inventory: str
    endpoint: str | None  # None: the server address kubeadm wrote
    trigger: pulumi.Input[str]  # the host runs' ids: a new provisioning, a new kubeconfig


class AdminKubeconfig(Resource):
    kubeconfig: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "inventory": args.inventory,
            "endpoint": args.endpoint,
            "trigger": args.trigger,
            "kubeconfig": None,
        }
        opts = pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(additional_secret_outputs=["kubeconfig"])
        )
        super().__init__(_KubeconfigProvider(), name, props, opts)


class ClusterApi(pulumi.ComponentResource):
    """The Kubernetes provider for the cluster, and DepCon's namespace in it."""

    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider
    namespace: pulumi.Output[str]

    def __init__(
        self, name: str, args: ClusterApiArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("depcon:kubernetes:Api", name, None, opts)
        admin = AdminKubeconfig(f"{name}-kubeconfig", args, pulumi.ResourceOptions(parent=self))
        self.kubeconfig = pulumi.Output.secret(admin.kubeconfig)
        self.provider = k8s.Provider(
            f"{name}-provider",
            kubeconfig=self.kubeconfig,
            # Server-side apply: the objects the program owns are merged, never clobbered.
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=NAMESPACE, labels={"app.kubernetes.io/part-of": "depcon"}
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
        )
        self.namespace = ns.metadata.name
        self.register_outputs({"kubeconfig": self.kubeconfig, "namespace": self.namespace})
