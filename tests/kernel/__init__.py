"""vif.ko tests in a real kernel under qemu (see tests/vm)."""
