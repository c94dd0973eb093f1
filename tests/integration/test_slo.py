"""depcon-slo against a real etcd + kube-apiserver at the pinned version, and the real /sys.

Nodes are API objects (harness.controlplane.add_node); depcon-slo runs as a
process with the admin kubeconfig, as it runs on a controller or a node. The
keep-registered proof runs the ExecStart line of the rendered systemd unit
(roles/slo_capacity/templates/depcon-slo.service.j2) and does to the Node what a
re-registering kubelet does: zero the resource, drop it, delete and re-create
the Node.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from kubernetes import client

from depcon.config import load_versions
from depcon.paths import repo_root
from harness.controlplane import ControlPlane, add_node
from tests.fake_sysfs import FakeSysfs

pytestmark = pytest.mark.integration

R = "example.com/SLO"
CLI = [sys.executable, "-m", "nodeagent.slo"]
TEMPLATES = repo_root() / "roles" / "slo_capacity" / "templates"


def depcon_slo(
    args: list[str], cp: ControlPlane | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    argv = [*CLI, *args]
    if cp is not None:
        argv += ["--kubeconfig", str(cp.kubeconfig)]
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, cwd=repo_root(), timeout=60, **kwargs
    )


def wait_for(cond: Callable[[], bool], timeout: float = 15.0) -> float:
    """Seconds until ``cond()`` held; fails the test after ``timeout``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture
def core(control_plane: ControlPlane) -> client.CoreV1Api:
    return client.CoreV1Api(control_plane.api_client())


@pytest.fixture
def new_node(control_plane: ControlPlane) -> Callable[[], str]:
    """Creates Nodes with names of their own (the API server is shared by the module)."""

    def make() -> str:
        name = f"slo-{uuid.uuid4().hex[:8]}"
        add_node(control_plane.api_client(), name, cpu="4", memory="8Gi")
        return name

    return make


def slo_of(core: client.CoreV1Api, name: str) -> tuple[str | None, str | None]:
    st = core.read_node(name).status
    return (st.capacity or {}).get(R), (st.allocatable or {}).get(R)


def rv(core: client.CoreV1Api, name: str) -> str:
    return str(core.read_node(name).metadata.resource_version)


@pytest.fixture
def nic(tmp_path: Path) -> FakeSysfs:
    """A node's /sys with a 25 Gbit/s NIC (eno1) and a virtio NIC (eth0)."""
    fs = FakeSysfs(tmp_path / "sys")
    fs.nic("eno1", "25000", ifindex=2)
    fs.nic("eth0", "-1", driver="virtio_net", ifindex=3)
    return fs


# -- register, idempotence, unregister ----------------------------------------


def test_register_sets_capacity_and_allocatable_once(
    control_plane: ControlPlane, core: client.CoreV1Api, new_node: Callable[[], str], nic: FakeSysfs
) -> None:
    name = new_node()
    args = ["register", "--node", name, "--interface", "eno1", "--sysfs-root", str(nic.root)]
    first = depcon_slo(args, control_plane)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"node {name}: set {R} 25000 (link speed of eno1)\n"
    assert slo_of(core, name) == ("25k", "25k")  # the API server's canonical form of 25000
    node = core.read_node(name)
    assert node.status.capacity["cpu"] == "4"  # nothing else touched
    assert [c.type for c in node.status.conditions] == ["Ready"]

    before = rv(core, name)
    second = depcon_slo(args, control_plane)
    assert second.returncode == 0, second.stderr
    assert second.stdout == f"node {name}: {R} 25000 (link speed of eno1) already set, no change\n"
    assert rv(core, name) == before


