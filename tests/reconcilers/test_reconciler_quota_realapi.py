"""The aggregator and the quota manager against a real kube-apiserver: our CRDs keep the status fields
they write, and the values are the ones the fake server gives.

Opt-in: needs ``KUBEBUILDER_ASSETS`` (a folder with ``etcd`` and ``kube-apiserver``); skipped otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from kcp_tmc.reconcilers.client import ApiError, KubeClient
from kcp_tmc.reconcilers.workloads import WORKLOAD_RESOURCES
from tests.reconcilers import test_reconciler_quota_e2e as e2e
from tests.reconcilers.reconciler_processes import crds

pytestmark = [
    pytest.mark.realapi,
    pytest.mark.skipif(
        not os.environ.get("KUBEBUILDER_ASSETS"),
        reason="KUBEBUILDER_ASSETS is not set: the real kube-apiserver tests are skipped",
    ),
]


@pytest.fixture
def real() -> Iterator[object]:
    from kcp_tmc.testing.envtest import RealAPIServer

    with RealAPIServer() as server:
        for crd in crds():
            server.install_crd(crd)
        yield server


@pytest.fixture
def real_kube(real) -> Iterator[KubeClient]:
    with KubeClient.from_kubeconfig_file(real.kubeconfig_path, timeout=30.0) as client:  # type: ignore[attr-defined]
        wait_for_storage(client)
        yield client


def wait_for_storage(client: KubeClient) -> None:
    """A fresh apiserver answers 429 "storage is (re)initializing" for a while; wait it out (30 s at most)."""
    deadline = time.monotonic() + 30
    for resource in (
        *WORKLOAD_RESOURCES,
        e2e.SYNCTARGETS,
        e2e.LOCATIONS,
        e2e.FEDERATEDQUOTAS,
        e2e.RESOURCEQUOTAS,
    ):
        while True:
            try:
                client.list(resource)
                break
            except ApiError as exc:
                if exc.status != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture
def real_world(real_kube):
    return e2e.build_world(real_kube)


def test_status_of_targets_location_and_quota_on_a_real_apiserver(real_world):
    engine = e2e.engine_for(real_world)
    assert engine.run_cycle()
    assert e2e.status_of(real_world, e2e.SYNCTARGETS, "east")["used"] == {
        "cpu": "4",
        "memory": "768Mi",
        "pods": "3",
    }
    location = e2e.status_of(real_world, e2e.LOCATIONS, "all")
    assert location["used"] == {"cpu": "5", "memory": "1792Mi", "pods": "4"}
    assert location["capacity"] == {"cpu": "6", "memory": "12Gi", "pods": "220"}
    quota = e2e.status_of(real_world, e2e.FEDERATEDQUOTAS, "fq", "team")
    assert quota["overallUsed"] == {"count/deployments.apps": "3", "cpu": "2100m", "memory": "1536Mi"}
    assert quota["aggregatedStatus"][0]["hard"] == {"cpu": "2"}
    assert engine.run_cycle()
    assert engine.last_cycle_writes == 0


def test_kcp_cluster_scoped_resource_quota_vector_on_a_real_apiserver(real, real_kube):
    e2e.test_kcp_cluster_scoped_resource_quota_vector(real, real_kube)
