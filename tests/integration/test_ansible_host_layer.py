"""The host layer's real path: ansible-runner running the project's playbooks."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from buildtools.artifacts import build
from depcon.ansible_run import PlaybookError, run_playbook, run_playbook_isolated
from depcon.config import load_versions
from harness.controlplane import ControlPlane

pytestmark = pytest.mark.integration


def test_preflight_passes_on_a_set_up_controller() -> None:
    stats = run_playbook("playbooks/preflight.yml", "inventory/lab/hosts.yml", {})
    assert stats["hosts"] == ["localhost"]
    assert stats["ok"] >= 8
    assert stats["changed"] == 0  # a check changes nothing


def test_preflight_names_what_is_missing() -> None:
    with pytest.raises(PlaybookError, match="no-such-tool-xyz is not on PATH; run scripts/setup"):
        run_playbook(
            "playbooks/preflight.yml",
            "inventory/lab/hosts.yml",
            {"controller_preflight_programs": '["sh", "no-such-tool-xyz"]'},
        )


def test_isolated_run_returns_stats_and_names_failures() -> None:
    """The Pulumi provider's path: the same run in a fresh process, same results."""
    stats = run_playbook_isolated("playbooks/preflight.yml", "inventory/lab/hosts.yml", {})
    assert stats["hosts"] == ["localhost"]
    assert stats["changed"] == 0
    with pytest.raises(PlaybookError, match="no-such-tool-xyz is not on PATH"):
        run_playbook_isolated(
            "playbooks/preflight.yml",
            "inventory/lab/hosts.yml",
            {"controller_preflight_programs": '["sh", "no-such-tool-xyz"]'},
        )


def test_bad_role_variable_fails_before_any_task() -> None:
    # argument_specs: a string where a bool belongs is refused up front.
    with pytest.raises(PlaybookError, match="controller_preflight_go"):
        run_playbook(
            "playbooks/preflight.yml",
            "inventory/lab/hosts.yml",
            {"controller_preflight_go": "perhaps"},
        )


def test_ansible_reads_the_same_versions_as_python(tmp_path: Path, root: Path) -> None:
    dump = tmp_path / "versions.json"
    book = root / "playbooks" / ".dump-versions-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Dump versions",
                    "hosts": "controller",
                    "gather_facts": False,
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "roles": ["depcon_versions"],
                    "tasks": [
                        {
                            "name": "Write them",
                            "ansible.builtin.copy": {
                                "content": "{{ depcon_versions | to_json }}",
                                "dest": str(dump),
                                "mode": "0644",
                            },
                        }
                    ],
                }
            ]
        )
    )
    try:
        run_playbook(str(book.relative_to(root)), "inventory/lab/hosts.yml", {})
    finally:
        book.unlink()
    seen = json.loads(dump.read_text())
    assert seen == yaml.safe_load((root / "versions.yml").read_text())
    assert seen["kubernetes"]["version"] == load_versions().kubernetes.version


def _lab_playbook(tmp_path: Path, tasks: list[dict[str, object]]) -> Path:
    path = tmp_path / "play.yml"
    path.write_text(
        yaml.safe_dump(
            [{"name": "probe", "hosts": "controller", "gather_facts": False, "tasks": tasks}]
        )
    )
    return path


def test_runs_show_each_task_as_it_starts(tmp_path: Path, root: Path) -> None:
    """What `pulumi up` and make lab show during a long run: host and task, as they start."""
    play = _lab_playbook(
        tmp_path,
        [
            {"name": "say hello", "ansible.builtin.debug": {"msg": "hi"}},
            {"name": "say bye", "ansible.builtin.debug": {"msg": "bye"}},
        ],
    )
    lines: list[str] = []
    stats = run_playbook(str(play), "inventory/lab/hosts.yml", {}, progress=lines.append)
    assert stats["ok"] == 2
    started = [ln for ln in lines if re.match(r"\[ansible \+\s*\d+s\] localhost: ", ln)]
    assert [ln.split(": ", 1)[1] for ln in started] == ["say hello", "say bye"]
    # The isolated run (the Pulumi provider's path) relays the same lines.
    relayed: list[str] = []
    run_playbook_isolated(str(play), "inventory/lab/hosts.yml", {}, progress=relayed.append)
    assert [ln.split("] ", 1)[1] for ln in relayed] == [ln.split("] ", 1)[1] for ln in lines]


def test_a_failure_names_the_host_the_task_and_the_message(tmp_path: Path) -> None:
    play = _lab_playbook(tmp_path, [{"name": "break", "ansible.builtin.fail": {"msg": "no disk"}}])
    lines: list[str] = []
    with pytest.raises(PlaybookError, match=r"localhost: break: no disk"):
        run_playbook(str(play), "inventory/lab/hosts.yml", {}, progress=lines.append)
    assert any(re.search(r"FAILED localhost: break: no disk", ln) for ln in lines)


