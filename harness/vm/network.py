"""The NICs of the lab and molecule VMs: the one place that spells their qemu network arguments.

Every VM has two NICs, and neither can put a frame on the host's network
(docs/architecture.md, "The lab's network"):

* ``eth0``, the cluster network: a qemu ``socket`` multicast group bound to
  loopback (``localaddr=127.0.0.1``). The group's datagrams go out ``lo``
  only, so the segment is shared by the VMs of one lab on this machine and
  by nothing else. Each lab or scenario has its own segment (the group's port).
* ``eth1``, management: qemu user-mode networking with ``restrict=on`` (the
  guest reaches nothing through it) and ``ipv6=off``, and one inbound
  forward, SSH on ``127.0.0.1:<port>``. The guest configures it statically
  with no gateway, so it has no default route at all.

``check_command`` refuses any qemu command line that breaks these rules; the
harness runs it before every start. ``python -m harness.vm.network check NAME``
proves it on a running VM: qemu's own ``info network`` and a transfer of known
size on the cluster segment that the host's default interface must not see.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from depcon.provenance import stamp

# Organization-local scope (RFC 2365): never routed, and bound to lo below anyway.
GROUP = "239.255.77.1"
LOOPBACK = "127.0.0.1"
# The management NIC's fixed guest side (qemu user-mode defaults).
MGMT_NET = "10.0.2.0/24"
MGMT_GUEST = "10.0.2.15/24"
# A cluster-segment address no VM holds: the check's transfer goes to it.
PROBE_MAC = "52:54:00:de:ad:01"
SO_RCVBUFFORCE = 33  # linux/socket.h; Python's socket module does not name it


class NetworkError(RuntimeError):
    """A qemu network setting that could reach beyond this machine, or a failed check."""


def segment_port(segment: int) -> int:
    if not 1024 <= segment <= 65535:
        raise NetworkError(f"cluster segment {segment}: a UDP port from 1024 to 65535")
    return segment


def qemu_network_args(
    *, segment: int, ssh_port: int, mac_prefix: str, forwards: Sequence[tuple[int, int]] = ()
) -> list[str]:
    """The ``-netdev``/``-device`` arguments of a lab or molecule VM.

    ``forwards``: more (controller port, guest port) pairs on 127.0.0.1, e.g. the
    lab control plane's API server.
    """
    port = segment_port(segment)
    # Spelled out, not through LOOPBACK, so each argument reads as what it binds.
    cluster = f"socket,id=cluster,mcast={GROUP}:{port},localaddr=127.0.0.1"
    fwds = ",".join(f"hostfwd=tcp:127.0.0.1:{h}-:{g}" for h, g in ((ssh_port, 22), *forwards))
    mgmt = f"user,id=mgmt,restrict=on,ipv6=off,net={MGMT_NET},{fwds}"
    for spec in (cluster, mgmt):
        _check_netdev(spec)  # the builder is held to the rule it enforces
    return [
        "-netdev",
        cluster,
        "-device",
        f"virtio-net-pci,netdev=cluster,mac={mac_prefix}:01,addr=0x3",
        "-netdev",
        mgmt,
        "-device",
        f"virtio-net-pci,netdev=mgmt,mac={mac_prefix}:02,addr=0x4",
    ]


def _options(spec: str) -> tuple[str, dict[str, list[str]]]:
    kind, _, rest = spec.partition(",")
    opts: dict[str, list[str]] = {}
    for item in rest.split(",") if rest else []:
        key, _, value = item.partition("=")
        opts.setdefault(key, []).append(value)
    return kind, opts


def _check_netdev(spec: str) -> None:
    kind, opts = _options(spec)
    if kind == "socket":
        if opts.get("localaddr") != [LOOPBACK] or "mcast" not in opts:
            raise NetworkError(f"-netdev {spec}: a socket NIC is multicast on {LOOPBACK}")
        return
    if kind != "user":
        raise NetworkError(f"-netdev {spec}: only socket (loopback) and user NICs")
    if opts.get("restrict") not in (["on"], ["yes"]):
        raise NetworkError(f"-netdev {spec}: user-mode networking needs restrict=on")
    if opts.get("ipv6") != ["off"]:
        raise NetworkError(f"-netdev {spec}: user-mode networking needs ipv6=off")
    for fwd in opts.get("hostfwd", []):
        if not re.fullmatch(rf"tcp:{re.escape(LOOPBACK)}:\d+-:\d+", fwd):
            raise NetworkError(f"-netdev {spec}: hostfwd must bind {LOOPBACK}")
    if {"guestfwd", "smb", "tftp"} & set(opts):
        raise NetworkError(f"-netdev {spec}: only inbound hostfwd is allowed")


def check_command(argv: Sequence[str]) -> None:
    """Raise NetworkError unless every NIC of the qemu command line stays on this machine."""
    args = list(argv)
    for flag in ("-net", "-nic"):
        if flag in args:
            raise NetworkError(f"qemu {flag} is not allowed: build NICs with qemu_network_args")
    if "-nodefaults" not in args:
        raise NetworkError("qemu without -nodefaults gets a default NIC on user-mode networking")
    for i, arg in enumerate(args):
        if arg == "-netdev":
            if i + 1 >= len(args):
                raise NetworkError("qemu -netdev without a value")
            _check_netdev(args[i + 1])


# --------------------------------------------------------------------------
# The check on a running VM


def qmp(sock: Path, command: str, arguments: dict[str, object] | None = None) -> object:
    """One QMP command on qemu's monitor socket; returns its ``return`` value."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        stream = s.makefile("rwb")

        def send(msg: dict[str, object]) -> dict[str, object]:
            stream.write(json.dumps(msg).encode() + b"\n")
            stream.flush()
            while True:
                reply: dict[str, object] = json.loads(stream.readline())
                if "return" in reply or "error" in reply:
                    return reply

        json.loads(stream.readline())  # greeting
        send({"execute": "qmp_capabilities"})
        reply = send({"execute": command, "arguments": arguments or {}})
    if "error" in reply:
        raise NetworkError(f"qmp {command}: {reply['error']}")
    return reply["return"]


