"""depcon/proof.py: the SLO proof's verdict over synthetic runs of netperf and the tracer."""

from __future__ import annotations

import io
import json
import math

import pytest

from depcon import proof

pytestmark = pytest.mark.unit

T0 = 1_764_633_600.0


def netperf_log(rates: list[tuple[float, float]], start: float, step: float = 0.5) -> str:
    """netperf -D output: (seconds after start, Mbps) held until the next point."""
    lines = ["MIGRATED TCP STREAM TEST from 0.0.0.0 () port 0 AF_INET to 10.244.0.9 () port 0"]
    t = start
    end = start + rates[-1][0]
    while t < end:
        t += step
        mbps = [m for at, m in rates if at <= t - start][-1]
        sec, ms = int(t), round((t - int(t)) * 1000)
        lines.append(
            f"Interim result: {mbps:7.2f} 10^6bits/s over {step:.3f} seconds "
            f"ending at {sec}.{ms:03d}"
        )
    lines.append(" 87380  16384  16384    40.00      40.00")
    return "\n".join(lines) + "\n"


RATES = [(0, 90.0), (2, 40.6), (31, 20.3), (46, 40.5), (70, 40.5)]


def trace(rates: list[tuple[float, float]] | None = None, **over: object) -> dict[str, object]:
    """The tracer's output for a slot whose goal is 40 Mbps, 20 from t=30 to 47.

    The pod moves ``rates`` ((seconds, Mbps) held until the next point): its byte count.
    """
    rates = rates or RATES
    samples, sent = [], 0.0
    for i in range(700):
        t = i / 10
        goal = 20 if 30 <= t < 47 else 40
        quota = 4000 if goal == 20 else 8000
        samples.append([t, goal, float(goal), str(quota), f"{quota} 100000", round(sent)])
        sent += [m for at, m in rates if at <= t][-1] * 1e6 / 8 * 0.1
    out: dict[str, object] = {
        "container": {
            "id": "abc",
            "pid": 4242,
            "cgroup": "/kubepods.slice/cri-containerd-abc.scope",
        },
        "slot": "vif3",
        "slot_cgroup": "/kubepods.slice/cri-containerd-abc.scope",
        "goal_mbps": 40,
        "half_mbps": 20,
        "registered_after_s": 0.4,
        "t0": T0,
        "container_view": {"rc": 0, "entries": [], "masked": True},
        "cpu_max_before": "max 100000",
        "events": {
            "reassertions": 1,
            "halved_at": 30.0,
            "restored_at": 47.0,
            "reloaded_at": 55.0,
            "reregistered_at": 61.5,
        },
        "columns": ["t", "goal_mbps", "bw_mbps", "quota_us", "cpu_max", "bytes"],
        "samples": samples,
    }
    out.update(over)
    return out


def run(slo_rates: list[tuple[float, float]] | None = None, **over: object) -> dict[str, object]:
    out: dict[str, object] = {
        "node": "lab-w1",
        "peer": "lab-cp1",
        "placed_on": "lab-w1",
        "baseline_log": netperf_log([(0, 100.0), (25, 100.0)], T0 - 60),
        # netperf's own view, kept for reference: the verdict counts the pod's bytes.
        "slo_log": netperf_log([(0, 39.0), (30, 19.5), (70, 39.0)], T0),
        "trace": trace(slo_rates),
        "restore_at": 45,
    }
    out.update(over)
    return out


def test_reads_netperfs_interim_results() -> None:
    got = proof.interims(
        "Interim result:   59.20 10^6bits/s over 0.501 seconds ending at 1764633600.123\n"
        "Interim result:    0.00 10^6bits/s over 0.000 seconds ending at 1764633600.200\n"
    )
    assert got == [(1764633600.123, 0.501, 59.2)]


@pytest.mark.parametrize(
    ("cap", "goal"),
    [(0, 50), (1000, 50), (30, 30)],
)
def test_the_goal_is_at_most_half_the_natural_throughput_and_the_cap(cap: int, goal: int) -> None:
    log = netperf_log([(0, 300.0), (10, 100.0), (25, 100.0)], T0)
    got = proof.choose_goal(log, cap, settle_s=10)
    assert got["goal_mbps"] == goal
    assert got["natural_mbps"] == pytest.approx(100.0)


def test_no_goal_without_throughput() -> None:
    with pytest.raises(ValueError, match="no interim"):
        proof.choose_goal("netperf: send_data: data send error\n", 0, settle_s=10)
    with pytest.raises(ValueError, match="leaves no goal"):
        proof.choose_goal(netperf_log([(0, 2.0), (25, 2.0)], T0), 0, settle_s=10)