def test_register_from_the_inventory_checks_every_node_first(
    control_plane: ControlPlane,
    core: client.CoreV1Api,
    new_node: Callable[[], str],
    tmp_path: Path,
) -> None:
    a, b = new_node(), new_node()
    inventory = {
        "all": {
            "children": {
                "kube_control_plane": {
                    "hosts": {
                        a: {"depcon_node_interface": "eth0", "depcon_slo_capacity_mbps": 1000}
                    }
                },
                "kube_node": {
                    "hosts": {
                        b: {"depcon_node_interface": "eth0", "depcon_slo_capacity_mbps": 2500},
                        "slo-not-in-cluster": {
                            "depcon_node_interface": "eth0",
                            "depcon_slo_capacity_mbps": 100,
                        },
                    }
                },
            }
        }
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(inventory))
    before = (rv(core, a), rv(core, b))
    bad = depcon_slo(["register", "--inventory", str(path)], control_plane)
    assert bad.returncode == 2
    assert "node(s) slo-not-in-cluster not found in the cluster; nothing was changed" in bad.stderr
    assert (rv(core, a), rv(core, b)) == before

    del inventory["all"]["children"]["kube_node"]["hosts"]["slo-not-in-cluster"]
    path.write_text(yaml.safe_dump(inventory))
    ok = depcon_slo(["register", "--inventory", str(path)], control_plane)
    assert ok.returncode == 0, ok.stderr
    assert f"node {b}: set {R} 2500 (inventory override (eth0))" in ok.stdout
    assert slo_of(core, a) == ("1k", "1k")
    assert slo_of(core, b) == ("2500", "2500")


def test_unknown_speed_without_override_changes_nothing(
    control_plane: ControlPlane, core: client.CoreV1Api, new_node: Callable[[], str], nic: FakeSysfs
) -> None:
    name = new_node()
    before = rv(core, name)
    args = ["register", "--node", name, "--interface", "eth0", "--sysfs-root", str(nic.root)]
    out = depcon_slo(args, control_plane)
    assert out.returncode == 2
    assert out.stderr == (
        f"depcon-slo: error: node {name}: interface eth0: paravirtual NIC (virtio_net): its "
        "reported speed is not the link's; no SLO capacity override: set "
        "depcon_slo_capacity_mbps for this node in the inventory (or pass --override-mbps)\n"
    )
    assert rv(core, name) == before
    assert slo_of(core, name) == (None, None)

    with_override = depcon_slo([*args, "--override-mbps", "1000"], control_plane)
    assert with_override.returncode == 0, with_override.stderr
    assert slo_of(core, name) == ("1k", "1k")


def test_unregister_removes_it(
    control_plane: ControlPlane, core: client.CoreV1Api, new_node: Callable[[], str], nic: FakeSysfs
) -> None:
    a, b = new_node(), new_node()
    for name in (a, b):
        args = ["register", "--node", name, "--interface", "eno1", "--sysfs-root", str(nic.root)]
        assert depcon_slo(args, control_plane).returncode == 0
    one = depcon_slo(["unregister", "--node", a], control_plane)
    assert (one.returncode, one.stdout) == (0, f"node {a}: removed {R}\n")
    assert slo_of(core, a) == (None, None)
    assert slo_of(core, b) == ("25k", "25k")
    again = depcon_slo(["unregister", "--node", a], control_plane)
    assert (again.returncode, again.stdout) == (0, f"node {a}: no {R}, no change\n")

    every = depcon_slo(["unregister"], control_plane)
    assert every.returncode == 0, every.stderr
    assert f"node {b}: removed {R}\n" in every.stdout
    assert slo_of(core, b) == (None, None)
    assert core.read_node(b).status.capacity["cpu"] == "4"