def test_stack_settings_reach_the_roles(root: Path, tmp_path: Path) -> None:
    """The one mapping's variables set what the kubelet, scheduler and registrar roles use."""
    dump = tmp_path / "seen.json"
    names = [
        "depcon_kubelet_slo_resource",
        "depcon_scheduler_slo_resource",
        "depcon_scheduler_mode",
        "slo_capacity_resource_name",
    ]
    tasks: list[dict[str, object]] = [
        {
            "name": f"Read the defaults of {role}",
            "ansible.builtin.include_vars": {"file": str(root / f"roles/{role}/defaults/main.yml")},
        }
        for role in ("depcon_kubelet", "depcon_scheduler", "slo_capacity")
    ]
    tasks.append(
        {
            "name": "Write them",
            "ansible.builtin.copy": {
                "content": "{{ {" + ", ".join(f"'{n}': {n}" for n in names) + "} | to_json }}",
                "dest": str(dump),
                "mode": "0600",
            },
        }
    )
    book = root / "playbooks" / ".settings-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Role defaults under the stack's settings",
                    "hosts": "controller",
                    "gather_facts": False,
                    "roles": ["depcon_versions"],
                    "tasks": tasks,
                }
            ]
        )
    )
    settings = {
        "depcon_scheduler_mode": "default-profile",
        "depcon_slo_resource_name": "lab.example.org/net",
    }
    try:
        run_playbook(str(book.relative_to(root)), "inventory/lab/hosts.yml", settings)
        assert json.loads(dump.read_text()) == {
            "depcon_kubelet_slo_resource": "lab.example.org/net",
            "depcon_scheduler_slo_resource": "lab.example.org/net",
            "depcon_scheduler_mode": "default-profile",
            "slo_capacity_resource_name": "lab.example.org/net",
        }
        run_playbook(str(book.relative_to(root)), "inventory/lab/hosts.yml", {})
        assert json.loads(dump.read_text())["slo_capacity_resource_name"] == "example.com/SLO"
        assert json.loads(dump.read_text())["depcon_scheduler_mode"] == "second-profile"
    finally:
        book.unlink()


def _role_book(root: Path, role: str, role_vars: dict[str, Any], report: str) -> Path:
    """A play on the controller running ROLE, then writing the template REPORT to {{ report }}."""
    book = root / "playbooks" / f".{role}-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": f"Run {role}",
                    "hosts": "controller",
                    "gather_facts": False,
                    "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                    "tasks": [
                        {
                            "name": "Run the role",
                            "ansible.builtin.include_role": {"name": role},
                            "vars": role_vars,
                        },
                        {
                            "name": "Report what it set",
                            "ansible.builtin.copy": {
                                "content": report,
                                "dest": "{{ report }}",
                                "mode": "0644",
                            },
                        },
                    ],
                }
            ]
        )
    )
    return book


def _ship_files_book(root: Path, files: list[str]) -> Path:
    """Role ship_files on the controller, then noting ship_files_changed."""
    return _role_book(
        root,
        "ship_files",
        {
            "ship_files_src_dir": "{{ src }}",
            "ship_files_list": files,
            "ship_files_dest": "{{ dest }}",
            "ship_files_archive": "{{ archive }}",
        },
        "{{ ship_files_changed }} {{ ship_files_checksum }}",
    )


