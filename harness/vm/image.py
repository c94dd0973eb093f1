"""Debian 12 disk images for full-system VMs (molecule, the lab cluster), and booting them.

The kernel-test harness (``runner``) boots an initramfs; Ansible needs a real
machine instead: systemd, sshd, apt, python3. ``harness.vm.image_build`` builds
one with debootstrap, cached under ``cache_dir()/vm/images/<recipe hash>``;
this module boots it and is the command line. Every VM gets a copy-on-write
qcow2 overlay, so the cached image is never written.

qemu boots the image's own kernel and initrd directly (no boot loader) under
TCG. Each VM has two NICs, built by ``harness.vm.network`` and kept on this
machine: ``eth0``, the cluster network (a multicast group on loopback shared by
the VMs started with the same ``--segment``; kubeadm join, pod traffic) with the
static address given at ``up``, and ``eth1``, restricted user-mode networking
that carries only the SSH forward on 127.0.0.1:<port>. The VMs have no default
route.

``python -m harness.vm.image build|path|up|down|status`` drives it; molecule's
create/destroy playbooks call ``up``/``down`` (``molecule/*/create.yml``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from depcon.paths import cache_dir
from harness.vm import network
from harness.vm.image_build import (
    Image,
    ImageError,
    _run,
    build_image,
    default_recipe,
    images_dir,
)
from harness.vm.runner import qemu_tcg

__all__ = [
    "LAB_SEGMENT",
    "Image",
    "ImageError",
    "Instance",
    "build_image",
    "default_recipe",
    "down",
    "ensure_up",
    "images_dir",
    "instances_dir",
    "main",
    "qemu_command",
    "up",
]

# The lab's cluster segment; molecule's scenarios use others, so they never meet.
LAB_SEGMENT = 23456


@dataclass(frozen=True)
class Instance:
    """A running (or stopped) VM; ``to_molecule`` is molecule's instance-config entry."""

    name: str
    ssh_port: int
    cluster_ip: str
    state_dir: Path
    identity_file: Path

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "qemu.pid"

    @property
    def console(self) -> Path:
        return self.state_dir / "console.log"

    def to_molecule(self) -> dict[str, str]:
        return {
            "instance": self.name,
            "address": "127.0.0.1",
            "user": "root",
            "port": str(self.ssh_port),
            "identity_file": str(self.identity_file),
        }


# --------------------------------------------------------------------------
# Booting


def instances_dir() -> Path:
    return cache_dir() / "vm" / "instances"


def _alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def _ssh_ready(inst: Instance) -> bool:
    proc = subprocess.run(
        network.ssh_argv(
            inst.identity_file,
            inst.ssh_port,
            "systemctl is-system-running --wait >/dev/null 2>&1; true",
            connect_timeout_s=10,
        ),
        capture_output=True,
        timeout=300,
        check=False,
    )
    return proc.returncode == 0


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def up(
    name: str,
    *,
    ssh_port: int,
    cluster_ip: str,
    image: Image | None = None,
    segment: int = LAB_SEGMENT,
    forwards: Sequence[tuple[int, int]] = (),
    mem_mb: int = 2560,
    smp: int = 2,
    timeout: float = 900.0,
    fresh: bool = True,
) -> tuple[Instance, float]:
    """Boot VM ``name`` (a new overlay unless ``fresh`` is false) and wait for SSH.

    Returns the instance and the seconds from qemu start to SSH answering.
    """
    image = image or build_image()
    state = instances_dir() / name
    inst = Instance(name, ssh_port, cluster_ip, state, image.ssh_key)
    if _alive(inst.pidfile):
        raise ImageError(
            f"VM {name} is already running (pid file {inst.pidfile}); run `down {name}` first"
        )
    if not _port_free(ssh_port):
        raise ImageError(f"127.0.0.1:{ssh_port} is in use: pick another ssh port for VM {name}")
    state.mkdir(parents=True, exist_ok=True)
    overlay = state / "overlay.qcow2"
    if not fresh and overlay.exists():
        _check_overlay_image(name, state, image)
    if fresh or not overlay.exists():
        overlay.unlink(missing_ok=True)
        _run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(image.disk),
                str(overlay),
            ],
            "qemu-img create",
        )
        (state / "image").write_text(image.path.name + "\n")
    for host_port, _ in forwards:
        if not _port_free(host_port):
            raise ImageError(f"127.0.0.1:{host_port} is in use: VM {name} forwards it")
    cmd = qemu_command(inst, image, segment=segment, forwards=forwards, mem_mb=mem_mb, smp=smp)
    try:
        network.check_command(cmd)
    except network.NetworkError as exc:
        raise ImageError(f"VM {name}: {exc}") from exc
    (state / "network.json").write_text(
        json.dumps({"segment": segment, "cluster_ip": cluster_ip}) + "\n"
    )
    start = time.monotonic()
    _run(cmd, f"qemu start of {name}")
    while time.monotonic() - start < timeout:
        if not _alive(inst.pidfile):
            tail = inst.console.read_text(errors="replace").splitlines()[-30:]
            raise ImageError(f"VM {name} exited during boot; console tail:\n" + "\n".join(tail))
        with contextlib.suppress(subprocess.TimeoutExpired):
            if _ssh_ready(inst):
                (state / "instance.json").write_text(json.dumps(inst.to_molecule()) + "\n")
                return inst, time.monotonic() - start
        time.sleep(5)
    down(name)
    raise ImageError(
        f"VM {name}: no SSH on 127.0.0.1:{ssh_port} after {timeout:.0f}s (console {inst.console})"
    )