def test_show_lists_capacity_allocatable_and_requests(
    control_plane: ControlPlane, core: client.CoreV1Api, new_node: Callable[[], str]
) -> None:
    name = new_node()
    args = ["register", "--node", name, "--interface", "lo", "--override-mbps", "1000"]
    assert depcon_slo(args, control_plane).returncode == 0
    slo = {R: "300"}
    core.create_namespaced_pod(
        "default",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=f"{name}-pod"),
            spec=client.V1PodSpec(
                node_name=name,
                containers=[
                    client.V1Container(
                        name="c",
                        image="registry.k8s.io/pause:3.10.2",
                        resources=client.V1ResourceRequirements(requests=slo, limits=slo),
                    )
                ],
            ),
        ),
    )
    out = depcon_slo(["show"], control_plane)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{R} (Mbps)"
    assert lines[1].split() == ["NODE", "CAPACITY", "ALLOCATABLE", "REQUESTED"]
    assert [line.split() for line in lines if line.startswith(name)] == [[name, "1k", "1k", "300"]]
    core.delete_namespaced_pod(f"{name}-pod", "default", grace_period_seconds=0)


# -- the real /sys ------------------------------------------------------------


def test_loopback_needs_the_override() -> None:
    out = depcon_slo(["probe", "--node", "n1", "--interface", "lo"])
    assert out.returncode == 2
    assert "node n1: interface lo: virtual interface (loopback): it has no link speed" in out.stderr
    ok = depcon_slo(["probe", "--node", "n1", "--interface", "lo", "--override-mbps", "40"])
    assert ok.stdout == (
        "node n1: 40 Mbps (override; lo: virtual interface (loopback): it has no link speed)\n"
    )


def test_a_speed_read_answering_invalid_argument(tmp_path: Path) -> None:
    # The real attribute file of a device without a speed: the kernel answers EINVAL.
    # Reached through a link outside the root, so the reader takes it for hardware.
    root = tmp_path / "sys"
    (root / "class" / "net").mkdir(parents=True)
    (root / "class" / "net" / "nic0").symlink_to("/sys/class/net/lo")
    out = depcon_slo(["probe", "--node", "n1", "--interface", "nic0", "--sysfs-root", str(root)])
    assert out.returncode == 2
    assert (
        f"node n1: interface nic0: reading {root}/class/net/nic0/speed failed: Invalid argument "
        "(link down, or the driver reports no speed)"
    ) in out.stderr


