"""SLO capacity: each node's link speed, in Mbps, as the SLO extended resource.

DepCon's scheduler profile rejects nodes without enough remaining SLO capacity
(NodeResourcesFit on the extended resource named in ``versions.yml``,
``slo.resource_name``; on a node it comes from the role through
``DEPCON_SLO_RESOURCE``, with the bound ``slo.max_mbps`` through
``DEPCON_SLO_MAX_MBPS``). This module puts that capacity on the Node objects:
``status.capacity`` and ``status.allocatable`` of each node get the link speed
of its configured interface, written with a JSON patch on the ``nodes/status``
subresource through the official Kubernetes Python client.

Where the number comes from:

* on the node itself (``--node NAME --interface IF``): ``/sys/class/net/IF/speed``
  (what ``ethtool`` prints as Speed). Virtual interfaces (veth, bridge,
  loopback, ...) and paravirtual NICs (virtio_net, vmxnet3, xen) report no
  speed or a made-up one, and a speed of -1 or a read that fails with
  "Invalid argument" means the kernel does not know it: then the node's
  override (``--override-mbps``, the inventory's ``depcon_slo_capacity_mbps``)
  is used, else the command fails naming the node and the interface;
* on the controller (``--inventory FILE``, from the checkout: it reads the
  inventory with the controller's config): it cannot read a remote /sys, so
  every node needs its override; the others are named in the error.

Everything is checked before anything is patched: names, overrides, speeds and
that every node exists. A node already carrying the right value is not
patched (``register`` says "no change"; ``ensure`` says nothing).

The kubelet drops or zeroes extended resources it does not advertise itself
when it re-registers its Node (restart after a state reset, Node re-created),
so one registration is not enough: ``ensure --watch`` runs on each node as a
systemd service bound to kubelet.service (``roles/slo_capacity/templates``) and
re-asserts the capacity whenever the Node changes. docs/slo-capacity.md says
why that mechanism and how to roll it back.

Command line (``depcon-slo``; exit 0 ok, 1 cluster unreachable or API error,
2 input a user must fix)::

    depcon-slo register --node NAME --interface IF [--override-mbps N]
    depcon-slo register --inventory inventory/lab/hosts.yml
    depcon-slo ensure --node NAME --interface IF [--override-mbps N] [--watch]
    depcon-slo unregister [--node NAME ... | --inventory FILE]
    depcon-slo show
    depcon-slo probe --interface IF [--override-mbps N]   # what would be registered
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import re
import socket
import sys
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

from nodeagent.names import validate_extended_resource_name

# What the role hands the node agent (from versions.yml and the stack).
RESOURCE_ENV = "DEPCON_SLO_RESOURCE"
MAX_MBPS_ENV = "DEPCON_SLO_MAX_MBPS"

__all__ = [
    "Capacity",
    "Cluster",
    "ConflictError",
    "LinkSpeed",
    "NodeState",
    "Outcome",
    "SloError",
    "capacities_from_inventory",
    "ensure",
    "main",
    "read_link_speed",
    "register",
    "register_ops",
    "resolve_capacity",
    "show",
    "unregister",
    "unregister_ops",
    "watch",
]

# Drivers of paravirtual NICs: the speed they report, if any, is a number the
# hypervisor made up, not what the link carries.
PARAVIRTUAL_DRIVERS = frozenset({"virtio_net", "vmxnet3", "vif"})  # vif: xen-netfront
# Virtual devices whose speed is their real links' (a bond sums its slaves,
# a VLAN has its parent's); every other virtual device has no link speed.
SPEED_CARRYING_DEVTYPES = frozenset({"bond", "vlan"})
ARPHRD_LOOPBACK = 772
# Patches are conditional on the Node's resourceVersion; a busy Node is re-read.
PATCH_ATTEMPTS = 5

_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NODE_NAME = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")

OVERRIDE_HINT = (
    "set depcon_slo_capacity_mbps for this node in the inventory (or pass --override-mbps)"
)


class SloError(ValueError):
    """Input a user can fix; the message names the node, interface or value."""


class ConflictError(RuntimeError):
    """The Node changed between reading and patching it; read it again."""


# --------------------------------------------------------------------------
# Input validation


def validate_node_name(name: str) -> None:
    if len(name) > 253 or not _NODE_NAME.match(name):
        raise SloError(
            f"node name {name!r} is not a Kubernetes node name "
            "(a DNS subdomain: lowercase letters, digits, '-' and '.')"
        )


def validate_interface(name: str) -> None:
    if not _IFNAME.match(name) or name in (".", ".."):
        raise SloError(
            f"interface {name!r} is not a Linux interface name (1-15 of A-Z a-z 0-9 _ . -)"
        )


@functools.cache
def max_mbps() -> int:
    """The bound the inventory, vif and the kubelet share (versions.yml slo.max_mbps).

    On a node the role sets it in the environment; in the checkout the
    controller's config reads versions.yml.
    """
    text = os.environ.get(MAX_MBPS_ENV)
    if text:
        if not text.isdigit() or int(text) <= 0:
            raise SloError(f"{MAX_MBPS_ENV}={text!r} is not a positive number of Mbps")
        return int(text)
    return int(_controller_config().load_versions().slo.max_mbps)


def _controller_config() -> Any:
    """The controller's config module, for runs from the checkout (not shipped to nodes)."""
    try:
        from infra import config  # noqa: PLC0415 -- the controller's, absent on a node
    except ImportError:
        raise SloError(
            f"not in the project's checkout: set {RESOURCE_ENV} and {MAX_MBPS_ENV} "
            "(roles/slo_capacity does), or pass --resource; --inventory runs on the controller"
        ) from None
    return config


