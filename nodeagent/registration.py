"""The SLO capacity on the Node objects: JSON patches on ``nodes/status``, kept there.

``status.capacity`` and ``status.allocatable`` of each node get its capacity
(``nodeagent.capacity``) through the official Kubernetes Python client; the
patches are pure functions of the Node's state, ``watch`` re-asserts them
whenever the kubelet drops them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException
from kubernetes.utils import parse_quantity

from nodeagent.capacity import Capacity, SloError

# Patches are conditional on the Node's resourceVersion; a busy Node is re-read.
PATCH_ATTEMPTS = 5


class ConflictError(RuntimeError):
    """The Node changed between reading and patching it; read it again."""


# --------------------------------------------------------------------------
# Patches (pure: a node's status in, JSON patch operations out)


@dataclass(frozen=True)
class NodeState:
    """The parts of a Node that depcon-slo reads."""

    name: str
    resource_version: str
    capacity: dict[str, str] | None
    allocatable: dict[str, str] | None


def _pointer(field: str, resource: str | None = None) -> str:
    path = f"/status/{field}"
    if resource is not None:
        path += "/" + resource.replace("~", "~0").replace("/", "~1")
    return path


def _quantity(value: str) -> Decimal | None:
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, InvalidOperation):
        return None


def register_ops(state: NodeState, resource: str, mbps: int) -> list[dict[str, Any]]:
    """JSON patch setting capacity and allocatable of ``resource``; [] if both are right."""
    ops: list[dict[str, Any]] = []
    for field in ("capacity", "allocatable"):
        current: dict[str, str] | None = getattr(state, field)
        if current is None:
            ops.append({"op": "add", "path": _pointer(field), "value": {resource: str(mbps)}})
        elif resource not in current:
            ops.append({"op": "add", "path": _pointer(field, resource), "value": str(mbps)})
        elif _quantity(current[resource]) != mbps:
            ops.append({"op": "replace", "path": _pointer(field, resource), "value": str(mbps)})
    return ops


def unregister_ops(state: NodeState, resource: str) -> list[dict[str, Any]]:
    """JSON patch removing ``resource`` from capacity and allocatable; [] if absent."""
    return [
        {"op": "remove", "path": _pointer(field, resource)}
        for field in ("capacity", "allocatable")
        if resource in (getattr(state, field) or {})
    ]


# --------------------------------------------------------------------------
# The cluster


def _state(node: Any) -> NodeState:
    status = node.status
    return NodeState(
        name=node.metadata.name,
        resource_version=node.metadata.resource_version or "",
        capacity=None if status is None or status.capacity is None else dict(status.capacity),
        allocatable=(
            None if status is None or status.allocatable is None else dict(status.allocatable)
        ),
    )


def _pod_request(pod: Any, resource: str) -> Decimal:
    """What a pod takes of ``resource``: max(sum of containers, largest init container)."""

    def req(c: Any) -> Decimal:
        r = c.resources
        value = (r.requests or {}).get(resource) if r else None
        return (_quantity(value) if value is not None else None) or Decimal(0)

    main = sum((req(c) for c in pod.spec.containers or []), Decimal(0))
    init = max((req(c) for c in pod.spec.init_containers or []), default=Decimal(0))
    return max(main, init)


class Cluster:
    """The calls depcon-slo makes, on the official client's CoreV1Api."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.core = k8s.CoreV1Api(api_client)

    def node(self, name: str) -> NodeState | None:
        try:
            return _state(self.core.read_node(name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def nodes(self) -> list[NodeState]:
        return [_state(n) for n in self.core.list_node().items]

    def patch_status(self, state: NodeState, ops: list[dict[str, Any]]) -> NodeState:
        """Apply ``ops`` only to the Node as ``state`` saw it, else raise :class:`ConflictError`.

        The patch starts with a JSON patch ``test`` of the resourceVersion: an
        ``add`` of a whole capacity map computed from a Node without one must
        not replace the map a kubelet wrote in between.
        """
        guard = {"op": "test", "path": "/metadata/resourceVersion", "value": state.resource_version}
        try:
            # A list body goes as application/json-patch+json: the first type
            # the generated client offers, in v22 (Debian 12) as in v37.
            node = self.core.patch_node_status(state.name, [guard, *ops])
        except ApiException as exc:
            # A failed test op answers 422 Invalid, like any other invalid patch:
            # it was the guard if the Node has moved on.
            if exc.status in (409, 422):
                now = self.node(state.name)
                if now is None or now.resource_version != state.resource_version:
                    raise ConflictError(f"node {state.name} changed while being patched") from None
            raise
        return _state(node)

    def requested(self, resource: str) -> dict[str, Decimal]:
        """Sum of ``resource`` requests of the non-terminated pods on each node."""
        out: dict[str, Decimal] = {}
        pods = self.core.list_pod_for_all_namespaces(
            field_selector="status.phase!=Succeeded,status.phase!=Failed"
        )
        for pod in pods.items:
            node = pod.spec.node_name if pod.spec else None
            if node:
                out[node] = out.get(node, Decimal(0)) + _pod_request(pod, resource)
        return out

    def watch_node(self, name: str, timeout_seconds: int) -> Iterator[tuple[str, NodeState]]:
        """Events of one Node, starting with its current state, until the server's timeout."""
        w = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        for event in w.stream(  # type: ignore[no-untyped-call]
            self.core.list_node,
            field_selector=f"metadata.name={name}",
            timeout_seconds=timeout_seconds,
        ):
            yield event["type"], _state(event["object"])


def connect(kubeconfig: str | None) -> Cluster:
    """A client from ``kubeconfig``, else $KUBECONFIG or ~/.kube/config, else in-cluster."""
    try:
        if kubeconfig:
            if not Path(kubeconfig).is_file():
                raise SloError(f"kubeconfig {kubeconfig} does not exist")
            client = k8s_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            return Cluster(client)
        if os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().is_file():
            return Cluster(k8s_config.new_client_from_config())  # type: ignore[no-untyped-call]
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            cfg = k8s.Configuration()
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return Cluster(k8s.ApiClient(cfg))
    except ConfigException as exc:
        raise SloError(f"kubeconfig {kubeconfig or '(default)'}: {exc}") from None
    raise SloError(
        "no kubeconfig: pass --kubeconfig (on a node, /etc/kubernetes/kubelet.conf "
        "lets the node patch its own status)"
    )


# --------------------------------------------------------------------------
# Operations


@dataclass(frozen=True)
class Outcome:
    node: str
    changed: bool
    message: str


def _fetch_all(cluster: Cluster, names: Sequence[str]) -> dict[str, NodeState]:
    states = {name: cluster.node(name) for name in names}
    missing = [n for n, s in states.items() if s is None]
    if missing:
        raise SloError(
            f"node(s) {', '.join(missing)} not found in the cluster; nothing was changed"
        )
    return {n: s for n, s in states.items() if s is not None}


def _apply(
    cluster: Cluster, state: NodeState, make_ops: Callable[[NodeState], list[dict[str, Any]]]
) -> bool:
    """Patch ``state``'s Node with ``make_ops``, re-reading it on a conflict; True if changed."""
    for _ in range(PATCH_ATTEMPTS):
        ops = make_ops(state)
        if not ops:
            return False
        try:
            cluster.patch_status(state, ops)
            return True
        except ConflictError:
            fresh = cluster.node(state.name)
            if fresh is None:
                raise SloError(f"node {state.name} was deleted while being patched") from None
            state = fresh
    raise ConflictError(f"node {state.name} kept changing: gave up after {PATCH_ATTEMPTS} attempts")


def register(cluster: Cluster, capacities: Sequence[Capacity], resource: str) -> list[Outcome]:
    """Set every node's capacity; all nodes are looked up before any is patched."""
    states = _fetch_all(cluster, [c.node for c in capacities])
    out = []
    for cap in capacities:
        what = f"{resource} {cap.mbps} ({cap.source})"
        if _apply(
            cluster, states[cap.node], partial(register_ops, resource=resource, mbps=cap.mbps)
        ):
            out.append(Outcome(cap.node, True, f"node {cap.node}: set {what}"))
        else:
            out.append(Outcome(cap.node, False, f"node {cap.node}: {what} already set, no change"))
    return out


def ensure(cluster: Cluster, capacity: Capacity, resource: str) -> Outcome:
    """:func:`register` for one node (the node's own service calls this)."""
    return register(cluster, [capacity], resource)[0]


def unregister(cluster: Cluster, names: Sequence[str] | None, resource: str) -> list[Outcome]:
    """Remove ``resource`` from the named nodes (None: every node carrying it)."""
    if names is None:
        states = {s.name: s for s in cluster.nodes()}
        names = sorted(n for n, s in states.items() if unregister_ops(s, resource))
        if not names:
            return [Outcome("", False, f"no node carries {resource}, no change")]
    else:
        states = _fetch_all(cluster, names)
    out = []
    for name in names:
        if _apply(cluster, states[name], lambda s: unregister_ops(s, resource)):
            out.append(Outcome(name, True, f"node {name}: removed {resource}"))
        else:
            out.append(Outcome(name, False, f"node {name}: no {resource}, no change"))
    return out


def _fmt(value: Decimal | str | None) -> str:
    if value is None:
        return "-"
    return str(value)


def show(cluster: Cluster, resource: str) -> str:
    """A table: each node's capacity, allocatable and requested ``resource`` (Mbps)."""
    requested = cluster.requested(resource)
    rows = [("NODE", "CAPACITY", "ALLOCATABLE", "REQUESTED")]
    for s in sorted(cluster.nodes(), key=lambda s: s.name):
        rows.append(
            (
                s.name,
                _fmt((s.capacity or {}).get(resource)),
                _fmt((s.allocatable or {}).get(resource)),
                _fmt(requested.get(s.name, Decimal(0))),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([f"{resource} (Mbps)", *lines])


def watch(
    cluster: Cluster,
    node: str,
    resolve: Callable[[], Capacity],
    resource: str,
    *,
    resync_seconds: int = 60,
    log: Callable[[str], None] = print,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Keep ``node``'s capacity registered: re-assert it whenever the Node changes.

    The watch starts with the Node's current state, so each reconnect (every
    ``resync_seconds`` at the latest) is also a full check. A Node that does
    not exist yet is waited for; lost connections are retried with backoff.
    """
    backoff = 1.0
    while not stop():
        try:
            for kind, state in cluster.watch_node(node, resync_seconds):
                backoff = 1.0
                if kind not in ("ADDED", "MODIFIED"):
                    continue
                try:
                    cap = resolve()
                except SloError as exc:
                    log(f"error: {exc}; leaving node {node} as it is")
                    continue
                ops = register_ops(state, resource, cap.mbps)
                if ops:
                    try:
                        cluster.patch_status(state, ops)
                    except ConflictError:
                        continue  # the newer state is the next event
                    log(f"node {node}: set {resource} {cap.mbps} ({cap.source})")
                if stop():
                    return
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
            log(f"cluster error, retrying in {backoff:.0f}s: {str(exc).strip().splitlines()[0]}")
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
