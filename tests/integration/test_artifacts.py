"""The offline Kubernetes bundle (buildtools/artifacts/): real builds, real binaries, real kubeadm.

The first test builds the bundle (cached under cache_dir(): a no-op when an
earlier run built it at the same pins and patches; a cold build takes tens
of minutes). Everything after runs the built programs themselves, down to a
real containerd from the bundle (as root, with its own root, state and socket
under a temp dir) that imports every image, unpacks it and runs etcd from it
with the pinned Debian runc.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildtools import artifacts
from buildtools.artifacts import MISSING_IMAGES, ArtifactError, Bundle, builders, recipes
from buildtools.kubelet_patch import download_kubernetes
from depcon.config import load_versions

pytestmark = pytest.mark.integration

STOCK = ("kubeadm", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
CONTAINERD = ("containerd", "containerd-shim-runc-v2", "ctr")


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return artifacts.build()


def _run(*argv: str | Path) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"
    return proc.stdout


def test_bundle_layout(bundle: Bundle) -> None:
    names = sorted(p.name for p in (bundle.root / "bin").iterdir())
    assert names == sorted([*STOCK, "kubelet", "kube-proxy", "etcd", "etcdctl", *CONTAINERD])
    assert [p.name for p in (bundle.root / "depcon").iterdir()] == ["kubelet"]
    assert (bundle.root / "SHA256SUMS").is_file()
    pin = load_versions().kubernetes
    assert bundle.root.name.startswith(pin.version + "-")


def test_sha256sums_verify(bundle: Bundle) -> None:
    listed = {
        line.split("  ", 1)[1] for line in (bundle.root / "SHA256SUMS").read_text().splitlines()
    }
    files = {
        p.relative_to(bundle.root).as_posix()
        for p in bundle.root.rglob("*")
        if p.is_file() and p.name != "SHA256SUMS"
    }
    assert listed == files
    proc = subprocess.run(
        ["sha256sum", "--check", "--strict", "--quiet", "SHA256SUMS"],
        cwd=bundle.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "name", ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"]
)
def test_server_binaries_report_the_pin(bundle: Bundle, name: str) -> None:
    pin = load_versions().kubernetes
    assert _run(bundle.root / "bin" / name, "--version").strip() == f"Kubernetes {pin.version}"


def test_kubeadm_and_kubectl_report_the_pin(bundle: Bundle) -> None:
    pin = load_versions().kubernetes
    assert _run(bundle.root / "bin" / "kubeadm", "version", "-o", "short").strip() == pin.version
    client = json.loads(_run(bundle.root / "bin" / "kubectl", "version", "--client", "-o", "json"))
    info = client["clientVersion"]
    major, minor = pin.version[1:].split(".")[:2]
    assert (info["gitVersion"], info["major"], info["minor"]) == (pin.version, major, minor)


def test_kubelet_reports_the_pin_with_depcon_metadata(bundle: Bundle) -> None:
    pin = load_versions().kubernetes
    out = _run(bundle.root / "depcon" / "kubelet", "--version").strip()
    assert out == f"Kubernetes {pin.version}+depcon"
    assert bundle.kubelet_version == f"{pin.version}+depcon"


def test_stock_kubelet_reports_the_pin_and_differs(bundle: Bundle) -> None:
    """bin/kubelet is upstream's: what rollback restores on an offline node."""
    pin = load_versions().kubernetes
    stock, depcon = bundle.root / "bin" / "kubelet", bundle.root / "depcon" / "kubelet"
    assert _run(stock, "--version").strip() == f"Kubernetes {pin.version}"
    assert stock.read_bytes() != depcon.read_bytes()


def test_kubeadm_accepts_the_kubelet_version(bundle: Bundle) -> None:
    """kubeadm's preflight parses `kubelet --version` with the regex in its source.

    The regex is read from the pinned kubeadm source rather than copied, and
    its X.Y must equal the control plane's (kubeadm compares major/minor).
    """
    pin = load_versions().kubernetes
    src = download_kubernetes(pin.version, pin.module_sum).dir
    utils = (src / "cmd/kubeadm/app/preflight/utils.go").read_text()
    found = re.search(r"kubeletVersionRegex := regexp\.MustCompile\(`([^`]+)`\)", utils)
    assert found, "GetKubeletVersion changed upstream: re-check the kubelet's build metadata"
    out = _run(bundle.root / "depcon" / "kubelet", "--version").strip()
    m = re.search(found.group(1), out)
    assert m, out
    assert m.group(1).split(".")[:2] == pin.version[1:].split(".")[:2]


