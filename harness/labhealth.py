"""What a lab node's Kubernetes was doing when a lab stage failed, for the smoke's report.

A failed smoke said only which Ansible task timed out; the cause sat on the VM
(an API server that exits and restarts). :func:`collect` reads, over each VM's
loopback SSH, its load, uptime and clock source, the API server's /readyz answer, and for
each container the kubelet logs under /var/log/pods its restart count (the
kubelet names log files by restart) and the last fatal (klog ``F``) line of the
logs it keeps (the running and the previous run: a crashed run's cause).
It never raises: a VM that does not answer is recorded as such.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.vm import network

SSH_TIMEOUT_S = 90

# One line per fact: "load ...", "uptime_s N", "clocksource NAME", "readyz ...",
# "container POD CONTAINER RESTARTS FATAL_LINE_OR_-".
SCRIPT = r"""
echo "load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "uptime_s $(cut -d. -f1 /proc/uptime)"
echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
if [ -f /etc/kubernetes/admin.conf ]; then
	r=$(timeout 20 kubectl --kubeconfig /etc/kubernetes/admin.conf get --raw /readyz 2>&1 |
		tail -n 1)
	echo "readyz ${r:-no answer}"
fi
for d in /var/log/pods/*/*/; do
	[ -d "$d" ] || continue
	runs=$(ls "$d" | sed -n 's/^\([0-9]*\)\.log$/\1/p' | sort -n)
	last=$(echo "$runs" | tail -n 1)
	[ -n "$last" ] || continue
	pod=$(basename "$(dirname "$d")")
	fatal=$(for n in $runs; do grep -E ' F[0-9]{4} ' "$d$n.log"; done | tail -n 1 | cut -c1-400)
	echo "container ${pod%_*} $(basename "$d") $last ${fatal:--}"
done
"""


@dataclass(frozen=True)
class Node:
    name: str
    ssh_port: int


def parse(text: str) -> dict[str, Any]:
    """The facts of one node from SCRIPT's output."""
    out: dict[str, Any] = {"containers": []}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "load":
            out["load_average"] = [float(x) for x in rest.split()]
        elif key == "uptime_s":
            out["uptime_s"] = int(rest)
        elif key == "clocksource":
            out["clocksource"] = rest.strip()
        elif key == "readyz":
            out["readyz"] = rest.strip()
        elif key == "container":
            pod, container, restarts, fatal = [*rest.split(" ", 3), "-"][:4]
            out["containers"].append(
                {
                    "pod": pod,
                    "container": container,
                    "restarts": int(restarts),
                    "last_fatal": None if fatal == "-" else fatal,
                }
            )
    return out


def collect(nodes: Iterable[Node], identity_file: str | Path) -> dict[str, Any]:
    """Each node's facts, or ``{"error": ...}`` for a node that did not answer."""
    report: dict[str, Any] = {}
    for node in nodes:
        argv = network.ssh_argv(identity_file, node.ssh_port, "sh", "-s", connect_timeout_s=30)
        try:
            done = subprocess.run(
                argv,
                input=SCRIPT,
                capture_output=True,
                text=True,
                timeout=SSH_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            report[node.name] = {"error": f"no answer over SSH within {SSH_TIMEOUT_S} s"}
            continue
        if done.returncode != 0:
            report[node.name] = {
                "error": f"ssh exited {done.returncode}: {done.stderr.strip()[-300:]}"
            }
            continue
        report[node.name] = parse(done.stdout)
    return report
