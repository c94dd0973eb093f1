"""The host layer: Ansible playbooks, driven by Pulumi through ansible-runner.

The stack's ``depcon:hostPlaybooks`` lists them (default: the controller
preflight, playbooks/preflight.yml; a production stack adds
playbooks/site.yml). Each is a resource re-run only when a file it reads
changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra.ansible_run import AnsiblePlaybook, PlaybookArgs, inputs_hash
from infra.config import ProjectConfig
from infra.paths import repo_root


@dataclass(frozen=True)
class HostLayerArgs:
    """Typed inputs: which inventory, and the playbooks to run in order."""

    inventory: str
    playbooks: list[str] = field(default_factory=lambda: ["playbooks/preflight.yml"])

    @classmethod
    def from_config(cls, cfg: ProjectConfig) -> HostLayerArgs:
        return cls(
            inventory=str(cfg.inventory_path.relative_to(repo_root())),
            playbooks=list(cfg.stack.host_playbooks),
        )


class HostLayer(pulumi.ComponentResource):
    """Runs the host-layer playbooks in order, each re-run only when its inputs change."""

    runs: list[AnsiblePlaybook]
    stats: pulumi.Output[list[dict[str, Any]]]

    def __init__(
        self, name: str, args: HostLayerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("depcon:host:Layer", name, None, opts)
        root = repo_root()
        # Whole directories: site.yml imports its siblings, tasks/ and
        # templates/; an inventory's group_vars/ sit beside its hosts file.
        shared = [
            root / "playbooks",
            root / "roles",
            root / "versions.yml",
            root / "ansible.cfg",
            (root / args.inventory).parent,
        ]
        self.runs = []
        previous: AnsiblePlaybook | None = None
        for playbook in args.playbooks:
            run = AnsiblePlaybook(
                f"{name}-{playbook.rsplit('/', 1)[-1].removesuffix('.yml')}",
                PlaybookArgs(
                    playbook=playbook,
                    inventory=args.inventory,
                    extra_vars={},
                    inputs_hash=inputs_hash(shared),
                ),
                pulumi.ResourceOptions(parent=self, depends_on=[previous] if previous else None),
            )
            self.runs.append(run)
            previous = run
        self.stats = pulumi.Output.all(*[r.stats for r in self.runs])
        self.register_outputs({"stats": self.stats})
