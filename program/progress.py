"""Each Ansible task on the `pulumi up` display as it starts.

A dynamic provider runs outside the program and cannot log to the engine; the
engine keeps its stderr to itself. So the provider appends its progress lines
(``infra/ansible_run.py``) to a file per stack, and the program, which lives
until the last resource is done, relays each new line to the engine as an
info message on the stack.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pulumi

from infra.paths import repo_root


def progress_file(stack: str) -> Path:
    return repo_root() / ".lab" / "progress" / f"{stack}.log"


def append(path: str | None, line: str) -> None:
    """The provider's side: one line, flushed at once."""
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def relay(path: Path, poll_s: float = 0.5) -> None:
    """The program's side: from now on, every line added to ``path`` goes to the engine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")

    def run() -> None:
        offset = 0
        while True:
            with path.open(encoding="utf-8") as f:
                f.seek(offset)
                for line in f:
                    if line.endswith("\n"):
                        pulumi.log.info(line.rstrip("\n"), ephemeral=True)
                        offset += len(line.encode())
            time.sleep(poll_s)

    threading.Thread(target=run, name="depcon-progress", daemon=True).start()
