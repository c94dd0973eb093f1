"""The offline Kubernetes bundle: pinned binaries, the patched kubelet, control-plane images.

Everything is built here from Go modules fetched through the module proxy
(the only source of Kubernetes this network reaches), at the pins in
``versions.yml``:

* ``k8s.io/kubernetes``: stock ``kubeadm``, ``kubectl``, ``kube-apiserver``,
  ``kube-controller-manager``, ``kube-scheduler``, ``kube-proxy`` (a host
  service on the nodes, role ``kube_proxy``) and the ``pause`` container
  program (``build/pause/linux/pause.c``, static, as upstream builds it);
* the same module's stock ``kubelet`` (``bin/kubelet``: what the kubernetes
  role installs, and what DepCon's rollback puts back), and with
  ``kubelet_patch/patches`` applied the DepCon kubelet (``depcon/kubelet``,
  version ``<pin>+depcon``), built alike so the patch is the only difference;
* ``go.etcd.io/etcd``: ``etcd`` and ``etcdctl``;
* ``github.com/containerd/containerd/v2``: ``containerd``,
  ``containerd-shim-runc-v2`` and ``ctr``, as upstream's ``make release``
  builds them (Debian 12 has only containerd 1.6; runc and the CNI plugins
  come from Debian, pinned in ``versions.yml``);
* ``github.com/coredns/coredns``: ``coredns`` (image only);
* Debian's pinned ``netperf`` package with the libc it links (image only):
  ``depcon.local/netperf``, the verification pods' image.

From those binaries it writes OCI image archives named and tagged exactly as
``kubeadm config images list`` prints them, without a container daemon: each
archive is an OCI image layout in a tar whose index carries the
``io.containerd.image.name`` annotation, so ``ctr images import`` names it.

Result: ``cache_dir()/artifacts/<version>-<patch hash>/`` with ``bin/``,
``depcon/``, ``images/``, ``manifest.json`` and ``SHA256SUMS``. The pieces are cached
separately under ``parts/``, each keyed by a hash of everything that decides
its bytes (pins, Go and gcc versions, flags, the patch series), so an
unchanged build does nothing and a changed patch rebuilds only the kubelet.

Command line::

    python -m infra.artifacts build   # build, or say "up to date"
    python -m infra.artifacts path    # the bundle directory
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from infra.config import EtcdPin, GoModulePin, KubernetesPin, Versions, load_versions
from infra.kubelet_patch import (
    KubernetesSource,
    PatchError,
    apply_series,
    download_kubernetes,
    series,
    use_published_staging,
    writable_copy,
)
from infra.paths import cache_dir

__all__ = [
    "MISSING_IMAGES",
    "ArtifactError",
    "Bundle",
    "build",
    "bundle_path",
    "expected_images",
    "plan",
]

LOG_PREFIX = "[artifacts]"

# Build tags of upstream's release builds (hack/lib/golang.sh, non-debug):
# selinux support, no test-only code, and grpc without x/net/trace so the
# linker can drop it.
KUBE_TAGS = "selinux,notest,grpcnotrace"
# The packages upstream stamps (hack/lib/version.sh kube::version::ldflags).
KUBE_VERSION_PACKAGES = ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
# Build metadata of the patched kubelet: kubeadm's kubelet version check
# (cmd/kubeadm/app/preflight/utils.go) accepts `[-\w.+]*` after X.Y.Z and
# compares only major/minor, so vX.Y.Z+depcon passes as X.Y.
KUBELET_BUILD_METADATA = "+depcon"
ETCD_SHA_VAR = "go.etcd.io/etcd/api/v3/version.GitSHA"
COREDNS_COMMIT_VAR = "github.com/coredns/coredns/coremain.GitCommit"
ETCD_MODULES = (
    "go.etcd.io/etcd/server/v3",
    "go.etcd.io/etcd/api/v3",
    "go.etcd.io/etcd/client/pkg/v3",
    "go.etcd.io/etcd/client/v3",
    "go.etcd.io/etcd/pkg/v3",
    "go.etcd.io/etcd/etcdctl/v3",
)
COREDNS_MODULE = "github.com/coredns/coredns"
NETPERF_IMAGE = "depcon.local/netperf"
# netperf/netserver from the pinned .deb and, from libc6's .deb, what they
# link (ldd: libc, libm and the loader): (file in the part, path in the .deb).
NETPERF_FILES = (
    ("netperf", "usr/bin/netperf"),
    ("netserver", "usr/bin/netserver"),
    ("libc.so.6", "lib/x86_64-linux-gnu/libc.so.6"),
    ("libm.so.6", "lib/x86_64-linux-gnu/libm.so.6"),
    ("ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
)
# containerd's Makefile: PACKAGE, stamped into <PACKAGE>/version.
CONTAINERD_PACKAGE = "github.com/containerd/containerd/v2"

# Images `kubeadm config images list` names that the bundle does not carry,
# with the reason. tests/integration/test_artifacts.py asserts that exactly
# these are missing.
MISSING_IMAGES: Mapping[str, str] = {
    "kube-proxy": (
        "upstream's image runs kube-proxy on a base carrying the iptables/nftables "
        "and conntrack userspace (distroless-iptables); a static base without them "
        "would be an image that cannot program a single rule, so bin/kube-proxy "
        "runs as a host service with the node's own iptables (role kube_proxy)"
    ),
}

# Bumped when the image layout written below changes (it is part of the
# images' cache key; the Go builds are keyed on their actual command lines).
IMAGE_FORMAT = 1
# Users of the minimal base layer, as in distroless (nonroot is 65532).
_PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
_GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"
# security.capability xattr value (struct vfs_cap_data, revision 2, effective
# bit set) granting cap_net_bind_service (10): what upstream's CoreDNS image
# gets from `setcap cap_net_bind_service=+ep /coredns`, so the nonroot
# process can bind port 53.
_CAP_NET_BIND_SERVICE = (
    (0x02000001).to_bytes(4, "little") + (1 << 10).to_bytes(4, "little") + bytes(12)
)


class ArtifactError(RuntimeError):
    """A build step failed; the message names the module and version or the file."""


def log(message: str) -> None:
    print(f"{LOG_PREFIX} {message}", flush=True)


# --- what gets built ---------------------------------------------------------------


@dataclass(frozen=True)
class Program:
    """One binary: its name, the package to build, and how upstream links it."""

    name: str
    package: str
    cgo: bool = False


@dataclass(frozen=True)
class Part:
    """A group of programs built from one source tree, cached under one key.

    ``recipe`` holds everything that decides the output bytes; the key is its
    hash, so the check "is it built?" needs no compiler run.
    """

    name: str
    programs: tuple[Program, ...]
    recipe: Mapping[str, Any]
    bundle_dir: str | None = "bin"  # where its programs go in the bundle; None: images only

    @property
    def key(self) -> str:
        return _hash_json(self.recipe)


@dataclass(frozen=True)
class Image:
    """A control-plane image: its reference and what goes into it."""

    ref: str  # registry/name:tag, as kubeadm looks it up
    files: tuple[tuple[str, str, str], ...]  # (part, program, path in the image)
    entrypoint: tuple[str, ...]
    user: str = "0"
    capabilities: Mapping[str, bytes] = field(default_factory=dict)  # path -> xattr
    dirs: tuple[str, ...] = ()  # directories the files need beyond the base layer

    @property
    def name(self) -> str:
        return self.ref.rsplit(":", 1)[0].split("/", 1)[1]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    @property
    def archive_name(self) -> str:
        return f"{self.name.replace('/', '_')}_{self.tag}.tar"


@dataclass(frozen=True)
class Plan:
    versions: Versions
    parts: tuple[Part, ...]
    images: tuple[Image, ...]
    patch_hash: str
    build_date: str  # the release's own date, so rebuilds are byte-identical

    @property
    def images_key(self) -> str:
        used = sorted({f[0] for image in self.images for f in image.files})
        return _hash_json(
            {
                "format": IMAGE_FORMAT,
                "parts": {p.name: p.key for p in self.parts if p.name in used},
                "images": [repr(i) for i in self.images],
                "date": self.build_date,
            }
        )

    @property
    def bundle_key(self) -> dict[str, str]:
        keys = {p.name: p.key for p in self.parts}
        keys["images"] = self.images_key
        return keys


@dataclass(frozen=True)
class Bundle:
    root: Path
    kubelet_version: str
    images: dict[str, str]  # ref -> file under images/


def _hash_json(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _tool_version(argv: Sequence[str], what: str) -> str:
    try:
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ArtifactError(f"{what} ({argv[0]}) is required: run `make setup`") from exc
    return out.strip().splitlines()[0]


def _series_hash() -> str:
    h = hashlib.sha256()
    for patch in series():
        h.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _kubernetes_source(pin: KubernetesPin) -> KubernetesSource:
    """The pinned module from the proxy, verified against kubernetes.module_sum."""
    try:
        return download_kubernetes(pin.version, pin.module_sum)
    except PatchError as exc:
        raise ArtifactError(str(exc)) from exc


def _release_date(pin: KubernetesPin) -> str:
    """The release's date from the proxy's .info (the tag's commit time).

    Upstream stamps buildDate from SOURCE_DATE_EPOCH for reproducible
    builds; the release's own time is the natural epoch for a fixed tag.
    """
    info = _kubernetes_source(pin).zip.with_suffix(".info")
    try:
        stamp = str(json.loads(info.read_text())["Time"])
    except (OSError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{info}: no release time for {pin.module}@{pin.version}") from exc
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).strftime("%Y-%m-%dT%H:%M:%SZ")


def kube_ldflags(git_version: str, build_date: str) -> str:
    """Upstream's version stamping (hack/lib/version.sh) plus its release -s -w.

    gitCommit and gitTreeState are left out, as upstream does when it has no
    git tree: the module zip carries no commit.
    """
    m = re.match(r"^v(\d+)\.(\d+)\.\d+", git_version)
    if not m:
        raise ArtifactError(f"kubernetes.version {git_version!r} is not vX.Y.Z (versions.yml)")
    values = {
        "gitVersion": git_version,
        "gitMajor": m.group(1),
        "gitMinor": m.group(2),
        "buildDate": build_date,
    }
    flags = [f"-X {pkg}.{k}={v}" for pkg in KUBE_VERSION_PACKAGES for k, v in values.items()]
    return " ".join([*flags, "-s", "-w"])


def kubelet_version(pin: KubernetesPin) -> str:
    return pin.version + KUBELET_BUILD_METADATA


def plan(versions: Versions | None = None) -> Plan:
    """What the bundle holds at the current pins and patch series, and its keys."""
    v = versions or load_versions()
    k8s, etcd = v.kubernetes, v.etcd
    go = _tool_version(["go", "env", "GOVERSION"], "the Go toolchain")
    gcc = _tool_version(["gcc", "-dumpfullversion"], "gcc (cgo builds, static pause)")
    date = _release_date(k8s)
    try:
        patch_hash = _series_hash()
    except PatchError as exc:
        raise ArtifactError(str(exc)) from exc
    common = {"go": go, "module_sum": k8s.module_sum, "staging": k8s.staging_version}
    # cgo as in the patched kubelet's first build, so stock and DepCon differ by the patch only.
    kubelet = Program("kubelet", "./cmd/kubelet", cgo=True)
    # Its own part: the stock part's key, and so its cached build, does not depend on it.
    proxy = Program("kube-proxy", "./cmd/kube-proxy")
    stock = tuple(
        Program(name, f"./cmd/{name}")
        for name in (
            "kubeadm",
            "kubectl",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        )
    )
    parts = (
        Part(
            "kubernetes",
            stock,
            {
                **common,
                "programs": [repr(p) for p in stock],
                "ldflags": kube_ldflags(k8s.version, date),
                "tags": KUBE_TAGS,
            },
        ),
        Part(
            "pause",
            (Program("pause", "build/pause/linux/pause.c", cgo=True),),
            {"module_sum": k8s.module_sum, "gcc": gcc, "cflags": _pause_cflags(k8s)},
            bundle_dir=None,
        ),
        Part(
            "kubelet",
            (kubelet,),
            {
                **common,
                "gcc": gcc,
                "program": repr(kubelet),
                "ldflags": kube_ldflags(k8s.version, date),
                "tags": KUBE_TAGS,
            },
        ),
        Part(
            "kubelet-depcon",
            (kubelet,),
            {
                **common,
                "gcc": gcc,
                "program": repr(kubelet),
                "series": patch_hash,
                "ldflags": kube_ldflags(kubelet_version(k8s), date),
                "tags": KUBE_TAGS,
            },
            bundle_dir="depcon",
        ),
        Part(
            "kube-proxy",
            (proxy,),
            {
                **common,
                "program": repr(proxy),
                "ldflags": kube_ldflags(k8s.version, date),
                "tags": KUBE_TAGS,
            },
        ),
        Part(
            "etcd",
            (
                Program("etcd", "go.etcd.io/etcd/server/v3"),
                Program("etcdctl", "go.etcd.io/etcd/etcdctl/v3"),
            ),
            {
                "go": go,
                "version": etcd.version,
                "module_sum": etcd.module_sum,
                "modules": ETCD_MODULES,
                "ldflags": _etcd_ldflags(),
            },
        ),
        Part(
            "containerd",
            CONTAINERD_PROGRAMS,
            {
                "go": go,
                "gcc": gcc,
                "version": v.containerd.version,
                "module_sum": v.containerd.module_sum,
                "module_gomod_sum": v.containerd.module_gomod_sum,
                "flags": containerd_flags(v.containerd),
            },
        ),
        Part(
            "coredns",
            (Program("coredns", "."),),
            {
                "go": go,
                "version": k8s.coredns_version,
                "ldflags": _coredns_ldflags(),
            },
            bundle_dir=None,
        ),
        Part(
            "netperf",
            tuple(Program(name, path) for name, path in NETPERF_FILES),
            {
                "package": f"{v.netperf.package}={v.netperf.version}",
                "sha256": v.netperf.sha256,
                "libc6": _tool_version(
                    ["dpkg-query", "--showformat=${Version}", "--show", "libc6"], "dpkg-query"
                ),
            },
            bundle_dir=None,
        ),
    )
    return Plan(
        versions=v, parts=parts, images=expected_images(v), patch_hash=patch_hash, build_date=date
    )


def expected_images(v: Versions) -> tuple[Image, ...]:
    """The images the bundle carries, named as kubeadm looks them up."""
    k8s, repo = v.kubernetes, v.kubernetes.image_repository
    images = [
        Image(
            f"{repo}/{name}:{k8s.version}",
            (("kubernetes", name, f"usr/local/bin/{name}"),),
            (f"/usr/local/bin/{name}",),
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    ]
    images.append(
        Image(
            f"{repo}/etcd:{v.etcd.image_tag}",
            (("etcd", "etcd", "usr/local/bin/etcd"), ("etcd", "etcdctl", "usr/local/bin/etcdctl")),
            ("/usr/local/bin/etcd",),
        )
    )
    # build/pause/Dockerfile: ADD pause /pause, USER 65535:65535.
    images.append(
        Image(
            f"{repo}/pause:{k8s.pause_version}",
            (("pause", "pause", "pause"),),
            ("/pause",),
            user="65535:65535",
        )
    )
    # CoreDNS's Dockerfile: /coredns with cap_net_bind_service, USER nonroot.
    images.append(
        Image(
            f"{repo}/coredns/coredns:{k8s.coredns_version}",
            (("coredns", "coredns", "coredns"),),
            ("/coredns",),
            user="65532:65532",
            capabilities={"coredns": _CAP_NET_BIND_SERVICE},
        )
    )
    # The verification pods: netserver, and netperf against it.
    lib = "lib/x86_64-linux-gnu"
    images.append(
        Image(
            f"{NETPERF_IMAGE}:{v.netperf.version}",
            tuple(("netperf", name, path) for name, path in NETPERF_FILES[:2])
            + tuple(("netperf", name, f"{lib}/{name}") for name, _ in NETPERF_FILES[2:4])
            + (("netperf", "ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),),
            ("/usr/bin/netserver", "-D"),
            user="65532:65532",
            dirs=("usr/bin/", "lib/", f"{lib}/", "lib64/"),
        )
    )
    return tuple(images)


def _pause_cflags(pin: KubernetesPin) -> list[str]:
    # build/pause/Makefile: CFLAGS = -Os -Wall -Werror -static -DVERSION=v$(TAG)-$(REV);
    # REV is a git describe, which a module zip has none of.
    return ["-Os", "-Wall", "-Werror", "-static", f"-DVERSION=v{pin.pause_version}"]


def _etcd_ldflags() -> str:
    # etcd's build stamps the git SHA; a module zip has no commit, and the
    # default text tells users to run ./build, which is wrong here.
    return f"-s -w -X {ETCD_SHA_VAR}=unknown"


def _coredns_ldflags() -> str:
    return f"-s -w -X {COREDNS_COMMIT_VAR}=unknown"


# Makefile.linux adds the shim to COMMANDS; containerd-stress is left out.
CONTAINERD_PROGRAMS = (
    Program("containerd", "./cmd/containerd", cgo=True),
    Program("containerd-shim-runc-v2", "./cmd/containerd-shim-runc-v2"),
    Program("ctr", "./cmd/ctr", cgo=True),
)


def containerd_flags(pin: GoModulePin) -> dict[str, list[str]]:
    """``go build`` flags per program, as upstream's Makefile gives them for ``make release``.

    That is the release tarball containerd-<v>-linux-amd64 (not STATIC=1):
    containerd and ctr with cgo as position-independent executables
    (Makefile.linux GO_GCFLAGS), tag urfave_cli_no_docs; the shim static
    without cgo (SHIM_CGO_ENABLED=0) and with no_grpc. VERSION is the tag
    ``git describe`` gives; REVISION is empty, as the Makefile makes it
    without a git tree (the module zip has none).
    """
    stamp = " ".join(
        f"-X {CONTAINERD_PACKAGE}/version.{key}={value}"
        for key, value in (
            ("Version", pin.version),
            ("Revision", ""),
            ("Package", CONTAINERD_PACKAGE),
        )
    )
    tags = "urfave_cli_no_docs"
    daemon = ["-buildmode=pie", "-tags", tags, "-ldflags", f"{stamp} -s -w"]
    return {
        "containerd": list(daemon),
        "containerd-shim-runc-v2": [
            "-tags",
            f"{tags},no_grpc",
            "-ldflags",
            f'{stamp} -extldflags "-static" -s -w',
        ],
        "ctr": list(daemon),
    }


# --- locations ---------------------------------------------------------------------


def _root() -> Path:
    return cache_dir() / "artifacts"


def _part_dir(part: Part) -> Path:
    return _root() / "parts" / f"{part.name}-{part.key}"


def _images_dir(p: Plan) -> Path:
    return _root() / "parts" / f"images-{p.images_key}"


def bundle_path(p: Plan | None = None) -> Path:
    p = p or plan()
    return _root() / f"{p.versions.kubernetes.version}-{p.patch_hash}"


@contextmanager
def _lock() -> Iterator[None]:
    """One build at a time per cache: two would race on the same entries."""
    _root().mkdir(parents=True, exist_ok=True)
    with (_root() / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _staged(final: Path) -> Iterator[Path]:
    """A temp directory next to ``final``, renamed onto it on success.

    An interrupted build leaves only a ``.tmp-*`` directory, never something
    that looks finished. An older ``final`` (stale content) is replaced.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}.", dir=final.parent))
    try:
        yield tmp
        tmp.chmod(0o755)
        if final.exists():
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


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
    if server.get("Sum") != pin.module_sum:
        raise ArtifactError(
            f"{pin.module}@{pin.version}: proxy gave {server.get('Sum')}, "
            f"versions.yml etcd.module_sum pins {pin.module_sum}"
        )
    # server/v3's go.mod replaces its sibling modules with ../api etc., which
    # only act in etcd's own checkout. A wrapper main module requiring all of
    # them at the one release builds the same code from the published modules.
    go_line = re.search(r"^go (\S+)$", Path(server["GoMod"]).read_text(), re.MULTILINE)
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
    shutil.copytree(Path(found[COREDNS_MODULE]["Dir"]), d)
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
    for key, want in (("Sum", pin.module_sum), ("GoModSum", pin.module_gomod_sum)):
        if found.get(key) != want:
            name = "module_sum" if key == "Sum" else "module_gomod_sum"
            raise ArtifactError(
                f"{pin.module}@{pin.version}: proxy gave {key} {found.get(key)}, "
                f"versions.yml containerd.{name} pins {want}"
            )
    # containerd is its own main module, built as its Makefile does from the
    # root; a writable copy because go -mod=mod may touch go.sum.
    d = work / "containerd"
    shutil.copytree(Path(found["Dir"]), d)
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
    with _staged(final) as tmp:
        out, work = tmp / "bin", tmp / "work"
        out.mkdir()
        work.mkdir()
        _BUILDERS[part.name](part, p, work, out, progress)
        shutil.rmtree(work)
        record = {"recipe": part.recipe, "seconds": round(time.monotonic() - started)}
        (tmp / "part.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"{part.name}: built in {time.monotonic() - started:.0f} s")
    return final


# --- images ---------------------------------------------------------------------------


class _HashingWriter(io.RawIOBase):
    """Passes bytes through to ``sink`` while hashing and counting them."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)


@dataclass(frozen=True)
class _Blob:
    digest: str  # sha256:...
    size: int
    path: Path


@dataclass(frozen=True)
class _Layer:
    blob: _Blob
    diff_id: str


def _tarinfo(name: str, kind: bytes, mode: int, mtime: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, mtime, size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_layer(
    dest: Path,
    entries: Sequence[tuple[str, bytes | Path | None, int]],
    mtime: int,
    xattrs: Mapping[str, bytes] | None = None,
) -> _Layer:
    """A gzipped tar layer with fixed owners, times and order (reproducible)."""
    xattrs = xattrs or {}
    with dest.open("wb") as fh:
        compressed = _HashingWriter(fh)
        with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0) as gz:
            plain = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name, content, mode in entries:
                    if content is None:
                        tar.addfile(_tarinfo(name, tarfile.DIRTYPE, mode, mtime))
                        continue
                    data = content.read_bytes() if isinstance(content, Path) else content
                    info = _tarinfo(name, tarfile.REGTYPE, mode, mtime, len(data))
                    if name in xattrs:
                        # Go's archive/tar (containerd's unpacker) reads xattrs
                        # from SCHILY.xattr.* PAX records.
                        info.pax_headers = {
                            "SCHILY.xattr.security.capability": xattrs[name].decode(
                                "utf-8", "surrogateescape"
                            )
                        }
                    tar.addfile(info, io.BytesIO(data))
    blob = _store_blob(dest, compressed.sha.hexdigest(), compressed.size)
    return _Layer(blob=blob, diff_id="sha256:" + plain.sha.hexdigest())


def _store_blob(path: Path, hexdigest: str, size: int) -> _Blob:
    final = path.parent / hexdigest
    path.rename(final)
    return _Blob(digest="sha256:" + hexdigest, size=size, path=final)


def _json_blob(blobs: Path, data: object) -> _Blob:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    hexdigest = hashlib.sha256(raw).hexdigest()
    (blobs / hexdigest).write_bytes(raw)
    return _Blob(digest="sha256:" + hexdigest, size=len(raw), path=blobs / hexdigest)


def _base_entries() -> list[tuple[str, bytes | Path | None, int]]:
    """The minimal static base: users, name resolution, a /tmp (distroless-like)."""
    return [
        ("etc/", None, 0o755),
        ("etc/group", _GROUP.encode(), 0o644),
        ("etc/nsswitch.conf", b"hosts: files dns\n", 0o644),
        ("etc/passwd", _PASSWD.encode(), 0o644),
        ("home/", None, 0o755),
        ("home/nonroot/", None, 0o700),
        ("root/", None, 0o700),
        ("tmp/", None, 0o1777),
        ("usr/", None, 0o755),
        ("usr/local/", None, 0o755),
        ("usr/local/bin/", None, 0o755),
    ]


def _oci_archive(
    image: Image,
    base: _Layer,
    *,
    bins: Mapping[tuple[str, str], Path],
    blobs: Path,
    p: Plan,
    dest: Path,
) -> str:
    """Write one image as an OCI layout tar; returns the manifest digest."""
    mtime = int(datetime.fromisoformat(p.build_date.replace("Z", "+00:00")).timestamp())
    entries: list[tuple[str, bytes | Path | None, int]] = [
        *((d, None, 0o755) for d in image.dirs),
        *((path, bins[(part, program)], 0o755) for part, program, path in image.files),
    ]
    layer = _write_layer(
        blobs / f".layer-{image.name.replace('/', '_')}", entries, mtime, image.capabilities
    )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": p.build_date,
        "config": {
            "Entrypoint": list(image.entrypoint),
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "User": image.user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [base.diff_id, layer.diff_id]},
        "history": [
            {"created": p.build_date, "created_by": "depcon infra/artifacts.py: base"},
            {"created": p.build_date, "created_by": f"depcon infra/artifacts.py: {image.name}"},
        ],
    }
    config_blob = _json_blob(blobs, config)
    layer_type = "application/vnd.oci.image.layer.v1.tar+gzip"
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_blob.digest,
            "size": config_blob.size,
        },
        "layers": [
            {"mediaType": layer_type, "digest": x.blob.digest, "size": x.blob.size}
            for x in (base, layer)
        ],
    }
    manifest_blob = _json_blob(blobs, manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_blob.digest,
                "size": manifest_blob.size,
                "platform": {"architecture": "amd64", "os": "linux"},
                # containerd's importer names the image from the first;
                # the second is the OCI layout's own (tag) reference.
                "annotations": {
                    "io.containerd.image.name": image.ref,
                    "org.opencontainers.image.ref.name": image.tag,
                },
            }
        ],
    }
    files: list[tuple[str, bytes | Path | None, int]] = [
        ("blobs/", None, 0o755),
        ("blobs/sha256/", None, 0o755),
    ]
    for blob in sorted((base.blob, layer.blob, config_blob, manifest_blob), key=lambda b: b.digest):
        files.append((f"blobs/sha256/{blob.digest.split(':', 1)[1]}", blob.path, 0o644))
    files.append(("index.json", json.dumps(index, indent=2).encode() + b"\n", 0o644))
    files.append(("oci-layout", b'{"imageLayoutVersion":"1.0.0"}\n', 0o644))
    with tarfile.open(dest, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content, mode in files:
            if content is None:
                tar.addfile(_tarinfo(name, tarfile.DIRTYPE, mode, mtime))
            elif isinstance(content, Path):
                info = _tarinfo(name, tarfile.REGTYPE, mode, mtime, content.stat().st_size)
                with content.open("rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(
                    _tarinfo(name, tarfile.REGTYPE, mode, mtime, len(content)), io.BytesIO(content)
                )
    for blob in (layer.blob, config_blob, manifest_blob):
        blob.path.unlink()
    return manifest_blob.digest


def _ensure_images(p: Plan, part_dirs: Mapping[str, Path]) -> Path:
    final = _images_dir(p)
    if (final / "images.json").is_file():
        log(f"images: cached ({len(p.images)})")
        return final
    started = time.monotonic()
    bins = {
        (part, program): part_dirs[part] / "bin" / program
        for image in p.images
        for part, program, _ in image.files
    }
    with _staged(final) as tmp:
        blobs = tmp / ".blobs"
        blobs.mkdir()
        mtime = int(datetime.fromisoformat(p.build_date.replace("Z", "+00:00")).timestamp())
        base = _write_layer(blobs / ".base", _base_entries(), mtime)
        listing = []
        for i, image in enumerate(p.images, start=1):
            log(f"writing image {image.ref} ({i}/{len(p.images)})...")
            digest = _oci_archive(
                image, base, bins=bins, blobs=blobs, p=p, dest=tmp / image.archive_name
            )
            listing.append({"ref": image.ref, "file": image.archive_name, "digest": digest})
        shutil.rmtree(blobs)
        (tmp / "images.json").write_text(json.dumps(listing, indent=2) + "\n")
    log(f"images: written in {time.monotonic() - started:.0f} s")
    return final


# --- the bundle -----------------------------------------------------------------------


def _link(src: Path, dest: Path) -> None:
    # Hard links: the bundle and the part cache share one copy on disk.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_sums(root: Path) -> None:
    lines = [
        f"{_sha256(f)}  {f.relative_to(root).as_posix()}"
        for f in sorted(root.rglob("*"))
        if f.is_file() and f.name != "SHA256SUMS"
    ]
    (root / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def _manifest(p: Plan, images: list[dict[str, str]]) -> dict[str, Any]:
    k8s = p.versions.kubernetes
    return {
        "kubernetes": k8s.version,
        "kubelet": kubelet_version(k8s),
        "etcd": p.versions.etcd.version,
        "containerd": p.versions.containerd.version,
        "patch_hash": p.patch_hash,
        "build_date": p.build_date,
        "keys": p.bundle_key,
        "binaries": sorted(
            f"{part.bundle_dir}/{prog.name}"
            for part in p.parts
            if part.bundle_dir
            for prog in part.programs
        ),
        "images": images,
        "missing_images": dict(MISSING_IMAGES),
    }


def _up_to_date(bundle: Path, p: Plan) -> bool:
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(manifest.get("keys") == p.bundle_key and (bundle / "SHA256SUMS").is_file())


# An entry another checkout used this recently may be in use by its run (a lab,
# a molecule scenario): it is kept.
PRUNE_AFTER_S = 24 * 3600


def _idle(entry: Path) -> bool:
    try:
        return time.time() - entry.stat().st_mtime > PRUNE_AFTER_S
    except OSError:
        return False


def _prune(p: Plan, bundle: Path, part_dirs: Mapping[str, Path], images: Path) -> None:
    """Drop entries this bundle does not use and nobody used for a day (hundreds of MB each).

    Runs under the build lock. Each build or reuse touches what it uses, so a
    bundle another checkout's run is reading is never removed under it.
    Parts of other pins go too once idle: switching back rebuilds them, which
    the Go build cache keeps short.
    """
    keep = {*part_dirs.values(), images}
    for entry in keep | {bundle}:
        with contextlib.suppress(OSError):
            os.utime(entry)
    for entry in (_root() / "parts").iterdir():
        if entry not in keep and _idle(entry):
            log(f"removing stale {entry.name}")
            shutil.rmtree(entry, ignore_errors=True)
    prefix = p.versions.kubernetes.version + "-"
    for entry in _root().iterdir():
        if entry != bundle and entry.name.startswith((prefix, ".tmp-", ".old-")) and _idle(entry):
            log(f"removing stale bundle {entry.name}")
            shutil.rmtree(entry, ignore_errors=True)


def build(versions: Versions | None = None) -> Bundle:
    """Build the bundle, or reuse it when nothing it depends on changed."""
    started = time.monotonic()
    p = plan(versions)
    bundle = bundle_path(p)
    refs = {i.ref: i.archive_name for i in p.images}
    kubelet = kubelet_version(p.versions.kubernetes)
    if _up_to_date(bundle, p):
        log(f"up to date: {bundle} ({time.monotonic() - started:.1f} s)")
        with contextlib.suppress(OSError):
            os.utime(bundle)  # in use: another checkout's build keeps it (_prune)
        return Bundle(root=bundle, kubelet_version=kubelet, images=refs)
    with _lock():
        if _up_to_date(bundle, p):  # another build finished while we waited
            log(f"up to date: {bundle}")
            return Bundle(root=bundle, kubelet_version=kubelet, images=refs)
        progress = _Progress(sum(len(part.programs) for part in p.parts))
        part_dirs = {part.name: _ensure_part(part, p, progress) for part in p.parts}
        images = _ensure_images(p, part_dirs)
        listing: list[dict[str, str]] = json.loads((images / "images.json").read_text())
        log(f"assembling {bundle}")
        with _staged(bundle) as tmp:
            (tmp / "images").mkdir()
            for part in p.parts:
                if part.bundle_dir:
                    (tmp / part.bundle_dir).mkdir(exist_ok=True)
                    for program in part.programs:
                        _link(
                            part_dirs[part.name] / "bin" / program.name,
                            tmp / part.bundle_dir / program.name,
                        )
            for entry in listing:
                _link(images / entry["file"], tmp / "images" / entry["file"])
            (tmp / "manifest.json").write_text(
                json.dumps(_manifest(p, listing), indent=2, sort_keys=True) + "\n"
            )
            _write_sums(tmp)
        _prune(p, bundle, part_dirs, images)
    log(f"built {bundle} in {time.monotonic() - started:.0f} s")
    return Bundle(root=bundle, kubelet_version=kubelet, images=refs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.artifacts",
        description="Build the offline Kubernetes bundle (binaries, patched kubelet, images).",
    )
    parser.add_argument("command", choices=["build", "path"])
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build().root)
            return 0
        path = bundle_path()
        print(path)
        if not (path / "SHA256SUMS").is_file():
            log("not built yet: run `make artifacts`")
            return 1
    except ArtifactError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
