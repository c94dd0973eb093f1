"""``make bench-scheduler``: the DepCon profile against the default profile.

Both profiles come from one mode (a) configuration rendered from the template
(buildtools/scheduler.py): ``depcon-scheduler`` and the stock ``default-scheduler``.
Every part runs the two alternately (A B A B ...), at least five times each, and
reports the mean with a 95% Student t interval; a ratio is taken per repetition
(the two runs side by side) and its interval is over those per-repetition ratios.

1. Decision time, in-process (the research's figure, 0.135 ms at 300 nodes, is a
   decision without an API server): ``BenchmarkDecision`` of the Go module in
   harness/bench/schedulerframework, on the pinned k8s.io/kubernetes scheduler
   framework, times PreFilter, Filter, PreScore, Score and the pick of one pod
   over a snapshot of 300 nodes, the way kube-scheduler's scheduling algorithm
   runs them (including the default profile's adaptive stop after ~48% feasible
   nodes). One test-binary run per (repetition, profile); ns/op → ms per pod
   (wall, the targets' measure), and the process's CPU time per decision
   (getrusage), which a CPU shared with other work inflates far less.
   Targets: DepCon <= 0.135 ms, DepCon/default <= 1.1.

2. Throughput on a real control plane: each run gets a fresh etcd +
   kube-apiserver + kube-scheduler at the pinned version (harness/controlplane.py).
   Nodes are API objects of one size, each with a random SLO capacity and a
   pre-bound load pod; the SLO pods (random cpu, memory and SLO requests) are
   all created *before* the scheduler starts, so it drains a backlog and its own
   pace is measured. pods/s = (N - 1) / (last - first) over the scheduler's
   ``Scheduled`` events (microsecond ``eventTime``, stamped after each bind).
   The API server and etcd share the CPUs with the scheduler, so this is the
   whole control plane's pace, binds included; the client rate limit is raised
   (qps 5000) so that it does not cap both profiles alike. Latencies come from
   kube-scheduler's own histograms (quantiles interpolated within buckets as
   Prometheus' ``histogram_quantile`` does). Target: DepCon/default >= 0.9.

3. Outcome, from the same runs' final placements: vif meets an SLO with CPU the
   pod did not request, so an SLO pod is *served* when its node's unrequested CPU
   (allocatable minus every pod's request, load included) covers the network
   CPU of all the SLO pods on that node: ``CPU_M_PER_MBPS`` x the sum of their
   goals. The load pods' CPU and memory are drawn independently, from idle to
   nearly full, so free CPU and free memory disagree between nodes.

Each repetition uses its own cluster (seed ``SEED + repetition``), the same for
both profiles. Host load (loadavg before and after every run), commit, kernel
and date are recorded. Writes reports/bench/scheduler.json (summary),
scheduler-runs.json (every run) and scheduler.png.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from matplotlib.figure import Figure

from buildtools import gotool
from buildtools.scheduler import SchedulerSettings, render
from depcon.config import load_versions
from depcon.paths import repo_root
from depcon.provenance import loadavg
from harness.bench import cli
from harness.bench.host import host
from harness.bench.metrics import counter, histogram
from harness.bench.stats import MIN_REPS, interval, paired_difference, paired_ratio, target
from harness.bench.workload import (
    NODE_CPU_M,
    NODE_MEM_MI,
    NODE_PODS,
    SEED,
    NodeSpec,
    PodSpec,
    cluster,
)
from harness.controlplane import ControlPlane, add_node

# vif's CPU per Mbps of goal: reports/bench/vif.json's sweep carried 79 Mbps
# with 10% of a CPU and 208 Mbps with 20% (1.3 and 1.0 millicores per Mbps at
# these goals' size); one millicore per Mbps, linear.
CPU_M_PER_MBPS = 1.0
PROFILES = ("depcon-scheduler", "default-scheduler")
RESEARCH_DECISION_MS = 0.135
MAX_DECISION_RATIO = 1.1
MIN_THROUGHPUT_RATIO = 0.9
DECISION_NODES = 300
DECISION_POD = (500, 512, 50)  # cpu m, memory Mi, SLO Mbps: mid-range of the SLO pods
THROUGHPUT_NODES = 500
THROUGHPUT_PODS = 2000
THREADS = 8
DRAIN_TIMEOUT_S = 900.0
EVENTS_TIMEOUT_S = 60.0
GO_MODULE = Path("harness") / "bench" / "schedulerframework"


# --- 1. decision time, in-process ---------------------------------------------------


_BENCH_LINE = re.compile(r"^(Benchmark\S+?)(?:-(\d+))?\s+(\d+)\s+(.+)$")
_BENCH_VALUE = re.compile(r"([0-9.eE+-]+) (\S+)")


def parse_go_bench(text: str) -> list[dict[str, Any]]:
    """The result lines of ``go test -bench`` output: name, GOMAXPROCS, N, {unit: value}."""
    out = []
    for line in text.splitlines():
        m = _BENCH_LINE.match(line.strip())
        if not m:
            continue
        values = {unit: float(v) for v, unit in _BENCH_VALUE.findall(m.group(4))}
        if "ns/op" not in values:
            continue
        out.append(
            {
                "name": m.group(1),
                "procs": int(m.group(2)) if m.group(2) else None,
                "iterations": int(m.group(3)),
                "values": values,
            }
        )
    return out


def decision_cluster(seed: int) -> dict[str, Any]:
    """The cluster JSON BenchmarkDecision reads (schedulerframework.Cluster)."""
    shape, _ = cluster(DECISION_NODES, 0, seed)
    cpu_m, mem_mi, slo = DECISION_POD
    return {
        "sloResource": load_versions().slo.resource_name,
        "nodes": [
            {
                "name": n.name,
                "cpuMilli": NODE_CPU_M,
                "memoryMi": NODE_MEM_MI,
                "pods": NODE_PODS,
                "slo": n.slo,
                "loadCpuMilli": n.load_cpu_m,
                "loadMemoryMi": n.load_mem_mi,
            }
            for n in shape
        ],
        "pod": {"cpuMilli": cpu_m, "memoryMi": mem_mi, "slo": slo},
    }


def _go_env() -> dict[str, str]:
    # cgo as a plain `go test` on this machine builds it.
    return gotool.go_env(cgo=True, mod="readonly")


def run_decisions(reps: int, benchtime: str, work: Path) -> list[dict[str, Any]]:
    module = repo_root() / GO_MODULE
    binary = work / "decide.test"
    print(f"[bench-scheduler] building {GO_MODULE} test binary", flush=True)
    subprocess.run(
        ["go", "test", "-c", "-o", str(binary), "."], cwd=module, env=_go_env(), check=True
    )
    config = work / "kube-scheduler-config.yaml"
    config.write_text(render(SchedulerSettings.from_versions(mode="second-profile")))
    clusters = work / "cluster.json"
    clusters.write_text(json.dumps(decision_cluster(SEED)))
    runs = []
    for rep in range(reps):
        for profile in PROFILES:
            before = loadavg()
            proc = subprocess.run(
                [
                    str(binary),
                    "-test.run=^$",
                    f"-test.bench=^BenchmarkDecision/{profile}$",
                    f"-test.benchtime={benchtime}",
                    "-test.count=1",
                    f"-depcon.config={config}",
                    f"-depcon.cluster={clusters}",
                ],
                cwd=module,
                capture_output=True,
                text=True,
                check=False,
            )
            after = loadavg()
            results = parse_go_bench(proc.stdout)
            if proc.returncode != 0 or len(results) != 1:
                raise RuntimeError(
                    f"BenchmarkDecision/{profile} failed ({proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
                )
            (r,) = results
            v = r["values"]
            run = {
                "rep": rep,
                "profile": profile,
                "procs": r["procs"],
                "iterations": r["iterations"],
                "ns_per_op": v["ns/op"],
                "ms_per_pod": v["ns/op"] / 1e6,
                "cpu_ms_per_pod": v["cpu-ns/op"] / 1e6 if "cpu-ns/op" in v else None,
                "filtered_nodes": v.get("filtered/op"),
                "scored_nodes": v.get("scored/op"),
                "bytes_per_op": v.get("B/op"),
                "allocs_per_op": v.get("allocs/op"),
                "loadavg_before": before,
                "loadavg_after": after,
            }
            print(f"[bench-scheduler] decision {json.dumps(run)}", flush=True)
            runs.append(run)
    return runs


# --- 2. and 3. the control plane ----------------------------------------------------


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
                "image": f"registry.k8s.io/pause:{load_versions().kubernetes.pause_version}",
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


def pods_per_s(stamps: Sequence[float]) -> float | None:
    """(N - 1) / (last - first) of the bind stamps."""
    if len(stamps) < 2:
        return None
    span = max(stamps) - min(stamps)
    return (len(stamps) - 1) / span if span > 0 else None


def slo_outcome(
    shape: Sequence[NodeSpec], specs: Sequence[PodSpec], placed: Mapping[str, str]
) -> dict[str, Any]:
    """Share of SLO pods served: their node's unrequested CPU covers its SLO pods' goals.

    An unbound pod counts as not served.
    """
    free = {n.name: NODE_CPU_M - n.load_cpu_m for n in shape}
    goals = dict.fromkeys(free, 0)
    for p in specs:
        node = placed.get(p.name)
        if node is not None:
            free[node] -= p.cpu_m
            goals[node] += p.slo
    short = {n for n in free if free[n] < CPU_M_PER_MBPS * goals[n]}
    served = [p for p in specs if placed.get(p.name) not in short and p.name in placed]
    return {
        "served_share": len(served) / len(specs),
        "nodes_short_of_cpu": len(short),
        "pods_on_short_nodes": sum(1 for p in specs if placed.get(p.name) in short),
        "min_free_cpu_m_of_used_nodes": min(
            (free[n] for n in set(placed.values()) if n in free), default=None
        ),
    }


def _config(cp: ControlPlane) -> str:
    text = render(
        SchedulerSettings.from_versions(
            mode="second-profile", kubeconfig=str(cp.scheduler_kubeconfig), leader_elect=False
        )
    )
    doc = yaml.safe_load(text)
    doc["clientConnection"].update({"qps": 5000, "burst": 5000})
    return str(yaml.safe_dump(doc, sort_keys=False))


def run_throughput(profile: str, rep: int, nodes: int, pods: int) -> dict[str, Any]:
    shape, specs = cluster(nodes, pods, SEED + rep)
    slo_name = load_versions().slo.resource_name
    print(f"[bench-scheduler] rep {rep} {profile}: {nodes} nodes, {pods} pods", flush=True)
    before = loadavg()
    with ControlPlane() as cp:
        t = time.monotonic()

        def node(api: Any, n: NodeSpec) -> None:
            add_node(
                api,
                n.name,
                cpu=f"{NODE_CPU_M}m",
                memory=f"{NODE_MEM_MI}Mi",
                pods=NODE_PODS,
                extended={slo_name: str(n.slo)},
            )
            client.CoreV1Api(api).create_namespaced_pod(
                "default",
                _pod(
                    f"load-{n.name}",
                    n.load_cpu_m,
                    n.load_mem_mi,
                    0,
                    scheduler="default-scheduler",
                    node=n.name,
                ),
            )

        _parallel(cp, shape, node)

        def pod(api: Any, p: PodSpec) -> None:
            client.CoreV1Api(api).create_namespaced_pod(
                "default", _pod(p.name, p.cpu_m, p.mem_mi, p.slo, scheduler=profile, node=None)
            )

        _parallel(cp, specs, pod)
        setup_s = time.monotonic() - t
        sched = cp.start_scheduler(_config(cp))
        t0 = time.monotonic()
        while True:
            metrics = sched.metrics()
            done = counter(
                metrics,
                "scheduler_schedule_attempts_total",
                {"profile": profile, "result": "scheduled"},
            )
            if done >= pods:
                break
            if time.monotonic() - t0 > DRAIN_TIMEOUT_S:
                raise RuntimeError(f"rep {rep} {profile}: only {done} of {pods} pods scheduled")
            time.sleep(0.5)
        wall_s = time.monotonic() - t0
        metrics = sched.metrics()
        api = cp.api_client()
        bound: list[Any] = client.CoreV1Api(api).list_namespaced_pod("default").items
        placed = {
            str(p.metadata.name): str(p.spec.node_name)
            for p in bound
            if p.spec.node_name and str(p.metadata.name).startswith("slo-")
        }
        # The scheduler writes its events asynchronously, after the binds.
        deadline = time.monotonic() + EVENTS_TIMEOUT_S
        while True:
            stamps = _scheduled_stamps(api)
            if len(stamps) >= len(placed) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        sched.stop()
    after = loadavg()
    attempt = histogram(
        metrics,
        "scheduler_scheduling_attempt_duration_seconds",
        {"profile": profile, "result": "scheduled"},
    )
    algorithm = histogram(metrics, "scheduler_scheduling_algorithm_duration_seconds", {})
    run = {
        "rep": rep,
        "profile": profile,
        "seed": SEED + rep,
        "nodes": nodes,
        "pods": pods,
        "pods_bound": len(placed),
        "unschedulable_attempts": counter(
            metrics,
            "scheduler_schedule_attempts_total",
            {"profile": profile, "result": "unschedulable"},
        ),
        "events_seen": len(stamps),
        "pods_per_s": pods_per_s(stamps),
        "pods_per_s_wall": pods / wall_s,
        "attempt_mean_ms": _ms(attempt["mean_s"]),
        "attempt_p50_ms": _ms(attempt["p50_s"]),
        "attempt_p99_ms": _ms(attempt["p99_s"]),
        "algorithm_mean_ms": _ms(algorithm["mean_s"]),
        **slo_outcome(shape, specs, placed),
        "setup_s": round(setup_s, 1),
        "loadavg_before": before,
        "loadavg_after": after,
    }
    print(f"[bench-scheduler] throughput {json.dumps(run)}", flush=True)
    return run


def _scheduled_stamps(api: Any) -> list[float]:
    events: Any = client.EventsV1Api(api).list_namespaced_event(
        "default", field_selector="reason=Scheduled"
    )
    return [
        e.event_time.timestamp()
        for e in events.items
        if e.event_time and e.regarding.name.startswith("slo-")
    ]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# --- summary, plot ------------------------------------------------------------------


def _by_profile(runs: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[float]]:
    """Each profile's values of ``key``, ordered by repetition."""
    out: dict[str, list[float]] = {p: [] for p in PROFILES}
    for r in sorted(runs, key=lambda r: int(r["rep"])):
        out[r["profile"]].append(float(r[key]))
    return out


