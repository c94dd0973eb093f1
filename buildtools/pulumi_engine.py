"""Build the Pulumi engine (CLI, Python language host, Kubernetes plugin) locally.

`pulumi up` needs three Go binaries that are not on PyPI (the `pulumi` and
`pulumi-kubernetes` wheels are SDKs only) and cannot be downloaded from the
projects' websites on this network. Only the Go module proxy is reachable, so
they are built here from Go modules, at the versions matching the locked
Python SDKs:

* the CLI from `github.com/pulumi/pulumi/pkg/v3` (main `pkg/cmd/pulumi`);
* the Python language host from `buildtools/engine/langhost` (our own small host on
  top of `github.com/pulumi/pulumi/sdk/v3`, because the proxy serves none of
  the upstream host module's pseudo-versions; see that file);
* the Kubernetes resource plugin from `github.com/pulumi/pulumi-kubernetes/
  provider/v4` (main `cmd/pulumi-resource-kubernetes`).

Usage::

    python -m buildtools.pulumi_engine build   # build, or reuse the cached build
    eval "$(python -m buildtools.pulumi_engine env)"   # PATH, PULUMI_HOME, ...

The result is cached under `cache_dir()/pulumi/<V>-<W>-<hash>`, the hash
covering this file, `buildtools/gotool.py`, `buildtools/engine/` and the pins, so a warm run
does nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from buildtools import gotool
from buildtools.gotool import Module
from depcon.config import ConfigError, PulumiKubernetesSums, PulumiSdkSums, load_versions
from depcon.paths import cache_dir, idle, mark_used, repo_root, staged

T = TypeVar("T")

LOG_PREFIX = "[pulumi-engine]"

PKG_MODULE = "github.com/pulumi/pulumi/pkg/v3"
SDK_MODULE = "github.com/pulumi/pulumi/sdk/v3"
K8S_PROVIDER_MODULE = "github.com/pulumi/pulumi-kubernetes/provider/v4"
K8S_SDK_MODULE = "github.com/pulumi/pulumi-kubernetes/sdk/v4"
CLI_MAIN = PKG_MODULE + "/cmd/pulumi"
CLI_VERSION_VAR = SDK_MODULE + "/go/common/version.Version"
K8S_VERSION_VAR = K8S_PROVIDER_MODULE + "/pkg/version.Version"

# The provider's pseudo-versions are not in sum.golang.org, so the go command
# must not ask it; those modules are checked against our own pinned h1: hashes
# instead (see _verify_sum).
GONOSUMDB = "github.com/pulumi/pulumi-kubernetes/provider"

# Launcher scripts shipped in the SDK module that the CLI distribution puts
# next to the binaries: the language host runs programs through the first,
# the engine starts Python dynamic providers through the second.
SDK_SCRIPTS = (
    "python/cmd/pulumi-language-python-exec",
    "python/dist/pulumi-resource-pulumi-python",
)

# Rough cold-build times on the 2-core lab machine, shown so a long silent
# build does not look hung.
COLD_MINUTES = {"cli": 12, "langhost": 2, "kubernetes": 10}


class EngineError(RuntimeError):
    """A build step failed; the message names the module and version."""


@dataclass(frozen=True)
class EnginePins:
    """The locked SDK versions and the checksums versions.yml holds for them."""

    pulumi: str  # "3.257.0", as the SDK on PyPI
    kubernetes: str  # "4.25.0", the pulumi-kubernetes SDK on PyPI
    pulumi_sums: PulumiSdkSums
    kubernetes_sums: PulumiKubernetesSums


@dataclass(frozen=True)
class Engine:
    """Where a finished build lives."""

    root: Path  # cache entry
    pulumi_home: Path

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"

    @property
    def cli(self) -> Path:
        return self.bin_dir / "pulumi"

    @property
    def language_host(self) -> Path:
        return self.bin_dir / "pulumi-language-python"


def log(message: str) -> None:
    # stderr, so `env` output on stdout stays pure shell for `eval`.
    print(f"{LOG_PREFIX} {message}", file=sys.stderr, flush=True)


# --- versions -----------------------------------------------------------------

_LOCK_LINE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;#\\]+)")


def locked_versions(lock_file: Path) -> dict[str, str]:
    """`name==version` pins of a pip-compile style lock file, names normalised."""
    pins: dict[str, str] = {}
    for line in lock_file.read_text(encoding="utf-8").splitlines():
        m = _LOCK_LINE.match(line)
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def sdk_version(package: str, override: str | None) -> str:
    """Version of a Python SDK: flag, else requirements.lock, else installed.

    The engine version is derived from the locked SDK, never written down a
    second time, so the CLI and plugins always match what the program imports.
    """
    if override:
        return override
    lock = repo_root() / "requirements.lock"
    if lock.is_file():
        pins = locked_versions(lock)
        if package in pins:
            return pins[package]
        raise EngineError(f"{lock} does not pin {package}")
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise EngineError(
            f"cannot tell which {package} version to build for: no requirements.lock "
            f"and {package} is not installed (or pass --{package}-version)"
        ) from exc


def _pinned(table: Mapping[str, T], section: str, version: str) -> T:
    if version not in table:
        known = ", ".join(sorted(table)) or "none"
        raise EngineError(
            f"{repo_root() / 'versions.yml'}: pulumi_engine.{section} has no checksums for "
            f"{version} (pinned: {known}); refusing to build an unverified version"
        )
    return table[version]


def load_pins(pulumi_version: str, kubernetes_version: str) -> EnginePins:
    try:
        table = load_versions().pulumi_engine
    except ConfigError as exc:
        raise EngineError(str(exc)) from exc
    return EnginePins(
        pulumi=pulumi_version,
        kubernetes=kubernetes_version,
        pulumi_sums=_pinned(table.pulumi, "pulumi", pulumi_version),
        kubernetes_sums=_pinned(table.pulumi_kubernetes, "pulumi_kubernetes", kubernetes_version),
    )


# --- cache layout ---------------------------------------------------------------


def _engine_sources() -> list[Path]:
    """Files whose content decides what gets built (hashed into the cache key)."""
    engine_dir = repo_root() / "buildtools" / "engine"
    files = [Path(__file__).resolve(), Path(gotool.__file__).resolve()]
    if engine_dir.is_dir():
        files += sorted(p for p in engine_dir.rglob("*") if p.is_file())
    return files


def cache_key(pins: EnginePins) -> str:
    h = hashlib.sha256()
    for f in _engine_sources():
        h.update(f.relative_to(repo_root()).as_posix().encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    h.update(json.dumps(asdict(pins), sort_keys=True).encode())
    h.update(go_version().encode())
    return h.hexdigest()[:16]


def pulumi_home() -> Path:
    return cache_dir() / "pulumi-home"


def engine_for(pins: EnginePins) -> Engine:
    root = cache_dir() / "pulumi" / f"{pins.pulumi}-{pins.kubernetes}-{cache_key(pins)}"
    return Engine(root=root, pulumi_home=pulumi_home())


def plugin_dir(home: Path, version: str) -> Path:
    # The CLI looks plugins up as <PULUMI_HOME>/plugins/<kind>-<name>-v<semver>/
    # holding pulumi-<kind>-<name>; a sibling "<dir>.partial" marks an
    # unfinished install, so the directory only ever appears complete.
    return home / "plugins" / f"resource-kubernetes-v{version}"


# --- go helpers -----------------------------------------------------------------


def go_version() -> str:
    return gotool.go_version(error=EngineError)


def _go_env() -> dict[str, str]:
    # -p=2 because the lab machine has two shared cores.
    return gotool.go_env(nosum=(GONOSUMDB,), jobs=2)


def _run(cmd: Sequence[str], cwd: Path, what: str, env: Mapping[str, str] | None = None) -> str:
    return gotool.run(cmd, cwd, what, env or _go_env(), error=EngineError)


def go_download(module: str, version: str, work: Path) -> Module:
    """Fetch a module through the proxy and return where it landed."""
    return gotool.download_one(module, version, work, _go_env(), error=EngineError)


def _verify_sum(mod: Module, pin: str, pinned: str, *, gomod: bool = False) -> None:
    gotool.check_sum(mod, f"pulumi_engine.{pin}", pinned, gomod=gomod, error=EngineError)


def _sum_lines(mod: Module) -> str:
    # Our pinned hashes go into the wrapper go.sum, so `go build` itself
    # re-checks the module it compiles against them.
    return f"{mod.path} {mod.version} {mod.sum}\n{mod.path} {mod.version}/go.mod {mod.gomod_sum}\n"


_LOCAL_REPLACE = re.compile(r"^replace\s+\S+(\s+\S+)?\s+=>\s+\.{1,2}/.*$", re.MULTILINE)


def _wrapper_gomod(upstream_gomod: str, module: str, extra: str) -> str:
    """Upstream go.mod turned into a wrapper main module.

    `go install pkg@version` refuses modules whose go.mod has replace
    directives, and replace directives only act in the main module. So the
    wrapper is upstream's go.mod under a new module path: the requirement
    versions and the non-local replaces (forks such as the clipboard one) stay
    exactly upstream's, and the local `=> ../sdk` replaces are dropped in
    favour of the published module at the same version.
    """
    text = re.sub(r"^module\s+\S+", f"module {module}", upstream_gomod, count=1, flags=re.MULTILINE)
    text = _LOCAL_REPLACE.sub("", text)
    return text + "\n" + extra


def _nonlocal_replaces(gomod: str) -> list[str]:
    return [
        line
        for line in gomod.splitlines()
        if line.startswith("replace ") and "=>" in line and not _LOCAL_REPLACE.match(line)
    ]


# --- build steps -----------------------------------------------------------------


def _build_cli(version: str, pkg: Module, sdk: Module, work: Path, out: Path) -> None:
    log(f"building CLI v{version} (cold build, ~{COLD_MINUTES['cli']} min)")
    d = work / "cli"
    d.mkdir()
    pkg_mod = (pkg.dir / "go.mod").read_text(encoding="utf-8")
    sdk_mod = (sdk.dir / "go.mod").read_text(encoding="utf-8")
    # The SDK's own replaces (e.g. a golang.org/x/text pin) must apply too,
    # since in upstream's tree the SDK is built from ../sdk with its go.mod.
    extra = [r for r in _nonlocal_replaces(sdk_mod) if r not in pkg_mod]
    extra.append(f"require {PKG_MODULE} v{version}")
    (d / "go.mod").write_text(
        _wrapper_gomod(pkg_mod, "depcon.local/engine/cli", "\n".join(extra) + "\n")
    )
    sums = (pkg.dir / "go.sum").read_text() + (sdk.dir / "go.sum").read_text()
    (d / "go.sum").write_text(sums + _sum_lines(pkg) + _sum_lines(sdk))
    # A blank import makes the dependency's main package part of this module's
    # build graph.
    (d / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{CLI_MAIN}"\n')
    ldflags = f"-s -w -X {CLI_VERSION_VAR}=v{version}"
    _run(
        ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(out / "pulumi"), CLI_MAIN],
        d,
        f"building the Pulumi CLI ({CLI_MAIN}@v{version})",
    )


def _build_langhost(version: str, sdk: Module, work: Path, out: Path) -> None:
    log(f"building Python language host v{version} (~{COLD_MINUTES['langhost']} min)")
    d = work / "langhost"
    d.mkdir()
    sdk_mod = (sdk.dir / "go.mod").read_text(encoding="utf-8")
    extra = f"require {SDK_MODULE} v{version}\n"
    (d / "go.mod").write_text(_wrapper_gomod(sdk_mod, "depcon.local/engine/langhost", extra))
    (d / "go.sum").write_text((sdk.dir / "go.sum").read_text() + _sum_lines(sdk))
    shutil.copy2(repo_root() / "buildtools" / "engine" / "langhost" / "main.go", d / "main.go")
    _run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            f"-s -w -X main.version={version}",
            "-o",
            str(out / "pulumi-language-python"),
            ".",
        ],
        d,
        f"building the Python language host against {SDK_MODULE}@v{version}",
    )
    for rel in SDK_SCRIPTS:
        target = out / Path(rel).name
        shutil.copyfile(sdk.dir / rel, target)
        target.chmod(0o755)


def _build_kubernetes_plugin(
    version: str, pin: PulumiKubernetesSums, work: Path, out: Path
) -> None:
    log(
        f"building Kubernetes plugin v{version} from {K8S_PROVIDER_MODULE}@"
        f"{pin.provider_version} (cold build, ~{COLD_MINUTES['kubernetes']} min)"
    )
    provider = go_download(K8S_PROVIDER_MODULE, pin.provider_version, work)
    where = f"pulumi_kubernetes.{version}"
    _verify_sum(provider, f"{where}.provider_sum", pin.provider_sum)
    k8s_sdk = go_download(K8S_SDK_MODULE, pin.sdk_version, work)
    _verify_sum(k8s_sdk, f"{where}.sdk_sum", pin.sdk_sum)
    _verify_sum(k8s_sdk, f"{where}.sdk_gomod_sum", pin.sdk_gomod_sum, gomod=True)

    # The provider is built as the main module (its own go.mod, go.sum and
    # replaces apply); the module cache is read-only, hence the copy.
    d = work / "provider"
    shutil.copytree(provider.dir, d)
    for p in [d, *d.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    gomod = (d / "go.mod").read_text(encoding="utf-8")
    # Upstream builds against the sdk/ directory of the same commit; the proxy
    # serves it only as releases, so use the pinned release instead.
    gomod = _LOCAL_REPLACE.sub("", gomod)
    gomod += f"\nreplace {K8S_SDK_MODULE} => {K8S_SDK_MODULE} {pin.sdk_version}\n"
    (d / "go.mod").write_text(gomod)
    with (d / "go.sum").open("a") as f:
        f.write(_sum_lines(k8s_sdk))

    # main.go embeds schema-embed.json and terraform-mapping-embed.json, made
    # upstream at build time by `go generate` (generate.go stamps VERSION into
    # schema.json and compacts both files); they are not in the module zip.
    env = _go_env()
    env["VERSION"] = version
    _run(
        ["go", "generate", "./cmd/pulumi-resource-kubernetes"],
        d,
        f"generating the embedded schema of {K8S_PROVIDER_MODULE}@{pin.provider_version}",
        env,
    )
    _run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            f"-s -w -X {K8S_VERSION_VAR}={version}",
            "-o",
            str(out / "pulumi-resource-kubernetes"),
            "./cmd/pulumi-resource-kubernetes",
        ],
        d,
        f"building the Kubernetes plugin ({K8S_PROVIDER_MODULE}@{pin.provider_version})",
    )


def _install_plugin(engine: Engine, version: str) -> None:
    """Put the Kubernetes plugin where the CLI looks for it (idempotent)."""
    src = engine.root / "plugins" / "pulumi-resource-kubernetes"
    dest_dir = plugin_dir(engine.pulumi_home, version)
    dest = dest_dir / "pulumi-resource-kubernetes"
    if dest.is_file() and _same_file(src, dest):
        return
    # A half-copied plugin must never be picked up.
    with staged(dest_dir) as tmp:
        shutil.copy2(src, tmp / dest.name)
    log(f"installed kubernetes plugin v{version} into {dest_dir}")


def _same_file(a: Path, b: Path) -> bool:
    # copy2 keeps the mtime, so size + mtime identify our own copy without
    # re-reading ~100 MB on every warm run.
    sa, sb = a.stat(), b.stat()
    return (sa.st_size, sa.st_mtime_ns) == (sb.st_size, sb.st_mtime_ns)


def build(pulumi_version: str | None = None, kubernetes_version: str | None = None) -> Engine:
    """Build (or reuse) the engine for the locked SDK versions."""
    v = sdk_version("pulumi", pulumi_version)
    w = sdk_version("pulumi-kubernetes", kubernetes_version)
    pins = load_pins(v, w)
    engine = engine_for(pins)
    if (engine.root / "manifest.json").is_file():
        log(f"using cached engine {engine.root}")
        mark_used(engine.root)  # another checkout's build keeps it (_prune_stale)
        _install_plugin(engine, w)
        return engine

    started = time.monotonic()
    with staged(engine.root) as out:
        work = out / "work"
        (out / "bin").mkdir()
        (out / "plugins").mkdir()
        work.mkdir()
        pkg = go_download(PKG_MODULE, f"v{v}", work)
        _verify_sum(pkg, f"pulumi.{v}.pkg_sum", pins.pulumi_sums.pkg_sum)
        sdk = go_download(SDK_MODULE, f"v{v}", work)
        _verify_sum(sdk, f"pulumi.{v}.sdk_sum", pins.pulumi_sums.sdk_sum)
        _build_cli(v, pkg, sdk, work, out / "bin")
        _build_langhost(v, sdk, work, out / "bin")
        _build_kubernetes_plugin(w, pins.kubernetes_sums, work, out / "plugins")
        manifest = {
            "pulumi": {"version": v, **asdict(pins.pulumi_sums)},
            "pulumi_kubernetes": {"version": w, **asdict(pins.kubernetes_sums)},
            "go": go_version(),
            "build_seconds": round(time.monotonic() - started),
        }
        shutil.rmtree(work)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    _prune_stale(engine)
    log(f"built engine in {time.monotonic() - started:.0f}s: {engine.root}")
    _install_plugin(engine, w)
    return engine


def _prune_stale(engine: Engine) -> None:
    """Drop builds of the same versions (a changed build script or Go) nobody used for a day.

    Each entry is ~440 MB. One used lately may be another checkout's, with a
    run going on it (a lab's `pulumi up`); entries of other versions are kept,
    so switching the lock back and forth stays warm.
    """
    prefix = engine.root.name.rsplit("-", 1)[0] + "-"
    for other in engine.root.parent.iterdir():
        if other != engine.root and other.name.startswith(prefix) and idle(other):
            log(f"removing stale build {other}")
            shutil.rmtree(other, ignore_errors=True)


def env_vars(engine: Engine) -> dict[str, str]:
    """Environment under which `pulumi` uses this engine and nothing else."""
    path = os.environ.get("PATH", "")
    return {
        "PATH": f"{engine.bin_dir}:{path}" if path else str(engine.bin_dir),
        "PULUMI_HOME": str(engine.pulumi_home),
        # The update check would try the network on every command.
        "PULUMI_SKIP_UPDATE_CHECK": "1",
    }


def find_engine(pulumi_version: str | None = None, kubernetes_version: str | None = None) -> Engine:
    """The cache entry for the locked versions, without building it."""
    v = sdk_version("pulumi", pulumi_version)
    w = sdk_version("pulumi-kubernetes", kubernetes_version)
    return engine_for(load_pins(v, w))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m buildtools.pulumi_engine", description="Build the Pulumi engine locally."
    )
    parser.add_argument("command", choices=["build", "env"])
    parser.add_argument("--pulumi-version", help="override the locked pulumi SDK version")
    parser.add_argument(
        "--pulumi-kubernetes-version", help="override the locked pulumi-kubernetes version"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            engine = build(args.pulumi_version, args.pulumi_kubernetes_version)
            print(engine.root)
        else:
            # `env` builds if needed, so `eval "$(... env)"` is all a caller needs.
            engine = build(args.pulumi_version, args.pulumi_kubernetes_version)
            for key, value in env_vars(engine).items():
                print(f"export {key}={shlex.quote(value)}")
    except EngineError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
