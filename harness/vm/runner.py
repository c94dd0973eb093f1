"""Boots a pinned kernel in qemu (software emulation) and runs one test script in it.

Plain qemu with the Debian kernel and a small initramfs: it boots in seconds under
TCG, needs no root, no KVM and nothing from the host's filesystem at run time, so it
behaves the same on a developer machine and in CI. The script's output, its exit
code and ``dmesg`` come back over the serial console between markers printed by
``/init`` (see init.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from depcon.config import KernelPin, load_versions
from harness.vm.initramfs import MissingInputError, base_image, run_image
from harness.vm.module import build_module
from harness.vm.network import check_command

QEMU = "qemu-system-x86_64"
# A dmesg line matching this fails the run (the rule).
BAD_DMESG = re.compile(r"\b(BUG|WARNING|Oops)\b|refcount")
_BEGIN = "==VIF-BEGIN=="
_END = re.compile(r"==VIF-END rc=(\d+)==")
_DMESG_BEGIN = "==DMESG-BEGIN=="
_DMESG_END = "==DMESG-END=="
KSFT_PASS, KSFT_FAIL, KSFT_SKIP = 0, 1, 4


def qemu_tcg(smp: int, mem_mb: int, *, threads: Literal["multi", "single"] = "multi") -> list[str]:
    """The start of every qemu command line of the project: no devices, no display,
    software emulation (KVM hangs on these machines), the host's CPU features.

    ``threads="single"`` runs every vCPU on one host thread: slower, but the
    kernel's int3 code patching cannot race another vCPU (docs/vif-procfs.md,
    "Testing under emulation")."""
    return [
        QEMU,
        "-nodefaults",
        "-display",
        "none",
        "-accel",
        f"tcg,thread={threads}",
        "-cpu",
        "max",
        "-smp",
        str(smp),
        "-m",
        str(mem_mb),
    ]


class VmError(AssertionError):
    """A run that failed: the message carries the script output and dmesg needed to see why."""


@dataclass(frozen=True)
class VmResult:
    kernel: str
    rc: int | None  # None: the script never finished (hang, panic, timeout)
    output: str  # what the script printed
    dmesg: str
    console: str  # everything on the serial console
    boot_seconds: float  # qemu start to the script's start
    total_seconds: float
    timed_out: bool

    def bad_dmesg_lines(self) -> list[str]:
        text = self.dmesg if self.rc is not None else self.console
        return [line for line in text.splitlines() if BAD_DMESG.search(line)]

    def check(self) -> VmResult:
        """Raises VmError unless the script passed (exit 0) with a clean dmesg."""
        bad = self.bad_dmesg_lines()
        if self.rc == KSFT_PASS and not bad:
            return self
        why = (
            "timed out"
            if self.timed_out
            else "did not finish"
            if self.rc is None
            else f"exit code {self.rc}"
        )
        if bad:
            why += f"; dmesg has {len(bad)} bad line(s): " + " | ".join(bad[:5])
        tail = "\n".join(self.console.splitlines()[-60:])
        raise VmError(
            f"VM run on {self.kernel} failed: {why}\n--- script output ---\n{self.output}"
            f"\n--- dmesg ---\n{self.dmesg}\n--- console tail ---\n{tail}"
        )

    def values(self, prefix: str) -> list[str]:
        """Payloads of the output lines starting with ``prefix`` (e.g. "# bw ")."""
        return [ln[len(prefix) :] for ln in self.output.splitlines() if ln.startswith(prefix)]


def kernel_by_name(name: str | None = None) -> KernelPin:
    """A pinned kernel (versions.yml ``kernels:``) by name; the primary one by default."""
    versions = load_versions()
    if name is None:
        return versions.primary_kernel
    for k in versions.kernels:
        if name in (k.name, k.abi):
            return k
    names = [k.name for k in versions.kernels]
    raise KeyError(f"kernel {name!r} is not pinned in versions.yml (kernels: {names})")


def _section(console: str, begin: str, end: re.Pattern[str]) -> str:
    """The lines between the line starting with ``begin`` and the match of ``end``."""
    start = console.find(begin)
    if start < 0:
        return ""
    start = console.find("\n", start) + 1
    stop = end.search(console, start)
    return console[start : stop.start() if stop else len(console)]


def _read_lines(
    stream: object, sink: list[tuple[float, str]], lock: threading.Lock
) -> None:  # pragma: no cover - thread body
    assert hasattr(stream, "readline")
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        with lock:
            sink.append((time.monotonic(), line))


# maxcpus=1: the kernel boots on CPU 0 alone and /init brings the others up (init.sh says why).
_KERNEL_PARAMS = (
    "console=ttyS0 quiet oops=panic panic=-1 mitigations=off random.trust_cpu=on maxcpus=1"
)


def kernel_command(
    vmlinuz: Path, initrd: Path, *, smp: int, mem_mb: int, append: str = ""
) -> list[str]:
    """The kernel test VM's qemu command line: serial console only, no NIC at all.

    ``append`` goes after the kernel parameters every run has."""
    cmd = [
        *qemu_tcg(smp, mem_mb, threads="single"),
        "-no-reboot",
        "-serial",
        "stdio",
        "-kernel",
        str(vmlinuz),
        "-initrd",
        str(initrd),
        "-append",
        " ".join(filter(None, [_KERNEL_PARAMS, append])),
    ]
    check_command(cmd)
    return cmd


def run_script(
    script: Path,
    *,
    kernel: KernelPin | None = None,
    files: Mapping[str, Path | bytes] | None = None,
    env: Mapping[str, str] | None = None,
    smp: int = 2,
    mem_mb: int = 1024,
    timeout: float = 300.0,
    module: bool = True,
    append: str = "",
) -> VmResult:
    """Boots ``kernel`` and runs ``script`` as /test/run.sh; /test/vif.ko is the fresh build.

    ``files`` are extra files put under /test (name -> path or content); ``env`` is
    exported before the script starts; ``append`` adds kernel parameters.
    """
    kernel = kernel or kernel_by_name()
    if shutil.which(QEMU) is None:
        raise MissingInputError(f"{QEMU} not found: install the Debian package qemu-system-x86")
    if not os.access(kernel.vmlinuz, os.R_OK):
        raise MissingInputError(f"{kernel.vmlinuz} not readable: install {kernel.image_package}")

    run_files: dict[str, tuple[bytes, int]] = {"/test/run.sh": (script.read_bytes(), 0o755)}
    for name, src in (files or {}).items():
        data = src.read_bytes() if isinstance(src, Path) else src
        run_files[f"/test/{name}"] = (data, 0o755)
    if module:
        run_files["/test/vif.ko"] = (build_module(kernel).read_bytes(), 0o644)
    env_sh = "".join(f"export {k}='{v}'\n" for k, v in (env or {}).items())
    run_files["/test/env.sh"] = (env_sh.encode(), 0o644)

    with tempfile.TemporaryDirectory(prefix="vifvm-") as tmp:
        initrd = Path(tmp) / "initrd.cpio"
        with initrd.open("wb") as f:
            f.write(base_image(kernel).read_bytes())
            f.write(run_image(run_files))
        cmd = kernel_command(kernel.vmlinuz, initrd, smp=smp, mem_mb=mem_mb, append=append)
        lines: list[tuple[float, str]] = []
        lock = threading.Lock()
        start = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines, lock), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
        total = time.monotonic() - start

    with lock:
        console = "\n".join(line for _, line in lines)
        begin_at = next((t for t, line in lines if line.startswith(_BEGIN)), None)
    end = _END.search(console)
    return VmResult(
        kernel=kernel.abi,
        rc=int(end.group(1)) if end else None,
        output=_section(console, _BEGIN, _END),
        dmesg=_section(console, _DMESG_BEGIN, re.compile(re.escape(_DMESG_END))),
        console=console,
        boot_seconds=(begin_at - start) if begin_at else total,
        total_seconds=total,
        timed_out=timed_out,
    )
