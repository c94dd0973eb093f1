"""Boot a pinned Debian kernel under qemu (TCG) with a freshly built vif.ko and run a script.

The pieces, by concern:

- ``cpio``: writes newc archives (the initramfs format) from Python.
- ``initramfs``: the cached base image (busybox, iproute2, iperf3, netperf, kernel modules).
- ``module``: builds ``vif.ko`` for a kernel, cached by source hash.
- ``runner``: boots qemu, collects the script's output and ``dmesg``, judges the run.
- ``lib.sh``: kselftest-style shell helpers the scripts source (``VM_LIB``).
- ``demo.sh``: the short SLO demo ``make lab`` runs (stage vif-demo).
- ``image``: full Debian 12 disk images (debootstrap) and VMs booted from them (molecule,
  the lab); import it as ``harness.vm.image``. It is not re-exported here, so that
  ``python -m harness.vm.image`` does not find itself imported before it runs.
"""

from pathlib import Path

from harness.vm.runner import VmError, VmResult, kernel_by_name, run_script

VM_LIB = Path(__file__).resolve().parent / "lib.sh"
DEMO = Path(__file__).resolve().parent / "demo.sh"

__all__ = [
    "DEMO",
    "VM_LIB",
    "VmError",
    "VmResult",
    "kernel_by_name",
    "run_script",
]
