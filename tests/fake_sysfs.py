"""A sysfs-like tree of network interfaces, for nodeagent/slo.py's link-speed reader.

A fake because the machines the tests run on have no physical NIC (the CI VM
has one virtio NIC, no link speed): a 25 Gbit/s port, a link that is down, a
bond or a virtio NIC that claims 10000 cannot be produced for real. The tree is
laid out as the kernel lays out /sys (``class/net/IF`` symlinks into
``devices/``, a PCI device's ``driver`` link, ``ifindex``/``iflink``/``type``/
``uevent``), so the reader walks it exactly as it walks the real one. The
integration tests read the real /sys too: loopback, a veth pair in a network
namespace, a read failing with "Invalid argument".
"""

from __future__ import annotations

import os
from pathlib import Path


class FakeSysfs:
    """Builds /sys/class/net entries under a temporary root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "class" / "net").mkdir(parents=True)

    def _link(self, name: str, device_dir: Path) -> Path:
        dev = device_dir / "net" / name
        dev.mkdir(parents=True)
        (self.root / "class" / "net" / name).symlink_to(
            os.path.relpath(dev, self.root / "class/net")
        )
        return dev

    def nic(self, name: str, speed: str | None, driver: str = "e1000e", ifindex: int = 2) -> Path:
        """A PCI NIC bound to ``driver``; ``speed`` None: no speed file."""
        pci = self.root / "devices" / "pci0000:00" / f"0000:00:0{ifindex}.0"
        drv = self.root / "bus" / "pci" / "drivers" / driver
        drv.mkdir(parents=True, exist_ok=True)
        dev = self._link(name, pci)
        (pci / "driver").symlink_to(os.path.relpath(drv, pci))
        (dev / "device").symlink_to(os.path.relpath(pci, dev))
        self._attrs(dev, speed, ifindex=ifindex, iflink=ifindex, devtype=None)
        return dev

    def virtual(
        self,
        name: str,
        speed: str | None,
        *,
        ifindex: int = 5,
        iflink: int | None = None,
        devtype: str | None = None,
        arphrd: int = 1,
    ) -> Path:
        dev = self._link(name, self.root / "devices" / "virtual")
        self._attrs(
            dev, speed, ifindex=ifindex, iflink=iflink or ifindex, devtype=devtype, arphrd=arphrd
        )
        return dev

    @staticmethod
    def _attrs(
        dev: Path,
        speed: str | None,
        *,
        ifindex: int,
        iflink: int,
        devtype: str | None,
        arphrd: int = 1,
    ) -> None:
        if speed is not None:
            (dev / "speed").write_text(speed + "\n")
        (dev / "ifindex").write_text(f"{ifindex}\n")
        (dev / "iflink").write_text(f"{iflink}\n")
        (dev / "type").write_text(f"{arphrd}\n")
        uevent = f"INTERFACE={dev.name}\nIFINDEX={ifindex}\n"
        if devtype:
            uevent = f"DEVTYPE={devtype}\n" + uevent
        (dev / "uevent").write_text(uevent)