def _compare(runs: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        values = _by_profile(runs, key)
        dep, std = values[PROFILES[0]], values[PROFILES[1]]
        out[key] = {
            PROFILES[0]: interval(dep),
            PROFILES[1]: interval(std),
            "ratio_depcon_over_default": paired_ratio(dep, std) if all(std) else None,
        }
    return out


DECISION_KEYS = (
    "ms_per_pod",
    "cpu_ms_per_pod",
    "filtered_nodes",
    "scored_nodes",
    "allocs_per_op",
    "bytes_per_op",
)
THROUGHPUT_KEYS = (
    "pods_per_s",
    "attempt_mean_ms",
    "attempt_p50_ms",
    "attempt_p99_ms",
    "algorithm_mean_ms",
    "setup_s",
)


def summarize(
    decisions: Sequence[Mapping[str, Any]],
    throughput: Sequence[Mapping[str, Any]],
    info: Mapping[str, Any],
) -> dict[str, Any]:
    decision = _compare(decisions, DECISION_KEYS)
    flow = _compare(throughput, THROUGHPUT_KEYS)
    served = _by_profile(throughput, "served_share")
    outcome = {
        "served_share": {
            PROFILES[0]: interval(served[PROFILES[0]]),
            PROFILES[1]: interval(served[PROFILES[1]]),
            "difference_depcon_minus_default": paired_difference(
                served[PROFILES[0]], served[PROFILES[1]]
            ),
        },
        "pods_on_short_nodes": {
            p: interval(v) for p, v in _by_profile(throughput, "pods_on_short_nodes").items()
        },
        "cpu_m_per_mbps": CPU_M_PER_MBPS,
    }
    ms = decision["ms_per_pod"]
    return {
        "host": dict(info),
        "decision_in_process": {
            "nodes": DECISION_NODES,
            "pod": dict(zip(("cpu_m", "memory_mi", "slo_mbps"), DECISION_POD, strict=True)),
            "reps": len(decisions) // len(PROFILES),
            "procs": sorted({r["procs"] for r in decisions if r["procs"]}),
            **decision,
        },
        "throughput_control_plane": {
            "nodes": throughput[0]["nodes"] if throughput else None,
            "pods": throughput[0]["pods"] if throughput else None,
            "reps": len(throughput) // len(PROFILES),
            **flow,
        },
        "outcome": outcome,
        "targets": {
            "decision_depcon_le_0_135_ms": target(
                ms[PROFILES[0]], RESEARCH_DECISION_MS, at_most=True
            ),
            "decision_ratio_le_1_1": target(
                ms["ratio_depcon_over_default"], MAX_DECISION_RATIO, at_most=True
            ),
            "throughput_ratio_ge_0_9": target(
                flow["pods_per_s"]["ratio_depcon_over_default"], MIN_THROUGHPUT_RATIO, at_most=False
            ),
        },
        "method": (
            "profiles run alternately (A B A B), repetition i pairs the two; mean and 95% "
            "Student t interval over repetitions, ratios per repetition. Decision: Go "
            "BenchmarkDecision on the pinned scheduler framework, 300-node snapshot, one "
            "test-binary run per repetition and profile. Throughput and outcome: fresh "
            "etcd + kube-apiserver + kube-scheduler per run, pods created before the "
            "scheduler starts, pods/s from its Scheduled events; a pod is served when its "
            "node's unrequested CPU covers cpu_m_per_mbps x the goals of its SLO pods"
        ),
    }


def _bars(
    ax: Any,
    stat: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    key: str,
    scale: float,
    *,
    x0: float = 0.0,
    label: bool = True,
) -> list[float]:
    """One bar per profile (mean, 95% interval as the error bar), the runs as dots."""
    values = _by_profile(runs, key)
    xs = []
    for i, p in enumerate(PROFILES):
        s = stat[p]
        x = x0 + i
        mean = (s["mean"] or 0.0) * scale
        err = (s["half_width"] or 0.0) * scale
        ax.bar(x, mean, yerr=err, capsize=6, color=f"C{i}", alpha=0.7, label=p if label else None)
        ax.plot([x] * len(values[p]), [v * scale for v in values[p]], "k.", markersize=4)
        xs.append(x)
    return xs


def _ratio_text(stat: Mapping[str, Any] | None, scale: float = 1.0) -> str:
    if not stat or stat["mean"] is None:
        return "n/a"
    lo, hi = stat["ci95"] or (math.nan, math.nan)
    return f"{stat['mean'] * scale:.2f} [{lo * scale:.2f}, {hi * scale:.2f}]"


def plot(
    summary: Mapping[str, Any],
    decisions: Sequence[Mapping[str, Any]],
    throughput: Sequence[Mapping[str, Any]],
    path: Path,
) -> None:
    fig = Figure(figsize=(15, 4.8))
    ax1, ax2, ax3 = fig.subplots(1, 3)
    dec = summary["decision_in_process"]
    wall, cpu = dec["ms_per_pod"], dec["cpu_ms_per_pod"]
    xs = _bars(ax1, wall, decisions, "ms_per_pod", 1.0)
    xs += _bars(ax1, cpu, decisions, "cpu_ms_per_pod", 1.0, x0=2.5, label=False)
    ax1.set_xticks(xs, ["wall\nDepCon", "wall\ndefault", "CPU\nDepCon", "CPU\ndefault"])
    ax1.axhline(RESEARCH_DECISION_MS, color="red", linestyle="--", label="research 0.135 ms")
    ax1.set_ylabel("ms per pod")
    ax1.set_title(
        f"decision in-process, {dec['nodes']} nodes, {dec['reps']} runs each\n"
        f"DepCon/default wall {_ratio_text(wall['ratio_depcon_over_default'])}, "
        f"CPU {_ratio_text(cpu['ratio_depcon_over_default'])}",
        fontsize=9,
    )
    ax1.legend(fontsize=8)
    flow = summary["throughput_control_plane"]
    t = flow["pods_per_s"]
    xs = _bars(ax2, t, throughput, "pods_per_s", 1.0)
    ax2.set_xticks(xs, ["DepCon", "default"])
    ax2.set_ylabel("pods/s (scheduler's bind events)")
    ax2.set_title(
        f"throughput, control plane, {flow['pods']} pods / {flow['nodes']} nodes, "
        f"{flow['reps']} runs each\n"
        f"DepCon/default {_ratio_text(t['ratio_depcon_over_default'])} (target >= 0.9)",
        fontsize=9,
    )
    o = summary["outcome"]["served_share"]
    xs = _bars(ax3, o, throughput, "served_share", 100.0)
    ax3.set_xticks(xs, ["DepCon", "default"])
    ax3.set_ylabel("% of SLO pods served")
    diff = o["difference_depcon_minus_default"]
    ax3.set_title(
        f"outcome: node's unrequested CPU covers {CPU_M_PER_MBPS:g} m/Mbps x its SLO goals\n"
        f"DepCon - default {_ratio_text(diff, 100.0)} percentage points",
        fontsize=9,
    )
    lows = [min(o[p]["ci95"][0], o[p]["mean"]) * 100 for p in PROFILES if o[p]["ci95"]]
    if lows:
        ax3.set_ylim(max(0.0, min(lows) - 2.0), 100.5)
    h = summary["host"]
    fig.suptitle(
        f"kube-scheduler {h['kubernetes']}, DepCon vs default profile: mean and 95% t "
        f"interval, dots are runs; {h['date']}, commit {h['commit'][:10]}, kernel {h['kernel']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.bench.scheduler")
    parser.add_argument("--decision-reps", type=int, default=10)
    parser.add_argument("--throughput-reps", type=int, default=MIN_REPS)
    parser.add_argument("--benchtime", default="2s", help="go test -benchtime of one run")
    parser.add_argument("--nodes", type=int, default=THROUGHPUT_NODES)
    parser.add_argument("--pods", type=int, default=THROUGHPUT_PODS)
    cli.add_out(parser)
    args = parser.parse_args(argv)
    cli.require_reps(parser, args, args.decision_reps, args.throughput_reps)
    info = host()
    with tempfile.TemporaryDirectory(prefix="depcon-bench-") as work:
        decisions = run_decisions(args.decision_reps, args.benchtime, Path(work))
    throughput = [
        run_throughput(profile, rep, args.nodes, args.pods)
        for rep in range(args.throughput_reps)
        for profile in PROFILES
    ]
    summary = summarize(decisions, throughput, info)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "scheduler.json").write_text(json.dumps(summary, indent=2) + "\n")
    raw = {"host": info, "decision_runs": decisions, "throughput_runs": throughput}
    (out / "scheduler-runs.json").write_text(json.dumps(raw, indent=2) + "\n")
    plot(summary, decisions, throughput, out / "scheduler.png")
    print(json.dumps(summary["targets"], indent=2))
    print(f"wrote {out}/scheduler.json, scheduler-runs.json and scheduler.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