def validate_mbps(value: int, what: str = "override") -> None:
    if not 0 < value <= max_mbps():
        raise SloError(f"{what} {value} Mbps is out of range: it must be 1-{max_mbps()}")


# --------------------------------------------------------------------------
# Link speed


@dataclass(frozen=True)
class LinkSpeed:
    """What the kernel says about an interface's speed."""

    interface: str
    mbps: int | None  # None: no usable link speed
    detail: str  # what was found, for messages


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except OSError:
        return None


def _virtual_kind(dev: Path) -> str:
    """Name a virtual device for messages: veth, loopback, its DEVTYPE, or ""."""
    if _read(dev / "type") == str(ARPHRD_LOOPBACK):
        return "loopback"
    ifindex, iflink = _read(dev / "ifindex"), _read(dev / "iflink")
    if ifindex and iflink and ifindex != iflink and not _devtype(dev):
        return "veth"  # a peer link in another ifindex: veth (or a tunnel)
    return _devtype(dev)


def _devtype(dev: Path) -> str:
    for line in (_read(dev / "uevent") or "").splitlines():
        key, _, value = line.partition("=")
        if key == "DEVTYPE":
            return value
    return ""


def _no_speed_reason(dev: Path, sysfs_root: Path) -> str | None:
    """Why a device's reported speed is not its link's, or None if it is."""
    try:
        under = dev.resolve().relative_to(sysfs_root.resolve()).parts
    except ValueError:
        under = ()
    if under[:2] == ("devices", "virtual") and _devtype(dev) not in SPEED_CARRYING_DEVTYPES:
        kind = _virtual_kind(dev)
        return f"virtual interface{f' ({kind})' if kind else ''}: it has no link speed"
    driver_link = dev / "device" / "driver"
    driver = driver_link.resolve().name if driver_link.exists() else ""
    if driver in PARAVIRTUAL_DRIVERS:
        return f"paravirtual NIC ({driver}): its reported speed is not the link's"
    return None


def _parse_speed(speed_file: Path) -> int | str:
    """The speed in Mbps, or why there is none."""
    try:
        text = speed_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return f"{speed_file} is missing: speed unknown"
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        hint = " (link down, or the driver reports no speed)" if exc.errno == errno.EINVAL else ""
        return f"reading {speed_file} failed: {reason}{hint}"
    try:
        mbps = int(text)
    except ValueError:
        return f"{speed_file} holds {text!r}, not a number"
    if mbps <= 0:
        return f"speed {mbps} (unknown: link down or not negotiated)"
    if mbps > max_mbps():
        return f"speed {mbps} Mbps is more than a node takes (> {max_mbps()})"
    return mbps


