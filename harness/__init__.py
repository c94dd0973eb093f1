"""Harnesses: the VMs, the loopback control plane, the lab and the benchmarks."""
