"""The offline Kubernetes bundle (infra/artifacts.py): real builds, real binaries, real kubeadm.

The first test builds the bundle (cached under cache_dir(): a no-op when an
earlier run built it at the same pins and patches; a cold build takes tens
of minutes). Everything after runs the built programs themselves.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from infra import artifacts
from infra.artifacts import MISSING_IMAGES, ArtifactError, Bundle
from infra.config import load_versions
from infra.kubelet_patch import download_kubernetes

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
    assert names == sorted([*STOCK, "kubelet", "etcd", "etcdctl", *CONTAINERD])
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


@pytest.mark.parametrize("name", ["kube-apiserver", "kube-controller-manager", "kube-scheduler"])
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
    out = _run(bundle.root / "bin" / "kubelet", "--version").strip()
    assert out == f"Kubernetes {pin.version}+depcon"
    assert bundle.kubelet_version == f"{pin.version}+depcon"


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
    out = _run(bundle.root / "bin" / "kubelet", "--version").strip()
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
    for name in (*STOCK, "etcd", "etcdctl", "containerd-shim-runc-v2"):
        assert _interpreter(bundle.root / "bin" / name) is None, f"{name} is not static"
    # Upstream builds the kubelet with cgo (it is not in KUBE_STATIC_BINARIES),
    # and containerd's release tarball has containerd and ctr with cgo.
    for name in ("kubelet", "containerd", "ctr"):
        assert _interpreter(bundle.root / "bin" / name) is not None, f"{name} is static"


def _archive_refs(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.load(member)
    return [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]


def test_images_are_what_kubeadm_looks_up(bundle: Bundle) -> None:
    pin = load_versions().kubernetes
    out = _run(
        bundle.root / "bin" / "kubeadm",
        "config",
        "images",
        "list",
        "--kubernetes-version",
        pin.version,
    )
    wanted = set(out.split())
    have = {ref for p in (bundle.root / "images").glob("*.tar") for ref in _archive_refs(p)}
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
    monkeypatch.setattr(artifacts, "_series_hash", lambda: "0" * 12)
    after = artifacts.plan()
    changed = {k for k, v in before.bundle_key.items() if after.bundle_key[k] != v}
    assert changed == {"kubelet"}
    assert artifacts.bundle_path(after) != artifacts.bundle_path(before)


def test_unfetchable_module_is_named(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=re.escape("k8s.io/api@v0.36.999")):
        artifacts._go_download([("k8s.io/api", "v0.36.999")], tmp_path)


def test_containerd_module_sum_is_checked(tmp_path: Path) -> None:
    v = load_versions()
    wrong = "h1:" + "A" * 43 + "="
    v = dataclasses.replace(v, containerd=dataclasses.replace(v.containerd, module_sum=wrong))
    p = artifacts.plan(v)
    (part,) = [part for part in p.parts if part.name == "containerd"]
    with pytest.raises(ArtifactError, match=re.escape("versions.yml containerd.module_sum")):
        artifacts._build_containerd(part, p, tmp_path, tmp_path, artifacts._Progress(3))
