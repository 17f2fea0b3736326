"""The Cluster registration flow against two real kube-apiservers (one as kcp, one as the physical cluster).

Opt-in: needs ``KUBEBUILDER_ASSETS`` (a folder with ``etcd`` and ``kube-apiserver``); skipped otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.cluster import ClusterController
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.resources import (
    APIEXPORTS,
    APIRESOURCESCHEMAS,
    CLUSTERS,
    NODES,
    SYNCTARGETS,
)
from kcp_tmc.reconcilers.synctarget import SyncTargetController
from tests.reconcilers.reconciler_processes import crds, store_kubeconfig

pytestmark = [
    pytest.mark.realapi,
    pytest.mark.skipif(
        not os.environ.get("KUBEBUILDER_ASSETS"),
        reason="KUBEBUILDER_ASSETS is not set: the real kube-apiserver tests are skipped",
    ),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[object, object]]:
    from kcp_tmc.testing.envtest import RealAPIServer

    with RealAPIServer() as kcp, RealAPIServer() as physical:
        for crd in crds():
            kcp.install_crd(crd)
        yield kcp, physical


def test_registration_on_real_apiservers(servers) -> None:
    kcp, physical = servers
    register_and_converge(kcp, physical)


def register_and_converge(kcp, physical, before_cycles=None) -> list[float]:
    """The registration flow: a physical cluster with one node, its Cluster, cycles until settled.

    Returns the waits the engine asked for between cycles (seconds until its next due retry).
    """
    waits: list[float] = []
    with (
        KubeClient.from_kubeconfig_file(kcp.kubeconfig_path) as kube,  # type: ignore[attr-defined]
        KubeClient.from_kubeconfig_file(physical.kubeconfig_path) as phys,  # type: ignore[attr-defined]
    ):
        for obj in kubernetes_export():
            kube.create(APIEXPORTS if obj["kind"] == "APIExport" else APIRESOURCESCHEMAS, obj)
        created = phys.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
        created["status"] = {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ok"}],
        }
        phys.replace(NODES, created, subresource="status")
        kubeconfig = Path(physical.kubeconfig_path).read_bytes()  # type: ignore[attr-defined]
        store_kubeconfig(kube, "phys", kubeconfig)
        kube.create(
            CLUSTERS,
            {
                "apiVersion": "tmc.kcp.io/v1alpha1",
                "kind": "Cluster",
                "metadata": {"name": "real"},
                "spec": {"kubeconfigSecretRef": {"namespace": "default", "name": "phys"}},
            },
        )
        if before_cycles is not None:
            before_cycles()
        clusters = ClusterController(import_period=3600)
        engine = Engine(kube, [clusters, SyncTargetController(shard_urls=["https://vw.example:6443/"])])
        try:
            # Right after its CRD is established a resource may answer 429 "storage is
            # (re)initializing" with Retry-After: the engine comes back then, so keep cycling
            # until it has settled, not merely until one cycle wrote nothing.
            deadline = time.monotonic() + 30
            while True:
                listed = engine.run_cycle()  # a list can meet the 429 too; the next cycle lists again
                if (listed and engine.settled) or time.monotonic() > deadline:
                    break
                due = engine.next_due()
                if not listed:
                    time.sleep(0.2)
                elif due is not None and not engine.last_cycle_writes:
                    waits.append(due - engine.clock())
                    time.sleep(min(1.0, max(0.0, waits[-1])))
            assert listed and engine.settled
        finally:
            clusters.close()

        cluster = kube.get(CLUSTERS, "real")
        ready = next(c for c in cluster["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True" and "reason" not in ready
        assert cluster["status"]["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110"}
        assert cluster["status"]["allocatable"] == {"cpu": "3800m", "memory": "7Gi", "pods": "110"}
        st = kube.get(SYNCTARGETS, "real")
        assert st["metadata"]["labels"]["internal.workload.kcp.io/key"]
        assert next(c for c in st["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
        states = {e["resource"]: e["state"] for e in st["status"]["syncedResources"]}
        assert states["deployments"] == "Accepted" and states["services"] == "Accepted"
    return waits