def test_ship_files_copies_once_and_again_only_on_change(tmp_path: Path, root: Path) -> None:
    """Role ship_files (how vif_module and slo_capacity copy files), run on the controller."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "sub").mkdir(parents=True)
    (src / "a.c").write_text("one\n")
    (src / "sub" / "b.py").write_text("two\n")
    (src / "not-shipped").write_text("x\n")
    book = _ship_files_book(root, ["a.c", "sub/b.py"])
    paths = {"src": str(src), "dest": str(dest), "archive": str(tmp_path / "kept" / "x.tar")}

    def ship(run: int) -> tuple[dict[str, Any], list[str]]:
        report = tmp_path / f"report{run}"
        stats = run_playbook(
            str(book.relative_to(root)), "inventory/lab/hosts.yml", {**paths, "report": str(report)}
        )
        return stats, report.read_text().split()

    try:
        stats, (changed, first_sum) = ship(1)
        assert changed == "True"
        assert (dest / "a.c").read_text() == "one\n"
        assert (dest / "sub" / "b.py").read_text() == "two\n"
        assert not (dest / "not-shipped").exists()
        # Same files: the same archive bytes, nothing copied or unpacked (only the report).
        stats, (changed, second_sum) = ship(2)
        assert (changed, second_sum) == ("False", first_sum)
        assert stats["changed"] == 1
        # A changed source ships again.
        (src / "a.c").write_text("three\n")
        stats, (changed, third_sum) = ship(3)
        assert changed == "True" and third_sum != first_sum
        assert (dest / "a.c").read_text() == "three\n"
        # Files missing on the node ship again though the archive is unchanged.
        (dest / "a.c").unlink()
        stats, (changed, _) = ship(4)
        assert changed == "True" and (dest / "a.c").read_text() == "three\n"
        # So do files edited on the node, any of them, not only the first.
        (dest / "sub" / "b.py").write_text("edited\n")
        stats, (changed, _) = ship(5)
        assert changed == "True" and (dest / "sub" / "b.py").read_text() == "two\n"
    finally:
        book.unlink()


def test_ship_files_refuses_paths_outside_the_source(tmp_path: Path, root: Path) -> None:
    book = _ship_files_book(root, ["../etc/passwd"])
    try:
        with pytest.raises(PlaybookError, match="ship_files_list must name files under"):
            run_playbook(
                str(book.relative_to(root)),
                "inventory/lab/hosts.yml",
                {"src": str(tmp_path), "dest": str(tmp_path / "d"), "archive": str(tmp_path / "x")},
            )
        assert not (tmp_path / "d").exists()
    finally:
        book.unlink()


def _bundle(path: Path, binaries: dict[str, bytes]) -> dict[str, str]:
    """A bundle's bin/ with BINARIES; returns its SHA256SUMS as the roles read it."""
    (path / "bin").mkdir(parents=True)
    for name, data in binaries.items():
        (path / "bin" / name).write_bytes(data)
    return {f"bin/{n}": hashlib.sha256(d).hexdigest() for n, d in binaries.items()}


def _bundle_binaries_book(root: Path) -> Path:
    return _role_book(
        root,
        "bundle_binaries",
        {
            "bundle_binaries_source": "{{ source }}",
            "bundle_binaries_location": "{{ location }}",
            "bundle_binaries_names": ["tool", "kept"],
            "bundle_binaries_dest": "{{ dest }}",
            "bundle_binaries_sums": "{{ sums }}",
            "bundle_binaries_keep": ["kept"],
        },
        "{{ bundle_binaries_changed }}",
    )


def test_bundle_binaries_installs_once_and_repairs(tmp_path: Path, root: Path) -> None:
    """Role bundle_binaries (how containerd and kubernetes install the bundle's binaries)."""
    sums = _bundle(tmp_path / "bundle", {"tool": b"tool v1\n", "kept": b"stock\n"})
    dest = tmp_path / "dest"
    book = _bundle_binaries_book(root)
    args = {"source": "controller", "location": str(tmp_path / "bundle"), "dest": str(dest)}

    def install(run: int) -> tuple[dict[str, Any], str]:
        report = tmp_path / f"report{run}"
        stats = run_playbook(
            str(book.relative_to(root)),
            "inventory/lab/hosts.yml",
            {**args, "sums": json.dumps(sums), "report": str(report)},
        )
        return stats, report.read_text()

    try:
        stats, changed = install(1)
        assert changed == "True"
        assert (dest / "tool").read_bytes() == b"tool v1\n"
        assert (dest / "kept").read_bytes() == b"stock\n"
        assert (dest / "tool").stat().st_mode & 0o777 == 0o755
        # Installed: nothing written (only the report).
        stats, changed = install(2)
        assert (changed, stats["changed"]) == ("False", 1)
        # A damaged binary is replaced; a kept one that differs is another role's.
        (dest / "tool").write_bytes(b"damaged\n")
        (dest / "kept").write_bytes(b"patched\n")
        stats, changed = install(3)
        assert changed == "True"
        assert (dest / "tool").read_bytes() == b"tool v1\n"
        assert (dest / "kept").read_bytes() == b"patched\n"
        # A lost mode is restored.
        (dest / "tool").chmod(0o644)
        install(4)
        assert (dest / "tool").stat().st_mode & 0o777 == 0o755
        # A kept binary that is missing is installed.
        (dest / "kept").unlink()
        install(5)
        assert (dest / "kept").read_bytes() == b"stock\n"
    finally:
        book.unlink()


