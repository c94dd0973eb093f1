"""The locally built Pulumi engine: CLI, Python language host, Kubernetes plugin.

Builds through the real cache (a warm run only reuses it), then runs the
binaries as `pulumi up` will: the CLI from PATH, plugins from PULUMI_HOME.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from buildtools import pulumi_engine
from buildtools.pulumi_engine import Engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> Engine:
    return pulumi_engine.build()


@pytest.fixture(scope="module")
def env(engine: Engine) -> dict[str, str]:
    merged = dict(os.environ)
    merged.update(pulumi_engine.env_vars(engine))
    merged.pop("PULUMI_ACCESS_TOKEN", None)
    return merged


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=120)


def test_cli_is_the_locked_version(env: dict[str, str]) -> None:
    locked = pulumi_engine.sdk_version("pulumi", None)
    out = _run(["pulumi", "version"], env).stdout.strip()
    assert out == f"v{locked}"


def test_cli_on_path_is_the_built_one(engine: Engine, env: dict[str, str]) -> None:
    out = _run(["sh", "-c", "command -v pulumi"], env).stdout.strip()
    assert out == str(engine.cli)


def test_kubernetes_plugin_is_listed_at_locked_version(env: dict[str, str]) -> None:
    locked = pulumi_engine.sdk_version("pulumi-kubernetes", None)
    out = _run(["pulumi", "plugin", "ls", "--json"], env).stdout
    plugins = json.loads(out)
    found = [(p["kind"], p["name"], p["version"]) for p in plugins]
    assert ("resource", "kubernetes", locked) in found, found


def test_kubernetes_plugin_loads_and_serves_its_schema(env: dict[str, str]) -> None:
    # get-schema makes the CLI start the installed plugin and ask it over gRPC
    # for its schema: proof the binary loads, and that the schema embedded at
    # build time (schema-embed.json, generated, not in the module zip) carries
    # the locked version.
    locked = pulumi_engine.sdk_version("pulumi-kubernetes", None)
    out = _run(["pulumi", "package", "get-schema", f"kubernetes@{locked}"], env).stdout
    schema = json.loads(out)
    assert schema["name"] == "kubernetes"
    assert schema["version"] == locked
    assert "kubernetes:core/v1:Pod" in schema["resources"]


def test_language_host_runs(engine: Engine, env: dict[str, str]) -> None:
    locked = pulumi_engine.sdk_version("pulumi", None)
    assert engine.language_host.is_file()
    assert (engine.bin_dir / "pulumi-language-python-exec").is_file()
    out = _run(["pulumi-language-python", "-version"], env).stdout.strip()
    assert out == locked


def test_warm_build_reuses_the_cache(engine: Engine) -> None:
    manifest = engine.root / "manifest.json"
    before = manifest.stat().st_mtime_ns
    again = pulumi_engine.build()
    assert again.root == engine.root
    assert manifest.stat().st_mtime_ns == before