def info_network(sock: Path) -> str:
    out = qmp(sock, "human-monitor-command", {"command-line": "info network"})
    return str(out)


def default_interfaces(route_table: str) -> list[str]:
    """Interfaces of the host's IPv4 default routes (``/proc/net/route``)."""
    names = []
    for line in route_table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            names.append(fields[0])
    return sorted(set(names))


def tx_bytes(iface: str) -> int:
    return int(Path(f"/sys/class/net/{iface}/statistics/tx_bytes").read_text())


@dataclass(frozen=True)
class Counts:
    sent: int  # bytes the VM sent to the probe address
    heard: int  # bytes the loopback peer received from the segment
    leaked: dict[str, int]  # growth of each default interface's tx_bytes meanwhile


def verdict(counts: Counts) -> list[str]:
    """What is wrong with a transfer's counts; empty when the segment stayed on loopback."""
    problems = []
    # UDP on a loaded host drops some; a transfer that took another way is all lost.
    if counts.heard < counts.sent // 2:
        problems.append(
            f"the loopback peer heard {counts.heard} of {counts.sent} bytes: "
            "the transfer did not cross the segment on lo"
        )
    for iface, grew in counts.leaked.items():
        # Other host traffic may run meanwhile; the transfer itself is many times this.
        if grew >= counts.sent // 10:
            problems.append(f"{iface} sent {grew} bytes during a {counts.sent}-byte transfer")
    return problems


@contextlib.contextmanager
def _listen(port: int) -> Iterator[list[int]]:
    """Join the segment on lo as a peer and count the bytes it hears."""
    heard = [0]
    stop = threading.Event()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with contextlib.suppress(PermissionError):  # root only; else the default buffer
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    s.bind((GROUP, port))
    s.setsockopt(
        socket.IPPROTO_IP,
        socket.IP_ADD_MEMBERSHIP,
        socket.inet_aton(GROUP) + socket.inet_aton(LOOPBACK),
    )
    s.settimeout(0.2)

    def run() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                heard[0] += len(s.recv(65536))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield heard
    finally:
        time.sleep(1)
        stop.set()
        t.join()
        s.close()


