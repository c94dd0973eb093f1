"""OCI image archives written from the built binaries, without a container daemon."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from buildtools.artifacts.cache import _images_dir
from buildtools.artifacts.recipes import _GROUP, _PASSWD, ContainerImage, Plan, log
from depcon.paths import staged

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
    image: ContainerImage,
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
            {"created": p.build_date, "created_by": "depcon buildtools/artifacts: base"},
            {"created": p.build_date, "created_by": f"depcon buildtools/artifacts: {image.name}"},
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
    with staged(final) as tmp:
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
