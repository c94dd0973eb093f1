"""Boot a pinned Debian kernel under qemu (TCG) with a freshly built vif.ko and run a script.

The pieces, by concern:

- ``cpio``: writes newc archives (the initramfs format) from Python.
- ``initramfs``: the cached base image (busybox, iproute2, iperf3, netperf, kernel modules).
- ``module``: builds ``vif.ko`` for a kernel, cached by source hash.
- ``runner``: boots qemu, collects the script's output and ``dmesg``, judges the run.
"""

from tests.vm.runner import VmError, VmResult, kernel_by_name, run_script

__all__ = ["VmError", "VmResult", "kernel_by_name", "run_script"]
