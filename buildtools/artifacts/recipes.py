"""What the bundle is made of: the pins, each part's recipe and cache key, the plan."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from buildtools import gotool
from buildtools.kubelet_patch import (
    KubernetesSource,
    PatchError,
    download_kubernetes,
    series,
)
from depcon.config import GoModulePin, KubernetesPin, Versions, load_versions

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
        code = [code_hash("builders", self.name), _gotool_hash()]
        return _hash_json({"recipe": self.recipe, "code": code})


@dataclass(frozen=True)
class ContainerImage:
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
    images: tuple[ContainerImage, ...]
    patch_hash: str
    build_date: str  # the release's own date, so rebuilds are byte-identical

    @property
    def images_key(self) -> str:
        used = sorted({f[0] for image in self.images for f in image.files})
        return _hash_json(
            {
                "code": code_hash("oci"),
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


# Where the code that writes the entries is (a test points it at an edited copy).
_CODE_DIR = Path(__file__).parent


@functools.cache
def code_hash(module: str, part: str | None = None) -> str:
    """sha256 of the code that writes an entry, so an edit to it is a new key.

    ``module`` is a sibling module, read and not imported (it imports this
    one); with ``part``, only the builder function ``_BUILDERS`` names for that
    part, with everything in the module that is not a builder.
    """
    text = (_CODE_DIR / f"{module}.py").read_text()
    if part is None:
        return hashlib.sha256(text.encode()).hexdigest()[:16]
    tree = ast.parse(text)
    table = next(
        n.value
        for n in tree.body
        if isinstance(n, ast.AnnAssign)
        and isinstance(n.target, ast.Name)
        and n.target.id == "_BUILDERS"
    )
    assert isinstance(table, ast.Dict)
    chosen = {
        v.id
        for k, v in zip(table.keys, table.values, strict=True)
        if isinstance(k, ast.Constant) and k.value == part and isinstance(v, ast.Name)
    }
    if not chosen:
        raise ArtifactError(f"{module}.py: _BUILDERS has no builder for part {part!r}")
    other_builders = {n.id for n in table.values if isinstance(n, ast.Name)} - chosen
    kept = [
        ast.get_source_segment(text, n) or ""
        for n in tree.body
        if not (isinstance(n, ast.FunctionDef) and n.name in other_builders)
        and not (isinstance(n, ast.AnnAssign) and n.value is table)
    ]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]


@functools.cache
def _gotool_hash() -> str:
    """sha256 of buildtools/gotool.py: the builders run the toolchain through it."""
    return hashlib.sha256(Path(gotool.__file__).read_bytes()).hexdigest()[:16]


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


def expected_images(v: Versions) -> tuple[ContainerImage, ...]:
    """The images the bundle carries, named as kubeadm looks them up."""
    k8s, repo = v.kubernetes, v.kubernetes.image_repository
    control_plane = tuple(
        ContainerImage(
            f"{repo}/{name}:{k8s.version}",
            (("kubernetes", name, f"usr/local/bin/{name}"),),
            (f"/usr/local/bin/{name}",),
        )
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    )
    lib = "lib/x86_64-linux-gnu"
    return (
        *control_plane,
        ContainerImage(
            f"{repo}/etcd:{v.etcd.image_tag}",
            (("etcd", "etcd", "usr/local/bin/etcd"), ("etcd", "etcdctl", "usr/local/bin/etcdctl")),
            ("/usr/local/bin/etcd",),
        ),
        # build/pause/Dockerfile: ADD pause /pause, USER 65535:65535.
        ContainerImage(
            f"{repo}/pause:{k8s.pause_version}",
            (("pause", "pause", "pause"),),
            ("/pause",),
            user="65535:65535",
        ),
        # CoreDNS's Dockerfile: /coredns with cap_net_bind_service, USER nonroot.
        ContainerImage(
            f"{repo}/coredns/coredns:{k8s.coredns_version}",
            (("coredns", "coredns", "coredns"),),
            ("/coredns",),
            user="65532:65532",
            capabilities={"coredns": _CAP_NET_BIND_SERVICE},
        ),
        # The verification pods: netserver, and netperf against it.
        ContainerImage(
            f"{NETPERF_IMAGE}:{v.netperf.version}",
            tuple(("netperf", name, path) for name, path in NETPERF_FILES[:2])
            + tuple(("netperf", name, f"{lib}/{name}") for name, _ in NETPERF_FILES[2:4])
            + (("netperf", "ld-linux-x86-64.so.2", "lib64/ld-linux-x86-64.so.2"),),
            ("/usr/bin/netserver", "-D"),
            user="65532:65532",
            dirs=("usr/bin/", "lib/", f"{lib}/", "lib64/"),
        ),
    )


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