def test_a_held_goal_passes_with_its_numbers() -> None:
    got = proof.judge(run(), proof.Limits())
    assert got["failures"] == []
    assert got["passed"] is True
    assert got["steady_mean_mbps"] == pytest.approx(40.6, rel=1e-3)
    assert got["netperf_steady_mbps"] == pytest.approx(39.0, abs=1)
    assert got["follow_s"] is not None and got["follow_s"] <= 2
    assert got["held_half_mbps"] == pytest.approx(20.3, rel=1e-3)
    assert got["quota_full_us"] == 8000
    assert got["quota_half_us"] == 4000
    assert got["reregistered_after_reload_s"] == pytest.approx(6.5)
    json.dumps(got)  # the report is JSON


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slo_rates": [(0, 45.0), (31, 20.3), (70, 20.3)]}, "steady mean 45.0"),
        ({"slo_rates": [(0, 40.5), (35, 20.3), (70, 40.5)]}, "followed the halved goal after"),
        ({"slo_rates": [(0, 40.5), (31, 17.0), (46, 40.5), (70, 40.5)]}, "held 17.0 Mbps"),
        ({"placed_on": "lab-cp1"}, "placed the client on 'lab-cp1'"),
        ({"baseline_log": netperf_log([(0, 60.0), (25, 60.0)], T0 - 60)}, "more than half"),
        ({"trace": trace(slot_cgroup="/kubepods.slice/other.scope")}, "holds cgroup"),
        (
            {"trace": trace(container_view={"rc": 0, "entries": ["status"], "masked": False})},
            "sees /proc/oslab",
        ),
        ({"trace": trace(events={"halved_at": 30.0, "reloaded_at": 55.0})}, "registered again inf"),
        (
            {"trace": trace(events={"halved_at": 30.0, "reload_error": "modprobe -r vif: exit 1"})},
            "vif could not be reloaded: modprobe -r vif",
        ),
        ({"trace": {"error": "no cgroup with a process"}}, "trace: no cgroup"),
        ({"trace": {}}, "the tracer printed nothing"),
    ],
)
def test_each_failure_is_named(change: dict[str, object], message: str) -> None:
    rates = change.pop("slo_rates", None)
    got = proof.judge(run(rates, **change), proof.Limits())  # type: ignore[arg-type]
    assert got["passed"] is False
    assert any(message in f for f in got["failures"]), got["failures"]


def test_the_trace_may_come_as_the_tracers_json_text() -> None:
    assert proof.judge(run(trace=json.dumps(trace())), proof.Limits())["passed"] is True
    got = proof.judge(run(trace="Traceback (most recent call last): ..."), proof.Limits())
    assert any("printed no JSON" in f for f in got["failures"])
    got = proof.judge(run(trace=""), proof.Limits())
    assert any("printed nothing" in f for f in got["failures"])


def test_a_quota_that_never_moved_fails() -> None:
    t = trace()
    samples = t["samples"]
    assert isinstance(samples, list)
    for s in samples:
        s[3], s[4] = "max", "max 100000"
    got = proof.judge(run(trace=t), proof.Limits())
    assert any("never left the pod's own value" in f for f in got["failures"])


def test_the_report_and_its_figure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = proof.judge(run(), proof.Limits())
    bad = proof.judge(run(trace={"error": "x"}), proof.Limits())
    proof.write_report([good, bad], tmp_path / "verify-lab-proof")
    report = json.loads((tmp_path / "verify-lab-proof.json").read_text())
    assert report["verdict"] == "failed"
    assert [n["node"] for n in report["nodes"]] == ["lab-w1", "lab-w1"]
    assert (tmp_path / "verify-lab-proof.png").stat().st_size > 10_000
    assert not math.isnan(report["nodes"][0]["natural_mbps"])


def test_the_verdict_is_strict_json_when_numbers_are_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The client stops before the halving: no steady mean, no follow time, no held half.
    early = trace()
    early["samples"] = early["samples"][:50]  # type: ignore[index]
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(run(trace=early))))
    assert proof.main(["judge"]) == 0

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the verdict: Ansible would hand it on as a string")

    verdict = json.loads(capsys.readouterr().out, parse_constant=refuse)
    assert verdict["passed"] is False
    assert verdict["follow_s"] is None
    assert verdict["steady_mean_mbps"] is None
