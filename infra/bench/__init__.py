"""Benchmarks: ``make bench-<name>`` runs ``python -m infra.bench.<name>``."""
