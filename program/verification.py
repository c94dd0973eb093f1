"""The verification workload: DepCon's probe pods as Kubernetes resources, checked on the hosts.

The pods come from ``playbooks/templates/verify-probe.yaml.j2``, the one
definition ``verify.yml`` also applies: one SLO pod that fits a node and one
that fits none, both for the DepCon profile. ``verify.yml`` then checks what
only the hosts can show (vif loaded, the patched kubelet, the pod's container
in a vif slot with its goal, the other pod Pending for the SLO resource) and
writes the report. It runs again whenever the hosts were provisioned again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pulumi
import pulumi_kubernetes as k8s
import yaml

from depcon.ansible_run import inputs_hash
from depcon.config import load_versions
from depcon.paths import repo_root
from program.kube import NAMESPACE
from program.playbook import HostPlaybook, PlaybookArgs

TEMPLATE = "playbooks/templates/verify-probe.yaml.j2"
SERVICE_ACCOUNT = "depcon-verify"
# verify.yml's own probe settings; the program passes the same to it.
# The probe's goal; verify.yml gets it too, to find the probe's vif slot.
PROBE_MBPS = 100
VERIFY_INPUTS = (
    "playbooks/verify.yml",
    "playbooks/templates",
    "playbooks/tasks",
    # The SLO proof's judge and its tracer on the nodes.
    "depcon/proof.py",
    "nodeagent/vif_trace.py",
)


def render_probe(namespace: str, resource: str, scheduler_name: str) -> list[dict[str, Any]]:
    """The probe pods, rendered from the template verify.yml applies."""
    v = load_versions()
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(repo_root()),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    # What the template reads of depcon_versions (Ansible's view of versions.yml).
    pins = {
        "kubernetes": {
            "image_repository": v.kubernetes.image_repository,
            "pause_version": v.kubernetes.pause_version,
        }
    }
    text = env.get_template(TEMPLATE).render(
        verify_probe_mbps=PROBE_MBPS,
        verify_too_big_mbps=v.slo.max_mbps + 1,
        verify_namespace=namespace,
        verify_resource=resource,
        verify_scheduler_name=scheduler_name,
        verify_service_account=SERVICE_ACCOUNT,
        depcon_versions=pins,
    )
    return [d for d in yaml.safe_load_all(text) if d]


@dataclass(frozen=True)
class VerificationArgs:
    """Typed inputs of :class:`Verification`."""

    inventory: str
    extra_vars: dict[str, str]
    namespace: pulumi.Input[str]
    slo_resource: str
    scheduler_name: str  # the DepCon profile: depcon-scheduler (a) or default-scheduler (b)
    trigger: pulumi.Input[str]  # the host runs' ids: verify again after each provisioning
    report: str  # where verify.yml writes its JSON report on the controller
    strategy: str = "linear"  # the stack's depcon:ansibleStrategy


class Verification(pulumi.ComponentResource):
    """The probe pods, then verify.yml on the hosts; outputs the verdict and the report."""

    verdict: pulumi.Output[str]
    report: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: VerificationArgs,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("depcon:verify:Workload", name, None, opts)
        on_api = pulumi.ResourceOptions(parent=self, provider=provider)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-account",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SERVICE_ACCOUNT, namespace=args.namespace),
            automount_service_account_token=False,
            opts=on_api,
        )
        pods = []
        for doc in render_probe(NAMESPACE, args.slo_resource, args.scheduler_name):
            meta = doc["metadata"]
            pods.append(
                k8s.core.v1.Pod(
                    f"{name}-{meta['name']}",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=meta["name"],
                        namespace=args.namespace,
                        labels=meta["labels"],
                        annotations=meta["annotations"],
                    ),
                    spec=doc["spec"],
                    opts=pulumi.ResourceOptions.merge(
                        on_api, pulumi.ResourceOptions(depends_on=[account])
                    ),
                )
            )
        files = inputs_hash([repo_root() / p for p in VERIFY_INPUTS])
        check = HostPlaybook(
            f"{name}-check",
            PlaybookArgs(
                playbook="playbooks/verify.yml",
                inventory=args.inventory,
                extra_vars={
                    **args.extra_vars,
                    "verify_probe_managed": "true",
                    "verify_probe_mbps": str(PROBE_MBPS),
                    "verify_report": str(Path(args.report).resolve()),
                },
                inputs_hash=pulumi.Output.from_input(args.trigger).apply(
                    lambda t: hashlib.sha256(f"{files}{t}".encode()).hexdigest()
                ),
                strategy=args.strategy,
            ),
            pulumi.ResourceOptions(parent=self, depends_on=pods),
        )
        self.verdict = check.stats.apply(lambda s: "passed" if s else "not run")
        self.report = pulumi.Output.from_input(args.report)
        # verify.yml writes the SLO proof next to the report (depcon/proof.py).
        self.proof_report = self.report.apply(
            lambda r: str(Path(r).with_name(Path(r).stem + "-proof.json"))
        )
        self.register_outputs(
            {"verdict": self.verdict, "report": self.report, "proofReport": self.proof_report}
        )
