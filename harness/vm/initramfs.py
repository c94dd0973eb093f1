"""The base initramfs of the test VM, built from this machine's Debian packages and cached.

It holds busybox (static), iproute2, iperf3, netperf and util-linux's setpriv (busybox's
cannot drop a capability from the bounding set) with the shared libraries they load, a
static ``wr`` helper, the kernel modules the tests load (veth, qdiscs) taken from
``/lib/modules/<abi>`` of the pinned kernel, and ``/init``. The archive is keyed by
a hash of everything that goes into it, under ``cache_dir()/vm/``.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import subprocess
from pathlib import Path

from depcon.config import KernelPin
from depcon.paths import cache_dir
from harness.vm.cpio import CpioWriter

HERE = Path(__file__).resolve().parent
BUSYBOX = Path("/bin/busybox")
# Userspace tools the test scripts run, with the Debian package that has them.
TOOLS: dict[str, str] = {
    "/usr/sbin/ip": "iproute2",
    "/usr/sbin/tc": "iproute2",
    "/usr/bin/iperf3": "iperf3",
    "/usr/bin/netperf": "netperf",
    "/usr/bin/netserver": "netperf",
    "/usr/bin/setpriv": "util-linux",
}
# Kernel modules loaded at boot (dependencies first is not needed: none of them
# has one beyond the list).
MODULES = ("drivers/net/veth", "net/sched/sch_tbf", "net/sched/sch_htb")
_VERSION = "1"  # bump when the layout changes without an input changing


class MissingInputError(RuntimeError):
    """Something the VM image needs is not installed; the message says what to install."""


def vm_cache() -> Path:
    d = cache_dir() / "vm"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _shared_libs(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], check=True, capture_output=True, text=True).stdout
    libs: list[str] = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            path = parts[parts.index("=>") + 1]
            if path.startswith("/"):
                libs.append(path)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])  # the dynamic loader
    return libs


def _kernel_module(kernel: KernelPin, name: str) -> tuple[str, bytes]:
    base = Path("/lib/modules") / kernel.abi / "kernel" / name
    for suffix, opener in ((".ko", None), (".ko.xz", lzma.decompress)):
        path = base.with_name(base.name + suffix)
        if path.exists():
            data = path.read_bytes()
            return base.name + ".ko", opener(data) if opener else data
    raise MissingInputError(f"{base}.ko not found: install {kernel.image_package}")


def build_wr() -> Path:
    """The static ``wr`` helper, compiled once per source hash."""
    src = HERE / "helpers" / "wr.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    out = vm_cache() / f"wr-{digest}"
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        subprocess.run(["gcc", "-static", "-O2", "-o", str(tmp), str(src)], check=True)
        os.replace(tmp, out)
    return out


def _inputs(kernel: KernelPin) -> list[tuple[str, bytes, int]]:
    """(path in the image, content, mode) for every file of the base image."""
    for tool, package in {str(BUSYBOX): "busybox-static", **TOOLS}.items():
        if not Path(tool).exists():
            raise MissingInputError(f"{tool} not found: install the Debian package {package}")
    if shutil.which("gcc") is None:
        raise MissingInputError("gcc not found: install the Debian packages gcc and libc6-dev")
    files: list[tuple[str, bytes, int]] = [
        ("/init", (HERE / "init.sh").read_bytes(), 0o755),
        ("/bin/busybox", BUSYBOX.read_bytes(), 0o755),
        ("/usr/bin/wr", build_wr().read_bytes(), 0o755),
    ]
    libs: set[str] = set()
    for tool in TOOLS:
        files.append((tool, Path(tool).read_bytes(), 0o755))
        libs.update(_shared_libs(tool))
    files += [(lib, Path(lib).read_bytes(), 0o755) for lib in sorted(libs)]
    for name in MODULES:
        ko_name, data = _kernel_module(kernel, name)
        files.append((f"/lib/modules/{ko_name}", data, 0o644))
    return files


def base_image(kernel: KernelPin) -> Path:
    """The cached base initramfs for ``kernel``; built when an input changed."""
    files = _inputs(kernel)
    h = hashlib.sha256(_VERSION.encode())
    for path, data, mode in files:
        h.update(f"{path}\0{mode}\0{len(data)}\0".encode())
        h.update(data)
    out = vm_cache() / f"base-{kernel.abi}-{h.hexdigest()[:16]}.cpio"
    if out.exists():
        return out
    w = CpioWriter()
    for d in ("dev", "proc", "sys", "tmp", "run", "sbin", "usr/sbin", "lib64", "test"):
        w.mkdir(d)
    for path, data, mode in files:
        w.add_file(path, data, mode)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(w.render())
    os.replace(tmp, out)
    return out


def run_image(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A small archive with the per-run files, appended to the base image."""
    w = CpioWriter()
    for path, (data, mode) in sorted(files.items()):
        w.add_file(path, data, mode)
    return w.render()