def read_link_speed(interface: str, sysfs_root: Path = Path("/sys")) -> LinkSpeed:
    """The speed of ``interface`` from ``<sysfs_root>/class/net/<interface>``.

    Raises :class:`SloError` if the interface does not exist; every other
    reason there is no usable speed is a :class:`LinkSpeed` with ``mbps`` None.
    """
    validate_interface(interface)
    dev = sysfs_root / "class" / "net" / interface
    if not dev.exists():
        raise SloError(f"interface {interface} does not exist ({dev} is missing)")
    reason = _no_speed_reason(dev, sysfs_root)
    if reason is not None:
        return LinkSpeed(interface, None, reason)
    speed = _parse_speed(dev / "speed")
    if isinstance(speed, str):
        return LinkSpeed(interface, None, speed)
    return LinkSpeed(interface, speed, f"link speed {speed} Mbps")


@dataclass(frozen=True)
class Capacity:
    """The SLO capacity one node gets, and where the number came from."""

    node: str
    mbps: int
    source: str


def resolve_capacity(
    node: str,
    interface: str,
    override_mbps: int | None = None,
    *,
    sysfs_root: Path = Path("/sys"),
) -> Capacity:
    """Capacity of ``node`` read on the node itself: its link speed, else the override."""
    validate_node_name(node)
    validate_interface(interface)
    if override_mbps is not None:
        validate_mbps(override_mbps, f"node {node}: override")
    try:
        speed = read_link_speed(interface, sysfs_root)
    except SloError as exc:
        raise SloError(f"node {node}: {exc}") from None
    if speed.mbps is not None:
        return Capacity(node, speed.mbps, f"link speed of {interface}")
    if override_mbps is not None:
        return Capacity(node, override_mbps, f"override; {interface}: {speed.detail}")
    raise SloError(
        f"node {node}: interface {interface}: {speed.detail}; no SLO capacity override: "
        + OVERRIDE_HINT
    )


def capacities_from_inventory(path: Path) -> list[Capacity]:
    """Every node's override, for a run on the controller (it cannot read a node's /sys).

    All nodes without an override are named in one error.
    """
    nodes = _controller_config().load_inventory(path)  # validates names and overrides
    missing = [f"{n.name} (interface {n.interface})" for n in nodes if n.slo_capacity_mbps is None]
    if missing:
        raise SloError(
            f"{path}: no depcon_slo_capacity_mbps for node(s) {', '.join(missing)}: "
            "from the controller the link speed cannot be read; set the override, or run "
            "`depcon-slo register --node NAME --interface IF` on the node"
        )
    out = []
    for n in nodes:
        validate_node_name(n.name)
        assert n.slo_capacity_mbps is not None
        out.append(Capacity(n.name, n.slo_capacity_mbps, f"inventory override ({n.interface})"))
    return out


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


# --------------------------------------------------------------------------
# Command line


def _default_node() -> str:
    # What the kubelet registers as without --hostname-override.
    return socket.gethostname().strip().lower()


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of Mbps") from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, in-cluster")
    common.add_argument(
        "--resource",
        help=f"extended resource name (default: ${RESOURCE_ENV}, else versions.yml's)",
    )
    node_args = argparse.ArgumentParser(add_help=False)
    node_args.add_argument("--node", help="Node name (default: this host's name, as the kubelet)")
    node_args.add_argument("--interface", help="the node's interface whose speed is the capacity")
    node_args.add_argument(
        "--override-mbps",
        type=_int,
        help="capacity when the interface has no usable speed (virtual NIC, link down)",
    )
    node_args.add_argument("--sysfs-root", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="depcon-slo",
        description="Register each node's link speed as the DepCon SLO capacity.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    reg = sub.add_parser(
        "register",
        parents=[common, node_args],
        help="set SLO capacity (on the node: --interface; on the controller: --inventory)",
    )
    reg.add_argument("--inventory", type=Path, help="every node of this inventory, by its override")
    ens = sub.add_parser(
        "ensure",
        parents=[common, node_args],
        help="register one node if missing or different; quiet when already right",
    )
    ens.add_argument("--watch", action="store_true", help="keep it registered (runs until killed)")
    ens.add_argument("--resync-seconds", type=_int, default=60)
    unreg = sub.add_parser("unregister", parents=[common], help="remove SLO capacity")
    unreg.add_argument("--node", action="append", help="this node (repeatable; default: all)")
    unreg.add_argument("--inventory", type=Path, help="the nodes of this inventory")
    sub.add_parser("show", parents=[common], help="nodes and their SLO capacity")
    probe = sub.add_parser(
        "probe", parents=[node_args], help="print the capacity this node would get; no cluster"
    )
    probe.set_defaults(kubeconfig=None, resource=None)
    return parser


