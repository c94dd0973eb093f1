"""``make bench-scheduler``: the DepCon profile against the stock profile, on a real control plane.

Each run gets a fresh etcd + kube-apiserver + kube-scheduler at the pinned
version (infra/controlplane.py) with the mode (a) configuration rendered from the
template (infra/scheduler.py): one scheduler process, both profiles. Nodes are
API objects, all of one size, each with a random SLO capacity and a random
pre-bound load pod, so free CPU differs from node to node. The SLO pods
(random cpu, memory and SLO requests, the same seed in every run) are all
created *before* the scheduler starts, so it drains a backlog: its own speed
is measured, not the client's creation rate. The pods name a profile:
``depcon-scheduler`` in the DepCon runs, ``default-scheduler`` in the stock run.

What is measured, and from where:

* pods/s: from the scheduler's own ``Scheduled`` events (events.k8s.io,
  microsecond ``eventTime`` stamped by kube-scheduler after each bind):
  (N - 1) / (last - first). The API server shares the 2 CPUs with the
  scheduler, so this is the whole control plane's pace, binds included.
  kube-scheduler's client rate limit (qps 50 by default) is raised to 5000 in
  the benchmark's copy of the configuration so that it does not cap both runs
  at the same 50 pods/s.
* latency p50/p99: kube-scheduler's ``scheduler_scheduling_attempt_duration_seconds``
  (algorithm + bind) and ``scheduler_scheduling_algorithm_duration_seconds``
  (filter + score: the decision) histograms, quantiles interpolated within
  buckets as Prometheus' ``histogram_quantile`` does; means from _sum/_count.
* decision time per pod: the mean of the algorithm histogram, at 500 and at
  300 nodes (the research's simulated figure: 0.135 ms at 300 nodes).
* placement quality: kube-scheduler runs at ``-v=3`` (in every run alike) and
  logs "Attempting to schedule pod" from its one scheduling loop, so its log
  gives the exact decision order (bind events do not: binding is asynchronous).
  Every pod is scheduled at its first attempt (checked: no unschedulable
  attempts), so the state at each decision is the pre-load plus the earlier
  pods at their final nodes. Replaying that order, a pod counts
  as well placed if its node has the highest DepCon score among the feasible
  nodes (kube-scheduler's integer arithmetic: RequestedToCapacityRatio, cpu 10,
  memory 1); ``most_free_cpu`` is the stricter share placed on a feasible node
  with the largest free CPU share, memory ignored: ``_at_1pct`` at kube-scheduler's
  resolution (integer percent of allocatable), ``_exact`` to the millicore.

Writes reports/bench/scheduler.json and scheduler.png.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from matplotlib.figure import Figure

from infra.config import load_versions
from infra.controlplane import ControlPlane, add_node
from infra.paths import repo_root
from infra.scheduler import SchedulerSettings, render

SEED = 5
NODE_CPU_M = 32_000
NODE_MEM_MI = 131_072
NODE_PODS = 110
SLO_CAPACITIES = (200, 500, 1000, 2500)  # Mbps, one per node at random
POD_CPU_M = tuple(range(100, 1001, 100))
POD_MEM_MI = (128, 256, 512, 1024, 2048)
POD_SLO = (10, 20, 50, 100)
PRELOAD_CPU_M = tuple(range(0, 24_001, 500))
CPU_WEIGHT, MEM_WEIGHT = 10, 1
RESEARCH_DECISION_MS = 0.135
THREADS = 8
DRAIN_TIMEOUT_S = 900.0
MI = 1 << 20


@dataclass(frozen=True)
class Run:
    name: str
    profile: str  # schedulerName of the pods
    nodes: int
    pods: int


RUNS = (
    Run("depcon-500", "depcon-scheduler", 500, 2000),
    Run("default-500", "default-scheduler", 500, 2000),
    Run("depcon-300", "depcon-scheduler", 300, 2000),
)


@dataclass(frozen=True)
class PodSpec:
    name: str
    cpu_m: int
    mem_mi: int
    slo: int


def _cluster(nodes: int, pods: int) -> tuple[list[tuple[str, int, int]], list[PodSpec]]:
    """(node, SLO capacity, pre-load cpu m) and the SLO pods, from a fixed seed."""
    rng = random.Random(SEED)
    shape = [
        (f"node-{i:04d}", rng.choice(SLO_CAPACITIES), rng.choice(PRELOAD_CPU_M))
        for i in range(nodes)
    ]
    specs = [
        PodSpec(f"slo-{i:05d}", rng.choice(POD_CPU_M), rng.choice(POD_MEM_MI), rng.choice(POD_SLO))
        for i in range(pods)
    ]
    return shape, specs


def _pod(name: str, cpu_m: int, mem_mi: int, slo: int, *, scheduler: str, node: str | None) -> Any:
    slo_name = load_versions().slo.resource_name
    requests = {"cpu": f"{cpu_m}m", "memory": f"{mem_mi}Mi"}
    limits = {}
    if slo:
        requests[slo_name] = limits[slo_name] = str(slo)
    spec: dict[str, Any] = {
        "schedulerName": scheduler,
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "c",
                "image": "registry.k8s.io/pause:3.10.2",
                "resources": {"requests": requests, "limits": limits},
            }
        ],
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _parallel(cp: ControlPlane, items: Iterable[Any], work: Callable[[Any, Any], None]) -> None:
    local = threading.local()

    def run(item: Any) -> None:
        if not hasattr(local, "api"):
            local.api = cp.api_client()
        work(local.api, item)

    with ThreadPoolExecutor(THREADS) as pool:
        for _ in pool.map(run, items):
            pass


# --- metrics ------------------------------------------------------------------------


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def _samples(text: str, name: str, match: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(labels.get(k) == v for k, v in match.items()):
            out.append((labels, float(m.group(3))))
    return out


def histogram(text: str, name: str, match: dict[str, str]) -> dict[str, float | None]:
    """count, mean and interpolated p50/p99 (seconds) of one histogram series."""
    buckets: dict[float, float] = {}
    for labels, value in _samples(text, f"{name}_bucket", match):
        le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        buckets[le] = buckets.get(le, 0.0) + value
    count = sum(v for _, v in _samples(text, f"{name}_count", match))
    total = sum(v for _, v in _samples(text, f"{name}_sum", match))
    result: dict[str, float | None] = {
        "count": count,
        "mean_s": total / count if count else None,
    }
    for q in (0.5, 0.99):
        result[f"p{round(q * 100)}_s"] = _quantile(q, sorted(buckets.items())) if count else None
    return result


def _quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            inside = cumulative - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, cumulative
    return lower


def _counter(text: str, name: str, match: dict[str, str]) -> float:
    return sum(v for _, v in _samples(text, name, match))


# --- placement quality --------------------------------------------------------------


def _round_half_away(x: float) -> int:
    return math.floor(x + 0.5)


def depcon_score(cpu_req: int, cpu_alloc: int, mem_req: int, mem_alloc: int) -> int:
    """kube-scheduler's RequestedToCapacityRatio score, shape (0,10) (100,0)."""
    score = weights = 0
    for req, alloc, w in ((cpu_req, cpu_alloc, CPU_WEIGHT), (mem_req, mem_alloc, MEM_WEIGHT)):
        util = 100 if req > alloc else req * 100 // alloc
        s = 100 - util
        if s > 0:
            score += s * w
            weights += w
    return _round_half_away(score / weights) if weights else 0


