"""vif.ko tests in a real kernel under qemu (see harness/vm)."""
