"""A minimal writer for the newc cpio format, the format of a Linux initramfs.

Written here rather than calling cpio(1) so that an archive's bytes depend only on
what goes in (fixed mtimes, owners and inode numbers): the cache key is then a
hash of the inputs, and two builds of the same inputs are identical.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

_TRAILER = "TRAILER!!!"


@dataclass
class CpioWriter:
    """Collects entries and renders them as one newc archive."""

    _chunks: list[bytes] = field(default_factory=list)
    _ino: int = 1
    _dirs: set[str] = field(default_factory=set)

    def _entry(self, name: str, mode: int, data: bytes = b"") -> None:
        name = name.lstrip("/")
        fields = [
            self._ino,  # ino
            mode,
            0,  # uid
            0,  # gid
            1,  # nlink
            0,  # mtime
            len(data),
            0,  # devmajor
            0,  # devminor
            0,  # rdevmajor
            0,  # rdevminor
            len(name) + 1,
            0,  # check
        ]
        self._ino += 1
        header = "070701" + "".join(f"{v:08x}" for v in fields)
        blob = header.encode() + name.encode() + b"\0"
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self._chunks.append(blob)

    def mkdir(self, path: str) -> None:
        """Adds ``path`` and its missing parents as directories."""
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self._dirs:
                self._dirs.add(d)
                self._entry(d, stat.S_IFDIR | 0o755)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        parent = path.strip("/").rpartition("/")[0]
        if parent:
            self.mkdir(parent)
        self._entry(path, stat.S_IFREG | mode, data)

    def add_symlink(self, path: str, target: str) -> None:
        parent = path.strip("/").rpartition("/")[0]
        if parent:
            self.mkdir(parent)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def render(self) -> bytes:
        """The archive, with its trailer."""
        self._entry(_TRAILER, 0)
        return b"".join(self._chunks)
