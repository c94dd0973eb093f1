"""``make bench-ansible``: what an Ansible task costs on an emulated lab node, per strategy.

The lab's ``pulumi up`` is about 400 host-tasks, and under TCG most of its time
is the fixed cost of a task, not the work in it. This bench boots one VM of the
lab's image (harness.vm.image, its SSH forward on 127.0.0.1, a cluster segment
of its own) and runs ``ansible_workload.yml`` (20 tasks: the remote modules
the roles use, in about their proportions, with become) under Ansible's
``linear`` strategy and Mitogen's ``mitogen_linear`` (one Python per host kept
for the run), with ``ansible.cfg``'s settings (pipelining, smart facts).

One warm-up run per strategy first (the workload's first run makes its files);
then repetition after repetition each strategy runs once, the order swapped
every repetition. Per run: the playbook's wall time (through ansible-runner, as
the lab's runs go) and the mean task time from its events (the first task
excluded: it opens the connection). Both strategies must report the same
ok/changed/failed result for every task, or the bench fails. Mean and 95% Student t interval over
repetitions, ratios paired per repetition. Writes reports/bench/ansible.json
(summary and every run) and ansible.png.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from depcon.ansible_run import STRATEGIES, strategy_env
from depcon.paths import repo_root
from depcon.provenance import loadavg
from harness.bench import cli, stats
from harness.bench.host import host
from harness.vm import image as vm

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "ansible_workload.yml"
VM_NAME = "bench-ansible"
SSH_PORT = 2241
CLUSTER_IP = "10.10.0.41/24"
SEGMENT = 23459  # its own cluster segment: it never meets a lab or a molecule VM


# The lab inventory's SSH settings, so a task here costs what it costs in the lab.
LAB_CONNECTION_VARS = (
    "ansible_host_key_checking",
    "ansible_ssh_common_args",
    "ansible_ssh_timeout",
)


def lab_connection_vars() -> dict[str, Any]:
    lab = yaml.safe_load((repo_root() / "inventory/lab/group_vars/all.yml").read_text())
    return {k: lab[k] for k in LAB_CONNECTION_VARS}


def inventory(inst: vm.Instance) -> dict[str, Any]:
    return {
        "all": {
            "hosts": {
                "bench": {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": inst.ssh_port,
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(inst.identity_file),
                    "ansible_python_interpreter": "/usr/bin/python3",
                    **lab_connection_vars(),
                }
            }
        }
    }


_TASK_END = ("runner_on_ok", "runner_on_failed", "runner_on_unreachable", "runner_on_skipped")


def task_results(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per task of an ansible-runner event stream: name, seconds, and the host's outcome."""
    tasks = []
    for ev in events:
        if ev.get("event") not in _TASK_END:
            continue
        data = ev["event_data"]
        tasks.append(
            {
                "task": data["task"],
                "seconds": round(float(data["duration"]), 3),
                "changed": bool(data.get("res", {}).get("changed")),
                "failed": ev["event"] in ("runner_on_failed", "runner_on_unreachable"),
                "msg": str(data.get("res", {}).get("msg", ""))[:300],
            }
        )
    return tasks


def run_once(strategy: str, inv: Path) -> dict[str, Any]:
    """One run of the workload through ansible-runner, as depcon.ansible_run runs the lab's."""
    import ansible_runner  # noqa: PLC0415 -- heavy; only a bench run needs it

    env = dict(os.environ, **strategy_env(strategy))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(repo_root() / "ansible.cfg")
    before = loadavg()
    with tempfile.TemporaryDirectory(prefix="depcon-bench-ansible-run-") as private:
        started = time.monotonic()
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(HERE),
            playbook=str(WORKLOAD),
            inventory=str(inv),
            envvars=env,
            quiet=True,
        )
        wall = time.monotonic() - started
        tasks = task_results(list(result.events))
    if result.rc != 0 or not tasks or any(t["failed"] for t in tasks):
        failed = [f"{t['task']}: {t['msg']}" for t in tasks if t["failed"]]
        raise RuntimeError(f"{strategy}: the workload failed (rc {result.rc}): {failed}")
    rest = [t["seconds"] for t in tasks[1:]]
    return {
        "strategy": strategy,
        "wall_s": round(wall, 2),
        "task_mean_s": round(sum(rest) / len(rest), 3),
        "first_task_s": tasks[0]["seconds"],
        "tasks": tasks,
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }


