"""The test control plane (harness/controlplane.py): it starts, takes Nodes, fails readably."""

from __future__ import annotations

import pytest
from kubernetes import client

from depcon.config import load_versions
from harness.controlplane import ControlPlane, ControlPlaneError, add_node

pytestmark = pytest.mark.integration


def test_api_server_answers_with_admin_rights(control_plane: ControlPlane) -> None:
    version = client.VersionApi(control_plane.api_client()).get_code()
    assert version.git_version == load_versions().kubernetes.version
    assert control_plane.kubeconfig.is_file()


def test_add_node_is_ready_untainted_with_capacity(control_plane: ControlPlane) -> None:
    api = control_plane.api_client()
    add_node(api, "cp-test-node", cpu="4", memory="8Gi", extended={"example.com/SLO": "1000"})
    node = client.CoreV1Api(api).read_node("cp-test-node")
    assert node.spec.taints is None
    assert node.status.allocatable["example.com/SLO"] in ("1000", "1k")
    assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]


def test_scheduler_failure_names_the_problem_and_shows_the_log(
    control_plane: ControlPlane,
) -> None:
    with pytest.raises(ControlPlaneError) as err:
        control_plane.start_scheduler(extra_args=["--no-such-flag"])
    message = str(err.value)
    assert "exited before it was ready" in message
    assert "unknown flag: --no-such-flag" in message


def test_stop_removes_the_temporary_workdir() -> None:
    cp = ControlPlane().start()
    workdir = cp.workdir
    assert (workdir / "kube-apiserver.log").is_file()
    cp.stop()
    assert not workdir.exists()
