"""``make bench-lab_cpu``: does a Kubernetes control plane fit in an emulated lab VM?

The lab's control plane VM runs etcd, kube-apiserver, kube-scheduler,
kube-controller-manager, the kubelet and containerd under TCG. This bench puts
a number on what that costs, from two measurements taken side by side:

- the slowdown of TCG: the same single-threaded probes (a Python integer loop,
  and sha256 of 50 MB through OpenSSL's accelerated code, as Go's TLS uses) on
  this host and in one VM of the lab's image (2 vCPUs, otherwise idle);
- what a control plane needs natively: etcd, kube-apiserver and a stock
  kube-scheduler at the pin started on this host (harness.controlplane), the CPU
  seconds from spawn to ready, then their CPU over an idle window.

Each repetition runs the host probe and the guest probe (the order swapped
every repetition), then a fresh native control plane. The product of the
native demand and the slowdown, per repetition, is what the same processes
would need under TCG. It is a lower bound for the lab's control plane VM:
no controller-manager, kubelet or containerd, and etcd without TLS. Mean and
95% Student t interval over repetitions. Writes reports/bench/lab_cpu.json and
lab_cpu.png.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from depcon.provenance import loadavg
from harness.bench import cli, stats
from harness.bench.host import host
from harness.controlplane import ControlPlane
from harness.vm import image as vm
from harness.vm import network

VM_NAME = "bench-lab-cpu"
SSH_PORT = 2242
CLUSTER_IP = "10.10.0.42/24"
SEGMENT = 23460  # its own cluster segment: it never meets a lab or a molecule VM
SETTLE_S = 10.0  # after ready: the control plane's start-up work is done
IDLE_S = 30.0
PROBE = (
    "import hashlib, json, time\n"
    "t = time.perf_counter(); s = 0\n"
    "for i in range(1_000_000): s += i * i\n"
    "loop = time.perf_counter() - t\n"
    "t = time.perf_counter(); hashlib.sha256(b'x' * 50_000_000).digest()\n"
    "print(json.dumps({'loop_s': loop, 'sha256_s': time.perf_counter() - t}))\n"
)
PROBES = ("loop_s", "sha256_s")


def probe_host() -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    return {k: float(v) for k, v in json.loads(out.stdout).items()}


def probe_guest(inst: vm.Instance) -> dict[str, float]:
    out = subprocess.run(
        network.ssh_argv(inst.identity_file, inst.ssh_port, "python3", "-"),
        input=PROBE,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return {k: float(v) for k, v in json.loads(out.stdout).items()}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def native_control_plane(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A fresh etcd + kube-apiserver + kube-scheduler: start-up CPU s, then idle cores."""
    started = time.monotonic()
    with ControlPlane(env=env) as cp:
        cp.start_scheduler()
        ready_s = time.monotonic() - started
        pids = {n.removesuffix("-1"): p for n, p in cp.pids().items()}
        startup = {n: cpu_seconds(p) for n, p in pids.items()}
        time.sleep(SETTLE_S)
        a = {n: cpu_seconds(p) for n, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(IDLE_S)
        b = {n: cpu_seconds(p) for n, p in pids.items()}
        window = time.monotonic() - t0
    idle = {n: (b[n] - a[n]) / window for n in pids}
    return {
        "ready_s": round(ready_s, 2),
        "startup_cpu_s": startup,
        "startup_cpu_total_s": sum(startup.values()),
        "idle_cores": idle,
        "idle_cores_total": sum(idle.values()),
    }


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"slowdown": {}, "tcg_idle_cores": {}, "tcg_startup_cpu_s": {}}
    for k in PROBES:
        ratios = [r["guest"][k] / r["host"][k] for r in runs]
        out["slowdown"][k] = stats.interval(ratios)
        out["tcg_idle_cores"][k] = stats.interval(
            [x * r["native"]["idle_cores_total"] for x, r in zip(ratios, runs, strict=True)]
        )
        out["tcg_startup_cpu_s"][k] = stats.interval(
            [x * r["native"]["startup_cpu_total_s"] for x, r in zip(ratios, runs, strict=True)]
        )
    out["native_idle_cores"] = stats.interval([r["native"]["idle_cores_total"] for r in runs])
    out["native_startup_cpu_s"] = stats.interval([r["native"]["startup_cpu_total_s"] for r in runs])
    return out


