"""Fixtures of the reconciler tests: a fake apiserver with our CRDs, and a client for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.testing import FakeAPIServer
from tests.reconcilers.reconciler_processes import crds


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        for crd in crds():
            server.install_crd(crd)
        yield server


@pytest.fixture
def kube(api: FakeAPIServer) -> Iterator[KubeClient]:
    with KubeClient.from_kubeconfig_file(api.kubeconfig_path, timeout=5.0) as client:
        yield client


# --- the syncer virtual workspace ------------------------------------------------------------------

from tests.reconcilers.vw_env import VWEnv  # noqa: E402 - the VW fixtures sit apart from the ones above


@pytest.fixture
def vw_env(tmp_path) -> Iterator[VWEnv]:
    with VWEnv.running(tmp_path) as env:
        yield env