def qemu_command(
    inst: Instance,
    image: Image,
    *,
    segment: int,
    mem_mb: int,
    smp: int,
    forwards: Sequence[tuple[int, int]] = (),
) -> list[str]:
    """The qemu command line of a lab or molecule VM (its NICs from ``harness.vm.network``)."""
    # A stable per-name MAC and UUID (kubeadm wants unique product_uuid and MACs).
    tag = hashlib.sha256(inst.name.encode()).hexdigest()
    mac = ":".join(["52", "54", tag[0:2], tag[2:4], tag[4:6]])
    uuid = f"{tag[0:8]}-{tag[8:12]}-{tag[12:16]}-{tag[16:20]}-{tag[20:32]}"
    # TCG's TSC fails the kernel's sync check and the HPET it falls back to costs
    # ~2 us a clock read (reports/bench/guest_clock.json); TCG's TSC is the host's.
    cmdline = (
        f"root=/dev/vda rw console=ttyS0 net.ifnames=0 mitigations=off random.trust_cpu=on "
        f"tsc=reliable clocksource=tsc "
        f"depcon.hostname={inst.name} depcon.ip={inst.cluster_ip}"
    )
    return [
        *qemu_tcg(smp, mem_mb),
        "-uuid",
        uuid,
        "-kernel",
        str(image.vmlinuz),
        "-initrd",
        str(image.initrd),
        "-append",
        cmdline,
        "-drive",
        f"file={inst.state_dir / 'overlay.qcow2'},if=virtio,format=qcow2,cache=unsafe",
        *network.qemu_network_args(
            segment=segment, ssh_port=inst.ssh_port, mac_prefix=mac, forwards=forwards
        ),
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{inst.console}",
        "-qmp",
        f"unix:{inst.state_dir / 'qmp.sock'},server=on,wait=off",
        "-pidfile",
        str(inst.pidfile),
        "-daemonize",
    ]