def placement_quality(
    shape: Sequence[tuple[str, int, int]],
    specs: Sequence[PodSpec],
    placed: dict[str, str],
    order: Sequence[str],
) -> dict[str, float]:
    """Share of pods on a best node, replaying the scheduler's decisions in ``order``."""
    by_name = {p.name: p for p in specs}
    specs = [by_name[n] for n in order]
    cpu = {n: pre for n, _, pre in shape}
    mem = dict.fromkeys(cpu, 0)
    slo = {n: cap for n, cap, _ in shape}
    count = {n: 1 for n in cpu}
    best_score = best_cpu = best_cpu_pct = 0
    for p in specs:
        feasible = [
            n
            for n in cpu
            if cpu[n] + p.cpu_m <= NODE_CPU_M
            and mem[n] + p.mem_mi <= NODE_MEM_MI
            and slo[n] >= p.slo
            and count[n] < NODE_PODS
        ]
        node = placed[p.name]
        scores = {
            n: depcon_score(
                cpu[n] + p.cpu_m, NODE_CPU_M, (mem[n] + p.mem_mi) * MI, NODE_MEM_MI * MI
            )
            for n in feasible
        }
        if node in scores and scores[node] == max(scores.values()):
            best_score += 1
        if node in feasible and cpu[node] == min(cpu[n] for n in feasible):
            best_cpu += 1
        util = {n: (cpu[n] + p.cpu_m) * 100 // NODE_CPU_M for n in feasible}
        if node in util and util[node] == min(util.values()):
            best_cpu_pct += 1
        cpu[node] += p.cpu_m
        mem[node] += p.mem_mi
        slo[node] -= p.slo
        count[node] += 1
    n = len(specs)
    return {
        "best_depcon_score": best_score / n,
        "most_free_cpu_at_1pct": best_cpu_pct / n,
        "most_free_cpu_exact": best_cpu / n,
    }


# --- one run ------------------------------------------------------------------------


def _config(cp: ControlPlane) -> str:
    text = render(
        SchedulerSettings.from_versions(
            mode="second-profile", kubeconfig=str(cp.scheduler_kubeconfig), leader_elect=False
        )
    )
    doc = yaml.safe_load(text)
    doc["clientConnection"].update({"qps": 5000, "burst": 5000})
    return str(yaml.safe_dump(doc, sort_keys=False))


def run_one(run: Run) -> dict[str, Any]:
    shape, specs = _cluster(run.nodes, run.pods)
    slo_name = load_versions().slo.resource_name
    print(f"[bench-scheduler] {run.name}: {run.nodes} nodes, {run.pods} pods", flush=True)
    with ControlPlane() as cp:
        t = time.monotonic()

        def node(api: Any, item: tuple[str, int, int]) -> None:
            name, cap, pre = item
            add_node(
                api,
                name,
                cpu=f"{NODE_CPU_M}m",
                memory=f"{NODE_MEM_MI}Mi",
                pods=NODE_PODS,
                extended={slo_name: str(cap)},
            )
            client.CoreV1Api(api).create_namespaced_pod(
                "default", _pod(f"load-{name}", pre, 0, 0, scheduler="default-scheduler", node=name)
            )

        _parallel(cp, shape, node)

        def pod(api: Any, p: PodSpec) -> None:
            client.CoreV1Api(api).create_namespaced_pod(
                "default", _pod(p.name, p.cpu_m, p.mem_mi, p.slo, scheduler=run.profile, node=None)
            )

        _parallel(cp, specs, pod)
        setup_s = time.monotonic() - t
        sched = cp.start_scheduler(_config(cp), extra_args=["-v=3"])
        t0 = time.monotonic()
        while True:
            metrics = sched.metrics()
            done = _counter(
                metrics,
                "scheduler_schedule_attempts_total",
                {"profile": run.profile, "result": "scheduled"},
            )
            if done >= run.pods:
                break
            if time.monotonic() - t0 > DRAIN_TIMEOUT_S:
                raise RuntimeError(f"{run.name}: only {done} of {run.pods} pods scheduled")
            time.sleep(0.5)
        wall_s = time.monotonic() - t0
        metrics = sched.metrics()
        api = cp.api_client()
        events: Any = client.EventsV1Api(api).list_namespaced_event(
            "default", field_selector="reason=Scheduled"
        )
        stamps = sorted(
            e.event_time.timestamp()
            for e in events.items
            if e.event_time and e.regarding.name.startswith("slo-")
        )
        pods: list[Any] = client.CoreV1Api(api).list_namespaced_pod("default").items
        placed = {str(p.metadata.name): str(p.spec.node_name) for p in pods if p.spec.node_name}
        sched.stop()
        log = sched.process.log.read_text(errors="replace")
    order = list(
        dict.fromkeys(re.findall(r'"Attempting to schedule pod" pod="default/(slo-\d+)"', log))
    )
    evaluated = [
        int(x) for x in re.findall(r'"Successfully bound pod to node".* evaluatedNodes=(\d+)', log)
    ]

    unschedulable = _counter(
        metrics,
        "scheduler_schedule_attempts_total",
        {"profile": run.profile, "result": "unschedulable"},
    )
    span = stamps[-1] - stamps[0] if len(stamps) > 1 else 0.0
    attempt = histogram(
        metrics,
        "scheduler_scheduling_attempt_duration_seconds",
        {"profile": run.profile, "result": "scheduled"},
    )
    algorithm = histogram(metrics, "scheduler_scheduling_algorithm_duration_seconds", {})
    ext = {
        point: histogram(
            metrics,
            "scheduler_framework_extension_point_duration_seconds",
            {"extension_point": point, "profile": run.profile, "status": "Success"},
        )["mean_s"]
        for point in ("Filter", "PreScore", "Score")
    }
    result = {
        "run": run.name,
        "profile": run.profile,
        "nodes": run.nodes,
        "pods": run.pods,
        "pods_bound": len([n for n in placed if n.startswith("slo-")]),
        "unschedulable_attempts": unschedulable,
        "events_seen": len(stamps),
        "pods_per_s": (len(stamps) - 1) / span if span > 0 else None,
        "pods_per_s_wall": run.pods / wall_s,
        "attempt_latency_s": attempt,
        "decision_latency_s": algorithm,
        "extension_point_mean_s": ext,
        "placement": (
            placement_quality(shape, specs, placed, order)
            if unschedulable == 0 and len(order) == run.pods
            else None
        ),
        "evaluated_nodes_mean": sum(evaluated) / len(evaluated) if evaluated else None,
        "setup_s": round(setup_s, 1),
    }
    print(f"[bench-scheduler] {run.name}: {json.dumps(result)}", flush=True)
    return result


def summarize(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by = {r["run"]: r for r in results}
    dep, std, small = by["depcon-500"], by["default-500"], by["depcon-300"]
    ratio = None
    if dep["pods_per_s"] and std["pods_per_s"]:
        ratio = dep["pods_per_s"] / std["pods_per_s"]
    decision_ms = small["decision_latency_s"]["mean_s"] * 1000
    return {
        "kubernetes": load_versions().kubernetes.version,
        "runs": list(results),
        "throughput_ratio_depcon_over_default": ratio,
        "decision_ms_per_pod_300_nodes": decision_ms,
        "research_decision_ms_300_nodes": RESEARCH_DECISION_MS,
        "decision_vs_research": decision_ms / RESEARCH_DECISION_MS,
        "targets": {
            "throughput_ratio_ge_0_9": ratio is not None and ratio >= 0.9,
            "placement_quality_100pct": bool(dep["placement"])
            and dep["placement"]["best_depcon_score"] == 1.0,
            "decision_le_0_135_ms": decision_ms <= RESEARCH_DECISION_MS,
        },
        "method": (
            "one kube-scheduler at the pinned version per run (mode (a) config, "
            "client qps raised, -v=3), "
            "pods created before it starts; pods/s from its Scheduled events' eventTime; "
            "latencies from its histograms; 2 shared CPUs run etcd, apiserver and scheduler"
        ),
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    runs = summary["runs"]
    fig = Figure(figsize=(13, 4))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    names = [r["run"] for r in runs]
    ax1.bar(names, [r["pods_per_s"] or 0 for r in runs], color=["C0", "C1", "C2"])
    ax1.set_ylabel("pods/s (scheduler's bind events)")
    ratio = summary["throughput_ratio_depcon_over_default"]
    ax1.set_title(f"throughput, DepCon/default = {ratio:.2f}" if ratio else "throughput")
    width = 0.38
    xs = range(len(runs))
    ax2.bar(
        [x - width / 2 for x in xs],
        [r["attempt_latency_s"]["p50_s"] * 1000 for r in runs],
        width,
        label="p50",
    )
    ax2.bar(
        [x + width / 2 for x in xs],
        [r["attempt_latency_s"]["p99_s"] * 1000 for r in runs],
        width,
        label="p99",
    )
    ax2.set_xticks(list(xs), names)
    ax2.set_ylabel("ms")
    ax2.set_title("scheduling attempt latency")
    ax2.legend()
    ax3.bar(
        names, [r["decision_latency_s"]["mean_s"] * 1000 for r in runs], color=["C0", "C1", "C2"]
    )
    ax3.axhline(RESEARCH_DECISION_MS, color="red", linestyle="--", label="research 0.135 ms")
    ax3.set_ylabel("ms per pod (mean)")
    ax3.set_title("decision time (filter + score)")
    ax3.legend()
    quality = [
        f"{r['run']}: best {r['placement']['best_depcon_score']:.1%}"
        for r in runs
        if r.get("placement")
    ]
    fig.suptitle(
        f"kube-scheduler {summary['kubernetes']}, DepCon vs default profile; " + ", ".join(quality)
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    results = [run_one(r) for r in RUNS]
    summary = summarize(results)
    out = repo_root() / "reports" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scheduler.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, out / "scheduler.png")
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2))
    print(f"wrote {out / 'scheduler.json'} and {out / 'scheduler.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
