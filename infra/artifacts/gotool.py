"""Running the pinned Go toolchain: module downloads with their sum check, builds."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.artifacts.recipes import ArtifactError

# --- running the Go toolchain --------------------------------------------------------


def _go_env(cgo: bool) -> dict[str, str]:
    env = dict(os.environ)
    # The trees carry a go.work naming directories the module zip lacks.
    env["GOWORK"] = "off"
    # -mod=mod: published staging modules' sums are not in upstream's go.sum;
    # they are checked against sum.golang.org like any dependency.
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    # sum.golang.org does not answer for k8s.io/kubernetes; it is the main
    # module here anyway, verified against kubernetes.module_sum before use.
    nosum = [p for p in (env.get("GONOSUMDB", ""), "k8s.io/kubernetes") if p]
    env["GONOSUMDB"] = ",".join(nosum)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "1" if cgo else "0"
    return env


_FETCH_ERROR = re.compile(r"([A-Za-z0-9.-]+\.[A-Za-z]+/[^\s@:]+)@(v[0-9][^\s:]*): (.+)")


def _run(argv: Sequence[str], cwd: Path, what: str, env: Mapping[str, str]) -> str:
    """Run a niced build command; a module it cannot fetch is named in the error."""
    proc = subprocess.run(
        ["nice", "-n", "10", *argv],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0:
        return proc.stdout
    output = (proc.stderr or proc.stdout).strip()
    for line in output.splitlines():
        m = _FETCH_ERROR.search(line)
        if m and any(s in m.group(3) for s in ("reading", "404", "410", "not found", "verifying")):
            raise ArtifactError(
                f"{what}: cannot fetch Go module {m.group(1)}@{m.group(2)} through the "
                f"module proxy: {m.group(3)}"
            )
    tail = "\n".join(output.splitlines()[-25:])
    raise ArtifactError(f"{what} failed ({shlex.join(argv)}):\n{tail}")


def _go_download(modules: Sequence[tuple[str, str]], cwd: Path) -> dict[str, dict[str, Any]]:
    """Fetch modules through the proxy up front, so a missing one is named clearly."""
    args = [f"{m}@{v}" for m, v in modules]
    proc = subprocess.run(
        ["go", "mod", "download", "-json", *args],
        cwd=cwd,
        env=_go_env(cgo=False),
        capture_output=True,
        text=True,
        check=False,
    )
    found: dict[str, dict[str, Any]] = {}
    decoder, text, pos = json.JSONDecoder(), proc.stdout, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        if isinstance(obj, dict):
            found[str(obj.get("Path"))] = obj
    for module, version in modules:
        info = found.get(module)
        if info is None or info.get("Error"):
            detail = (info or {}).get("Error") or proc.stderr.strip() or "no answer"
            raise ArtifactError(
                f"cannot fetch Go module {module}@{version} through the module proxy: {detail}"
            )
    return found


def _required_staging(tree: Path, replaced: Sequence[str]) -> list[str]:
    gomod = (tree / "go.mod").read_text()
    return [m for m in replaced if re.search(rf"^\s*(require\s+)?{re.escape(m)} v", gomod, re.M)]