def test_bundle_binaries_refuses_a_damaged_bundle_before_any_change(
    tmp_path: Path, root: Path
) -> None:
    sums = _bundle(tmp_path / "bundle", {"tool": b"tool v1\n", "kept": b"stock\n"})
    (tmp_path / "bundle" / "bin" / "tool").write_bytes(b"tool v1 corrupted\n")
    dest = tmp_path / "dest"
    book = _bundle_binaries_book(root)
    args = {"location": str(tmp_path / "bundle"), "dest": str(dest), "report": str(tmp_path / "r")}
    try:
        with pytest.raises(PlaybookError, match=r"bundle/bin/tool is missing or does not match"):
            run_playbook(
                str(book.relative_to(root)),
                "inventory/lab/hosts.yml",
                {**args, "source": "controller", "sums": json.dumps(sums)},
            )
        assert not dest.exists()  # not even the good binary: nothing half-applied
        del sums["bin/kept"]
        with pytest.raises(PlaybookError, match=r"no checksum for \['bin/kept'\]"):
            run_playbook(
                str(book.relative_to(root)),
                "inventory/lab/hosts.yml",
                {**args, "source": "controller", "sums": json.dumps(sums)},
            )
        assert not dest.exists()
    finally:
        book.unlink()


def test_bundle_binaries_downloads_from_a_files_repo(tmp_path: Path, root: Path) -> None:
    """The url source (files_repo-style), served on the loopback; get_url checks each download."""
    sums = _bundle(tmp_path / "bundle", {"tool": b"tool v1\n", "kept": b"stock\n"})
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "bundle")
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    book = _bundle_binaries_book(root)
    dest = tmp_path / "dest"
    args = {
        "source": "url",
        "location": f"http://127.0.0.1:{server.server_address[1]}",
        "dest": str(dest),
        "report": str(tmp_path / "r"),
    }
    try:
        run_playbook(
            str(book.relative_to(root)),
            "inventory/lab/hosts.yml",
            {**args, "sums": json.dumps(sums)},
        )
        assert (dest / "tool").read_bytes() == b"tool v1\n"
        assert (tmp_path / "r").read_text() == "True"
        # A download that does not match SHA256SUMS is refused and not installed.
        (dest / "tool").unlink()
        (tmp_path / "bundle" / "bin" / "tool").write_bytes(b"tampered\n")
        with pytest.raises(PlaybookError, match="checksum"):
            run_playbook(
                str(book.relative_to(root)),
                "inventory/lab/hosts.yml",
                {**args, "sums": json.dumps(sums)},
            )
        assert not (dest / "tool").exists()
    finally:
        server.shutdown()
        book.unlink()


@pytest.mark.parametrize(
    "inventory", ["inventory/lab/hosts.yml", "inventory/sample/hosts.yml", "implicit"]
)
def test_delegated_tasks_run_on_the_projects_python(
    inventory: str, tmp_path: Path, root: Path
) -> None:
    """A pyenv-style python3.13 shim first on PATH must not be the controller's interpreter."""
    shims = tmp_path / "shims"
    shims.mkdir()
    for name in ("python3.13", "python3.12", "python3", "python"):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho 'pyenv: {name}: command not found' >&2\nexit 127\n")
        shim.chmod(0o755)
    if inventory == "implicit":
        # As molecule's inventories: localhost is not declared.
        inv = tmp_path / "hosts.yml"
        inv.write_text(yaml.safe_dump({"all": {"hosts": {"node1": {"ansible_host": "192.0.2.9"}}}}))
        hosts = "node1"
    else:
        inv = root / inventory
        hosts = "kube_node"
    seen = tmp_path / "seen.json"
    book = tmp_path / "delegated.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "A delegated module task, as the roles run them",
                    "hosts": hosts,
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Read a file on the controller",
                            "ansible.builtin.stat": {"path": str(root / "versions.yml")},
                            "delegate_to": "localhost",
                            "run_once": True,
                            "register": "st",
                        },
                        {
                            "name": "Record what ran it",
                            "ansible.builtin.copy": {
                                "content": "{{ {'exists': st.stat.exists} | to_json }}",
                                "dest": str(seen),
                                "mode": "0600",
                            },
                            "delegate_to": "localhost",
                            "run_once": True,
                        },
                    ],
                }
            ]
        )
    )
    env = dict(os.environ)
    env["PATH"] = f"{shims}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["ANSIBLE_CONFIG"] = str(root / "ansible.cfg")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inv), str(book)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert json.loads(seen.read_text()) == {"exists": True}


