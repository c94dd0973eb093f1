"""``make bench-guest_clock``: what a clock read costs in an emulated guest, by clocksource.

Under TCG the guest kernel marks the TSC unstable ("TSCs unsynchronized") and
falls back to the HPET, an emulated device: every clock_gettime becomes a
system call and an MMIO read. Go programs (kube-apiserver, etcd, the kubelet,
containerd) read the clock all the time, and the control plane VM spends most
of its time in the kernel (docs/architecture.md, "The control plane VM's CPU
budget"). qemu's TSC comes from one host clock for every vCPU, so
``tsc=reliable`` should be safe; this bench measures what it buys.

Each repetition boots the kernel test VM (harness.vm.runner, 2 vCPUs) once per
configuration, the order alternating, and runs a static C program: 100000
clock_gettime(CLOCK_MONOTONIC) calls, then 50M integer adds as a control for
the speed of the emulation itself. Per configuration: ns per call, the loop's
seconds, the clocksource in use, and both numbers as a ratio to the default of
the same repetition. Mean and 95% Student t interval over repetitions. Writes
reports/bench/guest_clock.json and guest_clock.png.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from depcon.provenance import loadavg
from harness.bench import cli, stats
from harness.bench.host import host
from harness.vm.runner import run_script

CONFIGS: dict[str, str] = {"default": "", "tsc=reliable": "tsc=reliable clocksource=tsc"}
METRICS = ("clock_ns_per_call", "loop_s")
SOURCE = Path(__file__).with_suffix(".c")
SCRIPT = b"""#!/bin/sh
echo "clocksource $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
/test/guest_clock 100000
"""


def order(rep: int) -> list[str]:
    names = list(CONFIGS)
    return names if rep % 2 == 0 else names[::-1]


def build(tmp: Path) -> Path:
    binary = tmp / "guest_clock"
    subprocess.run(["gcc", "-O2", "-static", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def measure(binary: Path, script: Path, append: str) -> dict[str, Any]:
    r = run_script(script, files={"guest_clock": binary}, module=False, append=append, timeout=300)
    if r.rc != 0:
        raise RuntimeError(f"the guest run failed (rc {r.rc}):\n{r.output}\n{r.console[-2000:]}")
    lines = r.output.strip().splitlines()
    source = next(line.split()[1] for line in lines if line.startswith("clocksource "))
    result: dict[str, Any] = json.loads(next(line for line in lines if line.startswith("{")))
    result["clocksource"] = source
    return result


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CONFIGS:
        per: dict[str, Any] = {"clocksources": sorted({r[name]["clocksource"] for r in runs})}
        for m in METRICS:
            per[m] = stats.interval([r[name][m] for r in runs])
            per[f"{m}_ratio"] = stats.interval([r[name][m] / r["default"][m] for r in runs])
        out[name] = per
    return out


def plot(summary: Mapping[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415 -- only when a report is drawn

    m = summary["metrics"]
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2)
    labels = {"clock_ns_per_call": "clock_gettime, ns per call", "loop_s": "50M adds, s"}
    for ax, metric in zip(axes, METRICS, strict=True):
        for i, name in enumerate(CONFIGS):
            st = m[name][metric]
            ax.bar(i, st["mean"], color="tab:blue", alpha=0.6)
            if st["ci95"]:
                ax.errorbar(i, st["mean"], yerr=st["half_width"], color="black", capsize=6)
            r = m[name][f"{metric}_ratio"]
            ax.annotate(f"x{r['mean']:.3f}", (i, st["mean"]), ha="center", va="bottom", fontsize=8)
        names = [f"{n}\n({', '.join(m[n]['clocksources'])})" for n in CONFIGS]
        ax.set_xticks(range(len(CONFIGS)), names)
        ax.set_ylabel(labels[metric], fontsize=9)
    h = summary["host"]
    fig.suptitle(
        f"emulated guest (TCG, 2 vCPUs), by kernel clock setting: mean and 95% t interval, "
        f"{summary['reps']} reps\n(x: ratio to default, paired); {h['date']}, "
        f"commit {h['commit'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_reps("guest_clock", __doc__, argv)
    info = host()
    load_before = loadavg()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="guest-clock-") as tmp:
        binary = build(Path(tmp))
        script = Path(tmp) / "run.sh"
        script.write_bytes(SCRIPT)
        for rep in range(args.reps):
            run: dict[str, Any] = {"rep": rep, "order": order(rep), "loadavg_before": loadavg()}
            for name in run["order"]:
                run[name] = measure(binary, script, CONFIGS[name])
                print(
                    f"[bench-guest_clock] rep {rep} {name}: {run[name]['clocksource']}, "
                    f"{run[name]['clock_ns_per_call']:.0f} ns per clock read, "
                    f"loop {run[name]['loop_s']:.3f} s",
                    flush=True,
                )
            runs.append(run)
    summary: dict[str, Any] = {
        "host": info,
        "host_load": {"before": load_before, "after": loadavg()},
        "configs": CONFIGS,
        "reps": args.reps,
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "metrics": summarize(runs),
        "runs": runs,
    }
    (args.out / "guest_clock.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, args.out / "guest_clock.png")
    for name in CONFIGS:
        c = summary["metrics"][name]["clock_ns_per_call_ratio"]
        print(f"[bench-guest_clock] {name}: clock read x{c['mean']:.3f} {c['ci95']} of the default")
    print(f"wrote {args.out}/guest_clock.json and guest_clock.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