@pytest.fixture
def veth_netns() -> Iterator[str]:
    """A network namespace holding an up veth pair vA/vB."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    ns = f"depcon-slo-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (
            ["link", "add", "vA", "type", "veth", "peer", "name", "vB"],
            ["link", "set", "vA", "up"],
            ["link", "set", "vB", "up"],
        ):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_veth_claims_10000_and_needs_the_override(veth_netns: str) -> None:
    in_ns = ["ip", "netns", "exec", veth_netns]
    speed = subprocess.run(
        [*in_ns, "cat", "/sys/class/net/vA/speed"], capture_output=True, text=True, check=True
    )
    assert speed.stdout.strip() == "10000"  # what ethtool would print: a number, not a link
    out = subprocess.run(
        [*in_ns, *CLI, "probe", "--node", "n1", "--interface", "vA"],
        capture_output=True,
        text=True,
        check=False,
        cwd=repo_root(),
    )
    assert out.returncode == 2
    assert "node n1: interface vA: virtual interface (veth): it has no link speed" in out.stderr
    ok = subprocess.run(
        [*in_ns, *CLI, "probe", "--node", "n1", "--interface", "vA", "--override-mbps", "700"],
        capture_output=True,
        text=True,
        check=False,
        cwd=repo_root(),
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("node n1: 700 Mbps (override; vA: virtual interface (veth)")


# -- keeping it registered: the systemd unit's own command ---------------------


def render_unit(**overrides: Any) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined
    )
    variables: dict[str, Any] = {
        "slo_capacity_command": shlex.join(CLI),
        "slo_capacity_node_name": "lab-w1",
        "slo_capacity_interface": "lo",
        "slo_capacity_override_mbps": 1000,
        "slo_capacity_resource_name": R,
        "slo_capacity_kubeconfig": "/etc/kubernetes/kubelet.conf",
        "slo_capacity_resync_seconds": 60,
        "slo_capacity_kubelet_unit": "kubelet.service",
        **overrides,
    }
    return env.get_template("depcon-slo.service.j2").render(variables)


def exec_start(unit: str) -> list[str]:
    text = unit.replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart="))


@pytest.mark.parametrize("override", [1000, None, ""])
def test_rendered_unit_passes_systemd_analyze_verify(
    tmp_path: Path, override: int | str | None
) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    unit = render_unit(slo_capacity_override_mbps=override)
    argv = exec_start(unit)
    assert argv[len(CLI) :][:2] == ["ensure", "--watch"]
    assert ("--override-mbps" in argv) == (override == 1000)
    (tmp_path / "depcon-slo.service").write_text(unit)
    (tmp_path / "kubelet.service").write_text("[Service]\nExecStart=/bin/true\n")
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "depcon-slo.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (out.returncode, out.stderr) == (0, "")
    assert "PartOf=kubelet.service" in unit
    assert "WantedBy=kubelet.service" in unit


def test_ensure_registers_when_missing_and_is_quiet_when_right(
    control_plane: ControlPlane, core: client.CoreV1Api, new_node: Callable[[], str]
) -> None:
    name = new_node()
    args = ["ensure", "--node", name, "--interface", "lo", "--override-mbps", "800"]
    first = depcon_slo(args, control_plane)
    assert (first.returncode, first.stderr) == (0, "")
    assert first.stdout.startswith(f"node {name}: set {R} 800 ")
    before = rv(core, name)
    second = depcon_slo(args, control_plane)
    assert (second.returncode, second.stdout, second.stderr) == (0, "", "")
    assert rv(core, name) == before
    missing = depcon_slo(["ensure", "--node", "slo-nowhere", *args[3:]], control_plane)
    assert missing.returncode == 2
    assert "node(s) slo-nowhere not found in the cluster" in missing.stderr


def test_the_unit_command_restores_what_a_restarting_kubelet_drops(
    control_plane: ControlPlane, core: client.CoreV1Api, new_node: Callable[[], str], tmp_path: Path
) -> None:
    name = new_node()
    # resync far away: anything restored within the wait below is the watch's doing.
    unit = render_unit(
        slo_capacity_node_name=name,
        slo_capacity_kubeconfig=str(control_plane.kubeconfig),
        slo_capacity_resync_seconds=3600,
    )
    log = tmp_path / "depcon-slo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            exec_start(unit), stdout=out, stderr=subprocess.STDOUT, cwd=repo_root()
        )
    try:

        def registered() -> bool:
            assert proc.poll() is None, log.read_text()
            return slo_of(core, name) == ("1k", "1k")

        wait_for(registered)  # the service's first check

        # 1. A kubelet starting without its device-manager checkpoint zeroes
        #    the extended resources of its existing Node.
        zero = {R: "0"}
        core.patch_node_status(name, {"status": {"capacity": zero, "allocatable": zero}})
        wait_for(registered)

        # 2. A status written without the resource.
        core.patch_node_status(
            name,
            [
                {"op": "remove", "path": "/status/capacity/example.com~1SLO"},
                {"op": "remove", "path": "/status/allocatable/example.com~1SLO"},
            ],
            _content_type="application/json-patch+json",
        )
        wait_for(registered)

        # 3. The Node deleted and registered anew by its kubelet.
        core.delete_node(name)
        wait_for(lambda: name not in {n.metadata.name for n in core.list_node().items})
        add_node(control_plane.api_client(), name, cpu="4", memory="8Gi")
        wait_for(registered)

        # Right already: the service leaves the Node alone.
        before = rv(core, name)
        time.sleep(1.0)
        assert rv(core, name) == before
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    lines = log.read_text().splitlines()
    assert lines[0] == f"node {name}: keeping {R} registered (watching the Node)"
    restored = f"node {name}: set {R} 1000 (override; lo: virtual interface (loopback): "
    assert sum(line.startswith(restored) for line in lines) == 4, lines


# -- on a node's own Python: Debian 12's python3-kubernetes ---------------------

# roles/slo_capacity runs depcon-slo on the node with Debian's packages, not the
# project's venv: python3-kubernetes 22.6 with urllib3 1.26, where the venv has
# the current client. These are its Depends, recursively, minus what python3 has.
DEBIAN_PACKAGES = [
    "python3-kubernetes",
    "python3-cachetools",
    "python3-certifi",
    "python3-chardet",
    "python3-charset-normalizer",
    "python3-dateutil",
    "python3-google-auth",
    "python3-idna",
    "python3-oauthlib",
    "python3-pkg-resources",
    "python3-pyasn1",
    "python3-pyasn1-modules",
    "python3-requests",
    "python3-requests-oauthlib",
    "python3-rsa",
    "python3-six",
    "python3-urllib3",
    "python3-websocket",
]


@pytest.fixture(scope="module")
def debian_cli(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """depcon-slo under /usr/bin/python3 with the Debian packages unpacked beside it."""
    if not (Path("/usr/bin/python3").exists() and shutil.which("apt-get")):
        pytest.skip("needs Debian's /usr/bin/python3 and apt-get")
    check = subprocess.run(["/usr/bin/python3", "-c", "import yaml"], check=False)
    if check.returncode != 0:
        pytest.skip("/usr/bin/python3 has no yaml (python3-yaml)")
    d = tmp_path_factory.mktemp("debian-python")
    got = subprocess.run(
        ["apt-get", "download", *DEBIAN_PACKAGES],
        cwd=d,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if got.returncode != 0:
        pytest.skip(f"apt-get download failed: {got.stderr.strip()[-300:]}")
    for deb in d.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(d / "root")], check=True)
    site = d / "root" / "usr" / "lib" / "python3" / "dist-packages"
    # Exactly what roles/slo_capacity ships, and the settings its command sets.
    ship = d / "shipped"
    role_vars = yaml.safe_load((repo_root() / "roles/slo_capacity/vars/main.yml").read_text())
    for rel in role_vars["slo_capacity_files"]:
        (ship / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo_root() / rel, ship / rel)
    return [
        "/usr/bin/env",
        f"PYTHONPATH={site}:{ship}",
        f"DEPCON_SLO_RESOURCE={R}",
        f"DEPCON_SLO_MAX_MBPS={load_versions().slo.max_mbps}",
        "/usr/bin/python3",
        "-m",
        "nodeagent.slo",
    ]


def test_on_debian12_python_kubernetes(
    control_plane: ControlPlane,
    new_node: Callable[[], str],
    debian_cli: list[str],
    nic: FakeSysfs,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(control_plane.api_client())

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        argv = [*debian_cli, *args, "--kubeconfig", str(control_plane.kubeconfig)]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)

    version = subprocess.run(
        [*debian_cli[:-2], "-c", "import kubernetes; print(kubernetes.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert version.stdout.startswith("22.")
    name = new_node()
    args = ["register", "--node", name, "--interface", "eno1", "--sysfs-root", str(nic.root)]
    assert run(args).stdout == f"node {name}: set {R} 25000 (link speed of eno1)\n"
    before = rv(core, name)
    assert "already set, no change" in run(args).stdout
    assert rv(core, name) == before
    assert name in run(["show"]).stdout

    unit = render_unit(
        slo_capacity_command=shlex.join(debian_cli),
        slo_capacity_node_name=name,
        slo_capacity_kubeconfig=str(control_plane.kubeconfig),
        slo_capacity_resync_seconds=3600,
    )
    log = tmp_path / "depcon-slo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(exec_start(unit), stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: slo_of(core, name) == ("1k", "1k"))  # the unit's lo + override
        core.patch_node_status(name, {"status": {"capacity": {R: "0"}, "allocatable": {R: "0"}}})
        wait_for(lambda: slo_of(core, name) == ("1k", "1k"))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert run(["unregister", "--node", name]).stdout == f"node {name}: removed {R}\n"
    assert slo_of(core, name) == (None, None)
