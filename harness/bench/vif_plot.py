"""The PNG of ``make bench-vif``: every metric as mean with its 95% interval, runs as dots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from harness.bench.vif_analysis import CONFIGS, FEASIBLE, SWEEP

WIDTH = 0.2


def _grouped(
    ax: Any,
    summary: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]],
    scenarios: Sequence[str],
    key: str,
    *,
    scale: float = 1.0,
    cls: str | None = None,
) -> None:
    """One group per scenario, one bar per configuration (mean, interval as error bar)."""
    for k, cfg in enumerate(CONFIGS):
        xs, means, errs = [], [], []
        for g, s in enumerate(scenarios):
            st = summary["scenarios"].get(s, {}).get(cfg)
            if not st:
                continue
            stat = st["by_class"].get(cls, {}).get(key, {}) if cls else st[key]
            if stat.get("mean") is None:
                continue
            x = g + (k - 1.5) * WIDTH
            xs.append(x)
            means.append(stat["mean"] * scale)
            errs.append((stat.get("half_width") or 0.0) * scale)
            dots = [
                (r["by_class"].get(cls, {}).get(key) if cls else r.get(key))
                for r in runs
                if r["scenario"] == s and r["config"] == cfg
            ]
            ys = [d * scale for d in dots if d is not None]
            ax.plot([x] * len(ys), ys, "k.", markersize=3)
        ax.bar(xs, means, WIDTH, yerr=errs, capsize=3, color=f"C{k}", alpha=0.75, label=cfg)
    ax.set_xticks(range(len(scenarios)), list(scenarios), fontsize=8)


def _sweep(ax: Any, summary: Mapping[str, Any]) -> None:
    """Delivered over goal per class against the total goal, per configuration."""
    loads = [int(s.split("l")[1]) for s in SWEEP]
    for k, cfg in enumerate(CONFIGS):
        for cls, style in (("low", "-"), ("high", "--")):
            ys, errs, xs = [], [], []
            for s, load in zip(SWEEP, loads, strict=True):
                st = summary["scenarios"].get(s, {}).get(cfg, {}).get("by_class", {}).get(cls)
                if not st or st["delivered_over_goal"]["mean"] is None:
                    continue
                xs.append(load + (k - 1.5) * 2)
                ys.append(st["delivered_over_goal"]["mean"])
                errs.append(st["delivered_over_goal"].get("half_width") or 0.0)
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                fmt=style + "o",
                color=f"C{k}",
                capsize=3,
                markersize=3,
                label=f"{cfg} {cls}",
            )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xlabel("total goals, % of the node's capacity (N = 4)")
    ax.set_ylabel("delivered / goal")
    ax.set_title("goal sweep: low (solid) and high (dashed) class", fontsize=9)
    ax.legend(fontsize=6, ncol=2)


def plot(summary: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], path: Path) -> None:
    fig = Figure(figsize=(17, 9))
    axes = fig.subplots(2, 3)
    scen = list(summary["scenarios"])
    ax = axes[0][0]
    _grouped(ax, summary, runs, scen, "slo_met_share", scale=100.0)
    ax.set_ylabel("% of containers, steady mean >= goal")
    ax.set_title("SLOs met", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0][1]
    feas = [s for s in FEASIBLE if s in summary["scenarios"]]
    groups = [(s, cl) for s in feas for cl in ("low", "high")]
    for k, cfg in enumerate(CONFIGS):
        xs, ys, errs = [], [], []
        for g, (s, cl) in enumerate(groups):
            st = summary["scenarios"][s].get(cfg, {}).get("by_class", {}).get(cl)
            if not st or st["cv_pooled"]["mean"] is None:
                continue
            xs.append(g + (k - 1.5) * WIDTH)
            ys.append(st["cv_pooled"]["mean"] * 100)
            errs.append((st["cv_pooled"].get("half_width") or 0.0) * 100)
        ax.bar(xs, ys, WIDTH, yerr=errs, capsize=3, color=f"C{k}", alpha=0.75, label=cfg)
    ax.set_xticks(range(len(groups)), [f"{s}\n{cl}" for s, cl in groups], fontsize=8)
    ax.set_ylabel("CV, % (containers x 1 s periods)")
    ax.set_title("per-class spread, feasible scenarios", fontsize=9)
    ax = axes[0][2]
    _grouped(ax, summary, runs, scen, "mcpu_per_mbps")
    ax.set_ylabel("mCPU per delivered Mbps (SLO cgroups)")
    ax.set_title("CPU per delivered Mbps", fontsize=9)
    ax = axes[1][0]
    _grouped(ax, summary, runs, scen, "hog_units_per_s")
    ax.set_ylabel("work units / s")
    ax.set_title("best-effort hog's progress", fontsize=9)
    ax = axes[1][1]
    # Most quota-throttled runs never settle under emulation: the share that did
    # is the bar, the mean settling time of those that did is the label.
    _grouped(ax, summary, runs, scen, "settled_share", scale=100.0)
    for k, cfg in enumerate(CONFIGS):
        for g, s in enumerate(scen):
            st = summary["scenarios"].get(s, {}).get(cfg, {}).get("worst_settling_s", {})
            if st.get("mean") is not None:
                ax.text(g + (k - 1.5) * WIDTH, 2, f"{st['mean']:.1f}s", ha="center", fontsize=6)
    ax.set_ylabel("% of low-class containers settled within the run")
    ax.set_title(
        "settling after the goal change: 0.5 s mean in 0.95-1.10 x goal for 2 s\n"
        "(label: worst container's time, mean over runs where all settled; target 1 s)",
        fontsize=9,
    )
    _sweep(axes[1][2], summary)
    h = summary["host"]
    load = summary.get("host_load", {})
    fig.suptitle(
        f"vif vs native requests / Guaranteed limits / tbf, {summary['reps']} interleaved reps, "
        f"mean and 95% t interval, dots are runs\n{h['date']}, commit {h['commit'][:10]}, "
        f"VM kernel {summary.get('vm_kernel')}, host load before/after "
        f"{load.get('before')} / {load.get('after')}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
