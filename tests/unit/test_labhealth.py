"""harness/labhealth.py: a failed smoke's report says what each VM's Kubernetes was doing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness import labhealth
from harness.controlplane import free_port

pytestmark = pytest.mark.unit

# What SCRIPT printed on lab-cp1 of a failed smoke, rebooted from its disk.
CP1 = """\
load 16.32 13.82 7.74
uptime_s 611
readyz The connection to the server 10.10.0.11:6443 was refused - did you specify the right host?
container kube-system_etcd-lab-cp1 etcd 4 -
container kube-system_kube-apiserver-lab-cp1 kube-apiserver 31 2026-12-03T16:39:37.39Z stderr F \
F1203 16:39:37.195786 1 hooks.go:203] PostStartHook "start-service-ip-repair-controllers" failed
"""


def test_parse_reads_load_readyz_and_each_containers_restarts_and_last_fatal_line() -> None:
    facts = labhealth.parse(CP1)
    assert facts["load_average"] == [16.32, 13.82, 7.74]
    assert facts["uptime_s"] == 611
    assert facts["readyz"].startswith("The connection to the server 10.10.0.11:6443 was refused")
    etcd, api = facts["containers"]
    assert etcd == {
        "pod": "kube-system_etcd-lab-cp1",
        "container": "etcd",
        "restarts": 4,
        "last_fatal": None,
    }
    assert api["restarts"] == 31
    assert 'PostStartHook "start-service-ip-repair-controllers" failed' in api["last_fatal"]


def test_a_worker_without_admin_conf_has_no_readyz() -> None:
    facts = labhealth.parse("load 0.5 0.4 0.3\nuptime_s 90\nclocksource tsc\n")
    assert "readyz" not in facts
    assert facts["clocksource"] == "tsc"
    assert facts["containers"] == []


def test_the_script_reads_a_pod_log_tree(tmp_path: Path) -> None:
    pods = tmp_path / "var/log/pods"
    logs = pods / "kube-system_kube-scheduler-n1_0123abcd" / "kube-scheduler"
    logs.mkdir(parents=True)
    (logs / "6.log").write_text("x F1203 10:00:00.1  1 server.go:1] old fatal\n")
    (logs / "7.log").write_text(
        "x I1203 10:00:01.1  1 server.go:2] fine\nx F1203 10:00:02.2  1 run.go:3] bad\n"
    )
    script = labhealth.SCRIPT.replace("/var/log/pods", str(pods))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    (c,) = labhealth.parse(out)["containers"]
    assert c["pod"] == "kube-system_kube-scheduler-n1"
    assert c["restarts"] == 7
    assert c["last_fatal"].endswith("run.go:3] bad")


def test_a_node_that_does_not_answer_is_recorded_not_raised(tmp_path: Path) -> None:
    key = tmp_path / "id"
    key.write_text("not a key\n")
    key.chmod(0o600)
    facts = labhealth.collect([labhealth.Node("gone", free_port())], key)
    assert "error" in facts["gone"]


def test_the_fatal_line_of_the_previous_run_shows_while_the_next_one_runs(tmp_path: Path) -> None:
    logs = tmp_path / "kube-system_kube-apiserver-n1_0123abcd" / "kube-apiserver"
    logs.mkdir(parents=True)
    (logs / "34.log").write_text('x F1203 16:46:32.9 1 hooks.go:203] PostStartHook "a" failed\n')
    (logs / "35.log").write_text("x I1203 16:47:00.1 1 server.go:150] Version: v1.36.5\n")
    script = labhealth.SCRIPT.replace("/var/log/pods", str(tmp_path))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    (c,) = labhealth.parse(out)["containers"]
    assert c["restarts"] == 35
    assert c["last_fatal"].endswith('PostStartHook "a" failed')