def _node_inventory(
    tmp_path: Path,
    nodes: dict[str, dict[str, Any]],
    workers: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Control-plane nodes (and workers) that are this machine (the project's Python)."""
    py = {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    groups = {"kube_control_plane": {"hosts": {name: py | hv for name, hv in nodes.items()}}}
    if workers:
        groups["kube_node"] = {"hosts": {name: py | hv for name, hv in workers.items()}}
    inv = tmp_path / "hosts.yml"
    inv.write_text(yaml.safe_dump({"all": {"children": groups}}))
    return inv


def test_inventory_checks_pass_and_change_nothing(tmp_path: Path) -> None:
    node = {"ansible_connection": "local", "depcon_node_interface": "eth0"}
    inv = _node_inventory(tmp_path, {"cp9": node | {"depcon_slo_capacity_mbps": 1000}})
    stats = run_playbook("playbooks/checks.yml", str(inv), {})
    assert stats["hosts"] == ["cp9"]
    assert stats["changed"] == 0


def test_an_unreachable_node_stops_the_run_before_any_change(tmp_path: Path) -> None:
    # Port 1 on loopback: refused at once, nothing leaves this machine.
    inv = _node_inventory(
        tmp_path,
        {
            "cp9": {"ansible_connection": "local", "depcon_node_interface": "eth0"},
            "w9": {"ansible_host": "127.0.0.1", "ansible_port": 1, "depcon_node_interface": "eth0"},
        },
    )
    with pytest.raises(PlaybookError, match=r"w9: Reach the node"):
        run_playbook("playbooks/checks.yml", str(inv), {})


@pytest.mark.parametrize(
    ("hostvars", "problem"),
    [
        ({"depcon_slo_capacity_mbps": 2_000_000}, "depcon_slo_capacity_mbps 2000000 must be"),
        ({"depcon_slo_capacity_mbps": "fast"}, "depcon_slo_capacity_mbps fast must be"),
        ({"depcon_verify_netperf_mbps": 0}, "depcon_verify_netperf_mbps 0 must be"),
        ({"depcon_node_interface": "eth0:1"}, "is not a Linux interface name"),
        ({"control_plane_apiserver_liveness": [0, 15]}, "control_plane_apiserver_liveness"),
        ({"control_plane_leader_election": ["10s", "15s", "2s"]}, "control_plane_leader_election"),
    ],
)
def test_inventory_checks_refuse_bad_values_before_any_change(
    tmp_path: Path, hostvars: dict[str, Any], problem: str
) -> None:
    node = {"ansible_host": "192.0.2.9", "depcon_node_interface": "eth0"} | hostvars
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        yaml.safe_dump({"all": {"children": {"kube_control_plane": {"hosts": {"cp9": node}}}}})
    )
    with pytest.raises(PlaybookError, match=f"cp9: .*{problem}"):
        run_playbook("playbooks/checks.yml", str(inv), {})


def test_depcon_kubelet_never_backs_up_its_own_kubelet(root: Path, tmp_path: Path) -> None:
    """A node whose kubelet is already DepCon's, with no stock backup, is refused unchanged."""
    kubelet = tmp_path / "kubelet"
    kubelet.write_text("#!/bin/sh\necho 'Kubernetes v1.36.5+depcon'\n")
    kubelet.chmod(0o755)
    bundle = tmp_path / "bundle"
    (bundle / "depcon").mkdir(parents=True)
    (bundle / "depcon" / "kubelet").write_bytes(b"not this one")
    (bundle / "SHA256SUMS").write_text("0" * 64 + "  depcon/kubelet\n")
    backup = tmp_path / "backup"
    book = _role_book(
        root,
        "depcon_kubelet",
        {
            "depcon_kubelet_path": str(kubelet),
            "depcon_kubelet_bundle_dir": str(bundle),
            "depcon_kubelet_backup_dir": str(backup),
            "depcon_kubelet_restart": False,
            "depcon_versions": {
                "kubernetes": {"version": "v1.36.5"},
                "slo": {"resource_name": "example.com/SLO"},
            },
        },
        "done",
    )
    try:
        with pytest.raises(PlaybookError, match=r"is already DepCon's kubelet"):
            run_playbook(
                str(book.relative_to(root)),
                "inventory/lab/hosts.yml",
                {"report": str(tmp_path / "r")},
            )
    finally:
        book.unlink()
    assert not backup.exists()
    assert kubelet.read_text().startswith("#!/bin/sh")


@pytest.mark.parametrize(
    ("host", "bad", "problem"),
    [
        ("w9", {"depcon_kubelet_max_weight": 0}, "depcon_kubelet_max_weight 0 must be in 1-10000"),
        ("w9", {"vif_module_period_ms": 5}, "vif module parameters out of range on w9"),
        ("w9", {"vif_module_link_mbps": 2_000_000}, "link_mbps=2000000 (1-1000000)"),
        (
            "cp9",
            {
                "depcon_scheduler_shape": [
                    {"utilization": 0, "score": 10},
                    {"utilization": 100, "score": 0},
                ]
            },
            "scores 1-10; kube-scheduler leaves a resource that scores 0 out",
        ),
    ],
)
def test_depcon_refuses_a_bad_node_before_any_change_anywhere(
    tmp_path: Path, root: Path, host: str, bad: dict[str, Any], problem: str
) -> None:
    """One node's bad setting stops depcon.yml before the build or a drain on any node.

    Both nodes are this machine, and the run is --check: even a regression
    that let the run go on would change nothing here.
    """
    node = {
        "ansible_connection": "local",
        "depcon_node_interface": "eth0",
        "depcon_slo_capacity_mbps": 1000,
        "depcon_bundle_dir": str(tmp_path),
    }
    hosts = {name: node | (bad if name == host else {}) for name in ("cp9", "w9")}
    inv = _node_inventory(tmp_path, {"cp9": hosts["cp9"]}, workers={"w9": hosts["w9"]})
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "--check",
            "-i",
            str(inv),
            "playbooks/depcon.yml",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert problem in out, out[-3000:]
    started = re.findall(r"^TASK \[(.*?)\]", proc.stdout, flags=re.M)
    assert "Check the vif module parameters" in started, started
    assert not [t for t in started if re.search(r"DKMS|[Dd]rain|Install the", t)], started


TOKEN = "abcdef.0123456789abcdef"


@pytest.mark.parametrize("join_rc", [0, 1])
def test_worker_join_never_logs_its_token_and_deletes_it(
    tmp_path: Path, root: Path, join_rc: int
) -> None:
    """The join's bootstrap token appears in no output, even at -vvv, and is deleted after.

    kubeadm needs a cluster, so a stand-in on PATH plays its three calls: the
    control plane's token create, the node's join (echoing the token, as a
    failed kubeadm join can), and the token delete, which it records.
    """
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubeadm = bin_dir / "kubeadm"
    kubeadm.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1 $2" in\n'
        f'"token create") echo "kubeadm join 192.0.2.1:6443 --token {TOKEN} '
        '--discovery-token-ca-cert-hash sha256:00" ;;\n'
        f'"join "*) echo "joining with {TOKEN}"; echo "bad token {TOKEN}" >&2; exit {join_rc} ;;\n'
        "esac\n"
    )
    kubeadm.chmod(0o755)
    node = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "kube_control_plane": {"hosts": {"cp9": node}},
                        "kube_node": {"hosts": {"w9": node}},
                    }
                }
            }
        )
    )
    book = root / "playbooks" / ".worker-join-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Join",
                    "hosts": "w9",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Join the cluster",
                            "ansible.builtin.include_role": {
                                "name": "worker",
                                "tasks_from": "join.yml",
                            },
                            "vars": {"worker_kubelet_conf": str(tmp_path / "kubelet.conf")},
                        }
                    ],
                }
            ]
        )
    )
    try:
        rc, out = _playbook(root, book, inv, bin_dir, "-vvv")
    finally:
        book.unlink()
    assert (rc == 0) == (join_rc == 0), out[-3000:]
    assert TOKEN not in out, [line for line in out.splitlines() if TOKEN in line]
    assert TOKEN[:6] not in out
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("token create"), lines
    assert lines[1].startswith(f"join 192.0.2.1:6443 --token {TOKEN}"), lines
    assert lines[2:] == [f"token delete {TOKEN}"], lines
    if join_rc:
        assert "kubeadm join failed (exit 1): bad token <token>" in out, out[-3000:]