def _resource(args: argparse.Namespace) -> str:
    name: str | None = args.resource or os.environ.get(RESOURCE_ENV)
    if name is None:
        config = _controller_config()
        try:
            name = config.load_versions().slo.resource_name
        except config.ConfigError as exc:
            raise SloError(f"{exc}; pass --resource") from None
    try:
        validate_extended_resource_name(name)
    except ValueError as exc:
        raise SloError(f"--resource: {exc}") from None
    return name


def _node_capacity(args: argparse.Namespace) -> Callable[[], Capacity]:
    """Validate the node arguments now; the returned callable re-reads the speed."""
    if not args.interface:
        raise SloError(f"{args.command} on a node needs --interface (or --inventory)")
    node: str = args.node or _default_node()

    def resolve() -> Capacity:
        return resolve_capacity(
            node, args.interface, args.override_mbps, sysfs_root=args.sysfs_root
        )

    resolve()
    return resolve


def _cmd_probe(args: argparse.Namespace) -> int:
    cap = _node_capacity(args)()
    print(f"node {cap.node}: {cap.mbps} Mbps ({cap.source})")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    resource = _resource(args)
    print(show(connect(args.kubeconfig), resource))
    return 0


def _cmd_unregister(args: argparse.Namespace) -> int:
    resource = _resource(args)
    names: list[str] | None = args.node
    if args.inventory:
        if names:
            raise SloError("give --node or --inventory, not both")
        names = [n.name for n in _controller_config().load_inventory(args.inventory)]
    for n in names or []:
        validate_node_name(n)
    for o in unregister(connect(args.kubeconfig), names, resource):
        print(o.message)
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    resource = _resource(args)
    if args.inventory:
        if args.node or args.interface or args.override_mbps is not None:
            raise SloError("--inventory takes every node from the inventory: drop --node etc.")
        capacities = capacities_from_inventory(args.inventory)
    else:
        capacities = [_node_capacity(args)()]
    for o in register(connect(args.kubeconfig), capacities, resource):
        print(o.message)
    return 0


def _cmd_ensure(args: argparse.Namespace) -> int:
    resource = _resource(args)
    resolve = _node_capacity(args)
    if args.resync_seconds <= 0:
        raise SloError(f"--resync-seconds {args.resync_seconds} must be positive")
    cluster = connect(args.kubeconfig)
    if args.watch:
        node = resolve().node
        _log(f"node {node}: keeping {resource} registered (watching the Node)")
        watch(cluster, node, resolve, resource, resync_seconds=args.resync_seconds, log=_log)
        return 0
    o = ensure(cluster, resolve(), resource)
    if o.changed:
        print(o.message)
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "probe": _cmd_probe,
    "show": _cmd_show,
    "unregister": _cmd_unregister,
    "register": _cmd_register,
    "ensure": _cmd_ensure,
}


def _log(message: str) -> None:
    print(message, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (SloError, ValueError) as exc:  # the config's ConfigError is a ValueError
        print(f"depcon-slo: error: {exc}", file=sys.stderr)
        return 2
    except ConflictError as exc:
        print(f"depcon-slo: {exc}", file=sys.stderr)
        return 1
    except ApiException as exc:
        print(f"depcon-slo: API error {exc.status} {exc.reason}: {exc.body}", file=sys.stderr)
        return 1
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        print(f"depcon-slo: cannot reach the cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
