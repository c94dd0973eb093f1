"""One Ansible playbook run on hosts as a Pulumi resource, with the playbook that undoes it.

Create and update run ``playbook``; delete runs ``delete_playbook`` (``pulumi
destroy`` is the way back). The inputs carry a hash of every file the run
reads, so ``pulumi up`` re-runs exactly when one changed. A run that fails
raises: Pulumi then keeps the resource out of the state (create) or at its
old inputs (update), and the next ``up`` tries again. Each task is printed on
the provider's stderr as it starts; the engine shows those lines on the stack's
row of the ``pulumi up`` display as they come.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from depcon.ansible_run import run_playbook_isolated

# A change to any of these is a change on the hosts: the playbook runs again.
RUN_KEYS = ("playbook", "inventory", "extra_vars", "inputs_hash")


@dataclass(frozen=True)
class PlaybookArgs:
    """Typed inputs of :class:`HostPlaybook` (paths relative to the repo root)."""

    playbook: str
    inventory: str
    extra_vars: dict[str, str]
    inputs_hash: pulumi.Input[str]
    delete_playbook: str | None = None
    # How ansible-playbook runs the tasks: not a change on the hosts, so not a RUN_KEY.
    strategy: str = "linear"


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run(props: dict[str, Any], playbook: str) -> dict[str, Any]:
    return run_playbook_isolated(
        playbook,
        props["inventory"],
        props["extra_vars"],
        progress=_progress,
        strategy=props.get("strategy") or "linear",
    )


class _PlaybookProvider(ResourceProvider):
    def _apply(self, props: dict[str, Any]) -> dict[str, Any]:
        stats = _run(props, props["playbook"])
        # Changes on every run, so what depends on the hosts' state can follow it.
        run_id = hashlib.sha256(f"{props['inputs_hash']}{time.time_ns()}".encode()).hexdigest()
        return {**props, "stats": stats, "run_id": run_id[:16]}

    def create(self, props: dict[str, Any]) -> CreateResult:
        out = self._apply(props)
        return CreateResult(
            id_=hashlib.sha256(props["playbook"].encode()).hexdigest()[:16], outs=out
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = (*RUN_KEYS, "delete_playbook")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        if all(olds.get(k) == news.get(k) for k in RUN_KEYS):
            # Only the way back changed: nothing to do on the hosts now.
            return UpdateResult(outs={**news, "stats": olds["stats"], "run_id": olds["run_id"]})
        return UpdateResult(outs=self._apply(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        if props.get("delete_playbook"):
            _run(props, props["delete_playbook"])


class HostPlaybook(Resource):
    """One playbook run on the inventory's hosts; ``delete_playbook`` undoes it."""

    stats: pulumi.Output[dict[str, Any]]
    run_id: pulumi.Output[str]

    def __init__(
        self, name: str, args: PlaybookArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "playbook": args.playbook,
            "inventory": args.inventory,
            "extra_vars": args.extra_vars,
            "inputs_hash": args.inputs_hash,
            "delete_playbook": args.delete_playbook,
            "strategy": args.strategy,
            "stats": None,
            "run_id": None,
        }
        super().__init__(_PlaybookProvider(), name, props, opts)
