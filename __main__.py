"""The DepCon Pulumi program: composes the components in infra/, nothing else.

Layers (docs/architecture.md): host layer (Ansible through ansible-runner),
then, as they land, the cluster layer, node agent, scheduler profile and
verification.
"""

import pulumi

from infra.config import load_project
from infra.host_layer import HostLayer, HostLayerArgs

config = load_project(pulumi.get_stack())
host = HostLayer("host", HostLayerArgs.from_config(config))

pulumi.export("kubernetesVersion", config.versions.kubernetes.version)
pulumi.export("sloResource", config.slo_resource_name)
pulumi.export("nodes", [n.name for n in config.nodes])
pulumi.export("hostLayer", host.stats)
