"""Benchmarks: ``make bench-<name>`` runs ``python -m harness.bench.<name>``."""
