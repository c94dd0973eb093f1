"""Building each part of the bundle from its pinned source."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from buildtools import gotool
from buildtools.artifacts.cache import _part_dir, _sha256
from buildtools.artifacts.recipes import (
    COREDNS_MODULE,
    ETCD_MODULES,
    KUBE_TAGS,
    ArtifactError,
    Part,
    Plan,
    Program,
    _kubernetes_source,
    log,
)
from buildtools.kubelet_patch import (
    PatchError,
    apply_series,
    download_kubernetes,
    series,
    use_published_staging,
    writable_copy,
)
from depcon.config import EtcdPin
from depcon.paths import staged

# --- the Go toolchain, as the bundle runs it -------------------------------------------


def _go_env(cgo: bool) -> dict[str, str]:
    # sum.golang.org does not answer for k8s.io/kubernetes; it is the main
    # module here anyway, verified against kubernetes.module_sum before use.
    return gotool.go_env(cgo=cgo, nosum=("k8s.io/kubernetes",))


def _run(argv: Sequence[str], cwd: Path, what: str, env: Mapping[str, str]) -> str:
    return gotool.run(argv, cwd, what, env, error=ArtifactError)


def _go_download(modules: Sequence[tuple[str, str]], cwd: Path) -> dict[str, gotool.Module]:
    return gotool.download(modules, cwd, _go_env(cgo=False), error=ArtifactError)


def _required_staging(tree: Path, replaced: Sequence[str]) -> list[str]:
    gomod = (tree / "go.mod").read_text()
    return [m for m in replaced if re.search(rf"^\s*(require\s+)?{re.escape(m)} v", gomod, re.M)]


# --- building the parts ----------------------------------------------------------------


class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0

    def step(self, verb: str, name: str) -> None:
        self.done += 1
        log(f"{verb} {name} ({self.done}/{self.total})...")


def _kubernetes_tree(p: Plan, work: Path, patched: bool) -> Path:
    pin = p.versions.kubernetes
    try:
        src = download_kubernetes(pin.version, pin.module_sum)
        tree = work / ("kubernetes-patched" if patched else "kubernetes")
        if patched:
            log(f"applying {len(series())} kubelet patches to a copy of {pin.module}@{pin.version}")
            apply_series(src.dir, tree)
        else:
            log(f"copying {pin.module}@{pin.version} out of the read-only module cache")
            writable_copy(src.dir, tree)
        replaced = use_published_staging(tree, pin.staging_version)
    except PatchError as exc:
        raise ArtifactError(str(exc)) from exc
    needed = _required_staging(tree, replaced)
    log(f"fetching {len(needed)} staging modules at {pin.staging_version}")
    _go_download([(m, pin.staging_version) for m in needed], tree)
    return tree


def _go_build(
    tree: Path, program: Program, out: Path, *, ldflags: str, tags: str | None, what: str
) -> None:
    argv = ["go", "build", "-trimpath"]
    if tags:
        argv += ["-tags", tags]
    argv += ["-ldflags", ldflags, "-o", str(out / program.name), program.package]
    _run(argv, tree, what, _go_env(program.cgo))


def _build_kubernetes(part: Part, p: Plan, work: Path, out: Path, progress: _Progress) -> None:
    pin = p.versions.kubernetes
    tree = _kubernetes_tree(p, work, patched=part.name == "kubelet-depcon")
    for program in part.programs:
        progress.step("building", program.name)
        started = time.monotonic()
        _go_build(
            tree,
            program,
            out,
            ldflags=str(part.recipe["ldflags"]),
            tags=KUBE_TAGS,
            what=f"building {program.name} from {pin.module}@{pin.version}",
        )
        log(f"  {program.name}: {time.monotonic() - started:.0f} s")


def _build_pause(part: Part, p: Plan, work: Path, out: Path, progress: _Progress) -> None:
    pin = p.versions.kubernetes
    src = _kubernetes_source(pin)
    makefile = (src.dir / "build" / "pause" / "Makefile").read_text()
    tag = re.search(r"^TAG \?= (\S+)$", makefile, re.MULTILINE)
    if not tag or tag.group(1) != pin.pause_version:
        raise ArtifactError(
            f"{pin.module}@{pin.version} build/pause/Makefile has TAG "
            f"{tag.group(1) if tag else '?'}, versions.yml kubernetes.pause_version is "
            f"{pin.pause_version}: pin the pause version kubeadm {pin.version} uses"
        )
    progress.step("building", "pause")
    source = work / "pause.c"
    shutil.copyfile(src.dir / "build" / "pause" / "linux" / "pause.c", source)
    _run(
        ["gcc", *part.recipe["cflags"], "-o", str(out / "pause"), "pause.c"],
        work,
        "compiling pause",
        dict(os.environ),
    )


def _build_etcd(part: Part, p: Plan, work: Path, out: Path, progress: _Progress) -> None:
    pin: EtcdPin = p.versions.etcd
    d = work / "etcd"
    d.mkdir()
    found = _go_download([(m, pin.version) for m in ETCD_MODULES], d)
    server = found[pin.module]
    gotool.check_sum(server, "etcd.module_sum", pin.module_sum, error=ArtifactError)
    # server/v3's go.mod replaces its sibling modules with ../api etc., which
    # only act in etcd's own checkout. A wrapper main module requiring all of
    # them at the one release builds the same code from the published modules.
    go_line = re.search(r"^go (\S+)$", server.gomod.read_text(), re.MULTILINE)
    requires = "\n".join(f"\t{m} {pin.version}" for m in ETCD_MODULES)
    (d / "go.mod").write_text(
        f"module depcon.local/etcd\n\ngo {go_line.group(1) if go_line else '1.24'}\n\n"
        f"require (\n{requires}\n)\n"
    )
    for program in part.programs:
        progress.step("building", program.name)
        _go_build(
            d,
            program,
            out,
            ldflags=str(part.recipe["ldflags"]),
            tags=None,
            what=f"building {program.name} from {program.package}@{pin.version}",
        )


def _build_coredns(part: Part, p: Plan, work: Path, out: Path, progress: _Progress) -> None:
    version = p.versions.kubernetes.coredns_version
    found = _go_download([(COREDNS_MODULE, version)], work)
    # CoreDNS is its own main module (Makefile: CGO_ENABLED=0 go build); built
    # in a writable copy because go -mod=mod may update its go.sum.
    d = work / "coredns"
    shutil.copytree(found[COREDNS_MODULE].dir, d)
    for path in [d, *d.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    progress.step("building", "coredns")
    _go_build(
        d,
        part.programs[0],
        out,
        ldflags=str(part.recipe["ldflags"]),
        tags=None,
        what=f"building coredns from {COREDNS_MODULE}@{version}",
    )


def _build_netperf(part: Part, p: Plan, work: Path, out: Path, progress: _Progress) -> None:
    """netperf's and libc6's files out of their Debian packages (apt checks the archive)."""
    pin = p.versions.netperf
    progress.step("unpacking", "netperf")
    _run(
        ["apt-get", "download", str(part.recipe["package"]), f"libc6={part.recipe['libc6']}"],
        work,
        "apt-get download netperf and libc6 (run scripts/setup: it enables non-free)",
        dict(os.environ),
    )
    root = work / "root"
    for deb in sorted(work.glob("*.deb")):
        got = _sha256(deb)
        if deb.name.startswith(f"{pin.package}_") and got != pin.sha256:
            raise ArtifactError(
                f"{deb.name} has sha256 {got}, versions.yml netperf.sha256 pins {pin.sha256}"
            )
        _run(
            ["dpkg-deb", "--extract", str(deb), str(root)],
            work,
            f"unpacking {deb.name}",
            dict(os.environ),
        )
    for program in part.programs:
        progress.step("copying", program.name)
        # The loader is a symlink into lib/ in some layouts: copy what it points to.
        shutil.copyfile(root / program.package, out / program.name, follow_symlinks=True)


def _build_containerd(part: Part, p: Plan, work: Path, out: Path, progress: _Progress) -> None:
    pin = p.versions.containerd
    found = _go_download([(pin.module, pin.version)], work)[pin.module]
    gotool.check_sum(found, "containerd.module_sum", pin.module_sum, error=ArtifactError)
    gotool.check_sum(
        found, "containerd.module_gomod_sum", pin.module_gomod_sum, gomod=True, error=ArtifactError
    )
    # containerd is its own main module, built as its Makefile does from the
    # root; a writable copy because go -mod=mod may touch go.sum.
    d = work / "containerd"
    shutil.copytree(found.dir, d)
    for path in [d, *d.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    flags: Mapping[str, Sequence[str]] = part.recipe["flags"]
    for program in part.programs:
        progress.step("building", program.name)
        started = time.monotonic()
        argv = ["go", "build", "-trimpath", *flags[program.name]]
        argv += ["-o", str(out / program.name), program.package]
        _run(
            argv,
            d,
            f"building {program.name} from {pin.module}@{pin.version}",
            _go_env(program.cgo),
        )
        log(f"  {program.name}: {time.monotonic() - started:.0f} s")


_BUILDERS: dict[str, Callable[[Part, Plan, Path, Path, _Progress], None]] = {
    "kubernetes": _build_kubernetes,
    "kubelet": _build_kubernetes,
    "kubelet-depcon": _build_kubernetes,
    "kube-proxy": _build_kubernetes,
    "pause": _build_pause,
    "etcd": _build_etcd,
    "containerd": _build_containerd,
    "coredns": _build_coredns,
    "netperf": _build_netperf,
}


def _ensure_part(part: Part, p: Plan, progress: _Progress) -> Path:
    final = _part_dir(part)
    if (final / "part.json").is_file():
        for program in part.programs:
            progress.step("cached", program.name)
        return final
    started = time.monotonic()
    with staged(final) as tmp:
        out, work = tmp / "bin", tmp / "work"
        out.mkdir()
        work.mkdir()
        _BUILDERS[part.name](part, p, work, out, progress)
        shutil.rmtree(work)
        record = {"recipe": part.recipe, "seconds": round(time.monotonic() - started)}
        (tmp / "part.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"{part.name}: built in {time.monotonic() - started:.0f} s")
    return final