def plot(summary: Mapping[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415 -- only when a report is drawn

    m = summary["metrics"]
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 3)
    panels = (
        (axes[0], "slowdown", "TCG guest / host time (x)"),
        (axes[1], "tcg_idle_cores", "idle control plane under TCG, cores"),
        (axes[2], "tcg_startup_cpu_s", "start-up under TCG, CPU s"),
    )
    for ax, key, label in panels:
        for i, k in enumerate(PROBES):
            st = m[key][k]
            ax.bar(i, st["mean"], color=("tab:blue", "tab:orange")[i], alpha=0.6)
            if st["ci95"]:
                ax.errorbar(i, st["mean"], yerr=st["half_width"], color="black", capsize=6)
        ax.set_xticks(range(len(PROBES)), ["by loop", "by sha256"])
        ax.set_ylabel(label, fontsize=9)
    axes[1].axhline(summary["host"]["cpus"], color="red", ls="--", label="host cores")
    axes[1].axhline(summary["vm_vcpus"], color="gray", ls=":", label="control plane VM vCPUs")
    axes[1].legend(fontsize=8)
    h = summary["host"]
    fig.suptitle(
        f"etcd + kube-apiserver + kube-scheduler, native demand x TCG slowdown: mean and 95% "
        f"t interval, {summary['reps']} reps; {h['date']}, commit {h['commit'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_reps("lab_cpu", __doc__, argv)
    info = host()
    load_before = loadavg()
    smp = 2
    inst, boot_s = vm.up(
        VM_NAME, ssh_port=SSH_PORT, cluster_ip=CLUSTER_IP, segment=SEGMENT, smp=smp
    )
    print(f"[bench-lab_cpu] {VM_NAME} up in {boot_s:.0f} s", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        probe_guest(inst)  # warm-up: the guest's first Python start reads its disk
        for rep in range(args.reps):
            run: dict[str, Any] = {"rep": rep, "loadavg_before": loadavg()}
            first_host = rep % 2 == 0
            for where in ("host", "guest") if first_host else ("guest", "host"):
                run[where] = probe_host() if where == "host" else probe_guest(inst)
            run["native"] = native_control_plane()
            run["loadavg_after"] = loadavg()
            runs.append(run)
            g, h = run["guest"], run["host"]
            print(
                f"[bench-lab_cpu] rep {rep}: loop x{g['loop_s'] / h['loop_s']:.1f}, "
                f"sha256 x{g['sha256_s'] / h['sha256_s']:.1f}, native idle "
                f"{run['native']['idle_cores_total']:.3f} cores, start-up "
                f"{run['native']['startup_cpu_total_s']:.2f} CPU s",
                flush=True,
            )
    finally:
        vm.down(VM_NAME)
    summary: dict[str, Any] = {
        "host": info,
        "host_load": {"before": load_before, "after": loadavg()},
        "vm": f"qemu TCG, {smp} vCPUs, the lab's image, idle but for the probe",
        "vm_vcpus": smp,
        "vm_boot_s": round(boot_s, 1),
        "reps": args.reps,
        "idle_window_s": IDLE_S,
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "metrics": summarize(runs),
        "runs": runs,
    }
    (args.out / "lab_cpu.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, args.out / "lab_cpu.png")
    m = summary["metrics"]
    for k in PROBES:
        s, c = m["slowdown"][k], m["tcg_idle_cores"][k]
        print(
            f"[bench-lab_cpu] {k}: slowdown {s['mean']:.1f} "
            f"[{s['ci95'][0]:.1f}, {s['ci95'][1]:.1f}], idle control plane under TCG "
            f"{c['mean']:.2f} [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}] cores"
        )
    print(f"wrote {args.out}/lab_cpu.json and lab_cpu.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
