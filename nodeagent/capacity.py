"""A node's SLO capacity: its link speed from sysfs, else the inventory's override.

The number depcon-slo registers (``nodeagent.registration``) comes from here;
every input is checked first and an error names the node, interface or value.
The role's settings reach it through the environment (``RESOURCE_ENV``,
``MAX_MBPS_ENV``); from the checkout the controller's config is read instead.
"""

from __future__ import annotations

import errno
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What the role hands the node agent (from versions.yml and the stack).
RESOURCE_ENV = "DEPCON_SLO_RESOURCE"
MAX_MBPS_ENV = "DEPCON_SLO_MAX_MBPS"

# Drivers of paravirtual NICs: the speed they report, if any, is a number the
# hypervisor made up, not what the link carries.
PARAVIRTUAL_DRIVERS = frozenset({"virtio_net", "vmxnet3", "vif"})  # vif: xen-netfront
# Virtual devices whose speed is their real links' (a bond sums its slaves,
# a VLAN has its parent's); every other virtual device has no link speed.
SPEED_CARRYING_DEVTYPES = frozenset({"bond", "vlan"})
ARPHRD_LOOPBACK = 772

_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NODE_NAME = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")

OVERRIDE_HINT = (
    "set depcon_slo_capacity_mbps for this node in the inventory (or pass --override-mbps)"
)


class SloError(ValueError):
    """Input a user can fix; the message names the node, interface or value."""


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
    return int(controller_config().load_versions().slo.max_mbps)


def controller_config() -> Any:
    """The controller's config module, for runs from the checkout (not shipped to nodes)."""
    try:
        from depcon import config  # noqa: PLC0415 -- the controller's, absent on a node
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
    nodes = controller_config().load_inventory(path)  # validates names and overrides
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