@pytest.mark.parametrize(("strategy", "interpreters"), [("linear", 2), ("mitogen_linear", 1)])
def test_the_stacks_strategy_reaches_the_run(
    tmp_path: Path, strategy: str, interpreters: int
) -> None:
    """The strategy reaches the run: under Mitogen both tasks share one kept Python."""
    out = tmp_path / "ppids"
    task = {"ansible.builtin.shell": f"echo $PPID >> {out}", "changed_when": False}
    play = _lab_playbook(tmp_path, [{"name": "one", **task}, {"name": "two", **task}])
    stats = run_playbook_isolated(str(play), "inventory/lab/hosts.yml", {}, strategy=strategy)
    assert stats["ok"] == 2
    assert len(set(out.read_text().split())) == interpreters, out.read_text()


def _playbook(root: Path, book: Path, inv: Path, bin_dir: Path, *args: str) -> tuple[int, str]:
    """ansible-playbook BOOK with BIN_DIR first on PATH; its exit code and output."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    env["PATH"] = f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            *args,
            "-i",
            str(inv),
            str(book.relative_to(root)),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode, proc.stdout + proc.stderr


def _stand_in_roles(tasks: list[dict[str, Any]], calls: Path) -> list[dict[str, Any]]:
    """TASKS with each include_role a command recording `role NAME[/TASKS_FROM] STATE` to CALLS."""
    out = []
    for original in tasks:
        task = dict(original)
        for key in ("block", "rescue", "always"):
            if key in task:
                task[key] = _stand_in_roles(task[key], calls)
        assert "ansible.builtin.import_role" not in task, "a real role would run on this machine"
        if "ansible.builtin.include_role" in task:
            role = task.pop("ansible.builtin.include_role")
            name = role["name"] + (f"/{role['tasks_from']}" if "tasks_from" in role else "")
            state = next(
                (v for k, v in task.pop("vars", {}).items() if k.endswith("_state")), "present"
            )
            task["ansible.builtin.shell"] = f"echo role {name} {state} >> {calls}"
            task["changed_when"] = True
        out.append(task)
    return out


EVICTION_REFUSED = (
    'error when evicting pods/"web-0" -n "default" (will retry after 5s): '
    "Cannot evict pod as it would violate the pod's disruption budget."
)


@pytest.mark.parametrize(
    ("playbook", "play", "drain_rc"),
    [
        ("depcon.yml", "Install the vif module and the patched kubelet, one node at a time", 1),
        ("rollback.yml", "Roll DepCon back, one node at a time", 1),
        ("depcon.yml", "Install the vif module and the patched kubelet, one node at a time", 0),
    ],
)
def test_a_failed_drain_leaves_the_node_uncordoned_and_unchanged(
    tmp_path: Path, root: Path, playbook: str, play: str, drain_rc: int
) -> None:
    """The per-node play of depcon.yml and rollback.yml when kubectl drain fails.

    The drain needs a cluster holding this machine as a Node, so a stand-in
    kubectl on PATH records its calls and fails the drain as a refused
    eviction does (the node cordoned, exit 1). Extra vars say the node needs
    draining; the play's roles become commands recording that they ran, so
    nothing here is installed or rolled back whatever the play does.
    """
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "refused").write_text(EVICTION_REFUSED + "\n")
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$3" in\n'
        f'drain) echo "node/$4 cordoned"; cat {tmp_path / "refused"} >&2; exit {drain_rc} ;;\n'
        'uncordon) echo "node/$4 uncordoned" ;;\n'
        "esac\n"
    )
    kubectl.chmod(0o755)
    node = {"ansible_connection": "local", "depcon_node_interface": "eth0"}
    inv = _node_inventory(tmp_path, {"cp9": node}, workers={"w9": node})
    (real,) = [
        p for p in yaml.safe_load((root / "playbooks" / playbook).read_text()) if p["name"] == play
    ]
    assert real.pop("roles") == [{"role": "depcon_versions"}]
    real.pop("become")
    real["roles"] = ["depcon_versions"]
    real["tasks"] = _stand_in_roles(real["tasks"], calls)
    book = root / "playbooks" / f".drain-test-{playbook}"
    book.write_text(yaml.safe_dump([real]))
    needs_draining = {"drain_needed": True, "drain_kubelet_conf": {"stat": {"exists": True}}}
    try:
        rc, out = _playbook(root, book, inv, bin_dir, "-e", json.dumps(needs_draining))
    finally:
        book.unlink()
    lines = calls.read_text().splitlines()
    verbs = [ln.split()[2] if ln.startswith("--kubeconfig") else ln for ln in lines]
    if drain_rc == 0:
        assert rc == 0, out[-3000:]
        per_node = ["drain", "role vif_module present", "role depcon_kubelet present", "uncordon"]
        assert verbs == per_node * 2, verbs
        return
    assert rc != 0, out[-3000:]
    # Uncordoned, no role ran (not even the rescue's way back to stock), the next node untouched.
    assert verbs == ["drain", "uncordon"], verbs
    report = (
        f"cp9: draining the node failed: kubectl drain exited 1: {EVICTION_REFUSED}; "
        "the node is uncordoned and DepCon is unchanged on it"
    )
    assert json.dumps(report)[1:-1] in out, out[-3000:]


def _control_plane_book(
    root: Path, name: str, role: dict[str, str], role_vars: dict[str, Any]
) -> Path:
    """A play on cp9 (this machine) running the control_plane ROLE include."""
    book = root / "playbooks" / f".{name}-test.yml"
    book.write_text(
        yaml.safe_dump(
            [
                {
                    "name": name,
                    "hosts": "cp9",
                    "roles": ["depcon_versions"],
                    "tasks": [
                        {
                            "name": "Run the control_plane role",
                            "ansible.builtin.include_role": {"name": "control_plane", **role},
                            "vars": role_vars,
                        }
                    ],
                }
            ]
        )
    )
    return book


def test_kubeadm_init_never_logs_its_token(tmp_path: Path, root: Path) -> None:
    """kubeadm init's bootstrap token appears in no output, even at -vvv, when init fails.

    kubeadm init needs a node to turn into a control plane, so a stand-in on
    PATH prints a token as init does and fails; the pinned kubeadm checks the
    configuration the role rendered.
    """
    if Path("/etc/kubernetes/admin.conf").exists():
        pytest.skip("this machine is a control plane: the role would not run kubeadm init")
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubeadm = bin_dir / "kubeadm"
    kubeadm.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        f'echo "[bootstrap-token] Using token: {TOKEN}"\n'
        f'echo "error execution phase addon/coredns: timed out, token {TOKEN}" >&2\n'
        "exit 1\n"
    )
    kubeadm.chmod(0o755)
    config = tmp_path / "depcon" / "kubeadm.yaml"
    inv = _node_inventory(tmp_path, {"cp9": {"ansible_connection": "local"}})
    book = _control_plane_book(
        root,
        "control-plane-init",
        {},
        {
            "control_plane_kubeadm_config": str(config),
            "control_plane_advertise_address": "192.0.2.1",
        },
    )
    try:
        rc, out = _playbook(root, book, inv, bin_dir, "-vvv")
    finally:
        book.unlink()
    assert rc != 0, out[-3000:]
    assert TOKEN not in out, [line for line in out.splitlines() if TOKEN in line]
    assert TOKEN[:6] not in out
    failed = "kubeadm init failed on cp9 (exit 1): error execution phase addon/coredns: timed out"
    assert f"{failed}, token <token>" in out, out[-3000:]
    (call,) = calls.read_text().splitlines()
    assert call.startswith(f"init --config {config} --skip-token-print "), call
    # The pinned kubeadm takes the rendered configuration, its init token among it.
    real = build().root / "bin" / "kubeadm"
    check = subprocess.run(
        [str(real), "config", "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    (init_cfg, *_) = yaml.safe_load_all(config.read_text())
    described = yaml.safe_load((root / "roles/control_plane/vars/main.yml").read_text())
    assert init_cfg["bootstrapTokens"] == [
        {"description": described["control_plane_init_token_description"], "ttl": "15m0s"}
    ]


def test_the_init_token_is_deleted_and_no_other(
    tmp_path: Path, root: Path, control_plane: ControlPlane
) -> None:
    """kubeadm init's bootstrap token is deleted, on every run; an operator's token is kept.

    The pinned kubeadm and kubectl against the loopback API server: wrappers
    on PATH point the role's /etc/kubernetes/admin.conf at its kubeconfig.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    admin = "--kubeconfig=/etc/kubernetes/admin.conf"
    for tool in ("kubeadm", "kubectl"):
        wrapper = bin_dir / tool
        wrapper.write_text(
            "#!/bin/sh\n"
            "for a; do shift\n"
            f'  [ "$a" = {admin} ] && a=--kubeconfig={control_plane.kubeconfig}\n'
            '  set -- "$@" "$a"\n'
            "done\n"
            f'exec {control_plane.bin_dir / tool} "$@"\n'
        )
        wrapper.chmod(0o755)
    described = yaml.safe_load((root / "roles/control_plane/vars/main.yml").read_text())

    def kubeadm_token(*args: str) -> str:
        argv = [str(control_plane.bin_dir / "kubeadm"), "token", *args]
        argv.append(f"--kubeconfig={control_plane.kubeconfig}")
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    def create(description: str) -> str:
        return kubeadm_token("create", "--ttl=15m", "--description", description).strip()

    def tokens() -> list[str]:
        return sorted(kubeadm_token("list", "-o", "jsonpath={.token}{' '}").split())

    init_token = create(described["control_plane_init_token_description"])
    operators = create("an operator's, for a node added by hand")
    assert tokens() == sorted([init_token, operators])
    inv = _node_inventory(tmp_path, {"cp9": {"ansible_connection": "local"}})
    book = _control_plane_book(root, "init-token", {"tasks_from": "init_token.yml"}, {})
    try:
        rc, out = _playbook(root, book, inv, bin_dir)
        assert rc == 0, out[-3000:]
        assert tokens() == [operators]
        assert init_token.split(".")[1] not in out
        rc, out = _playbook(root, book, inv, bin_dir)  # nothing left to delete
        assert rc == 0, out[-3000:]
        assert re.search(r"cp9 +: ok=\d+ +changed=0 ", out), out[-1500:]
    finally:
        book.unlink()
    assert tokens() == [operators]
