"""harness/bench/ansible.py: reading ansible-runner's events and pairing the runs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.bench import ansible as bench

pytestmark = pytest.mark.unit


def _event(kind: str, task: str, seconds: float, changed: bool = False) -> dict[str, Any]:
    return {
        "event": kind,
        "event_data": {
            "task": task,
            "host": "bench",
            "duration": seconds,
            "res": {"changed": changed},
        },
    }


def test_task_results_keep_each_ended_task_and_its_outcome() -> None:
    events = [
        {"event": "playbook_on_start", "event_data": {}},
        {"event": "runner_on_start", "event_data": {"task": "a", "host": "bench"}},
        _event("runner_on_ok", "a", 4.25, changed=True),
        _event("runner_on_failed", "b", 1.5),
        _event("runner_on_skipped", "c", 0.01),
    ]
    assert bench.task_results(events) == [
        {"task": "a", "seconds": 4.25, "changed": True, "failed": False, "msg": ""},
        {"task": "b", "seconds": 1.5, "changed": False, "failed": True, "msg": ""},
        {"task": "c", "seconds": 0.01, "changed": False, "failed": False, "msg": ""},
    ]


def test_summary_pairs_the_runs_of_one_repetition() -> None:
    runs = []
    for rep, (lin, mit) in enumerate([(10.0, 2.0), (12.0, 3.0), (11.0, 2.2)]):
        for strategy, wall in (("linear", lin), ("mitogen_linear", mit)):
            runs.append(
                {
                    "rep": rep,
                    "strategy": strategy,
                    "wall_s": wall,
                    "task_mean_s": wall / 20,
                    "first_task_s": 1.0,
                }
            )
    m = bench.summarize(runs)
    assert m["wall_s"]["linear"]["mean"] == pytest.approx(11.0)
    ratio = m["wall_s"]["ratio_mitogen_over_linear"]
    assert ratio["mean"] == pytest.approx((0.2 + 0.25 + 0.2) / 3)
    assert ratio["ci95"][0] < ratio["mean"] < ratio["ci95"][1]


def test_the_bench_host_connects_with_the_lab_inventorys_ssh_settings(tmp_path: Path) -> None:
    inst = SimpleNamespace(ssh_port=2241, identity_file=tmp_path / "id")
    host = bench.inventory(inst)["all"]["hosts"]["bench"]  # type: ignore[arg-type]
    assert host["ansible_ssh_timeout"] == 60
    assert host["ansible_host_key_checking"] is False
    assert "UserKnownHostsFile=/dev/null" in host["ansible_ssh_common_args"]
    assert host["ansible_port"] == 2241