def _check_running_network(inst: Instance, pid: int) -> None:
    """A VM started before its NICs were kept on this machine is not reused."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        network.check_command([a.decode() for a in argv if a])
    except (OSError, network.NetworkError) as exc:
        raise ImageError(
            f"VM {inst.name} runs with a network that is not kept on this machine ({exc}): "
            f"`python -m harness.vm.image down --keep-disk {inst.name}` stops it keeping its "
            "disk; the next boot uses the current network"
        ) from exc


def _check_overlay_image(name: str, state: Path, image: Image) -> None:
    """A kept overlay only boots on the image it was made from."""
    made_from = (state / "image").read_text().strip() if (state / "image").exists() else "?"
    if made_from != image.path.name:
        raise ImageError(
            f"VM {name}'s disk was made from image {made_from}, the recipe now builds "
            f"{image.path.name}: `python -m harness.vm.image down {name}` drops the VM and its "
            "state, then boot it again"
        )


def ensure_up(
    name: str,
    *,
    ssh_port: int,
    cluster_ip: str,
    image: Image,
    mem_mb: int,
    segment: int = LAB_SEGMENT,
    forwards: Sequence[tuple[int, int]] = (),
) -> tuple[Instance, float | None]:
    """VM ``name`` running and answering SSH: reused if it already is, else booted on its disk.

    Returns the instance and the boot seconds (None when reused). A lab VM
    keeps its disk across stops, so a re-run (or a host reboot) finds the
    cluster where it was.
    """
    state = instances_dir() / name
    inst = Instance(name, ssh_port, cluster_ip, state, image.ssh_key)
    pid = _alive(inst.pidfile)
    if pid is None:
        return up(
            name,
            ssh_port=ssh_port,
            cluster_ip=cluster_ip,
            image=image,
            segment=segment,
            forwards=forwards,
            mem_mb=mem_mb,
            fresh=False,
        )
    _check_running_network(inst, pid)
    _check_overlay_image(name, state, image)
    try:
        recorded = json.loads((state / "instance.json").read_text())
    except (OSError, ValueError):
        recorded = {}
    if recorded.get("port") != str(ssh_port):
        raise ImageError(
            f"VM {name} runs with SSH port {recorded.get('port', '?')}, the inventory says "
            f"{ssh_port}: `python -m harness.vm.image down {name}` first"
        )
    if not _ssh_ready(inst):
        raise ImageError(f"VM {name} runs but SSH on 127.0.0.1:{ssh_port} does not answer")
    return inst, None


def down(name: str, *, keep: bool = False) -> bool:
    """Stop VM ``name`` (qemu SIGTERM, then SIGKILL); remove its overlay unless ``keep``."""
    state = instances_dir() / name
    pidfile = state / "qemu.pid"
    pid = _alive(pidfile)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if _alive(pidfile) is None:
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
    if not keep:
        shutil.rmtree(state, ignore_errors=True)
    return pid is not None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.vm.image", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build (or reuse) the image; print its directory and timing")
    sub.add_parser("path", help="print the image directory for the current recipe (not built)")
    p_up = sub.add_parser("up", help="boot a VM from the image and wait for SSH")
    p_up.add_argument("--name", required=True)
    p_up.add_argument("--ssh-port", type=int, required=True)
    p_up.add_argument(
        "--cluster-ip", required=True, help="eth0 address with prefix, e.g. 10.10.0.11/24"
    )
    p_up.add_argument(
        "--segment",
        type=int,
        default=LAB_SEGMENT,
        help="the cluster network eth0 joins (a port of the loopback multicast group)",
    )
    p_up.add_argument("--mem", type=int, default=2560)
    p_up.add_argument("--smp", type=int, default=2)
    p_up.add_argument(
        "--keep-disk", action="store_true", help="reuse the VM's overlay if it exists"
    )
    p_down = sub.add_parser("down", help="stop VMs and remove their overlays")
    p_down.add_argument("names", nargs="+")
    p_down.add_argument(
        "--keep-disk", action="store_true", help="keep the overlays (boot again with --keep-disk)"
    )
    args = parser.parse_args(argv)
    try:
        if args.cmd == "path":
            print(images_dir() / default_recipe().key())
        elif args.cmd == "build":
            t = time.monotonic()
            image = build_image()
            print(json.dumps({"image": str(image.path), "seconds": round(time.monotonic() - t, 1)}))
        elif args.cmd == "up":
            t = time.monotonic()
            image = build_image()
            built = time.monotonic() - t
            inst, boot = up(
                args.name,
                ssh_port=args.ssh_port,
                cluster_ip=args.cluster_ip,
                image=image,
                segment=args.segment,
                mem_mb=args.mem,
                smp=args.smp,
                fresh=not args.keep_disk,
            )
            out = inst.to_molecule() | {
                "image_seconds": f"{built:.1f}",
                "boot_seconds": f"{boot:.1f}",
            }
            print(json.dumps(out))
        elif args.cmd == "down":
            for name in args.names:
                print(f"{name}: {'stopped' if down(name, keep=args.keep_disk) else 'not running'}")
    except (ImageError, network.NetworkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
