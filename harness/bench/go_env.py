"""``make bench-go_env``: do Go runtime settings cut the control plane's start-up CPU?

On the lab's emulated control plane VM, kube-apiserver exits when its start-up
hooks time out, before it has had the CPU its start needs, and it restarts in
a loop (docs/architecture.md, "The control plane VM's CPU budget"). Start-up
CPU is therefore the quantity to shrink. The Go runtime's knobs cost nothing
to set on the static pods, so this bench measures them first, natively: etcd,
kube-apiserver and a stock kube-scheduler at the pin (harness.controlplane),
each configuration a fresh control plane, all of its processes given the
configuration's environment.

Configurations: the default; GOGC=400 (a garbage collection per 4x heap growth
instead of 2x: fewer collections, more memory); GOMAXPROCS=1 (one thread runs
Go code: no parallel GC workers). Each repetition runs every configuration,
the order rotated every repetition. Per configuration: the CPU seconds from
spawn to ready, the idle cores over a window after that, and both as a ratio
to the default of the same repetition. Mean and 95% Student t interval over
repetitions. Writes reports/bench/go_env.json and go_env.png.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from depcon.provenance import loadavg
from harness.bench import cli, stats
from harness.bench.host import host
from harness.bench.lab_cpu import IDLE_S, native_control_plane

CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "GOGC=400": {"GOGC": "400"},
    "GOMAXPROCS=1": {"GOMAXPROCS": "1"},
}
METRICS = ("startup_cpu_total_s", "idle_cores_total")


def order(rep: int) -> list[str]:
    """The configurations of repetition ``rep``, rotated so none always runs first."""
    names = list(CONFIGS)
    k = rep % len(names)
    return names[k:] + names[:k]


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in CONFIGS:
        per: dict[str, Any] = {}
        for m in METRICS:
            per[m] = stats.interval([r[name][m] for r in runs])
            per[f"{m}_ratio"] = stats.interval([r[name][m] / r["default"][m] for r in runs])
        per["startup_cpu_s_by_component"] = {
            c: stats.interval([r[name]["startup_cpu_s"][c] for r in runs])
            for c in runs[0][name]["startup_cpu_s"]
        }
        out[name] = per
    return out


def plot(summary: Mapping[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415 -- only when a report is drawn

    m = summary["metrics"]
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2)
    labels = {"startup_cpu_total_s": "start-up, CPU s", "idle_cores_total": "idle, cores"}
    for ax, metric in zip(axes, METRICS, strict=True):
        for i, name in enumerate(CONFIGS):
            st = m[name][metric]
            ax.bar(i, st["mean"], color="tab:blue", alpha=0.6)
            if st["ci95"]:
                ax.errorbar(i, st["mean"], yerr=st["half_width"], color="black", capsize=6)
            r = m[name][f"{metric}_ratio"]
            ax.annotate(f"x{r['mean']:.2f}", (i, st["mean"]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(CONFIGS)), list(CONFIGS))
        ax.set_ylabel(labels[metric], fontsize=9)
    h = summary["host"]
    fig.suptitle(
        f"etcd + kube-apiserver + kube-scheduler, native, by Go runtime setting: mean and 95% "
        f"t interval, {summary['reps']} reps\n(x: ratio to default, paired); {h['date']}, "
        f"commit {h['commit'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_reps("go_env", __doc__, argv)
    info = host()
    load_before = loadavg()
    runs: list[dict[str, Any]] = []
    for rep in range(args.reps):
        run: dict[str, Any] = {"rep": rep, "order": order(rep), "loadavg_before": loadavg()}
        for name in run["order"]:
            run[name] = native_control_plane(CONFIGS[name])
            print(
                f"[bench-go_env] rep {rep} {name}: start-up "
                f"{run[name]['startup_cpu_total_s']:.2f} CPU s, idle "
                f"{run[name]['idle_cores_total']:.3f} cores",
                flush=True,
            )
        run["loadavg_after"] = loadavg()
        runs.append(run)
    summary: dict[str, Any] = {
        "host": info,
        "host_load": {"before": load_before, "after": loadavg()},
        "configs": CONFIGS,
        "reps": args.reps,
        "idle_window_s": IDLE_S,
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "metrics": summarize(runs),
        "runs": runs,
    }
    (args.out / "go_env.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, args.out / "go_env.png")
    for name in CONFIGS:
        s = summary["metrics"][name]["startup_cpu_total_s_ratio"]
        i = summary["metrics"][name]["idle_cores_total_ratio"]
        print(
            f"[bench-go_env] {name}: start-up x{s['mean']:.2f} {s['ci95']}, "
            f"idle x{i['mean']:.2f} {i['ci95']} of the default"
        )
    print(f"wrote {args.out}/go_env.json and go_env.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
