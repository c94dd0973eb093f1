"""nodeagent/slo.py without a cluster: link speeds from a sysfs tree, overrides, patches, errors.

tests/fake_sysfs.py lays the tree out as the kernel lays out /sys, so
read_link_speed walks it as it walks the real one; tests/integration/test_slo.py
reads the real /sys, a veth pair included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from nodeagent import registration, slo
from nodeagent.slo import Capacity, NodeState, SloError
from tests.fake_sysfs import FakeSysfs

pytestmark = pytest.mark.unit

RESOURCE = "example.com/SLO"


@pytest.fixture
def sysfs(tmp_path: Path) -> FakeSysfs:
    return FakeSysfs(tmp_path / "sys")


# -- link speed --------------------------------------------------------------


def test_physical_nic_speed_is_the_capacity(sysfs: FakeSysfs) -> None:
    sysfs.nic("eno1", "25000")
    speed = slo.read_link_speed("eno1", sysfs.root)
    assert (speed.mbps, speed.detail) == (25000, "link speed 25000 Mbps")
    cap = slo.resolve_capacity("w1", "eno1", 1000, sysfs_root=sysfs.root)
    assert cap == Capacity("w1", 25000, "link speed of eno1")  # the override is a fallback only


@pytest.mark.parametrize(
    ("speed", "detail"),
    [
        ("-1", "speed -1 (unknown: link down or not negotiated)"),
        ("0", "speed 0 (unknown"),
        (None, "speed is missing: speed unknown"),
        ("fast", "holds 'fast', not a number"),
        ("99999999", "more than a node takes"),
    ],
)
def test_unknown_speed_needs_the_override(sysfs: FakeSysfs, speed: str | None, detail: str) -> None:
    sysfs.nic("eno1", speed)
    got = slo.read_link_speed("eno1", sysfs.root)
    assert got.mbps is None
    assert detail in got.detail
    cap = slo.resolve_capacity("w1", "eno1", 1000, sysfs_root=sysfs.root)
    assert cap.mbps == 1000
    assert cap.source.startswith("override; eno1: ")
    with pytest.raises(SloError) as err:
        slo.resolve_capacity("w1", "eno1", None, sysfs_root=sysfs.root)
    msg = str(err.value)
    assert msg.startswith("node w1: interface eno1: ")
    assert detail in msg
    assert "depcon_slo_capacity_mbps" in msg


def test_paravirtual_nic_speed_is_not_trusted(sysfs: FakeSysfs) -> None:
    sysfs.nic("eth0", "10000", driver="virtio_net")  # virtio can report a configured speed
    got = slo.read_link_speed("eth0", sysfs.root)
    assert got.mbps is None
    assert "virtio_net" in got.detail
    with pytest.raises(
        SloError, match=r"node lab-w1: interface eth0: paravirtual NIC \(virtio_net"
    ):
        slo.resolve_capacity("lab-w1", "eth0", sysfs_root=sysfs.root)


def test_veth_reports_10000_but_is_virtual(sysfs: FakeSysfs) -> None:
    # An up veth says 10000 Mbps; it is a pipe, not a link.
    sysfs.virtual("vethA", "10000", ifindex=6, iflink=5)
    got = slo.read_link_speed("vethA", sysfs.root)
    assert got.mbps is None
    assert got.detail == "virtual interface (veth): it has no link speed"
    with pytest.raises(SloError, match=r"node w1: interface vethA: virtual interface \(veth\)"):
        slo.resolve_capacity("w1", "vethA", sysfs_root=sysfs.root)


@pytest.mark.parametrize(
    ("kwargs", "kind"),
    [
        ({"arphrd": 772, "ifindex": 1}, "(loopback)"),
        ({"devtype": "bridge"}, "(bridge)"),
        ({}, "virtual interface: it"),  # ifb, dummy: nothing more to say
    ],
)
def test_other_virtual_interfaces(sysfs: FakeSysfs, kwargs: dict[str, int], kind: str) -> None:
    sysfs.virtual("v0", None, **kwargs)  # type: ignore[arg-type]
    got = slo.read_link_speed("v0", sysfs.root)
    assert got.mbps is None
    assert kind in got.detail


@pytest.mark.parametrize("devtype", ["bond", "vlan"])
def test_bond_and_vlan_carry_their_links_speed(sysfs: FakeSysfs, devtype: str) -> None:
    sysfs.virtual("bond0", "20000", devtype=devtype)
    assert slo.read_link_speed("bond0", sysfs.root).mbps == 20000


def test_missing_interface_is_an_error_even_with_an_override(sysfs: FakeSysfs) -> None:
    sysfs.nic("eno1", "1000")
    with pytest.raises(SloError) as err:
        slo.resolve_capacity("w1", "eth9", 1000, sysfs_root=sysfs.root)
    assert str(err.value) == (
        f"node w1: interface eth9 does not exist ({sysfs.root}/class/net/eth9 is missing)"
    )


@pytest.mark.parametrize(
    ("node", "interface", "override", "expected"),
    [
        ("W1", "eth0", None, "node name 'W1' is not a Kubernetes node name"),
        ("w_1", "eth0", None, "node name 'w_1'"),
        ("", "eth0", None, "node name ''"),
        ("w1", "eth0/../lo", None, "interface 'eth0/../lo' is not a Linux interface name"),
        ("w1", "a-very-long-interface", None, "interface 'a-very-long-interface'"),
        ("w1", "..", None, "interface '..'"),
        ("w1", "eth0", 0, "node w1: override 0 Mbps is out of range: it must be 1-1000000"),
        ("w1", "eth0", -5, "node w1: override -5 Mbps"),
        ("w1", "eth0", 1_000_001, "node w1: override 1000001 Mbps"),
    ],
)
def test_bad_input_names_the_value(
    sysfs: FakeSysfs, node: str, interface: str, override: int | None, expected: str
) -> None:
    sysfs.nic("eth0", "1000")
    with pytest.raises(SloError) as err:
        slo.resolve_capacity(node, interface, override, sysfs_root=sysfs.root)
    assert expected in str(err.value)


# -- inventory ---------------------------------------------------------------


def test_inventory_overrides(root: Path) -> None:
    caps = slo.capacities_from_inventory(root / "inventory/lab/hosts.yml")
    assert [(c.node, c.mbps) for c in caps] == [("lab-cp1", 1000), ("lab-w1", 1000)]
    assert caps[0].source == "inventory override (eth0)"


def test_inventory_without_overrides_names_every_node(scratch: Path) -> None:
    path = scratch / "inventory/lab/hosts.yml"
    data = yaml.safe_load(path.read_text())
    for group in ("kube_control_plane", "kube_node"):
        for host in data["all"]["children"][group]["hosts"].values():
            del host["depcon_slo_capacity_mbps"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SloError) as err:
        slo.capacities_from_inventory(path)
    msg = str(err.value)
    assert f"{path}: no depcon_slo_capacity_mbps for node(s) " in msg
    assert "lab-cp1 (interface eth0), lab-w1 (interface eth0)" in msg


# -- patches -----------------------------------------------------------------


def state(capacity: dict[str, str] | None, allocatable: dict[str, str] | None) -> NodeState:
    return NodeState("w1", "7", capacity, allocatable)


def test_register_ops_add_to_existing_maps_with_escaped_pointer() -> None:
    ops = slo.register_ops(state({"cpu": "4"}, {"cpu": "4"}), RESOURCE, 1000)
    assert ops == [
        {"op": "add", "path": "/status/capacity/example.com~1SLO", "value": "1000"},
        {"op": "add", "path": "/status/allocatable/example.com~1SLO", "value": "1000"},
    ]


def test_register_ops_create_missing_maps() -> None:
    ops = slo.register_ops(state(None, None), RESOURCE, 10)
    assert ops == [
        {"op": "add", "path": "/status/capacity", "value": {RESOURCE: "10"}},
        {"op": "add", "path": "/status/allocatable", "value": {RESOURCE: "10"}},
    ]


def test_register_ops_replace_a_zeroed_value() -> None:
    # What a kubelet leaves after re-registration: the resource at 0.
    ops = slo.register_ops(state({RESOURCE: "0"}, {RESOURCE: "1000"}), RESOURCE, 1000)
    assert ops == [{"op": "replace", "path": "/status/capacity/example.com~1SLO", "value": "1000"}]


def test_register_ops_nothing_when_equal_as_quantities() -> None:
    assert slo.register_ops(state({RESOURCE: "1k"}, {RESOURCE: "1000"}), RESOURCE, 1000) == []


def test_unregister_ops() -> None:
    assert slo.unregister_ops(state({RESOURCE: "5", "cpu": "1"}, {"cpu": "1"}), RESOURCE) == [
        {"op": "remove", "path": "/status/capacity/example.com~1SLO"}
    ]
    assert slo.unregister_ops(state(None, None), RESOURCE) == []


def test_pod_request_counts_containers_and_init_containers() -> None:
    def ctr(name: str, mbps: str | None) -> k8s.V1Container:
        req = {RESOURCE: mbps} if mbps else {"cpu": "1"}
        return k8s.V1Container(name=name, resources=k8s.V1ResourceRequirements(requests=req))

    pod = k8s.V1Pod(
        spec=k8s.V1PodSpec(
            containers=[ctr("a", "100"), ctr("b", "50"), ctr("c", None)],
            init_containers=[ctr("i", "120")],
        )
    )
    assert registration._pod_request(pod, RESOURCE) == 150
    pod.spec.init_containers = [ctr("i", "1k")]  # type: ignore[union-attr]
    assert registration._pod_request(pod, RESOURCE) == 1000


# -- command line (everything here fails before any cluster is contacted) ----


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = slo.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_probe_prints_what_would_be_registered(
    sysfs: FakeSysfs, capsys: pytest.CaptureFixture[str]
) -> None:
    sysfs.nic("eno1", "1000")
    args = ["probe", "--node", "w1", "--interface", "eno1", "--sysfs-root", str(sysfs.root)]
    assert run(args, capsys) == (0, "node w1: 1000 Mbps (link speed of eno1)\n", "")


def test_register_with_unknown_speed_fails_before_connecting(
    sysfs: FakeSysfs, capsys: pytest.CaptureFixture[str]
) -> None:
    sysfs.virtual("vethA", "10000", iflink=9)
    argv = ["register", "--node", "w1", "--interface", "vethA", "--sysfs-root", str(sysfs.root)]
    argv += ["--kubeconfig", "/nonexistent/kubeconfig"]
    rc, out, err = run(argv, capsys)
    assert rc == 2
    assert out == ""
    assert err.startswith("depcon-slo: error: node w1: interface vethA: virtual interface (veth)")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["show", "--resource", "SLO"], "--resource: 'SLO' is not an extended resource name"),
        (["show", "--resource", "kubernetes.io/x"], "kubernetes.io domain is reserved"),
        (["ensure", "--node", "w1"], "ensure on a node needs --interface"),
        (["unregister", "--node", "Bad_Name"], "node name 'Bad_Name'"),
        (
            ["register", "--inventory", "inventory/lab/hosts.yml", "--node", "w1"],
            "--inventory takes every node from the inventory",
        ),
        (["register", "--inventory", "/nonexistent.yml"], "/nonexistent.yml: file not found"),
        (["show", "--kubeconfig", "/nonexistent/kc"], "kubeconfig /nonexistent/kc does not exist"),
    ],
)
def test_cli_errors_name_the_value(
    argv: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(root)
    rc, _, err = run(argv, capsys)
    assert rc == 2
    assert expected in err


def test_cli_rejects_a_non_number_override(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        slo.main(["probe", "--interface", "lo", "--override-mbps", "1e3"])
    assert exc.value.code == 2
    assert "'1e3' is not a whole number of Mbps" in capsys.readouterr().err


def test_the_node_agent_ships_alone(root: Path) -> None:
    """What slo_capacity ships is the nodeagent package, importing nothing of the controller's."""
    shipped = yaml.safe_load((root / "roles/slo_capacity/vars/main.yml").read_text())
    files = shipped["slo_capacity_files"]
    assert sorted(files) == sorted(
        p.relative_to(root).as_posix() for p in (root / "nodeagent").glob("*.py")
    )
    for f in files:
        tree = ast.parse((root / f).read_text())
        top_level = [
            n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0
        ] + [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
        anywhere = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        # Controller code only lazily, for runs from the checkout; never the program or Pulumi.
        assert not [
            m
            for m in top_level
            if m.split(".")[0] in {"depcon", "buildtools", "harness", "program", "pulumi"}
        ], f
        assert not [m for m in anywhere if m.split(".")[0] in {"program", "pulumi"}], f


def test_the_node_agent_reads_its_settings_from_the_role(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEPCON_SLO_MAX_MBPS", "5000")
    slo.max_mbps.cache_clear()
    try:
        assert slo.max_mbps() == 5000
        with pytest.raises(SloError, match="1-5000"):
            slo.validate_mbps(5001)
        monkeypatch.setenv("DEPCON_SLO_MAX_MBPS", "lots")
        slo.max_mbps.cache_clear()
        with pytest.raises(SloError, match="DEPCON_SLO_MAX_MBPS='lots'"):
            slo.max_mbps()
    finally:
        slo.max_mbps.cache_clear()