def test_etcd_reports_the_pin(bundle: Bundle) -> None:
    pin = load_versions().etcd
    assert f"etcd Version: {pin.version[1:]}" in _run(bundle.root / "bin" / "etcd", "--version")
    out = _run(bundle.root / "bin" / "etcdctl", "version")
    assert f"etcdctl version: {pin.version[1:]}" in out


def test_containerd_reports_the_pin(bundle: Bundle) -> None:
    pin = load_versions().containerd
    out = _run(bundle.root / "bin" / "containerd", "--version").split()
    assert out[:3] == ["containerd", pin.module, pin.version], out
    assert _run(bundle.root / "bin" / "ctr", "--version").split() == [
        "ctr",
        pin.module,
        pin.version,
    ]
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    assert manifest["containerd"] == pin.version


def _interpreter(path: Path) -> bytes | None:
    """The ELF PT_INTERP (dynamic loader) of a 64-bit little-endian binary, if any."""
    with path.open("rb") as fh:
        head = fh.read(64)
        assert head[:4] == b"\x7fELF", path
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
        for i in range(phnum):
            entry = table[i * phentsize : (i + 1) * phentsize]
            if int.from_bytes(entry[0:4], "little") == 3:  # PT_INTERP
                offset = int.from_bytes(entry[8:16], "little")
                size = int.from_bytes(entry[32:40], "little")
                fh.seek(offset)
                return fh.read(size).rstrip(b"\0")
    return None


def test_static_where_upstream_is_static(bundle: Bundle) -> None:
    for name in (*STOCK, "kube-proxy", "etcd", "etcdctl", "containerd-shim-runc-v2"):
        assert _interpreter(bundle.root / "bin" / name) is None, f"{name} is not static"
    # Upstream builds the kubelet with cgo (it is not in KUBE_STATIC_BINARIES),
    # and containerd's release tarball has containerd and ctr with cgo.
    for path in ("bin/kubelet", "depcon/kubelet", "bin/containerd", "bin/ctr"):
        assert _interpreter(bundle.root / path) is not None, f"{path} is static"


def _archive_refs(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]


def _kubeadm_images(bundle: Bundle) -> set[str]:
    """What the bundle's kubeadm pulls for the pinned version (`config images list`)."""
    pin = load_versions().kubernetes
    out = _run(
        bundle.root / "bin" / "kubeadm",
        "config",
        "images",
        "list",
        "--kubernetes-version",
        pin.version,
    )
    return set(out.split())


def _netperf_ref() -> str:
    return f"{artifacts.NETPERF_IMAGE}:{load_versions().netperf.version}"


def test_images_are_what_kubeadm_looks_up(bundle: Bundle) -> None:
    """kubeadm's images, plus only the verification pods' netperf image."""
    wanted = _kubeadm_images(bundle)
    have = {ref for p in (bundle.root / "images").glob("*.tar") for ref in _archive_refs(p)}
    assert _netperf_ref() in have
    have.discard(_netperf_ref())
    assert have <= wanted, f"images kubeadm does not use: {sorted(have - wanted)}"
    missing = {ref.rsplit(":", 1)[0].split("/", 1)[1] for ref in wanted - have}
    assert missing == set(MISSING_IMAGES), f"undocumented missing images: {sorted(missing)}"
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    assert set(manifest["missing_images"]) == set(MISSING_IMAGES)


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None, name
    return member.read()


def _blob(tar: tarfile.TarFile, desc: dict[str, Any]) -> bytes:
    """A blob of the layout, checked against its descriptor's digest and size."""
    algo, digest = desc["digest"].split(":")
    data = _read(tar, f"blobs/{algo}/{digest}")
    assert hashlib.sha256(data).hexdigest() == digest, desc
    assert len(data) == desc["size"], desc
    return data