def ssh_argv(
    identity_file: str | Path, port: int | str, *command: str, connect_timeout_s: int | None = None
) -> list[str]:
    """ssh as root to a VM's SSH forward on the loopback, host keys not kept."""
    timeout = ["-o", f"ConnectTimeout={connect_timeout_s}"] if connect_timeout_s else []
    return [
        "ssh",
        "-i",
        str(identity_file),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        *timeout,
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        f"root@{LOOPBACK}",
        *command,
    ]


def _ssh(instance: dict[str, str], script: str) -> str:
    proc = subprocess.run(
        ssh_argv(instance["identity_file"], instance["port"], script),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if proc.returncode != 0:
        raise NetworkError(f"ssh {instance['instance']}: exit {proc.returncode}: {proc.stderr}")
    return proc.stdout


# Runs in the VM: a fixed number of bytes of UDP to an unused cluster address
# whose neighbour entry is pinned, so every frame leaves eth0 onto the segment.
_SEND = """set -eu
ip neigh replace {probe} lladdr {mac} dev eth0 nud permanent
python3 - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
chunk = b"d" * 1400
for _ in range({count}):
    s.sendto(chunk, ("{probe}", 9))
EOF
ip neigh del {probe} dev eth0
if ip -4 route show default | grep -q .; then echo "default route: $(ip -4 route show default)"; fi
if ip route get 192.0.2.1 >/dev/null 2>&1; then echo "a route to 192.0.2.1"; fi
echo ok
"""


def probe_address(cluster_ip: str) -> str:
    """The last address of the VM's cluster subnet (never a VM's in our inventories)."""
    net = ipaddress.ip_interface(cluster_ip).network
    return str(net.broadcast_address - 1)


def check_vm(state_dir: Path, *, megabytes: int = 16) -> dict[str, object]:
    """The network check of one running VM; raises NetworkError with every problem found."""
    instance = json.loads((state_dir / "instance.json").read_text())
    net = json.loads((state_dir / "network.json").read_text())
    problems = []
    info = info_network(state_dir / "qmp.sock")
    # e.g. " \\ mgmt: index=0,type=user,net=10.0.2.0,restrict=on", under its NIC's line
    mgmt = [line.strip(" \\") for line in info.splitlines() if "mgmt: " in line]
    if not mgmt or "restrict=on" not in mgmt[0]:
        problems.append(f"qemu's info network shows no restrict=on on mgmt:\n{info}")
    count = megabytes * 1024 * 1024 // 1400
    ifaces = default_interfaces(Path("/proc/net/route").read_text())
    probe = probe_address(net["cluster_ip"])
    with _listen(net["segment"]) as heard:
        before = {i: tx_bytes(i) for i in ifaces}
        out = _ssh(instance, _SEND.format(probe=probe, mac=PROBE_MAC, count=count))
        time.sleep(1)
        after = {i: tx_bytes(i) for i in ifaces}
    if out.strip() != "ok":
        problems.append(f"the VM routes beyond the lab: {out.strip()}")
    counts = Counts(
        sent=count * 1400, heard=heard[0], leaked={i: after[i] - before[i] for i in ifaces}
    )
    problems += verdict(counts)
    report = {
        "vm": instance["instance"],
        "default_interfaces": ifaces,
        "sent_bytes": counts.sent,
        "heard_on_lo_bytes": counts.heard,
        "default_interface_tx_growth": counts.leaked,
        "mgmt": mgmt[0] if mgmt else None,
        "problems": problems,
    }
    if problems:
        raise NetworkError(json.dumps(report, indent=2))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from harness.vm.image import instances_dir  # noqa: PLC0415 -- image imports this module

    parser = argparse.ArgumentParser(
        prog="python -m harness.vm.network", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_check = sub.add_parser("check", help="prove a running VM's NICs stay on this machine")
    p_check.add_argument("name")
    p_check.add_argument("--megabytes", type=int, default=16)
    p_check.add_argument("--report", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    try:
        report = check_vm(instances_dir() / args.name, megabytes=args.megabytes)
        if args.report:
            args.report.parent.mkdir(parents=True, exist_ok=True)
            args.report.write_text(json.dumps(report | stamp(), indent=2) + "\n")
        print(json.dumps(report))
    except (NetworkError, OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
