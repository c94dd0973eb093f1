"""The synthetic cluster the scheduler benchmark schedules on: node shapes, load, SLO pods."""

from __future__ import annotations

import random
from dataclasses import dataclass

SEED = 5
NODE_CPU_M = 32_000
NODE_MEM_MI = 131_072
NODE_PODS = 110
SLO_CAPACITIES = (200, 500, 1000, 2500)  # Mbps, one per node at random
POD_CPU_M = tuple(range(100, 1001, 100))
POD_MEM_MI = (128, 256, 512, 1024, 2048)
POD_SLO = (10, 20, 50, 100)  # Mbps
PRELOAD_CPU_M = tuple(range(0, 31_501, 500))
PRELOAD_MEM_MI = tuple(range(0, 122_881, 4096))


@dataclass(frozen=True)
class NodeSpec:
    name: str
    slo: int
    load_cpu_m: int
    load_mem_mi: int


@dataclass(frozen=True)
class PodSpec:
    name: str
    cpu_m: int
    mem_mi: int
    slo: int


def cluster(nodes: int, pods: int, seed: int) -> tuple[list[NodeSpec], list[PodSpec]]:
    """The nodes (SLO capacity, load) and the SLO pods, from ``seed``."""
    rng = random.Random(seed)
    shape = [
        NodeSpec(
            f"node-{i:04d}",
            rng.choice(SLO_CAPACITIES),
            rng.choice(PRELOAD_CPU_M),
            rng.choice(PRELOAD_MEM_MI),
        )
        for i in range(nodes)
    ]
    specs = [
        PodSpec(f"slo-{i:05d}", rng.choice(POD_CPU_M), rng.choice(POD_MEM_MI), rng.choice(POD_SLO))
        for i in range(pods)
    ]
    return shape, specs