def test_images_are_valid_oci_layouts(bundle: Bundle) -> None:
    """What `ctr images import` relies on: layout, index, digests and diff_ids agree."""
    for path in sorted((bundle.root / "images").glob("*.tar")):
        with tarfile.open(path) as tar:
            assert json.loads(_read(tar, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}, path
            (desc,) = json.loads(_read(tar, "index.json"))["manifests"]
            manifest = json.loads(_blob(tar, desc))
            config = json.loads(_blob(tar, manifest["config"]))
            assert (config["os"], config["architecture"]) == ("linux", "amd64"), path
            layers = [gzip.decompress(_blob(tar, layer)) for layer in manifest["layers"]]
            diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
            assert diff_ids == config["rootfs"]["diff_ids"], path.name
            entry = config["config"]["Entrypoint"][0].lstrip("/")
            with tarfile.open(fileobj=io.BytesIO(layers[-1])) as top:
                assert entry in top.getnames(), f"{path.name}: no {entry}"


def test_second_build_is_a_no_op(bundle: Bundle, capsys: pytest.CaptureFixture[str]) -> None:
    before = (bundle.root / "SHA256SUMS").stat().st_mtime_ns
    again = artifacts.build()
    assert again.root == bundle.root
    assert "up to date" in capsys.readouterr().out
    assert (bundle.root / "SHA256SUMS").stat().st_mtime_ns == before


def test_a_changed_patch_changes_only_the_kubelet_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = artifacts.plan()
    monkeypatch.setattr(recipes, "_series_hash", lambda: "0" * 12)
    after = artifacts.plan()
    changed = {k for k, v in before.bundle_key.items() if after.bundle_key[k] != v}
    assert changed == {"kubelet-depcon"}
    assert artifacts.bundle_path(after) != artifacts.bundle_path(before)


def test_kube_proxy_is_a_part_of_its_own() -> None:
    """bin/kube-proxy (the nodes' host service) is built like the stock binaries, keyed apart."""
    p = artifacts.plan()
    parts = {part.name: part for part in p.parts}
    proxy, stock = parts["kube-proxy"], parts["kubernetes"]
    assert ([prog.name for prog in proxy.programs], proxy.bundle_dir) == (["kube-proxy"], "bin")
    assert "kube-proxy" not in [prog.name for prog in stock.programs]
    assert proxy.recipe["ldflags"] == stock.recipe["ldflags"]
    assert proxy.recipe["tags"] == stock.recipe["tags"] == artifacts.KUBE_TAGS
    assert "kube-proxy" in p.bundle_key


def test_unfetchable_module_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=re.escape("k8s.io/api@v0.36.999")):
        builders._go_download([("k8s.io/api", "v0.36.999")], tmp_path)


# --- a real containerd from the bundle ---------------------------------------------------

# The namespace the kubelet's CRI uses: imported images land where it looks.
K8S_NAMESPACE = "k8s.io"
# containerd 2.x plugins that would otherwise touch host paths (/opt/containerd,
# /var/run/nri) or the host's CNI setup; this daemon only stores and runs images.
_DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.cri.v1.images",
    "io.containerd.cri.v1.runtime",
    "io.containerd.podsandbox.controller.v1.podsandbox",
    "io.containerd.nri.v1.nri",
)


@dataclasses.dataclass(frozen=True)
class Containerd:
    """A containerd from the bundle, private to the test (own root, state, socket)."""

    bin: Path  # the bundle's bin/
    dir: Path  # root/, state/, sockets, logs
    snapshotter: str
    cgroup_parent: str  # per-run parent, so teardown can remove what runc left

    @property
    def socket(self) -> Path:
        return self.dir / "containerd.sock"

    def ctr(self, *args: str | Path, timeout: float = 120) -> str:
        argv = [self.bin / "ctr", "-a", self.socket, "-n", K8S_NAMESPACE, *args]
        proc = subprocess.run(
            [str(a) for a in argv], capture_output=True, text=True, check=False, timeout=timeout
        )
        log = (self.dir / "containerd.log").read_text(errors="replace").splitlines()[-20:]
        assert proc.returncode == 0, (
            f"{' '.join(map(str, argv))}: {proc.stderr}\ncontainerd log tail:\n" + "\n".join(log)
        )
        return proc.stdout


