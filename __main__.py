"""The DepCon Pulumi program: composes the components in program/, nothing else.

preflight (the controller) -> cluster (kubeadm on the nodes) -> DepCon on the
nodes -> the cluster's API (provider, namespace) -> verification. The stack's
``depcon:install`` says where it stops (docs/architecture.md).
"""

import pulumi

from depcon.config import load_project
from program.hosts import ControllerPreflight, DepconOnHosts, HostsArgs, KubeadmCluster, bundle_dir
from program.kube import ClusterApi, ClusterApiArgs
from program.verification import Verification, VerificationArgs

config = load_project(pulumi.get_stack())
ansible_vars = config.ansible_vars()
strategy = config.stack.ansible_strategy
preflight = ControllerPreflight(
    "preflight", HostsArgs(config.inventory, ansible_vars, strategy=strategy)
)

pulumi.export("kubernetesVersion", config.versions.kubernetes.version)
pulumi.export("sloResource", config.slo_resource_name)
pulumi.export("schedulerMode", config.stack.scheduler_mode)
pulumi.export("schedulerProfile", config.scheduler_profile)
pulumi.export("nodes", config.node_summary())
pulumi.export("preflight", preflight.stats)

if config.stack.install != "none":
    nodes = HostsArgs(config.inventory, ansible_vars, bundle_dir=bundle_dir(), strategy=strategy)
    after: pulumi.Resource = preflight
    runs = []
    if config.stack.install == "cluster":
        cluster = KubeadmCluster("cluster", nodes, pulumi.ResourceOptions(depends_on=[preflight]))
        after, runs = cluster, [cluster.run_id]
    depcon = DepconOnHosts("depcon", nodes, pulumi.ResourceOptions(depends_on=[after]))
    trigger = pulumi.Output.all(*runs, depcon.run_id).apply("-".join)
    api = ClusterApi(
        "api",
        ClusterApiArgs(config.inventory, config.api_endpoint(), trigger),
        pulumi.ResourceOptions(depends_on=[depcon]),
    )
    pulumi.export("depcon", depcon.stats)
    pulumi.export("kubeconfig", api.kubeconfig)
    if config.stack.verify:
        verification = Verification(
            "verify",
            VerificationArgs(
                inventory=config.inventory,
                extra_vars=ansible_vars,
                namespace=api.namespace,
                slo_resource=config.slo_resource_name,
                scheduler_name=config.scheduler_profile,
                trigger=trigger,
                report=f"reports/verify-{config.stack_name}.json",
                strategy=strategy,
            ),
            api.provider,
            pulumi.ResourceOptions(depends_on=[api]),
        )
        pulumi.export("verification", verification.verdict)
        pulumi.export("verificationReport", verification.report)
        pulumi.export("verificationProof", verification.proof_report)
