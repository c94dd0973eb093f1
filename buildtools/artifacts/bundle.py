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

    python -m buildtools.artifacts build   # build, or say "up to date"
    python -m buildtools.artifacts path    # the bundle directory
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from buildtools.artifacts.builders import _ensure_part, _Progress
from buildtools.artifacts.cache import _lock, _root, _sha256, bundle_path
from buildtools.artifacts.oci import _ensure_images
from buildtools.artifacts.recipes import (
    MISSING_IMAGES,
    ArtifactError,
    Bundle,
    Plan,
    kubelet_version,
    log,
    plan,
)
from depcon.config import Versions
from depcon.paths import idle, mark_used, staged

# --- the bundle -----------------------------------------------------------------------


def _link(src: Path, dest: Path) -> None:
    # Hard links: the bundle and the part cache share one copy on disk.
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


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


def _prune(p: Plan, bundle: Path, part_dirs: Mapping[str, Path], images: Path) -> None:
    """Drop entries this bundle does not use and nobody used for a day (hundreds of MB each).

    Runs under the build lock. Each build or reuse touches what it uses, so a
    bundle another checkout's run is reading is never removed under it.
    Parts of other pins go too once idle: switching back rebuilds them, which
    the Go build cache keeps short.
    """
    keep = {*part_dirs.values(), images}
    for entry in keep | {bundle}:
        mark_used(entry)
    for entry in (_root() / "parts").iterdir():
        if entry not in keep and idle(entry):
            log(f"removing stale {entry.name}")
            shutil.rmtree(entry, ignore_errors=True)
    prefix = p.versions.kubernetes.version + "-"
    for entry in _root().iterdir():
        if entry != bundle and entry.name.startswith((prefix, ".tmp-", ".old-")) and idle(entry):
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
        mark_used(bundle)  # another checkout's build keeps it (_prune)
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
        with staged(bundle) as tmp:
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
        prog="python -m buildtools.artifacts",
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
