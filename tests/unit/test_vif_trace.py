"""nodeagent/vif_trace.py's timeline over a stand-in of /proc/oslab and the cgroup tree.

A stand-in, because this machine's kernel cannot load vif; the proof runs the
tracer against the real module on the lab (docs/architecture.md, "The SLO proof").
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

import pytest

from nodeagent import vif_trace

pytestmark = pytest.mark.unit

CID = "0123abcd"
HEADER = "slot pid goal_mbps weight min_credit target_mbps bw_mbps cgroup\n"


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    oslab, cgroups = tmp_path / "oslab", tmp_path / "cgroup"
    scope = cgroups / "kubepods.slice/kubepods-pod1.slice" / f"cri-containerd-{CID}.scope"
    scope.mkdir(parents=True)
    (scope / "cgroup.procs").write_text("4242\n")
    (scope / "cpu.max").write_text("max 100000\n")
    (oslab / "vif3").mkdir(parents=True)
    (oslab / "vif3" / "goal").write_text("40\n")
    (oslab / "status").write_text(HEADER)
    monkeypatch.setattr(vif_trace, "OSLAB", oslab)
    monkeypatch.setattr(vif_trace, "CGROUPS", cgroups)
    monkeypatch.setattr(
        vif_trace, "container_view", lambda pid: {"rc": 0, "entries": [], "masked": True}
    )
    cgroup = "/" + str(scope.relative_to(cgroups))

    def stat(slot: str) -> dict[str, str]:
        goal = (oslab / slot / "goal").read_text().strip()
        quota = str(int(goal) * 200)
        (scope / "cpu.max").write_text(f"{quota} 100000\n")
        return {"pid": "4242", "goal_mbps": goal, "bw_mbps": goal, "quota_us": quota}

    monkeypatch.setattr(vif_trace, "stat", stat)
    return {"oslab": oslab, "scope": scope, "cgroup": Path(cgroup)}


def register(oslab: Path, cgroup: Path, after: float) -> threading.Thread:
    """The kubelet: claims vif3 for the container after a while."""

    def claim() -> None:
        time.sleep(after)
        (oslab / "status").write_text(HEADER + f"vif3 4242 40 1 0 40 0 {cgroup}\n")

    thread = threading.Thread(target=claim)
    thread.start()
    return thread


def args(**over: float) -> argparse.Namespace:
    values = {"seconds": 1.2, "halve_at": 0.3, "restore_at": 0.6, "reload_at": 0.8}
    values.update(over)
    return argparse.Namespace(container_id=CID, wait=5.0, interval=0.02, **values)


def test_traces_the_registered_container_through_the_timeline(
    node: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, ...]] = []

    def run(*argv: str) -> str:
        calls.append(argv)
        return ""

    monkeypatch.setattr(vif_trace, "_run", run)
    kubelet = register(node["oslab"], node["cgroup"], after=0.2)
    out = vif_trace.trace(args())
    kubelet.join()
    assert out["container"] == {"id": CID, "pid": 4242, "cgroup": str(node["cgroup"])}
    assert out["slot"] == "vif3" and out["slot_cgroup"] == str(node["cgroup"])
    assert out["goal_mbps"] == 40 and out["half_mbps"] == 20
    assert float(str(out["registered_after_s"])) >= 0.15
    assert out["cpu_max_before"] == "max 100000"
    ev = out["events"]
    assert isinstance(ev, dict)
    assert 0.3 <= ev["halved_at"] < 0.6
    assert calls == [("modprobe", "-r", "vif"), ("modprobe", "vif")]
    assert 0.8 <= ev["reloaded_at"] <= ev["reregistered_at"]
    samples = out["samples"]
    assert isinstance(samples, list) and len(samples) > 20
    goals = {s[1] for s in samples if ev["halved_at"] < s[0] < 0.6}
    assert goals == {20}, "the halved goal holds until restore-at"
    assert (node["oslab"] / "vif3" / "goal").read_text() == "20\n"


def test_the_kubelets_restore_is_reasserted_until_restore_at(
    node: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vif_trace, "_run", lambda *argv: "")
    register(node["oslab"], node["cgroup"], after=0.0).join()

    def reconcile() -> None:  # the kubelet writes the pod's goal back once
        time.sleep(0.45)
        # Atomically: the stand-in's stat reads this file from the tracer's thread.
        (node["oslab"] / "goal.new").write_text("40\n")
        (node["oslab"] / "goal.new").replace(node["oslab"] / "vif3" / "goal")

    kubelet = threading.Thread(target=reconcile)
    kubelet.start()
    out = vif_trace.trace(args(restore_at=0.7, reload_at=0.9, seconds=1.0))
    kubelet.join()
    ev = out["events"]
    assert isinstance(ev, dict)
    assert ev["reassertions"] >= 1


def test_a_failed_reload_is_an_event_not_a_lost_trace(
    node: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def run(*argv: str) -> str:
        raise vif_trace.TraceError("modprobe -r vif: exit 1: Module vif is in use")

    monkeypatch.setattr(vif_trace, "_run", run)
    register(node["oslab"], node["cgroup"], after=0.0).join()
    out = vif_trace.trace(args())
    ev = out["events"]
    assert isinstance(ev, dict)
    assert "in use" in ev["reload_error"] and "reloaded_at" not in ev
    assert out["samples"]


def test_no_registration_is_an_error(node: dict[str, Path]) -> None:
    with pytest.raises(vif_trace.TraceError, match="was not registered"):
        vif_trace.trace(argparse.Namespace(**{**vars(args()), "wait": 0.3}))


def test_pod_bytes_sums_the_devices_vif_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    # This machine's own /proc/<pid>/net/dev parses.
    assert isinstance(vif_trace.pod_bytes(os.getpid()), int)
    (tmp_path / "7" / "net").mkdir(parents=True)
    (tmp_path / "7" / "net" / "dev").write_text(
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
        "    lo: 9000 10 0 0 0 0 0 0 9000 10 0 0 0 0 0 0\n"
        "  eth0: 1500 12 0 0 0 0 0 0 250000 180 0 0 0 0 0 0\n"
    )
    monkeypatch.setattr(vif_trace, "PROC", tmp_path)
    assert vif_trace.pod_bytes(7) == 1500 + 250000  # loopback left out, as vif_net.c does
    assert vif_trace.pod_bytes(8) is None
