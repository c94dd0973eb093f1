"""The node's half of verify.yml's SLO proof: trace vif holding one container.

Run on the node as root while the proof's SLO client pod sends. It finds the
container's cgroup by its CRI id, waits for the patched kubelet to register exactly
that container (its PID, its cgroup) in a vif slot, then samples the slot and
the container's ``cpu.max`` every ``--interval`` seconds, on this timeline
(seconds after registration):

    halve-at     the slot's goal is halved through the slot (an SLO is a pod
                 limit, immutable, so the slot is the only path); until
                 restore-at the halved goal is written again whenever the
                 kubelet's reconcile puts the pod's goal back
    restore-at   no more writes: the kubelet's reconcile restores the goal
    reload-at    vif is unloaded and loaded again; the kubelet's reconcile
                 must register the container again
    seconds      the end

It prints one JSON object: the registration, the container's view of
``/proc/oslab`` (masked for containers), the samples and the events. Only the
standard library, like the rest of the node agent (roles/slo_capacity ships it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

OSLAB = Path("/proc/oslab")
CGROUPS = Path("/sys/fs/cgroup")
PROC = Path("/proc")


class TraceError(RuntimeError):
    pass


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise TraceError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def find_container(container_id: str, timeout: float) -> dict[str, object]:
    """The container's host PID and cgroup (v2), found by its CRI id in the kubepods tree."""
    deadline = time.monotonic() + timeout
    while True:
        for scope in CGROUPS.glob(f"kubepods*/**/*{container_id}*"):
            procs = (scope / "cgroup.procs").read_text().split()
            if procs:
                pid = int(procs[0])
                return {
                    "id": container_id,
                    "pid": pid,
                    "cgroup": "/" + str(scope.relative_to(CGROUPS)),
                }
        if time.monotonic() > deadline:
            raise TraceError(
                f"no cgroup with a process for container {container_id} under {CGROUPS}"
            )
        time.sleep(0.5)


def slots() -> list[dict[str, str]]:
    """/proc/oslab/status as rows keyed by its header (the host's root sees PIDs)."""
    lines = (OSLAB / "status").read_text().splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[1:]]


def wait_slot(pid: int, timeout: float) -> dict[str, str] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (OSLAB / "status").exists():
            for row in slots():
                if row.get("pid") == str(pid):
                    return row
        time.sleep(0.1)
    return None


def container_view(pid: int) -> dict[str, object]:
    """What the container sees at /proc/oslab, through its own mount namespace."""
    proc = subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "--", "/bin/ls", "-A", "/proc/oslab"],
        capture_output=True,
        text=True,
        check=False,
    )
    entries = proc.stdout.split() if proc.returncode == 0 else []
    return {"rc": proc.returncode, "entries": entries, "masked": not entries}


def stat(slot: str) -> dict[str, str]:
    text = (OSLAB / slot / "stat").read_text().split()
    return dict(item.split("=", 1) for item in text if "=" in item)


def cpu_max(cgroup: str) -> str:
    try:
        return (CGROUPS / cgroup.lstrip("/") / "cpu.max").read_text().strip()
    except OSError:
        return ""


def pod_bytes(pid: int) -> int | None:
    """Bytes in and out of the container's non-loopback devices: what vif counts (vif_net.c)."""
    try:
        rows = (PROC / str(pid) / "net" / "dev").read_text().splitlines()[2:]
    except OSError:
        return None
    total = 0
    for row in rows:
        name, _, fields = row.partition(":")
        values = fields.split()
        if name.strip() != "lo" and len(values) >= 9:
            total += int(values[0]) + int(values[8])
    return total


def write_goal(slot: str, mbps: int) -> None:
    (OSLAB / slot / "goal").write_text(f"{mbps}\n")


def reload_vif(events: dict[str, object], t0: float) -> None:
    """Unload and load vif; a failure is an event the judge reports, the samples so far stay."""
    try:
        _run("modprobe", "-r", "vif")
        _run("modprobe", "vif")
        events["reloaded_at"] = round(time.time() - t0, 2)
    except TraceError as exc:
        events["reload_error"] = str(exc)


def trace(args: argparse.Namespace) -> dict[str, object]:
    ctr = find_container(args.container_id, args.wait)
    started = time.time()
    row = wait_slot(int(str(ctr["pid"])), args.wait)
    if row is None:
        raise TraceError(f"container {ctr} was not registered in a vif slot in {args.wait} s")
    t0 = time.time()
    slot, goal = row["slot"], int(row["goal_mbps"])
    half = max(1, goal // 2)
    out: dict[str, object] = {
        "container": ctr,
        "slot": slot,
        "slot_cgroup": row.get("cgroup", ""),
        "goal_mbps": goal,
        "half_mbps": half,
        "registered_after_s": round(t0 - started, 2),
        "t0": t0,
        "container_view": container_view(int(str(ctr["pid"]))),
        "cpu_max_before": cpu_max(str(ctr["cgroup"])),
    }
    samples: list[list[object]] = []
    events: dict[str, object] = {"reassertions": 0}
    halved = reloaded = False
    while (now := time.time()) - t0 < args.seconds:
        t = now - t0
        if not halved and t >= args.halve_at:
            write_goal(slot, half)
            halved = True
            events["halved_at"] = round(t, 2)
        if not reloaded and t >= args.reload_at:
            reloaded = True
            reload_vif(events, t0)
        try:
            s = stat(slot)
        except OSError:
            s = {}
        if s.get("pid") not in (None, str(ctr["pid"])):
            s = {}  # the slot went to someone else
        goal_now = int(s["goal_mbps"]) if "goal_mbps" in s else None
        if halved and t < args.restore_at and goal_now not in (None, half):
            write_goal(slot, half)
            events["reassertions"] = int(str(events["reassertions"])) + 1
        if t >= args.restore_at and goal_now == goal and "restored_at" not in events:
            events["restored_at"] = round(t, 2)
        if "reloaded_at" in events and "reregistered_at" not in events:
            try:
                row = next((r for r in slots() if r.get("pid") == str(ctr["pid"])), None)
            except OSError:
                row = None
            if row is not None:
                slot = row["slot"]
                events["reregistered_at"] = round(time.time() - t0, 2)
        samples.append(
            [
                round(t, 3),
                goal_now,
                float(s.get("bw_mbps", "nan")),
                s.get("quota_us"),
                cpu_max(str(ctr["cgroup"])),
                pod_bytes(int(str(ctr["pid"]))),
            ]
        )
        time.sleep(max(0.0, args.interval - (time.time() - now)))
    out["events"] = events
    out["columns"] = ["t", "goal_mbps", "bw_mbps", "quota_us", "cpu_max", "bytes"]
    out["samples"] = samples
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--container-id", required=True, help="the CRI id, without containerd://")
    parser.add_argument("--wait", type=float, default=120.0, help="for the container and its slot")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--halve-at", type=float, required=True)
    parser.add_argument("--restore-at", type=float, required=True)
    parser.add_argument("--reload-at", type=float, required=True)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args(argv)
    if not args.halve_at < args.restore_at < args.reload_at < args.seconds:
        parser.error("want halve-at < restore-at < reload-at < seconds")
    try:
        result = trace(args)
    except (TraceError, OSError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
