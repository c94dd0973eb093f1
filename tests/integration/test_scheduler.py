"""The DepCon scheduler profile on a real control plane (etcd, kube-apiserver, kube-scheduler).

Each test gets a fresh control plane (Nodes are cluster-wide, so tests must not
see each other's) and starts kube-scheduler with the configuration rendered
from roles/depcon_scheduler/templates/kube-scheduler-config.yaml.j2. Nodes are
API objects; the observable is the binding (``spec.nodeName``) the scheduler
writes, or the PodScheduled condition and event when it cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from buildtools.scheduler import SchedulerConfigError, SchedulerSettings, check_with_binary, render
from depcon.config import load_versions
from harness.controlplane import ControlPlane, Scheduler, add_node

pytestmark = pytest.mark.integration

SLO = load_versions().slo.resource_name
NS = "default"
PAUSE = "registry.k8s.io/pause:3.10.2"  # never pulled: no kubelet runs these pods
BIND_TIMEOUT_S = 30.0


@pytest.fixture
def cp() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        yield plane


def start_depcon(cp: ControlPlane, **overrides: Any) -> Scheduler:
    """Render (validates), have the binary load it, then start: bad input never starts."""
    settings = SchedulerSettings.from_versions(
        kubeconfig=str(cp.scheduler_kubeconfig), leader_elect=False, **overrides
    )
    text = render(settings)
    check_with_binary(text, cp.bin_dir / "kube-scheduler")
    return cp.start_scheduler(text)


def pod(
    name: str,
    *,
    cpu: str,
    memory: str = "64Mi",
    slo: int | None = None,
    scheduler: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": cpu, "memory": memory}
    limits: dict[str, str] = {}
    if slo is not None:
        # Extended resources cannot be overcommitted: request == limit.
        requests[SLO] = limits[SLO] = str(slo)
    spec: dict[str, Any] = {
        "containers": [
            {"name": "c", "image": PAUSE, "resources": {"requests": requests, "limits": limits}}
        ],
        "terminationGracePeriodSeconds": 0,
    }
    if scheduler:
        spec["schedulerName"] = scheduler
    if node:
        spec["nodeName"] = node  # bound at creation, as a running workload would be
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def create(core: Any, body: Mapping[str, Any]) -> None:
    core.create_namespaced_pod(NS, body)


def wait_bound(core: Any, name: str) -> str:
    deadline = time.monotonic() + BIND_TIMEOUT_S
    while time.monotonic() < deadline:
        p = core.read_namespaced_pod(name, NS)
        if p.spec.node_name:
            return str(p.spec.node_name)
        time.sleep(0.05)
    raise AssertionError(f"pod {name} not bound in {BIND_TIMEOUT_S} s: {p.status}")


def place(core: Any, body: Mapping[str, Any]) -> str:
    create(core, body)
    return wait_bound(core, body["metadata"]["name"])


def wait_unschedulable(core: Any, name: str) -> str:
    deadline = time.monotonic() + BIND_TIMEOUT_S
    while time.monotonic() < deadline:
        p = core.read_namespaced_pod(name, NS)
        assert not p.spec.node_name, f"pod {name} was bound to {p.spec.node_name}"
        for c in p.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return str(c.message)
        time.sleep(0.05)
    raise AssertionError(f"pod {name} has no Unschedulable condition in {BIND_TIMEOUT_S} s")


def delete(core: Any, name: str) -> None:
    # No kubelet confirms a graceful deletion: remove the object at once.
    core.delete_namespaced_pod(name, NS, grace_period_seconds=0)


# --- DepCon placement ---------------------------------------------------------------


def test_slo_filter_then_most_free_cpu(cp: ControlPlane) -> None:
    api = cp.api_client()
    core = client.CoreV1Api(api)
    add_node(api, "idle-small-slo", cpu="16", memory="64Gi", extended={SLO: "100"})
    add_node(api, "idle-no-slo", cpu="16", memory="64Gi")
    add_node(api, "busy", cpu="16", memory="64Gi", extended={SLO: "1000"})
    add_node(api, "free", cpu="16", memory="64Gi", extended={SLO: "1000"})
    create(core, pod("load-busy", cpu="8", node="busy"))
    create(core, pod("load-free", cpu="2", node="free"))
    start_depcon(cp)

    depcon = "depcon-scheduler"
    # The idle nodes have the most free CPU but not 600 Mbps of SLO capacity.
    assert place(core, pod("slo-1", cpu="1", slo=600, scheduler=depcon)) == "free"
    # 'free' has 400 left; 'busy' is the only node with 600.
    assert place(core, pod("slo-2", cpu="1", slo=600, scheduler=depcon)) == "busy"
    # A small SLO fits everywhere with capacity; the idle node wins on free CPU.
    assert place(core, pod("slo-3", cpu="1", slo=50, scheduler=depcon)) == "idle-small-slo"
    # Without an SLO request the SLO filter is moot: the most free CPU wins.
    assert place(core, pod("plain-1", cpu="1", scheduler=depcon)) == "idle-no-slo"


def test_cpu_dominates_and_memory_breaks_ties(cp: ControlPlane) -> None:
    api = cp.api_client()
    core = client.CoreV1Api(api)
    for name in ("mem-tight", "mem-roomy", "cpu-roomy"):
        add_node(api, name, cpu="10", memory="10Gi", extended={SLO: "1000"})
    create(core, pod("l1", cpu="2", memory="6Gi", node="mem-tight"))
    create(core, pod("l2", cpu="2", memory="2Gi", node="mem-roomy"))
    create(core, pod("l3", cpu="1", memory="8Gi", node="cpu-roomy"))
    start_depcon(cp)
    # Scores (cpu weight 10, memory 1) after adding the pod's 1 CPU / 1Gi:
    # mem-tight (70*10 + 30)/11 = 66, mem-roomy (70*10 + 70)/11 = 70,
    # cpu-roomy (80*10 + 10)/11 = 74: one more free CPU beats 6Gi of memory.
    assert place(core, pod("p1", cpu="1", memory="1Gi", slo=10, scheduler="depcon-scheduler")) == (
        "cpu-roomy"
    )
    # Fill cpu-roomy's memory; mem-tight and mem-roomy have equal CPU (2 of 10)
    # in use, so memory decides: (70*10 + 30)/11 = 66 against (70*10 + 70)/11 = 70.
    create(core, pod("l4", cpu="6", memory="1Gi", node="cpu-roomy"))
    assert place(core, pod("p2", cpu="1", memory="1Gi", slo=10, scheduler="depcon-scheduler")) == (
        "mem-roomy"
    )


def test_capacity_is_consumed_and_freed(cp: ControlPlane) -> None:
    api = cp.api_client()
    core = client.CoreV1Api(api)
    add_node(api, "a", cpu="8", memory="16Gi", extended={SLO: "1000"})
    add_node(api, "b", cpu="8", memory="16Gi", extended={SLO: "300"})
    start_depcon(cp)
    depcon = "depcon-scheduler"
    assert place(core, pod("first", cpu="1", slo=600, scheduler=depcon)) == "a"
    create(core, pod("second", cpu="1", slo=600, scheduler=depcon))
    message = wait_unschedulable(core, "second")
    assert f"Insufficient {SLO}" in message
    assert "0/2 nodes are available" in message
    events = client.CoreV1Api(api).list_namespaced_event(
        NS, field_selector="involvedObject.name=second,reason=FailedScheduling"
    )
    assert any(f"Insufficient {SLO}" in (e.message or "") for e in events.items)
    # Freeing the capacity on 'a' lets the pending pod in.
    delete(core, "first")
    assert wait_bound(core, "second") == "a"
    # And it is consumed again: a third one does not fit.
    create(core, pod("third", cpu="1", slo=600, scheduler=depcon))
    assert f"Insufficient {SLO}" in wait_unschedulable(core, "third")


def test_pod_that_fits_nowhere_stays_pending(cp: ControlPlane) -> None:
    api = cp.api_client()
    core = client.CoreV1Api(api)
    add_node(api, "small", cpu="64", memory="64Gi", extended={SLO: "100"})
    add_node(api, "none", cpu="64", memory="64Gi")
    start_depcon(cp)
    create(core, pod("greedy", cpu="1", slo=1000, scheduler="depcon-scheduler"))
    message = wait_unschedulable(core, "greedy")
    assert f"2 Insufficient {SLO}" in message
    time.sleep(2)
    assert not core.read_namespaced_pod("greedy", NS).spec.node_name


# --- mode (a): the default profile is untouched ---------------------------------------


@dataclass(frozen=True)
class NodeShape:
    name: str
    cpu_m: int
    mem_mi: int


# Chosen so that the stock scores have one winner, by at least 2 points, at
# every step of WORKLOAD (checked below); the placements spread over all nodes.
NODES = (
    NodeShape("n1", 13000, 4096),
    NodeShape("n2", 5000, 17408),
    NodeShape("n3", 5000, 5120),
    NodeShape("n4", 7000, 11264),
    NodeShape("n5", 16000, 17408),
    NodeShape("n6", 6000, 7168),
)
# (cpu m, memory Mi) in creation order
WORKLOAD = (
    (500, 256),
    (1500, 1024),
    (700, 3000),
    (2000, 512),
    (300, 2048),
    (1200, 1500),
    (900, 700),
    (2500, 4096),
    (400, 300),
    (1800, 2600),
)


def _stock_scores(
    nodes: Sequence[NodeShape], used: Mapping[str, tuple[int, int]], req: tuple[int, int]
) -> dict[str, int]:
    """The stock profile's score differences: NodeResourcesFit LeastAllocated + BalancedAllocation.

    Every other default score plugin gives each node the same score for these
    pods (no taints, affinities, images, volumes or owners). Used only to prove
    the workload has no ties, where the scheduler would pick at random.
    """

    def balance(cpu: int, mem: int, n: NodeShape) -> int:
        fc, fm = min(cpu / n.cpu_m, 1.0), min(mem / n.mem_mi, 1.0)
        return int((1 - abs(fc - fm) / 2) * 100)

    scores = {}
    for n in nodes:
        cpu0, mem0 = used[n.name]
        cpu, mem = cpu0 + req[0], mem0 + req[1]
        least = ((n.cpu_m - cpu) * 100 // n.cpu_m + (n.mem_mi - mem) * 100 // n.mem_mi) // 2
        # 1.36 scores the change in balance the pod brings, not the balance after it.
        balanced = 50 + (50 + balance(cpu, mem, n) - balance(cpu0, mem0, n)) // 2
        scores[n.name] = least + balanced
    return scores


def _run_workload(cp: ControlPlane, prefix: str, scheduler: str | None) -> list[str]:
    core = client.CoreV1Api(cp.api_client())
    placed = []
    for i, (cpu, mem) in enumerate(WORKLOAD):
        placed.append(
            place(core, pod(f"{prefix}-{i}", cpu=f"{cpu}m", memory=f"{mem}Mi", scheduler=scheduler))
        )
    for i in range(len(WORKLOAD)):
        delete(core, f"{prefix}-{i}")
    return placed


def _wait_no_pods(cp: ControlPlane) -> None:
    core = client.CoreV1Api(cp.api_client())
    deadline = time.monotonic() + BIND_TIMEOUT_S
    while core.list_namespaced_pod(NS).items:
        assert time.monotonic() < deadline, "pods not deleted"
        time.sleep(0.1)


def test_mode_profile_places_default_pods_as_stock_kube_scheduler(cp: ControlPlane) -> None:
    api = cp.api_client()
    for n in NODES:
        add_node(api, n.name, cpu=f"{n.cpu_m}m", memory=f"{n.mem_mi}Mi", extended={SLO: "1000"})

    # Precondition: the stock scores have one winner at every step (no random tie-break).
    used = {n.name: (0, 0) for n in NODES}
    expected = []
    for req in WORKLOAD:
        scores = _stock_scores(NODES, used, req)
        best = max(scores.values())
        winners = [k for k, v in scores.items() if v == best]
        runner_up = sorted(scores.values())[-2]
        assert len(winners) == 1, f"workload has a tie at {req}: {scores}"
        assert best - runner_up >= 2, f"workload is too close to a tie at {req}: {scores}"
        expected.append(winners[0])
        used[winners[0]] = (used[winners[0]][0] + req[0], used[winners[0]][1] + req[1])

    stock = cp.start_scheduler(None)  # kube-scheduler without a config file
    stock_placement = _run_workload(cp, "stock", None)
    stock.stop()
    _wait_no_pods(cp)

    depcon = start_depcon(cp, mode="second-profile")
    with_depcon = _run_workload(cp, "with-depcon", None)
    _wait_no_pods(cp)
    depcon_profile = _run_workload(cp, "depcon", "depcon-scheduler")
    depcon.stop()

    assert stock_placement == expected
    assert with_depcon == stock_placement
    # The workload tells the profiles apart: DepCon spreads by free CPU instead.
    assert depcon_profile != stock_placement


# --- mode (b): DepCon is the default ------------------------------------------------


def test_mode_default_depcon_places_every_pod(cp: ControlPlane) -> None:
    api = cp.api_client()
    core = client.CoreV1Api(api)
    add_node(api, "idle-no-slo", cpu="16", memory="64Gi")
    add_node(api, "busy", cpu="16", memory="64Gi", extended={SLO: "1000"})
    add_node(api, "free", cpu="16", memory="64Gi", extended={SLO: "1000"})
    create(core, pod("load-busy", cpu="8", node="busy"))
    create(core, pod("load-free", cpu="4", node="free"))
    start_depcon(cp, mode="default-profile")
    assert place(core, pod("slo-default", cpu="1", slo=600)) == "free"
    assert place(core, pod("slo-alias", cpu="1", slo=500, scheduler="depcon-scheduler")) == "busy"
    assert place(core, pod("plain", cpu="1")) == "idle-no-slo"
    create(core, pod("too-big", cpu="1", slo=800))
    assert f"Insufficient {SLO}" in wait_unschedulable(core, "too-big")


# --- bad configuration --------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"slo_resource": "SLO"}, "depcon_scheduler_slo_resource"),
        ({"cpu_weight": 0}, "depcon_scheduler_cpu_weight"),
    ],
)
def test_bad_settings_rejected_before_the_scheduler_starts(
    cp: ControlPlane, overrides: dict[str, Any], key: str
) -> None:
    with pytest.raises(SchedulerConfigError) as err:
        start_depcon(cp, **overrides)
    assert err.value.key == key
    assert not list(cp.workdir.glob("kube-scheduler*.log")), "a scheduler was started"


def test_binary_rejects_a_hand_edited_shape(cp: ControlPlane) -> None:
    text = render(SchedulerSettings.from_versions(kubeconfig=str(cp.scheduler_kubeconfig)))
    edited = text.replace("score: 10", "score: 11", 1)
    with pytest.raises(SchedulerConfigError) as err:
        check_with_binary(edited, cp.bin_dir / "kube-scheduler")
    assert "shape[0].score: Invalid value: 11: not in valid range [0, 10]" in str(err.value)
