"""Building the Debian 12 disk image the VMs boot (debootstrap, then one raw ext4 file).

Ansible needs a real machine: systemd, sshd, apt, python3. The image is built
from Debian packages only, into ``cache_dir()/vm/images/<recipe hash>``, and
rebuilt only when the recipe (the build code here, the package list, the
pinned kernel) changes. Booting it is ``harness.vm.image``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from depcon.config import KernelPin, load_versions
from depcon.paths import cache_dir
from harness.vm import network

IMAGE_SIZE = "12G"
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
# Per-VM identity from the kernel command line (harness/vm/image.py `up`):
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
    """sha256 of the code that builds the image (not of the boot code in harness.vm.image)."""
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
