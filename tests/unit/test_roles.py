"""The roles' conventions and the kube_proxy role's and Service checks' templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

pytestmark = pytest.mark.unit


def _roles(root: Path) -> list[Path]:
    return sorted(p for p in (root / "roles").iterdir() if (p / "defaults" / "main.yml").is_file())


def test_every_default_is_prefixed_commented_and_typed(root: Path) -> None:
    """STYLE.md: prefixed, one comment each in defaults/main.yml, typed in argument_specs."""
    problems = []
    for role in _roles(root):
        text = (role / "defaults" / "main.yml").read_text()
        defaults: dict[str, Any] = yaml.safe_load(text) or {}
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        options = specs["argument_specs"]["main"]["options"]
        lines = text.splitlines()
        for name in defaults:
            (index,) = [i for i, line in enumerate(lines) if line.startswith(f"{name}:")]
            if not name.startswith(f"{role.name}_"):
                problems.append(f"{role.name}: {name} lacks the role's prefix")
            if index == 0 or not lines[index - 1].startswith("#"):
                problems.append(f"{role.name}: {name} has no comment above it")
            if "type" not in options.get(name, {}):
                problems.append(f"{role.name}: {name} is not typed in meta/argument_specs.yml")
    assert problems == []


def _render(path: Path, variables: dict[str, Any]) -> list[Any]:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    text = env.from_string(path.read_text()).render(**variables)
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def test_kube_proxy_configuration(root: Path) -> None:
    role = root / "roles" / "kube_proxy"
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text())
    variables = {
        **{k: v for k, v in defaults.items() if "{{" not in str(v)},
        "ansible_managed": "Ansible managed",
        "kube_proxy_node_name": "lab-w1",
        "kube_proxy_pod_network": "10.244.0.0/16",
        "kube_proxy_kubeconfig": "/etc/kubernetes/kube-proxy/kubeconfig.conf",
    }
    (config,) = _render(role / "templates" / "kube-proxy-config.yaml.j2", variables)
    assert (config["apiVersion"], config["kind"]) == (
        "kubeproxy.config.k8s.io/v1alpha1",
        "KubeProxyConfiguration",
    )
    assert config["mode"] == "iptables"
    assert config["clusterCIDR"] == "10.244.0.0/16"
    assert config["hostnameOverride"] == "lab-w1"
    assert config["clientConnection"] == {"kubeconfig": variables["kube_proxy_kubeconfig"]}
    # Nothing listens beyond the node itself.
    assert config["healthzBindAddress"].startswith("127.0.0.1:")
    assert config["metricsBindAddress"].startswith("127.0.0.1:")
    # kubeadm deploys no kube-proxy of its own beside this one.
    cp = yaml.safe_load((root / "roles" / "control_plane" / "defaults" / "main.yml").read_text())
    assert "addon/kube-proxy" in cp["control_plane_skip_phases"]


def test_verify_service_probes(root: Path) -> None:
    """One netserver behind a Service with both netperf ports; two client pods per node."""
    templates = root / "playbooks" / "templates"
    variables = {
        "verify_namespace": "depcon-services",
        "verify_image": "depcon.local/netperf:2.7.0-0.1",
        "verify_control_port": 12865,
        "verify_data_port": 12866,
        "verify_dns_domain": "cluster.local",
        "verify_nodes": {
            "lab-cp1": {"node": "lab-cp1", "pod": "lab-cp1"},
            "lab-w1": {"node": "lab-w1", "pod": "lab-w1"},
        },
    }
    pod, service = _render(templates / "verify-service-netserver.yaml.j2", variables)
    assert service["kind"] == "Service"
    assert service["spec"]["selector"] == pod["metadata"]["labels"]
    assert [p["port"] for p in service["spec"]["ports"]] == [12865, 12866]
    clients = _render(templates / "verify-service-clients.yaml.j2", variables)
    names = {c["metadata"]["name"]: c for c in clients}
    assert sorted(names) == ["api-lab-cp1", "api-lab-w1", "service-lab-cp1", "service-lab-w1"]
    for name, client in names.items():
        assert client["spec"]["nodeSelector"] == {"kubernetes.io/hostname": name.split("-", 1)[1]}
    api = names["api-lab-w1"]["spec"]["containers"][0]["command"]
    assert api[api.index("-H") + 1] == "kubernetes.default.svc.cluster.local"
    assert api[api.index("-p") + 1] == "443"
    assert "-d" in api, "the resolved address is read from netperf's debug output"
    run = names["service-lab-w1"]["spec"]["containers"][0]["command"]
    assert run[run.index("-H") + 1] == "netserver.depcon-services.svc.cluster.local"
    assert run[-2:] == ["-P", ",12866"]
