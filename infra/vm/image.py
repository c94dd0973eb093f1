"""Debian 12 disk images for full-system VMs (molecule, the lab cluster), and booting them.

The kernel-test harness (``runner``) boots an initramfs; Ansible needs a real
machine instead: systemd, sshd, apt, python3. This module builds one with
debootstrap from Debian packages only, into a raw ext4 image cached under
``cache_dir()/vm/images/<recipe hash>`` and rebuilt only when the recipe (this
file's build code, the package list, the pinned kernel) changes. Every VM gets
a copy-on-write qcow2 overlay, so the cached image is never written.

qemu boots the image's own kernel and initrd directly (no boot loader) under
TCG. Each VM has two NICs, built by ``infra.vm.network`` and kept on this
machine: ``eth0``, the cluster network (a multicast group on loopback shared by
the VMs started with the same ``--segment``; kubeadm join, pod traffic) with the
static address given at ``up``, and ``eth1``, restricted user-mode networking
that carries only the SSH forward on 127.0.0.1:<port>. The VMs have no default
route.

``python -m infra.vm.image build|path|up|down|status`` drives it; molecule's
create/destroy playbooks call ``up``/``down`` (``molecule/*/create.yml``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from infra.config import KernelPin, load_versions
from infra.paths import cache_dir
from infra.vm import network
from infra.vm.runner import qemu_tcg

IMAGE_SIZE = "12G"
# The lab's cluster segment; molecule's scenarios use others, so they never meet.
LAB_SEGMENT = 23456
# Packages on top of debootstrap's minbase. The first group makes it a machine
# Ansible can manage; the second is what the roles install (dkms and headers
# for vif, kubeadm's host tools, the Python client depcon-slo runs on; runc
# and the CNI plugins at their pins are added by role_packages()),
# preinstalled so a converge under TCG does not spend minutes in apt (byte-
# compiling python3-kubernetes is the slowest of them). The roles still
# declare every one of them, so a bare server gets the same set.
BASE_PACKAGES = (
    "systemd-sysv",
    "udev",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "kmod",
    "procps",
    "initramfs-tools",
    "e2fsprogs",
)
ROLE_PACKAGES = (
    "dkms",
    "make",
    "gcc",
    "libc6-dev",
    "conntrack",
    "iptables",
    "ethtool",
    "socat",
    "ebtables",
    "python3-kubernetes",
    "python3-yaml",
)
SUITES = ("bookworm", "bookworm-updates")
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
# systemd-networkd config: eth1 (restricted user-mode NIC) static with no
# gateway, so nothing routes through it; eth0 is set by depcon-vm-net.service
# from the kernel command line (one image, many VMs).
_NETWORKD_MGMT = f"""[Match]
Name=eth1

[Network]
Address={network.MGMT_GUEST}
LinkLocalAddressing=no
IPv6AcceptRA=no
"""
_NET_SCRIPT = """#!/bin/sh
# Per-VM identity from the kernel command line (infra/vm/image.py `up`):
# depcon.hostname=<name> depcon.ip=<cidr> for the cluster NIC eth0.
set -eu
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    depcon.hostname=*) name="${arg#depcon.hostname=}" ;;
    depcon.ip=*) ip="${arg#depcon.ip=}" ;;
    esac
done
if [ -n "${name:-}" ]; then
    echo "$name" > /etc/hostname
    hostname "$name"
    grep -q " $name\\$" /etc/hosts || echo "127.0.1.1 $name" >> /etc/hosts
fi
if [ -n "${ip:-}" ]; then
    mkdir -p /run/systemd/network
    printf '[Match]\\nName=eth0\\n\\n[Network]\\nAddress=%s\\n%s\\n%s\\n' "$ip" \\
        LinkLocalAddressing=no IPv6AcceptRA=no > /run/systemd/network/10-cluster.network
    # No resolver exists in the lab: a lookup is refused at once by the node
    # itself instead of leaving the machine (and CoreDNS has an upstream).
    echo "nameserver ${ip%/*}" > /etc/resolv.conf
