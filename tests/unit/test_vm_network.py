"""harness/vm/network.py: no lab or molecule qemu command line reaches beyond this machine."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness.vm import image, network, runner

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _command(name: str, ssh_port: int, cluster_ip: str, segment: int, tmp: Path) -> list[str]:
    inst = image.Instance(name, ssh_port, cluster_ip, tmp / name, tmp / "key")
    return image.qemu_command(inst, image.Image(tmp / "img"), segment=segment, mem_mb=2048, smp=2)


def _netdevs(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]


def _assert_on_this_machine(argv: list[str]) -> None:
    """The rule, read off the command line independently of check_command."""
    netdevs = _netdevs(argv)
    assert len(netdevs) == 2, netdevs
    assert "-nodefaults" in argv
    assert not {"-net", "-nic"} & set(argv)
    for spec in netdevs:
        kind = spec.split(",")[0]
        opts = spec.split(",")[1:]
        if kind == "socket":
            assert "localaddr=127.0.0.1" in opts, spec
            assert any(o.startswith("mcast=") for o in opts), spec
        else:
            assert kind == "user", spec
            assert "restrict=on" in opts and "ipv6=off" in opts, spec
            fwds = [o for o in opts if o.startswith("hostfwd=")]
            assert fwds, spec
            for fwd in fwds:
                assert re.fullmatch(r"hostfwd=tcp:127\.0\.0\.1:\d+-:22", fwd), fwd
    network.check_command(argv)


def test_lab_vm_command_line_stays_on_this_machine(tmp_path: Path) -> None:
    hosts = yaml.safe_load((ROOT / "inventory/lab/hosts.yml").read_text())
    children = hosts["all"]["children"]
    vms = {
        name: h
        for group in ("kube_control_plane", "kube_node")
        for name, h in children[group]["hosts"].items()
    }
    assert set(vms) == {"lab-cp1", "lab-w1"}
    for name, h in vms.items():
        argv = _command(name, h["ansible_port"], h["depcon_lab_vm_ip"], image.LAB_SEGMENT, tmp_path)
        _assert_on_this_machine(argv)
        assert f"hostfwd=tcp:127.0.0.1:{h['ansible_port']}-:22" in ",".join(_netdevs(argv))


@pytest.mark.parametrize("scenario", ["node", "cluster"])
def test_molecule_vm_command_line_stays_on_this_machine(scenario: str, tmp_path: Path) -> None:
    spec = yaml.safe_load((ROOT / f"molecule/{scenario}/molecule.yml").read_text())
    segments = set()
    for p in spec["platforms"]:
        argv = _command(p["name"], p["ssh_port"], p["cluster_ip"], p["segment"], tmp_path)
        _assert_on_this_machine(argv)
        segments.add(p["segment"])
    # One segment per scenario, none shared with the lab's.
    assert len(segments) == 1 and image.LAB_SEGMENT not in segments


def test_kernel_test_vm_has_no_nic(tmp_path: Path) -> None:
    argv = runner.kernel_command(tmp_path / "vmlinuz", tmp_path / "initrd", smp=2, mem_mb=512)
    network.check_command(argv)
    assert "-nodefaults" in argv
    assert not [a for a in argv if a in ("-netdev", "-net", "-nic", "-device")]


def test_molecule_create_boots_through_the_harness() -> None:
    create = (ROOT / "molecule/shared/create.yml").read_text()
    assert "harness.vm.image" in create and "--segment" in create


def test_nobody_else_spells_qemu_network_arguments() -> None:
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.yml", "*.yaml", "*.sh", "*.j2", "Makefile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    spelled = re.compile(r"-netdev|hostfwd|mcast=|-nic\b")
    owners = {"harness/vm/network.py", "tests/unit/test_vm_network.py"}
    offenders = [f for f in files if f not in owners and spelled.search((ROOT / f).read_text())]
    assert offenders == []


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["-nodefaults", "-netdev", "socket,id=c,mcast=230.0.0.1:23456"], "multicast on"),
        (
            ["-nodefaults", "-netdev", "socket,id=c,mcast=230.0.0.1:1,localaddr=10.0.0.1"],
            "multicast on",
        ),
        (["-nodefaults", "-netdev", "user,id=m,hostfwd=tcp:127.0.0.1:22-:22"], "restrict=on"),
        (["-nodefaults", "-netdev", "user,id=m,restrict=on,hostfwd=tcp::22-:22"], "ipv6=off"),
        (
            ["-nodefaults", "-netdev", "user,id=m,restrict=on,ipv6=off,hostfwd=tcp::2222-:22"],
            "hostfwd must bind",
        ),
        (
            [
                "-nodefaults",
                "-netdev",
                "user,id=m,restrict=on,ipv6=off,hostfwd=tcp:0.0.0.0:2222-:22",
            ],
            "hostfwd must bind",
        ),
        (
            ["-nodefaults", "-netdev", "user,id=m,restrict=on,ipv6=off,guestfwd=tcp:10.0.2.9:1-x"],
            "only inbound",
        ),
        (["-nodefaults", "-netdev", "tap,id=t,ifname=tap0"], "only socket"),
        (["-nodefaults", "-nic", "user"], "-nic is not allowed"),
        (["-m", "512"], "-nodefaults"),
    ],
)
def test_check_command_refuses_what_reaches_out(argv: list[str], why: str) -> None:
    with pytest.raises(network.NetworkError, match=re.escape(why)):
        network.check_command(argv)


def test_segment_must_be_a_port() -> None:
    with pytest.raises(network.NetworkError, match="1024 to 65535"):
        network.qemu_network_args(segment=80, ssh_port=2221, mac_prefix="52:54:00:00:00")


def test_default_interfaces_from_the_route_table() -> None:
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
    )
    assert network.default_interfaces(table) == ["eth0", "wlan0"]


def test_verdict_fails_a_transfer_that_left_through_the_default_interface() -> None:
    sent = 16 * 1024 * 1024
    assert network.verdict(network.Counts(sent, sent, {"eth0": 30_000})) == []
    assert network.verdict(network.Counts(sent, sent * 3 // 4, {})) == []  # some UDP dropped
    leaked = network.verdict(network.Counts(sent, 0, {"eth0": sent + 4096}))
    assert len(leaked) == 2
    assert "did not cross the segment on lo" in leaked[0] and "eth0 sent" in leaked[1]


def test_probe_address_is_in_the_vm_subnet_and_no_vm_holds_it() -> None:
    assert network.probe_address("10.10.0.31/24") == "10.10.0.254"


def test_a_running_vm_on_an_old_network_is_not_reused(tmp_path: Path) -> None:
    inst = image.Instance("lab-w1", 2222, "10.10.0.12/24", tmp_path, tmp_path / "key")
    old = ["-nodefaults", "-netdev", "socket,id=cluster,mcast=230.0.0.1:23456"]
    proc = subprocess.Popen(["python3", "-c", "import time; time.sleep(30)", *old])
    try:
        time.sleep(0.2)
        with pytest.raises(image.ImageError, match="down --keep-disk lab-w1"):
            image._check_running_network(inst, proc.pid)
    finally:
        proc.kill()
        proc.wait()
    good = _command("lab-w1", 2222, "10.10.0.12/24", image.LAB_SEGMENT, tmp_path)
    proc = subprocess.Popen(["python3", "-c", "import time; time.sleep(30)", *good])
    try:
        time.sleep(0.2)
        image._check_running_network(inst, proc.pid)
    finally:
        proc.kill()
        proc.wait()


def test_ssh_argv_goes_to_the_loopback_as_root_without_keeping_host_keys() -> None:
    argv = network.ssh_argv("/k/id", 2221, "uptime")
    assert argv == [
        "ssh",
        "-i",
        "/k/id",
        "-p",
        "2221",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "LogLevel=ERROR",
        "root@127.0.0.1",
        "uptime",
    ]
    timed = network.ssh_argv("/k/id", "2221", "uptime", connect_timeout_s=10)
    assert timed[
        timed.index("UserKnownHostsFile=/dev/null") + 1 : timed.index("BatchMode=yes")
    ] == [
        "-o",
        "ConnectTimeout=10",
        "-o",
    ]