def _containerd_config(d: Path) -> str:
    disabled = ", ".join(f'"{p}"' for p in _DISABLED_PLUGINS)
    return f"""version = 3
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[plugins."io.containerd.shim.v1.manager"]
  socket_dir = "{d}/s"
"""


def _mounts_under(d: Path) -> list[str]:
    """Mount points below ``d``, deepest first (mountinfo field 5 is the mount point)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(d) or point.startswith(f"{d}/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _stop(proc: subprocess.Popen[bytes], ctrd: Containerd) -> None:
    """Stop tasks, containerd and its shims; unmount; remove cgroups: also after a failure."""
    d = ctrd.dir
    if proc.poll() is None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            for task in ctrd.ctr("tasks", "ls", "-q", timeout=30).split():
                ctrd.ctr("tasks", "delete", "--force", task, timeout=30)
                ctrd.ctr("containers", "delete", task, timeout=30)
    shim_pids = [
        int(p.read_text().strip())
        for p in (d / "state").glob("io.containerd.runtime.v2.task/*/*/shim.pid")
        if p.read_text().strip().isdigit()
    ]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for pid in shim_pids:  # only shims this daemon started, by their pid
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/exe").resolve() == ctrd.bin / "containerd-shim-runc-v2":
                os.kill(pid, signal.SIGKILL)
    for point in _mounts_under(d):
        subprocess.run(["umount", "--lazy", point], check=False, capture_output=True)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / ctrd.cgroup_parent.strip("/")
        if parent.is_dir():
            for child in sorted(parent.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if child.is_dir():
                    with contextlib.suppress(OSError):
                        child.rmdir()
            with contextlib.suppress(OSError):
                parent.rmdir()
    shutil.rmtree(d, ignore_errors=True)


def _snapshotter(plugins: str) -> str:
    """overlayfs when this kernel and file system take it (containerd checks), else native."""
    for line in plugins.splitlines():
        fields = line.split()
        if fields[:2] == ["io.containerd.snapshotter.v1", "overlayfs"]:
            return "overlayfs" if fields[-1] == "ok" else "native"
    return "native"


@pytest.fixture(scope="module")
def containerd(bundle: Bundle) -> Iterator[Containerd]:
    if os.geteuid() != 0:
        pytest.skip("a real containerd needs root (mounts, snapshots)")
    # Under /tmp, short: shim sockets are <socket_dir>/<64 hex>, at most 108 bytes.
    d = Path(tempfile.mkdtemp(prefix="depcon-ctrd-", dir="/tmp"))
    (d / "config.toml").write_text(_containerd_config(d))
    path = os.environ.get("PATH", "")
    # The shim is looked up on PATH, runc on the shim's (Debian's /usr/sbin/runc).
    env = {**os.environ, "PATH": f"{bundle.root / 'bin'}:{path}:/usr/sbin:/sbin"}
    with (d / "containerd.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(bundle.root / "bin" / "containerd"), "--config", str(d / "config.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    ctrd = Containerd(bundle.root / "bin", d, "native", f"/{d.name}")
    try:
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run(
                [str(bundle.root / "bin" / "ctr"), "-a", str(d / "containerd.sock"), "version"],
                capture_output=True,
                check=False,
                timeout=30,
            )
            if probe.returncode == 0:
                break
            tail = (d / "containerd.log").read_text(errors="replace")[-3000:]
            assert proc.poll() is None, f"containerd exited {proc.returncode}:\n{tail}"
            assert time.monotonic() < deadline, f"containerd did not answer in 60 s:\n{tail}"
            time.sleep(0.5)
        ctrd = dataclasses.replace(ctrd, snapshotter=_snapshotter(ctrd.ctr("plugins", "ls")))
        yield ctrd
    finally:
        _stop(proc, ctrd)


@pytest.fixture(scope="module")
def imported(bundle: Bundle, containerd: Containerd) -> set[str]:
    """Import every archive of images/ with `ctr images import`, as a node would."""
    for archive in sorted((bundle.root / "images").glob("*.tar")):
        containerd.ctr(
            "images", "import", "--snapshotter", containerd.snapshotter, archive, timeout=300
        )
    return set(containerd.ctr("images", "ls", "-q").split())


def test_containerd_imports_what_kubeadm_looks_up(bundle: Bundle, imported: set[str]) -> None:
    wanted = {
        ref
        for ref in _kubeadm_images(bundle)
        if ref.rsplit(":", 1)[0].split("/", 1)[1] not in MISSING_IMAGES
    }
    assert imported == wanted | {_netperf_ref()}


def test_containerd_unpacked_every_image(containerd: Containerd, imported: set[str]) -> None:
    """Each image is complete and unpacked, and its root file system holds its entrypoint."""
    rows = containerd.ctr("images", "check", "--snapshotter", containerd.snapshotter)
    # REF TYPE DIGEST STATUS SIZE UNPACKED; STATUS is "complete (n/n)".
    status = {line.split()[0]: line for line in rows.splitlines()[1:] if line.strip()}
    assert set(status) == imported
    for line in status.values():
        assert " complete " in line and line.split()[-1] == "true", line
    images = {image.ref: image for image in artifacts.expected_images(load_versions())}
    for ref in sorted(imported):
        image = images[ref]
        # A target per image: ctr names the mount's lease and snapshot after it.
        target = containerd.dir / f"mnt-{image.archive_name.removesuffix('.tar')}"
        target.mkdir()
        try:
            containerd.ctr("images", "mount", "--snapshotter", containerd.snapshotter, ref, target)
            entry = target / image.entrypoint[0].lstrip("/")
            assert entry.is_file() and os.access(entry, os.X_OK), f"{ref}: no {entry}"
            for path, xattr in image.capabilities.items():
                assert os.getxattr(target / path, "security.capability") == xattr, ref
        finally:
            containerd.ctr(
                "images", "unmount", "--snapshotter", containerd.snapshotter, "--rm", target
            )
            target.rmdir()


def _ctr_run(containerd: Containerd, ref: str, name: str, *argv: str) -> str:
    """`ctr run --rm` of ``ref`` with the pinned Debian runc; returns its output."""
    if shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        pytest.skip("runc is not installed (versions.yml runc): run `make setup`")
    return containerd.ctr(
        "run",
        "--rm",
        "--snapshotter",
        containerd.snapshotter,
        "--runc-root",
        containerd.dir / "runc",
        "--fifo-dir",
        containerd.dir / "fifo",
        "--cgroup",
        f"{containerd.cgroup_parent}/{name}",
        ref,
        name,
        *argv,
    )


def test_containerd_runs_etcd_from_its_image(containerd: Containerd, imported: set[str]) -> None:
    """`ctr run` of the etcd image with the pinned Debian runc: the whole runtime path."""
    v = load_versions()
    ref = f"{v.kubernetes.image_repository}/etcd:{v.etcd.image_tag}"
    assert ref in imported
    out = _ctr_run(containerd, ref, "etcd-version", "/usr/local/bin/etcd", "--version")
    assert f"etcd Version: {v.etcd.version[1:]}" in out, out


def test_containerd_runs_netperf_from_its_image(containerd: Containerd, imported: set[str]) -> None:
    """The verification image's netperf runs: Debian's binary finds its loader and libc."""
    assert _netperf_ref() in imported
    out = _ctr_run(containerd, _netperf_ref(), "netperf-version", "/usr/bin/netperf", "-V")
    assert f"Netperf version {load_versions().netperf.version.split('-')[0]}" in out, out


def test_containerd_module_sum_is_checked(tmp_path: Path) -> None:
    v = load_versions()
    wrong = "h1:" + "A" * 43 + "="
    v = dataclasses.replace(v, containerd=dataclasses.replace(v.containerd, module_sum=wrong))
    p = artifacts.plan(v)
    (part,) = [part for part in p.parts if part.name == "containerd"]
    with pytest.raises(ArtifactError, match=re.escape("versions.yml containerd.module_sum")):
        builders._build_containerd(part, p, tmp_path, tmp_path, builders._Progress(3))
