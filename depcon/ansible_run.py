"""Run an Ansible playbook through ansible-runner: the one runner every caller uses.

The Pulumi program's host resources (``program/playbook.py``), ``make lab``
and the tests all run playbooks here, so every run gets the same interpreter,
``ansible.cfg``, failure messages (host, task, message) and progress lines:
one line on stderr as each task starts on a host, with the seconds since the
run began.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from depcon.paths import repo_root


def _bytecode(path: Path) -> bool:
    # Python writes these beside the sources it imports (a test run, the proof's judge):
    # they are nobody's edit and must not re-run a host component.
    return path.suffix == ".pyc" or "__pycache__" in path.parts


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
            files.extend(p for p in path.rglob("*") if p.is_file() and not _bytecode(p))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"ansible input {path} does not exist")
    for file in sorted(set(files)):
        rel = file.relative_to(root) if file.is_relative_to(root) else file
        digest.update(str(rel).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


_FAILURE_EVENTS = ("runner_item_on_failed", "runner_on_failed", "runner_on_unreachable")


class PlaybookError(RuntimeError):
    pass


# Ansible's own, and Mitogen's: one Python per host kept open for the whole
# run instead of one started per task (make bench-ansible measures both).
STRATEGIES = ("linear", "mitogen_linear")


def strategy_env(strategy: str) -> dict[str, str]:
    """The environment that makes ansible-playbook run plays with ``strategy``."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Ansible strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if strategy == "linear":
        return {"ANSIBLE_STRATEGY": "linear"}
    spec = importlib.util.find_spec("ansible_mitogen")
    if spec is None or spec.origin is None:
        raise ValueError(f"Ansible strategy {strategy}: mitogen is not installed (scripts/setup)")
    plugins = Path(spec.origin).parent / "plugins" / "strategy"
    return {"ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": strategy}


def _tail(result: Any, lines: int = 15) -> str:
    """The end of the run's output, for failures that produced no task event."""
    try:
        text = result.stdout.read()
    except (AttributeError, OSError, ValueError):
        return ""
    return " | ".join(str(text).strip().splitlines()[-lines:])


def failure_message(res: Mapping[str, Any], limit: int = 500) -> str:
    """A failed task's message; a command's own last stderr (or stdout) lines with it,
    since Ansible's message for those is only "non-zero return code"."""
    msg = str(res.get("msg") or res.get("censored", ""))
    if "rc" in res:
        said = str(res.get("stderr") or res.get("stdout") or "").strip().splitlines()
        if said:
            msg += f" (rc {res['rc']}): " + " | ".join(said[-3:])
    return " ".join(msg.split())[:limit]


def _progress_line(event: dict[str, Any], started: float) -> str | None:
    """What a person watching a long run wants to see of one ansible-runner event."""
    data = event.get("event_data", {})
    kind = event.get("event")
    host = data.get("host") or data.get("remote_addr") or ""
    task = f"{data['role']} : {data.get('task', '')}" if data.get("role") else data.get("task", "")
    at = f"+{time.monotonic() - started:5.0f}s"
    if kind == "playbook_on_play_start":
        return f"[ansible {at}] PLAY {data.get('play', '')}"
    if kind == "runner_on_start":
        return f"[ansible {at}] {host}: {task}"
    if kind in _FAILURE_EVENTS and not data.get("ignore_errors"):
        return f"[ansible {at}] FAILED {host}: {task}: {failure_message(data.get('res', {}))}"
    return None


def run_playbook(
    playbook: str,
    inventory: str,
    extra_vars: dict[str, str],
    progress: Callable[[str], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run one playbook to completion; return its per-host stats or raise.

    ``progress`` gets a line as each task starts on a host, and on failures;
    ``env`` is the run's environment (default: this process's).
    """
    import ansible_runner  # noqa: PLC0415 -- heavy; imported only where a run happens

    root = repo_root()
    # ansible-playbook must be the .venv's, next to the interpreter running us.
    run_env = dict(os.environ if env is None else env)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env.get('PATH', '')}"
    run_env["ANSIBLE_CONFIG"] = str(root / "ansible.cfg")
    started = time.monotonic()

    def on_event(event: dict[str, Any]) -> bool:
        line = _progress_line(event, started)
        if line and progress:
            progress(line)
        return True

    with tempfile.TemporaryDirectory(prefix="depcon-ansible-") as private:
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(root),
            playbook=str(root / playbook),
            inventory=str(root / inventory),
            extravars=extra_vars,
            envvars=run_env,
            quiet=True,
            event_handler=on_event,
        )
        # Loop items fail one by one (runner_item_on_failed) under a task-level
        # "One or more items failed"; the item messages are the useful ones.
        failures = [
            f"{ev['event_data'].get('host')}: {ev['event_data'].get('task')}: "
            f"{failure_message(ev['event_data'].get('res', {}))}"
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
            "seconds": round(time.monotonic() - started),
        }


def run_playbook_isolated(
    playbook: str,
    inventory: str,
    extra_vars: dict[str, str],
    progress: Callable[[str], None] | None = None,
    strategy: str = "linear",
) -> dict[str, Any]:
    """:func:`run_playbook` in a fresh Python process (``python -m depcon.ansible_run``).

    The dynamic provider runs inside Pulumi's gRPC server. ansible-runner
    forks a pty for ansible-playbook, and gRPC's fork handlers in that child
    sometimes kill the run before it starts (seen in CI: rc None, "epoll_wait
    error: Bad file descriptor"). A child started with subprocess execs at
    once, so the fork happens in a process without gRPC. Its progress lines
    arrive on its stderr as they happen.
    """
    argv = [sys.executable, "-m", "depcon.ansible_run", playbook, inventory, json.dumps(extra_vars)]
    last = ""
    with subprocess.Popen(
        argv,
        cwd=repo_root(),
        env=os.environ | strategy_env(strategy),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        for raw in proc.stderr:
            line = raw.rstrip("\n")
            if line.startswith("[ansible ") and progress:
                progress(line)
            elif line.strip():
                last = line
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise PlaybookError(last or f"{playbook}: exit {proc.returncode}")
    stats: dict[str, Any] = json.loads(out)
    return stats


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m depcon.ansible_run PLAYBOOK INVENTORY EXTRA_VARS_JSON``: stats as JSON."""
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 3:
        print(
            "usage: python -m depcon.ansible_run PLAYBOOK INVENTORY EXTRA_VARS_JSON",
            file=sys.stderr,
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
        stats = run_playbook(playbook, inventory, extra_vars, progress=_to_stderr)
    except PlaybookError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return 1
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
