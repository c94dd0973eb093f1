"""harness/bench/scheduler.py: statistics, parsing, the outcome, and the Go module's pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from buildtools.scheduler import SchedulerSettings, render
from depcon.config import load_versions
from harness.bench import metrics, stats, workload
from harness.bench import scheduler as bench

pytestmark = pytest.mark.unit

MODULE = Path(__file__).resolve().parents[2] / bench.GO_MODULE


@pytest.mark.parametrize(
    ("df", "want"),
    [(1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (29, 2.045230), (200, 1.971896)],
)
def test_t_quantile_matches_the_table(df: int, want: float) -> None:
    assert stats.t_quantile(0.975, df) == pytest.approx(want, abs=1e-5)


def test_t_quantile_is_symmetric_and_checks_its_input() -> None:
    assert stats.t_quantile(0.025, 4) == pytest.approx(-2.776445, abs=1e-5)
    assert stats.t_cdf(0.0, 7) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="0 < p < 1"):
        stats.t_quantile(1.0, 4)


def test_interval_of_five_values() -> None:
    s = stats.interval([1.0, 2.0, 3.0, 4.0, 5.0])
    # sd = sqrt(2.5); half = t(0.975, 4) * sd / sqrt(5)
    assert s["n"] == 5
    assert s["mean"] == 3.0
    assert s["sd"] == pytest.approx(1.5811388)
    assert s["half_width"] == pytest.approx(1.963243, abs=1e-5)
    assert s["ci95"] == pytest.approx([1.036757, 4.963243], abs=1e-5)


def test_interval_of_one_or_no_value_has_no_width() -> None:
    assert stats.interval([2.0]) == {
        "n": 1,
        "mean": 2.0,
        "sd": None,
        "ci95": None,
        "half_width": None,
    }
    assert stats.interval([])["mean"] is None


def test_ratio_and_difference_are_paired_by_repetition() -> None:
    # Repetition-wise ratios are all exactly 2: no spread, whatever the runs' own spread.
    r = stats.paired_ratio([2.0, 4.0, 8.0], [1.0, 2.0, 4.0])
    assert (r["mean"], r["half_width"]) == (2.0, 0.0)
    d = stats.paired_difference([0.9, 1.0], [0.8, 0.8])
    assert d["mean"] == pytest.approx(0.15)
    with pytest.raises(ValueError, match="2 against 1"):
        stats.paired_ratio([1.0, 2.0], [1.0])


def test_target_met_on_the_mean_clear_on_the_interval() -> None:
    s = stats.interval([0.8, 1.0, 1.2, 0.9, 1.1])  # mean 1.0, ci about [0.80, 1.20]
    assert stats.target(s, 0.9, at_most=False) == {
        "bound": 0.9,
        "met": True,
        "clear": False,
        "mean_over_bound": pytest.approx(1.0 / 0.9),
    }
    assert stats.target(s, 1.3, at_most=True)["clear"]
    assert not stats.target(s, 0.95, at_most=True)["met"]


GO_OUTPUT = """\
goos: linux
goarch: amd64
pkg: depcon.io/bench/schedulerframework
cpu: AMD EPYC
BenchmarkDecision/depcon-scheduler-2         \t     368\t   3060846 ns/op\t    799026 cpu-ns/op\t\
       300.0 filtered/op\t       300.0 scored/op\t  222026 B/op\t    4075 allocs/op
--- BENCH: BenchmarkDecision/depcon-scheduler-2
    framework.go:502: I1201 the scheduler starts to work with those plugins