def outcomes(run: Mapping[str, Any]) -> list[tuple[str, bool, bool]]:
    return [(t["task"], t["changed"], t["failed"]) for t in run["tasks"]]


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    by = {s: [r for r in runs if r["strategy"] == s] for s in STRATEGIES}
    out: dict[str, Any] = {}
    for key in ("wall_s", "task_mean_s", "first_task_s"):
        out[key] = {s: stats.interval([r[key] for r in by[s]]) for s in STRATEGIES}
        out[key]["ratio_mitogen_over_linear"] = stats.paired_ratio(
            [r[key] for r in by["mitogen_linear"]], [r[key] for r in by["linear"]]
        )
    return out


def plot(summary: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure  # noqa: PLC0415 -- only when a report is drawn

    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2)
    for ax, key, label in (
        (axes[0], "wall_s", "playbook wall time, s (20 tasks)"),
        (axes[1], "task_mean_s", "mean task time, s (tasks 2-20)"),
    ):
        for i, s in enumerate(STRATEGIES):
            st = summary["metrics"][key][s]
            ax.bar(i, st["mean"], color=("tab:gray", "tab:green")[i], alpha=0.6)
            if st["ci95"]:
                ax.errorbar(i, st["mean"], yerr=st["half_width"], color="black", capsize=6)
            ys = [r[key] for r in runs if r["strategy"] == s]
            ax.plot([i] * len(ys), ys, "k.", alpha=0.6)
        ratio = summary["metrics"][key]["ratio_mitogen_over_linear"]
        ax.set_xticks(range(len(STRATEGIES)), list(STRATEGIES))
        ax.set_ylabel(label)
        ax.set_title(
            f"mitogen/linear {ratio['mean']:.2f} [{ratio['ci95'][0]:.2f}, {ratio['ci95'][1]:.2f}]",
            fontsize=9,
        )
    h = summary["host"]
    fig.suptitle(
        f"Ansible task cost on a TCG lab VM: mean and 95% t interval, dots are runs; "
        f"{h['date']}, commit {h['commit'][:10]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    args = cli.parse_reps("ansible", __doc__, argv)
    info = host()
    load_before = loadavg()
    inst, boot_s = vm.up(VM_NAME, ssh_port=SSH_PORT, cluster_ip=CLUSTER_IP, segment=SEGMENT)
    print(f"[bench-ansible] {VM_NAME} up in {boot_s:.0f} s", flush=True)
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="depcon-bench-ansible-") as tmp:
            inv = Path(tmp) / "hosts.yml"
            inv.write_text(yaml.safe_dump(inventory(inst)))
            for s in STRATEGIES:
                warm = run_once(s, inv)
                print(f"[bench-ansible] warm-up {s}: {warm['wall_s']} s", flush=True)
            for rep in range(args.reps):
                order = STRATEGIES if rep % 2 == 0 else tuple(reversed(STRATEGIES))
                for s in order:
                    run = {"rep": rep, **run_once(s, inv)}
                    runs.append(run)
                    print(
                        f"[bench-ansible] rep {rep} {s}: {run['wall_s']} s, "
                        f"task {run['task_mean_s']} s",
                        flush=True,
                    )
    finally:
        vm.down(VM_NAME)
    expected = outcomes(runs[0])
    differing = [r["rep"] for r in runs if outcomes(r) != expected]
    if differing:
        raise SystemExit(f"bench-ansible: the strategies' task results differ in reps {differing}")
    summary: dict[str, Any] = {
        "host": info,
        "host_load": {"before": load_before, "after": loadavg()},
        "vm": "qemu TCG, 2 vCPUs, 2560 MiB, the lab's image",
        "vm_boot_s": round(boot_s, 1),
        "tasks": len(expected),
        "same_results": True,
        "method": (__doc__ or "").split("\n\n", 1)[1].strip(),
        "metrics": summarize(runs),
        "runs": runs,
    }
    (args.out / "ansible.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(summary, runs, args.out / "ansible.png")
    m = summary["metrics"]
    for key in ("wall_s", "task_mean_s"):
        r = m[key]["ratio_mitogen_over_linear"]
        print(
            f"[bench-ansible] {key}: linear {m[key]['linear']['mean']:.2f}, "
            f"mitogen {m[key]['mitogen_linear']['mean']:.2f}, ratio {r['mean']:.2f} "
            f"[{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}]"
        )
    print(f"wrote {args.out}/ansible.json and ansible.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
