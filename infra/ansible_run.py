"""Run an Ansible playbook as a Pulumi resource, through ansible-runner.

This is how the Pulumi program drives the host layer: each playbook run is a
resource whose inputs include a hash of every file the run reads (playbook,
roles, versions.yml, inventory). ``pulumi up`` re-runs the playbook exactly
when that hash changes, and leaves it alone otherwise, so a second ``up``
with nothing changed does no host work at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider, UpdateResult

from infra.paths import repo_root


def inputs_hash(paths: list[Path]) -> str:
    """sha256 over the named files and every file under the named directories.

    Relative names and contents both count, so a renamed or edited task file
    changes the hash; order is canonical so the hash is stable.
    """
    root = repo_root()
    digest = hashlib.sha256()
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"ansible input {path} does not exist")
    for file in sorted(set(files)):
        rel = file.relative_to(root) if file.is_relative_to(root) else file
        digest.update(str(rel).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class PlaybookArgs:
    """Typed inputs of :class:`AnsiblePlaybook` (paths relative to the repo root)."""

    playbook: str
    inventory: str
    extra_vars: dict[str, str]
    inputs_hash: str


_FAILURE_EVENTS = ("runner_item_on_failed", "runner_on_failed", "runner_on_unreachable")


class PlaybookError(RuntimeError):
    pass


def _tail(result: Any, lines: int = 15) -> str:
    """The end of the run's output, for failures that produced no task event."""
    try:
        text = result.stdout.read()
    except (AttributeError, OSError, ValueError):
        return ""
    return " | ".join(str(text).strip().splitlines()[-lines:])


def run_playbook(playbook: str, inventory: str, extra_vars: dict[str, str]) -> dict[str, Any]:
    """Run one playbook to completion; return its per-host stats or raise."""
    import ansible_runner  # noqa: PLC0415 -- heavy; imported only where a run happens

    root = repo_root()
    # ansible-playbook must be the .venv's, next to the interpreter running us.
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(root / "ansible.cfg")
    with tempfile.TemporaryDirectory(prefix="depcon-ansible-") as private:
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(root),
            playbook=str(root / playbook),
            inventory=str(root / inventory),
            extravars=extra_vars,
            envvars=env,
            quiet=True,
        )
        # Loop items fail one by one (runner_item_on_failed) under a task-level
        # "One or more items failed"; the item messages are the useful ones.
        failures = [
            f"{ev['event_data'].get('host')}: {ev['event_data'].get('task')}: "
            f"{ev['event_data'].get('res', {}).get('msg', '')}"
            for ev in result.events
            if ev.get("event") in _FAILURE_EVENTS and not ev["event_data"].get("ignore_errors")
        ]
        if result.rc != 0:
            tail = _tail(result)
            detail = "; ".join(failures) or f"status {result.status}"
            if not failures and tail:
                detail += f": {tail}"
            raise PlaybookError(f"{playbook} failed (rc={result.rc}): {detail}")
        stats: dict[str, Any] = result.stats or {}
        return {
            "ok": sum(stats.get("ok", {}).values()),
            "changed": sum(stats.get("changed", {}).values()),
            "hosts": sorted(stats.get("processed", {})),
        }


def run_playbook_isolated(
    playbook: str, inventory: str, extra_vars: dict[str, str]
) -> dict[str, Any]:
    """:func:`run_playbook` in a fresh Python process (``python -m infra.ansible_run``).

    The dynamic provider runs inside Pulumi's gRPC server. ansible-runner
    forks a pty for ansible-playbook, and gRPC's fork handlers in that child
    sometimes kill the run before it starts (seen in CI: rc None, "epoll_wait
    error: Bad file descriptor"). A child started with subprocess execs at
    once, so the fork happens in a process without gRPC.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "infra.ansible_run", playbook, inventory, json.dumps(extra_vars)],
        cwd=repo_root(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        msg = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        raise PlaybookError(msg[0])
    stats: dict[str, Any] = json.loads(proc.stdout)
    return stats


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.ansible_run PLAYBOOK INVENTORY EXTRA_VARS_JSON``: stats as JSON."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 3:
        print(
            "usage: python -m infra.ansible_run PLAYBOOK INVENTORY EXTRA_VARS_JSON", file=sys.stderr
        )
        return 2
    playbook, inventory, extra = args
    try:
        extra_vars = json.loads(extra)
    except json.JSONDecodeError as exc:
        print(f"EXTRA_VARS_JSON is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(extra_vars, dict):
        print("EXTRA_VARS_JSON must be a JSON object of variable names to values", file=sys.stderr)
        return 2
    try:
        stats = run_playbook(playbook, inventory, extra_vars)
    except PlaybookError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


class _PlaybookProvider(ResourceProvider):
    def _run(self, props: dict[str, Any]) -> dict[str, Any]:
        stats = run_playbook_isolated(props["playbook"], props["inventory"], props["extra_vars"])
        return {**props, "stats": stats}

    def create(self, props: dict[str, Any]) -> CreateResult:
        out = self._run(props)
        return CreateResult(
            id_=hashlib.sha256(props["playbook"].encode()).hexdigest()[:16], outs=out
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        keys = ("playbook", "inventory", "extra_vars", "inputs_hash")
        changed = [k for k in keys if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[], delete_before_replace=False)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=self._run(news))


class AnsiblePlaybook(Resource):
    """One playbook run; re-runs when any input file changes."""

    stats: pulumi.Output[dict[str, Any]]

    def __init__(
        self, name: str, args: PlaybookArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {
            "playbook": args.playbook,
            "inventory": args.inventory,
            "extra_vars": args.extra_vars,
            "inputs_hash": args.inputs_hash,
            "stats": None,
        }
        super().__init__(_PlaybookProvider(), name, props, opts)


if __name__ == "__main__":
    sys.exit(main())