fi
"""
_NET_UNIT = """[Unit]
Description=DepCon VM identity (hostname, cluster address) from the kernel command line
DefaultDependencies=no
After=local-fs.target
Before=systemd-networkd.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/depcon-vm-net
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
"""


class ImageError(RuntimeError):
    """Building or booting a VM image failed; the message says which step and why."""


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the image's content; its hash names the cache entry."""

    release: str
    mirror: str
    kernel_abi: str
    kernel_version: str
    packages: tuple[str, ...]
    code: str  # sha256 of the build code: a changed build step is a changed recipe

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """A built image: the disk, the kernel and initrd to boot, the SSH key into root."""

    path: Path

    @property
    def disk(self) -> Path:
        return self.path / "disk.raw"

    @property
    def vmlinuz(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.path / "initrd.img"

    @property
    def ssh_key(self) -> Path:
        return self.path / "id_ed25519"


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


def images_dir() -> Path:
    return cache_dir() / "vm" / "images"


def default_recipe(kernel: KernelPin | None = None) -> Recipe:
    versions = load_versions()
    kernel = kernel or versions.primary_kernel
    return Recipe(
        release=versions.debian.release,
        mirror=versions.debian.mirror,
        kernel_abi=kernel.abi,
        kernel_version=kernel.version,
        packages=BASE_PACKAGES + role_packages(),
        code=_build_code_hash(),
    )


def role_packages() -> tuple[str, ...]:
    """ROLE_PACKAGES plus the containerd role's Debian packages at their pins."""
    versions = load_versions()
    pinned = (versions.runc, versions.cni_plugins)
    return ROLE_PACKAGES + tuple(f"{pin.package}={pin.version}" for pin in pinned)


def _build_code_hash() -> str:
    """sha256 of the code that builds the image (not of the boot code below it)."""
    parts = [
        inspect.getsource(build_image),
        inspect.getsource(_configure),
        _NETWORKD_MGMT,
        _NET_SCRIPT,
        _NET_UNIT,
        IMAGE_SIZE,
        SECURITY_MIRROR,
        *SUITES,
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _run(cmd: Sequence[str], step: str, **kwargs: object) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ImageError(f"{step} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


@contextlib.contextmanager
def _chroot_mounts(root: Path) -> Iterator[None]:
    """/proc, /sys and /dev inside ``root`` for package scripts (kernel postinst, dkms)."""
    mounted: list[Path] = []
    try:
        for fstype, src, target in (
            ("proc", "proc", root / "proc"),
            ("sysfs", "sysfs", root / "sys"),
            ("bind", "/dev", root / "dev"),
            ("bind", "/dev/pts", root / "dev/pts"),
        ):
            target.mkdir(parents=True, exist_ok=True)
            opts = ["--bind"] if fstype == "bind" else ["-t", fstype]
            _run(["mount", *opts, src, str(target)], f"mount {target}")
            mounted.append(target)
        yield
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)


def _chroot(root: Path, *cmd: str, step: str) -> None:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C.UTF-8",
        "HOME": "/root",
    }
    _run(["chroot", str(root), *cmd], step, env=env)


def _configure(root: Path, pubkey: str) -> None:
    """The per-image settings: SSH key, fstab, networking, identity service."""
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(pubkey)
    (ssh / "authorized_keys").chmod(0o600)
    (root / "etc/fstab").write_text("/dev/vda / ext4 defaults,errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("depcon-vm\n")
    (root / "etc/hosts").write_text("127.0.0.1 localhost\n")
    # Each VM creates its own machine-id at first boot (kubelet, DHCP client IDs).
    (root / "etc/machine-id").write_text("")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "20-mgmt.network").write_text(_NETWORKD_MGMT)
    script = root / "usr/local/sbin/depcon-vm-net"
    script.write_text(_NET_SCRIPT)
    script.chmod(0o755)
    (root / "etc/systemd/system/depcon-vm-net.service").write_text(_NET_UNIT)
    for unit, target in (
        ("depcon-vm-net.service", "sysinit.target"),
        ("systemd-networkd.service", "multi-user.target"),
    ):
        wants = root / f"etc/systemd/system/{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / unit
        if not link.exists():
            src = (
                f"/etc/systemd/system/{unit}"
                if unit.startswith("depcon")
                else f"/lib/systemd/system/{unit}"
            )
            link.symlink_to(src)
    # No apt timers or man-db rebuilds competing for one emulated CPU.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer"):
        (root / f"etc/systemd/system/{unit}").unlink(missing_ok=True)
        (root / f"etc/systemd/system/{unit}").symlink_to("/dev/null")
    (root / "etc/apt/apt.conf.d/90depcon-vm").write_text(
        'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n'
    )


def build_image(recipe: Recipe | None = None, *, log: bool = True) -> Image:
    """The cached image for ``recipe`` (default: versions.yml's Debian and primary kernel)."""
    recipe = recipe or default_recipe()
    final = images_dir() / recipe.key()
    image = Image(final)
    if image.disk.exists():
        return image
    if os.geteuid() != 0:
        raise ImageError("building a VM image needs root (debootstrap, chroot, mount)")
    for tool in ("debootstrap", "mkfs.ext4", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise ImageError(f"{tool} not found: run scripts/setup (Debian package of {tool})")
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    root = tmp / "rootfs"
    root.mkdir(parents=True)
    started = time.monotonic()

    def say(msg: str) -> None:
        if log:
            print(f"[image {recipe.key()} +{time.monotonic() - started:.0f}s] {msg}", flush=True)

    try:
        say(f"debootstrap {recipe.release} from {recipe.mirror}")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                recipe.release,
                str(root),
                recipe.mirror,
            ],
            "debootstrap",
        )
        sources = (
            "".join(f"deb {recipe.mirror} {suite} main\n" for suite in SUITES)
            + f"deb {SECURITY_MIRROR} {recipe.release}-security main\n"
        )
        (root / "etc/apt/sources.list").write_text(sources)
        # Package scripts must not start services inside the chroot.
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        kernel = [
            f"linux-image-{recipe.kernel_abi}={recipe.kernel_version}",
            f"linux-headers-{recipe.kernel_abi}={recipe.kernel_version}",
        ]
        with _chroot_mounts(root):
            say("apt-get update")
            _chroot(root, "apt-get", "update", step="apt-get update")
            say(f"install the pinned kernel {recipe.kernel_abi} and the roles' packages")
            _chroot(
                root,
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                *kernel,
                *(p for p in recipe.packages if p not in BASE_PACKAGES),
                step="apt-get install",
            )
            _chroot(root, "apt-get", "clean", step="apt-get clean")
        policy.unlink()
        _run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "depcon-vm",
                "-f",
                str(tmp / "id_ed25519"),
            ],
            "ssh-keygen",
        )
        _configure(root, (tmp / "id_ed25519.pub").read_text())
        shutil.copy2(root / f"boot/vmlinuz-{recipe.kernel_abi}", tmp / "vmlinuz")
        shutil.copy2(root / f"boot/initrd.img-{recipe.kernel_abi}", tmp / "initrd.img")
        say(f"mkfs.ext4 -d ({IMAGE_SIZE} sparse)")
        disk = tmp / "disk.raw"
        _run(["truncate", "-s", IMAGE_SIZE, str(disk)], "truncate")
        _run(
            ["mkfs.ext4", "-q", "-F", "-L", "depcon-root", "-d", str(root), str(disk)], "mkfs.ext4"
        )
        shutil.rmtree(root)
        (tmp / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        say("done")
    except BaseException:
        # Leave nothing mounted or half-built behind.
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return image


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
        [
            "ssh",
            "-i",
            str(inst.identity_file),
            "-p",
            str(inst.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            "systemctl is-system-running --wait >/dev/null 2>&1; true",
        ],
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
    """The qemu command line of a lab or molecule VM (its NICs from ``infra.vm.network``)."""
    # A stable per-name MAC and UUID (kubeadm wants unique product_uuid and MACs).
    tag = hashlib.sha256(inst.name.encode()).hexdigest()
    mac = ":".join(["52", "54", tag[0:2], tag[2:4], tag[4:6]])
    uuid = f"{tag[0:8]}-{tag[8:12]}-{tag[12:16]}-{tag[16:20]}-{tag[20:32]}"
    cmdline = (
        f"root=/dev/vda rw console=ttyS0 net.ifnames=0 mitigations=off random.trust_cpu=on "
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
            f"`python -m infra.vm.image down --keep-disk {inst.name}` stops it keeping its "
            "disk; the next boot uses the current network"
        ) from exc


def _check_overlay_image(name: str, state: Path, image: Image) -> None:
    """A kept overlay only boots on the image it was made from."""
    made_from = (state / "image").read_text().strip() if (state / "image").exists() else "?"
    if made_from != image.path.name:
        raise ImageError(
            f"VM {name}'s disk was made from image {made_from}, the recipe now builds "
            f"{image.path.name}: `python -m infra.vm.image down {name}` drops the VM and its "
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
            f"{ssh_port}: `python -m infra.vm.image down {name}` first"
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
        prog="python -m infra.vm.image", description=__doc__.split("\n")[0]
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
