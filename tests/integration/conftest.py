"""Integration fixtures: a real control plane on loopback (harness/controlplane.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.controlplane import ControlPlane


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    """etcd + kube-apiserver at the pinned version, shared by one test module.

    ``.kubeconfig`` is an admin kubeconfig, ``.api_client()`` a new
    ``kubernetes.client.ApiClient``; ``.start_scheduler(config_yaml)`` adds a
    kube-scheduler (stop it in the test that started it). Tests share the
    API server, so give objects names of their own (a namespace per test).
    """
    with ControlPlane() as cp:
        yield cp
