"""``make bench-vif``: vif against what a user would pick instead, in the test VM.

One VM run (harness.vm, the primary pinned kernel, 2 vCPUs under TCG) executes
vif_bench.sh. Containers are network namespaces with a veth to a server netns and
an iperf3 sender in their own cgroup; next to them runs a best-effort hog (two
threads, cpu.weight 1, as a BestEffort pod) that counts work units. First the node's
capacity (N senders, no limits, no hog) and a calibration curve (one sender next to
the hog at quotas of 10-75% of a CPU) are measured; every request and limit of the
run comes from that curve. Each container has a request sized for its goal plus the
1% vif aims above it (cpu.weight by the kubelet's rule), and the configurations are:

- ``requests``: native Kubernetes, requests only (CFS weights, no limits);
- ``limits``: native Guaranteed pods, cpu.max at the curve's quota for the goal;
- ``tbf``: the CNI bandwidth plugin's mechanism, a token bucket at goal + 1%;
- ``vif``: the module at its defaults (period 200 ms, tol 2%).

Scenarios (name: N containers, total goals in % of the capacity at N): n4l50,
n4l100, n4l150 (the goal sweep), n8l50, and n4batch (n4l50 next to a Burstable
batch job requesting 1500 m, cpu.weight 59, no limit). Half the containers are class
"low" with goal g, half "high" with 2 g. Each run: 4 s to settle, 5 s steady
window (the means, CV over 1 s periods, CPU, hog progress), then the low class's
goals go up by half (each configuration doing what it would: vif's goal, tbf's
rate, an in-place resize of the limit, the new request's weight) and 6 s more for
the settling time (the centred 0.5 s mean on a 100 ms grid, interpolated from
byte counters read every ~0.1-0.2 s, in 0.95-1.10 of the new goal for 2 s).
Repetition after repetition every scenario runs every configuration, the order
rotated per repetition; mean and 95% Student t interval over repetitions,
ratios paired per repetition. Writes reports/bench/vif.json (summary),
vif-runs.json (every run) and vif.png; the VM's raw output goes to vif.log.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from depcon.provenance import loadavg
from harness.bench import cli, stats
from harness.bench import vif_analysis as va
from harness.bench.host import host
from harness.bench.vif_plot import plot
from harness.vm import VM_LIB, kernel_by_name, run_script

HERE = Path(__file__).resolve().parent
SCENARIOS = "n4l50:4:50:0 n4l100:4:100:0 n4l150:4:150:0 n8l50:8:50:0 n4batch:4:50:1"
RUN_S = 25.0  # one run's wall time in the VM, setup and teardown included (measured: 17-22 s)


class LoadSampler:
    """The host's load average every ``every`` seconds while the VM runs."""

    def __init__(self, every: float = 30.0) -> None:
        self.every = every
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            self.samples.append({"s": round(time.monotonic() - start), "loadavg": loadavg()})
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def report_lines(summary: dict[str, Any]) -> list[str]:
    """What the terminal shows: each scenario's SLOs met and the targets."""

    def ci(stat: dict[str, Any], scale: float = 1.0) -> str:
        if stat.get("mean") is None:
            return "n/a"
        if not stat.get("ci95"):
            return f"{stat['mean'] * scale:.3g}"
        lo, hi = stat["ci95"]
        return f"{stat['mean'] * scale:.3g} [{lo * scale:.3g}, {hi * scale:.3g}]"

    lines = []
    for s, per in summary["scenarios"].items():
        for cfg, st in per.items():
            lines.append(
                f"{s:8s} {cfg:8s} met {ci(st['slo_met_share'], 100)}% "
                f"(95%: {ci(st['slo_met95_share'], 100)}%) total {ci(st['total_mbps'])} Mbps "
                f"mCPU/Mbps {ci(st['mcpu_per_mbps'])} hog {ci(st['hog_units_per_s'])} u/s "
                f"settle {ci(st['worst_settling_s'])} s"
            )
    lines += summary["verdicts"]
    lines += [f"batch job: {k} {v['mean']} ({v['vif']})" for k, v in summary["batch_job"].items()]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench-vif", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=stats.MIN_REPS)
    parser.add_argument("--scenarios", default=SCENARIOS, help="name:N:load_pct:batch ...")
    cli.add_out(parser)
    parser.add_argument(
        "--from-log", type=Path, help="re-summarize a saved vif.log instead of running the VM"
    )
    args = parser.parse_args(argv)
    if not args.from_log:
        cli.require_reps(parser, args, args.reps)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    info = host()
    runs = args.reps * 4 * len(args.scenarios.split())
    if args.from_log:
        output = args.from_log.read_text()
        prev = json.loads((out / "vif.json").read_text()) if (out / "vif.json").is_file() else {}
        info = prev.get("host", info)
        load = prev.get("host_load", {})
        vm_kernel, vm_seconds = prev.get("vm_kernel"), prev.get("vm_seconds")
    else:
        before = loadavg()
        with LoadSampler() as sampler:
            result = run_script(
                HERE / "vif_bench.sh",
                kernel=kernel_by_name(),
                files={"lib.sh": VM_LIB},
                env={"BENCH_REPS": str(args.reps), "BENCH_SCENARIOS": args.scenarios},
                timeout=300 + 2 * RUN_S * runs,
            )
        (out / "vif.log").write_text(result.output)
        result.check()
        output, vm_kernel = result.output, result.kernel
        vm_seconds = round(result.total_seconds, 1)
        load = {"before": before, "after": loadavg(), "during": sampler.samples}
    parsed = va.parse(output)
    summary = va.summarize(parsed)
    summary = {
        "host": info,
        "host_load": load,
        "vm_kernel": vm_kernel,
        "vm_seconds": vm_seconds,
        "vm": "qemu TCG, 2 vCPUs, 1 GiB",
        "method": __doc__.split("\n\n", 1)[1].strip(),
        **summary,
    }
    (out / "vif.json").write_text(json.dumps(summary, indent=2) + "\n")
    raw = {"host": info, "vm_kernel": vm_kernel, "runs": parsed["runs"]}
    (out / "vif-runs.json").write_text(json.dumps(raw, indent=1) + "\n")
    plot(summary, parsed["runs"], out / "vif.png")
    print("\n".join(report_lines(summary)))
    print(f"wrote {out}/vif.json, vif-runs.json and vif.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