PASS
"""


def test_parse_go_bench() -> None:
    (r,) = bench.parse_go_bench(GO_OUTPUT)
    assert (r["name"], r["procs"], r["iterations"]) == (
        "BenchmarkDecision/depcon-scheduler",
        2,
        368,
    )
    assert r["values"] == {
        "ns/op": 3060846.0,
        "cpu-ns/op": 799026.0,
        "filtered/op": 300.0,
        "scored/op": 300.0,
        "B/op": 222026.0,
        "allocs/op": 4075.0,
    }
    assert bench.parse_go_bench("BenchmarkX 10 5 widgets/op\nok\n") == []


def test_pods_per_s_from_bind_stamps() -> None:
    assert bench.pods_per_s([10.0, 10.5, 11.0, 12.0]) == 1.5
    assert bench.pods_per_s([3.0]) is None
    assert bench.pods_per_s([3.0, 3.0]) is None


def test_histogram_mean_and_interpolated_quantiles() -> None:
    text = "\n".join(
        [
            'x_bucket{le="0.001",profile="a"} 50',
            'x_bucket{le="0.01",profile="a"} 100',
            'x_bucket{le="+Inf",profile="a"} 100',
            'x_sum{profile="a"} 0.3',
            'x_count{profile="a"} 100',
            'x_count{profile="b"} 7',
        ]
    )
    h = metrics.histogram(text, "x", {"profile": "a"})
    assert h["count"] == 100
    assert h["mean_s"] == pytest.approx(0.003)
    assert h["p50_s"] == pytest.approx(0.001)
    assert h["p99_s"] == pytest.approx(0.001 + 0.009 * 49 / 50)


def test_outcome_counts_the_pods_of_a_node_short_of_cpu() -> None:
    shape = [
        workload.NodeSpec("full", 1000, 31_500, 0),  # 500 m free before the SLO pods
        workload.NodeSpec("idle", 1000, 0, 0),
    ]
    specs = [
        workload.PodSpec("slo-a", 400, 128, 50),  # leaves 100 m on "full"
        workload.PodSpec("slo-b", 100, 128, 20),  # leaves 0 m; the two need 70 m
        workload.PodSpec("slo-c", 1000, 128, 100),
        workload.PodSpec("slo-d", 100, 128, 10),  # never bound
    ]
    placed = {"slo-a": "full", "slo-b": "full", "slo-c": "idle"}
    out = bench.slo_outcome(shape, specs, placed)
    assert out == {
        "served_share": 0.25,
        "nodes_short_of_cpu": 1,
        "pods_on_short_nodes": 2,
        "min_free_cpu_m_of_used_nodes": 0,
    }
    # Just enough: 100 m left for 2 x 50 Mbps at 1 m/Mbps.
    edge = bench.slo_outcome(
        [workload.NodeSpec("n", 1000, 31_000, 0)],
        [workload.PodSpec("slo-a", 450, 1, 50), workload.PodSpec("slo-b", 450, 1, 50)],
        {"slo-a": "n", "slo-b": "n"},
    )
    assert edge["served_share"] == 1.0


def test_cluster_is_reproducible_and_differs_by_seed() -> None:
    a, pods = workload.cluster(20, 10, 5)
    assert (a, pods) == workload.cluster(20, 10, 5)
    assert a != workload.cluster(20, 10, 6)[0]
    assert all(0 <= n.load_cpu_m < workload.NODE_CPU_M for n in a)
    assert [p.name for p in pods][:2] == ["slo-00000", "slo-00001"]


def test_summary_pairs_repetitions_and_judges_the_targets() -> None:
    def dec(rep: int, profile: str, ms: float) -> dict[str, object]:
        return {
            "rep": rep,
            "profile": profile,
            "procs": 2,
            "ms_per_pod": ms,
            "cpu_ms_per_pod": ms / 2,
            "filtered_nodes": 300.0,
            "scored_nodes": 300.0,
            "allocs_per_op": 4000.0,
            "bytes_per_op": 2e5,
        }

    def flow(rep: int, profile: str, rate: float, served: float) -> dict[str, object]:
        return {
            "rep": rep,
            "profile": profile,
            "nodes": 500,
            "pods": 2000,
            "pods_per_s": rate,
            "attempt_mean_ms": 1.0,
            "attempt_p50_ms": 1.0,
            "attempt_p99_ms": 2.0,
            "algorithm_mean_ms": 0.5,
            "setup_s": 20.0,
            "served_share": served,
            "pods_on_short_nodes": 0,
        }

    decisions, throughput = [], []
    for rep in range(5):
        decisions += [dec(rep, "depcon-scheduler", 0.1), dec(rep, "default-scheduler", 0.1)]
        throughput += [
            flow(rep, "depcon-scheduler", 200.0 + rep, 0.99),
            flow(rep, "default-scheduler", 100.0 + rep / 2, 1.0),
        ]
    s = bench.summarize(decisions, throughput, {"commit": "abc"})
    assert s["decision_in_process"]["reps"] == 5
    assert s["targets"]["decision_depcon_le_0_135_ms"]["clear"]
    assert s["targets"]["decision_ratio_le_1_1"]["met"]
    ratio = s["throughput_control_plane"]["pods_per_s"]["ratio_depcon_over_default"]
    assert ratio["n"] == 5
    assert ratio["mean"] == pytest.approx(sum((200 + r) / (100 + r / 2) for r in range(5)) / 5)
    assert s["targets"]["throughput_ratio_ge_0_9"]["clear"]
    diff = s["outcome"]["served_share"]["difference_depcon_minus_default"]
    assert diff["mean"] == pytest.approx(-0.01)


# --- the Go module ------------------------------------------------------------------


def test_go_testdata_config_is_the_templates_render() -> None:
    # decide_test.go reads this copy when no -depcon.config is given.
    rendered = render(SchedulerSettings.from_versions(mode="second-profile"))
    assert (MODULE / "testdata" / "kube-scheduler-config.yaml").read_text() == rendered


def test_go_mod_follows_versions_yml() -> None:
    pin = load_versions().kubernetes
    gomod = (MODULE / "go.mod").read_text()
    required = dict(re.findall(r"^\s+(k8s\.io/\S+) (v\S+)(?: // indirect)?$", gomod, re.M))
    assert required["k8s.io/kubernetes"] == pin.version
    replaces = re.findall(r"^\s+(k8s\.io/\S+) => (\S+) (\S+)$", gomod, re.M)
    assert replaces, "go.mod has no staging replace directives"
    assert {v for m, target, v in replaces if m == target} == {pin.staging_version}
    assert all(m == target for m, target, _ in replaces)
    # Every staging module the build uses is replaced (not separately versioned k8s.io modules).
    own_versions = {"k8s.io/kubernetes", "k8s.io/klog/v2", "k8s.io/kube-openapi", "k8s.io/utils"}
    assert set(required) - own_versions <= {m for m, _, _ in replaces}


def test_go_sum_holds_the_pinned_kubernetes_checksums() -> None:
    pin = load_versions().kubernetes
    gosum = (MODULE / "go.sum").read_text().splitlines()
    assert f"k8s.io/kubernetes {pin.version} {pin.module_sum}" in gosum
    assert f"k8s.io/kubernetes {pin.version}/go.mod {pin.module_gomod_sum}" in gosum
