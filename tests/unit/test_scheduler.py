"""The DepCon scheduler profile renderer (buildtools/scheduler.py): YAML shape, validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml

from buildtools import scheduler
from buildtools.scheduler import SchedulerConfigError, SchedulerSettings, ShapePoint, render
from depcon.config import load_versions

pytestmark = pytest.mark.unit


def _doc(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(render(SchedulerSettings.from_versions(**overrides)))
    return data


def _profiles(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["schedulerName"]: p for p in doc["profiles"]}


def _assert_depcon(profile: dict[str, Any]) -> None:
    assert profile["percentageOfNodesToScore"] == 100
    plugins = profile["plugins"]
    assert plugins["score"] == {
        "disabled": [{"name": "*"}],
        "enabled": [{"name": "NodeResourcesFit", "weight": 2}],
    }
    assert plugins["preScore"]["enabled"] == [{"name": "NodeResourcesFit"}]
    assert "filter" not in plugins, "the stock filters (NodeResourcesFit among them) stay"
    (fit,) = profile["pluginConfig"]
    assert fit["name"] == "NodeResourcesFit"
    assert fit["args"]["scoringStrategy"] == {
        "type": "RequestedToCapacityRatio",
        "resources": [{"name": "cpu", "weight": 10}, {"name": "memory", "weight": 1}],
        "requestedToCapacityRatio": {
            "shape": [{"utilization": 0, "score": 10}, {"utilization": 100, "score": 1}]
        },
    }


def test_mode_profile_adds_depcon_beside_an_untouched_default() -> None:
    doc = _doc(mode="second-profile")
    assert doc["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert doc["kind"] == "KubeSchedulerConfiguration"
    assert doc["clientConnection"] == {"kubeconfig": "/etc/kubernetes/scheduler.conf"}
    assert doc["leaderElection"] == {
        "leaderElect": True,
        "leaseDuration": "15s",
        "renewDeadline": "10s",
        "retryPeriod": "2s",
    }
    profiles = _profiles(doc)
    assert list(profiles) == ["default-scheduler", "depcon-scheduler"]
    assert profiles["default-scheduler"] == {"schedulerName": "default-scheduler"}
    _assert_depcon(profiles["depcon-scheduler"])


def test_mode_default_makes_depcon_the_default_and_keeps_the_alias() -> None:
    profiles = _profiles(_doc(mode="default-profile"))
    assert list(profiles) == ["default-scheduler", "depcon-scheduler"]
    for profile in profiles.values():
        _assert_depcon(profile)


def test_variables_reach_the_document() -> None:
    doc = _doc(
        kubeconfig="/tmp/x y/scheduler.conf",
        profile_name="slo",
        cpu_weight=7,
        memory_weight=3,
        plugin_weight=5,
        shape=(ShapePoint(0, 10), ShapePoint(50, 8), ShapePoint(100, 1)),
        percentage_of_nodes_to_score=0,
        leader_elect=False,
    )
    assert doc["clientConnection"]["kubeconfig"] == "/tmp/x y/scheduler.conf"
    assert doc["leaderElection"]["leaderElect"] is False
    slo = _profiles(doc)["slo"]
    assert slo["percentageOfNodesToScore"] == 0
    assert slo["plugins"]["score"]["enabled"] == [{"name": "NodeResourcesFit", "weight": 5}]
    strategy = slo["pluginConfig"][0]["args"]["scoringStrategy"]
    assert strategy["resources"] == [{"name": "cpu", "weight": 7}, {"name": "memory", "weight": 3}]
    assert [p["utilization"] for p in strategy["requestedToCapacityRatio"]["shape"]] == [0, 50, 100]


def test_slo_resource_defaults_to_the_pin() -> None:
    settings = SchedulerSettings.from_versions()
    assert settings.slo_resource == load_versions().slo.resource_name
    assert settings.slo_resource in render(settings)


@pytest.mark.parametrize("mode", ["second-profile", "default-profile"])
def test_same_document_with_and_without_trim_blocks(mode: str) -> None:
    # Ansible's template module renders with trim_blocks=True; plain jinja2 defaults to False.
    settings = SchedulerSettings.from_versions(mode=mode)
    trimmed = render(settings, trim_blocks=True)
    assert yaml.safe_load(trimmed) == yaml.safe_load(render(settings, trim_blocks=False))
    assert "\n\n" not in trimmed


def test_template_uses_only_prefixed_variables() -> None:
    source = scheduler.template_path().read_text()
    env = jinja2.Environment()
    names = jinja2.meta.find_undeclared_variables(env.parse(source))
    assert names == set(SchedulerSettings.from_versions().template_vars())
    assert all(n.startswith(scheduler.PREFIX) for n in names)


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        ({"slo_resource": "SLO"}, "depcon_scheduler_slo_resource", "domain prefix"),
        ({"slo_resource": "kubernetes.io/slo"}, "depcon_scheduler_slo_resource", "reserved"),
        ({"slo_resource": "Example.com/SLO"}, "depcon_scheduler_slo_resource", "DNS subdomain"),
        ({"mode": "both"}, "depcon_scheduler_mode", "not a mode"),
        ({"profile_name": "default-scheduler"}, "depcon_scheduler_profile_name", "differ"),
        ({"profile_name": "DepCon"}, "depcon_scheduler_profile_name", "DNS subdomain"),
        ({"kubeconfig": "scheduler.conf"}, "depcon_scheduler_kubeconfig", "absolute"),
        ({"cpu_weight": 0}, "depcon_scheduler_cpu_weight", "1-100"),
        ({"memory_weight": 101}, "depcon_scheduler_memory_weight", "1-100"),
        ({"plugin_weight": -2}, "depcon_scheduler_plugin_weight", "1-100"),
        ({"plugin_weight": True}, "depcon_scheduler_plugin_weight", "1-100"),
        ({"leader_election": ("15s", "10s")}, "depcon_scheduler_leader_election", "retry period"),
        ({"leader_election": ("1m", "40s", "10s")}, "depcon_scheduler_leader_election", "e.g. 15s"),
        ({"leader_election": ("10s", "40s", "2s")}, "depcon_scheduler_leader_election", "lease"),
        (
            {"percentage_of_nodes_to_score": 101},
            "depcon_scheduler_percentage_of_nodes_to_score",
            "0",
        ),
        ({"shape": (ShapePoint(0, 10),)}, "depcon_scheduler_shape", "two points"),
        (
            {"shape": (ShapePoint(0, 11), ShapePoint(100, 1))},
            "depcon_scheduler_shape[0].score",
            "1-10",
        ),
        (
            # A 0 would drop cpu out of the mean on a node the pod fills.
            {"shape": (ShapePoint(0, 10), ShapePoint(100, 0))},
            "depcon_scheduler_shape[1].score",
            "other resources alone",
        ),
        (
            {"shape": (ShapePoint(0, 10), ShapePoint(101, 1))},
            "depcon_scheduler_shape[1].utilization",
            "0-100",
        ),
        (
            {"shape": (ShapePoint(-1, 10), ShapePoint(100, 1))},
            "depcon_scheduler_shape[0].utilization",
            "0-100",
        ),
        (
            {"shape": (ShapePoint(50, 10), ShapePoint(50, 1))},
            "depcon_scheduler_shape[1].utilization",
            "greater",
        ),
        ({"leader_elect": "yes"}, "depcon_scheduler_leader_elect", "true or false"),
    ],
)
def test_bad_settings_name_the_variable(overrides: dict[str, Any], key: str, fragment: str) -> None:
    settings = dataclasses.replace(SchedulerSettings.from_versions(), **overrides)
    with pytest.raises(SchedulerConfigError) as err:
        render(settings)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert fragment in str(err.value)


def test_cli_renders_each_mode(capsys: pytest.CaptureFixture[str]) -> None:
    for mode in ("second-profile", "default-profile"):
        assert scheduler.main(["render", "--mode", mode]) == 0
        doc = yaml.safe_load(capsys.readouterr().out)
        assert f"mode {mode}" in render(SchedulerSettings.from_versions(mode=mode))
        assert "depcon-scheduler" in _profiles(doc)


def test_cli_reports_a_bad_resource_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert scheduler.main(["render", "--slo-resource", "SLO"]) == 2
    err = capsys.readouterr().err
    assert "depcon_scheduler_slo_resource" in err
    assert "domain prefix" in err
