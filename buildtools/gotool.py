"""The pinned Go toolchain for every build tool: module downloads with their sum check, builds.

The bundle, the kubelet patch and the Pulumi engine all fetch Go modules
through the proxy and build them; they do it through these functions, each
raising its own error type (``error=``) so its command line reports it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ErrorType = type[Exception]


class GoError(RuntimeError):
    """The Go toolchain failed or a module is not the pinned one."""


@dataclass(frozen=True)
class Module:
    """A downloaded module in the Go module cache (read-only)."""

    path: str
    version: str
    dir: Path
    zip: Path
    gomod: Path
    sum: str  # go.sum hash of the zip, as the go command reports it
    gomod_sum: str


def go_env(
    *,
    cgo: bool = False,
    nosum: Sequence[str] = (),
    jobs: int | None = None,
    mod: str = "mod",
) -> dict[str, str]:
    """The environment of every go command: the local toolchain, sums checked.

    ``nosum`` names modules sum.golang.org does not answer for; the caller
    checks those against its own pins with :func:`check_sum`. ``mod="mod"``
    (for upstream trees) records sums missing from upstream's go.sum, each
    checked against sum.golang.org like any dependency; a module of this
    repository builds with ``"readonly"``, its go.sum as committed.
    """
    env = dict(os.environ)
    # Module trees carry go.work files naming directories the module zip lacks.
    env["GOWORK"] = "off"
    flags = [f"-mod={mod}", "-buildvcs=false"]
    if jobs is not None:
        flags.insert(1, f"-p={jobs}")
    env["GOFLAGS"] = " ".join(flags)
    env["GONOSUMDB"] = ",".join(p for p in (env.get("GONOSUMDB", ""), *nosum) if p)
    env["GOTOOLCHAIN"] = "local"
    env["CGO_ENABLED"] = "1" if cgo else "0"
    return env


def go_version(*, error: ErrorType = GoError) -> str:
    """``go env GOVERSION``, which every build key includes."""
    try:
        out = subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise error("the Go toolchain (go) is required: run `make setup`") from exc
    return out.stdout.strip()


_FETCH_ERROR = re.compile(r"([A-Za-z0-9.-]+\.[A-Za-z]+/[^\s@:]+)@(v[0-9][^\s:]*): (.+)")


def run(
    argv: Sequence[str],
    cwd: Path,
    what: str,
    env: Mapping[str, str],
    *,
    error: ErrorType = GoError,
) -> str:
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
            raise error(
                f"{what}: cannot fetch Go module {m.group(1)}@{m.group(2)} through the "
                f"module proxy: {m.group(3)}"
            )
    tail = "\n".join(output.splitlines()[-25:])
    raise error(f"{what} failed ({shlex.join(argv)}):\n{tail}")


def download(
    modules: Sequence[tuple[str, str]],
    cwd: Path,
    env: Mapping[str, str],
    *,
    error: ErrorType = GoError,
) -> dict[str, Module]:
    """Fetch modules through the proxy up front, so a missing one is named clearly."""
    try:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", *(f"{m}@{v}" for m, v in modules)],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as exc:
        raise error("go is not on PATH: run `make setup`") from exc
    answers: dict[str, dict[str, object]] = {}
    decoder, text, pos = json.JSONDecoder(), proc.stdout, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        obj, pos = decoder.raw_decode(text, pos)
        if isinstance(obj, dict):
            answers[str(obj.get("Path"))] = obj
    found: dict[str, Module] = {}
    for module, version in modules:
        info = answers.get(module)
        if info is None or info.get("Error") or not info.get("Dir"):
            detail = (info or {}).get("Error") or proc.stderr.strip() or "no answer"
            raise error(
                f"cannot fetch Go module {module}@{version} through the module proxy: {detail}"
            )
        found[module] = Module(
            path=module,
            version=version,
            dir=Path(str(info["Dir"])),
            zip=Path(str(info.get("Zip", ""))),
            gomod=Path(str(info.get("GoMod", ""))),
            sum=str(info.get("Sum", "")),
            gomod_sum=str(info.get("GoModSum", "")),
        )
    return found


def download_one(
    module: str, version: str, cwd: Path, env: Mapping[str, str], *, error: ErrorType = GoError
) -> Module:
    return download([(module, version)], cwd, env, error=error)[module]


def module_h1(zip_path: Path, *, error: ErrorType = GoError) -> str:
    """The go.sum ``h1:`` hash of a module zip (golang.org/x/mod/sumdb/dirhash Hash1)."""
    summary = hashlib.sha256()
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            if "\n" in name:
                raise error(f"{zip_path}: file name with a newline: {name!r}")
            digest = hashlib.sha256(zf.read(name)).hexdigest()
            summary.update(f"{digest}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def check_sum(
    mod: Module, pin: str, want: str, *, gomod: bool = False, error: ErrorType = GoError
) -> None:
    """Refuse a module whose hash is not the one versions.yml pins under ``pin``.

    The zip is hashed here rather than trusting the go command's answer, so a
    module the checksum database does not know is still checked byte for byte.
    """
    got = mod.gomod_sum if gomod else module_h1(mod.zip, error=error)
    if got != want:
        what = "go.mod hash" if gomod else "zip hash"
        raise error(
            f"{mod.path}@{mod.version}: {what} {got} does not match {pin}: "
            f"versions.yml {pin} pins {want}"
        )
