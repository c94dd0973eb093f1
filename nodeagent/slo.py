"""SLO capacity: each node's link speed, in Mbps, as the SLO extended resource.

DepCon's scheduler profile rejects nodes without enough remaining SLO capacity
(NodeResourcesFit on the extended resource named in ``versions.yml``,
``slo.resource_name``; on a node it comes from the role through
``DEPCON_SLO_RESOURCE``, with the bound ``slo.max_mbps`` through
``DEPCON_SLO_MAX_MBPS``). This module is the command line; the work is in
:mod:`nodeagent.capacity` (the number) and :mod:`nodeagent.registration`
(putting it on the Node objects: ``status.capacity`` and ``status.allocatable``
of each node get the link speed of its configured interface, written with a
JSON patch on the ``nodes/status`` subresource through the official Kubernetes
Python client).

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
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import urllib3
from kubernetes.client.exceptions import ApiException

from nodeagent.capacity import (
    RESOURCE_ENV,
    Capacity,
    LinkSpeed,
    SloError,
    capacities_from_inventory,
    controller_config,
    max_mbps,
    read_link_speed,
    resolve_capacity,
    validate_mbps,
    validate_node_name,
)
from nodeagent.names import validate_extended_resource_name
from nodeagent.registration import (
    Cluster,
    ConflictError,
    NodeState,
    Outcome,
    connect,
    ensure,
    register,
    register_ops,
    show,
    unregister,
    unregister_ops,
    watch,
)

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
    "max_mbps",
    "read_link_speed",
    "register",
    "register_ops",
    "resolve_capacity",
    "show",
    "unregister",
    "unregister_ops",
    "validate_mbps",
    "watch",
]

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
        config = controller_config()
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
        names = [n.name for n in controller_config().load_inventory(args.inventory)]
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
