"""Builds vif.ko from kernel_module/ for a pinned kernel, cached by a hash of the sources.

The build runs in a copy of the sources under the cache, one per kernel and source
hash, so builds for two kernels (or a developer's own ``make`` in the tree) never
share object files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

from depcon.config import KernelPin
from depcon.paths import repo_root, staged
from harness.vm.initramfs import MissingInputError, vm_cache

SOURCE_SUFFIXES = (".c", ".h")
SOURCE_NAMES = ("Kbuild", "Makefile")


def module_sources() -> list[Path]:
    src = repo_root() / "kernel_module"
    return sorted(p for p in src.iterdir() if p.suffix in SOURCE_SUFFIXES or p.name in SOURCE_NAMES)


def build_module(kernel: KernelPin) -> Path:
    """Path of a vif.ko built (with -Werror) against ``kernel``'s headers."""
    headers = kernel.headers_dir
    if not (headers / "Makefile").exists():
        raise MissingInputError(f"{headers} not found: install {kernel.headers_package}")
    h = hashlib.sha256(kernel.abi.encode())
    sources = module_sources()
    for p in sources:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    build = vm_cache() / f"vif-{kernel.abi}-{h.hexdigest()[:16]}"
    ko = build / "vif.ko"
    if ko.exists():
        return ko
    with staged(build) as tmp:
        for p in sources:
            shutil.copy2(p, tmp / p.name)
        proc = subprocess.run(
            ["make", "-C", str(tmp), f"KDIR={headers}", "modules"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"building vif.ko for {kernel.abi} failed:\n{proc.stdout}{proc.stderr}"
            )
    return ko
