"""Quota end to end: the fake apiserver calling our quota webhook while the controllers count.

Issue 10's whole loop, as a user runs it: SyncTargets with capacity and a Location over them, a
FederatedQuota with a static assignment, kcp's cluster-scoped ResourceQuota; the aggregator and the
quota manager write status; workloads are created, moved, scaled and deleted through the apiserver,
which calls the webhook (the chart's rules, the user-facing ``kcp_tmc.testing.serve_webhook``) with
a lookup that watches the same apiserver.  Checked: what the webhook admits and refuses (exact
messages), the reservations it writes at once, and that the manager's next count agrees with them,
including a release when a workload goes away. Then kcp's cluster-scoped quota vector (§6): one
more ConfigMap and Workspace fit, the next ones are Forbidden.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.reconcilers.aggregator import AggregatorController
from kcp_tmc.reconcilers.client import ApiError, KubeClient, Resource
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.quota import QuotaController
from kcp_tmc.reconcilers.resources import (
    DEPLOYMENTS,
    FEDERATEDQUOTAS,
    LOCATIONS,
    NAMESPACES,
    RESOURCEQUOTAS,
    SYNCTARGETS,
)
from kcp_tmc.reconcilers.workloads import WorkloadUsage
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.webhook import VALIDATING_WEBHOOK, serve_webhook
from tests.reconcilers.reconciler_processes import (
    WORKSPACE_CRD,
    cluster_scoped_quota,
    crds,
    federated_quota,
    placed_deployment,
)

CLUSTER = "root"  # the webhook's default logical cluster, and the controllers'
ROOT = Path(__file__).resolve().parents[1]
CONFIGMAPS = Resource("", "v1", "configmaps", namespaced=True, kind="ConfigMap")
WORKSPACES = Resource("tenancy.kcp.io", "v1alpha1", "workspaces", kind="Workspace")
DENIED = f'admission webhook "{VALIDATING_WEBHOOK}" denied the request: [quota-enforcement] '


def state(target: str) -> str:
    return f"state.workload.kcp.io/{sync_target_key(CLUSTER, target)}"


def chart_quota_rules() -> list[dict[str, Any]]:
    """The quota webhook's rules as the chart installs them."""
    values = yaml.safe_load((ROOT / "charts" / "kcp-tmc" / "values.yaml").read_text(encoding="utf-8"))
    rules: list[dict[str, Any]] = values["quota"]["webhook"]["rules"]
    return rules


def make_target(kube: KubeClient, name: str, cpu: str) -> None:
    kube.create(
        SYNCTARGETS,
        {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": name}},
    )
    resources = {"cpu": cpu, "memory": "8Gi", "pods": "110"}
    kube.merge_patch(
        SYNCTARGETS,
        name,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "capacity": resources,
                "allocatable": resources,
            }
        },
        subresource="status",
    )


def deployment(name: str, target: str, replicas: int = 1, cpu: str = "500m") -> dict[str, Any]:
    return placed_deployment(name, [sync_target_key(CLUSTER, target)], replicas, cpu, memory="128Mi")


def configmap(name: str, namespace: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}


def workspace(name: str) -> dict[str, Any]:
    return {"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace", "metadata": {"name": name}}


def refused(call: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def status_of(
    kube: KubeClient, resource: Resource, name: str, namespace: str | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = kube.get(resource, name, namespace=namespace).get("status") or {}
    return status


@pytest.fixture
def world() -> Iterator[tuple[KubeClient, Engine]]:
    # Each create holds a worker while the webhook is called, and its reservation needs another.
    with FakeAPIServer(workers=16) as api:
        for crd in [*crds(), WORKSPACE_CRD]:
            api.install_crd(crd)
        with KubeClient.from_kubeconfig_file(api.kubeconfig_path, timeout=10.0) as kube:
            make_target(kube, "east", "4")
            make_target(kube, "west", "2")
            kube.create(
                LOCATIONS,
                {
                    "apiVersion": "scheduling.kcp.io/v1alpha1",
                    "kind": "Location",
                    "metadata": {"name": "all"},
                    "spec": {
                        "resource": {
                            "group": "workload.kcp.io",
                            "version": "v1alpha1",
                            "resource": "synctargets",
                        },
                        "instanceSelector": {},
                    },
                },
            )
            for namespace in ("team", "admin"):
                kube.create(
                    NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                )
            quota = federated_quota({"cpu": "2", "count/deployments.apps": "3"}, {"east": {"cpu": "1"}})
            kube.create(FEDERATEDQUOTAS, quota, namespace="team")
            # kcp's e2e vector: kube-root-ca.crt in each namespace counts; one child workspace.
            for namespace in ("default", "admin"):
                kube.create(CONFIGMAPS, configmap("kube-root-ca.crt", namespace), namespace=namespace)
            kube.create(WORKSPACES, workspace("child"))
            hard = {"count/configmaps": "4", "count/workspaces.tenancy.kcp.io": "2"}
            kube.create(RESOURCEQUOTAS, cluster_scoped_quota(hard), namespace="admin")
            workloads = WorkloadUsage(logical_cluster=CLUSTER)
            engine = Engine(
                kube,
                [
                    AggregatorController(logical_cluster=CLUSTER, workloads=workloads),
                    QuotaController(logical_cluster=CLUSTER, workloads=workloads),
                ],
            )
            assert engine.run_cycle()
            with serve_webhook(
                {"kubeconfig": str(api.kubeconfig_path)}, policies=["quota-enforcement"]
            ) as hook:
                hook.register(api, rules=chart_quota_rules(), timeout_seconds=10)
                yield kube, engine


def wait_for_cache(kube: KubeClient) -> None:
    """Until a dry run passes the webhook: its cache has listed the quotas (a dry run reserves nothing)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            kube.request(
                "POST", DEPLOYMENTS.path(namespace="team") + "?dryRun=All", body=deployment("probe", "west")
            )
            return
        except ApiError:
            assert time.monotonic() < deadline, "the webhook never admitted a dry run"
            time.sleep(0.1)


def test_workloads_through_the_webhook_and_the_controllers_agree(world: tuple[KubeClient, Engine]) -> None:
    kube, engine = world
    quota = status_of(kube, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overallUsed"] == {"count/deployments.apps": "0", "cpu": "0"}
    wait_for_cache(kube)
    assert status_of(kube, FEDERATEDQUOTAS, "fq", "team")["overallUsed"]["cpu"] == "0"

    # 2 x 500m on east fills east's static assignment; the reservation is written at once.
    kube.create(DEPLOYMENTS, deployment("web", "east", replicas=2), namespace="team")
    quota = status_of(kube, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overallUsed"] == {"count/deployments.apps": "1", "cpu": "1"}
    assert quota["aggregatedStatus"] == [
        {"syncTarget": "east", "hard": {"cpu": "1"}, "used": {"count/deployments.apps": "1", "cpu": "1"}}
    ]

    # One more replica's worth on east is beyond its assignment, though overall has room.
    error = refused(kube.create, DEPLOYMENTS, deployment("extra", "east"), namespace="team")
    assert (error.status, error.reason) == (403, "QuotaExceeded")
    assert error.message == (
        DENIED
        + "spec.replicas: exceeded quota: fq (static assignment of SyncTarget east), requested: cpu=500m, "
        "used: cpu=1, limited: cpu=1; lower the request or raise "
        "spec.staticAssignments[syncTarget=east].hard of FederatedQuota team/fq"
    )
    # The same on west, which has no assignment, fits overall.
    kube.create(DEPLOYMENTS, deployment("api", "west"), namespace="team")
    assert status_of(kube, FEDERATEDQUOTAS, "fq", "team")["overallUsed"] == {
        "count/deployments.apps": "2",
        "cpu": "1500m",
    }

    # The manager's count agrees with what the webhook reserved; the aggregator sees the placements.
    assert engine.run_cycle()
    quota = status_of(kube, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overallUsed"] == {"count/deployments.apps": "2", "cpu": "1500m"}
    assert quota["aggregatedStatus"] == [
        {"syncTarget": "east", "hard": {"cpu": "1"}, "used": {"count/deployments.apps": "1", "cpu": "1"}},
        {"syncTarget": "west", "used": {"count/deployments.apps": "1", "cpu": "500m"}},
    ]
    assert status_of(kube, SYNCTARGETS, "east")["used"] == {"cpu": "1", "memory": "256Mi", "pods": "2"}
    assert status_of(kube, SYNCTARGETS, "west")["used"] == {"cpu": "500m", "memory": "128Mi", "pods": "1"}
    assert status_of(kube, LOCATIONS, "all")["used"] == {"cpu": "1500m", "memory": "384Mi", "pods": "3"}

    # Moving web to west is an UPDATE through the webhook that costs nothing overall.
    kube.merge_patch(
        DEPLOYMENTS,
        "web",
        {"metadata": {"labels": {state("east"): None, state("west"): "Sync"}}},
        namespace="team",
    )
    assert status_of(kube, FEDERATEDQUOTAS, "fq", "team")["overallUsed"]["cpu"] == "1500m"
    assert engine.run_cycle()
    quota = status_of(kube, FEDERATEDQUOTAS, "fq", "team")
    assert quota["aggregatedStatus"] == [
        {"syncTarget": "east", "hard": {"cpu": "1"}, "used": {"count/deployments.apps": "0", "cpu": "0"}},
        {"syncTarget": "west", "used": {"count/deployments.apps": "2", "cpu": "1500m"}},
    ]
    assert "used" not in status_of(kube, SYNCTARGETS, "east")
    assert status_of(kube, SYNCTARGETS, "west")["used"] == {"cpu": "1500m", "memory": "384Mi", "pods": "3"}

    # Scale writes go through the webhook as Scale reviews: +500m fits, the next +500m does not.
    kube.merge_patch(DEPLOYMENTS, "api", {"spec": {"replicas": 2}}, namespace="team", subresource="scale")
    assert status_of(kube, FEDERATEDQUOTAS, "fq", "team")["overallUsed"]["cpu"] == "2"
    error = refused(
        kube.merge_patch, DEPLOYMENTS, "web", {"spec": {"replicas": 3}}, namespace="team", subresource="scale"
    )
    assert (error.status, error.reason) == (403, "QuotaExceeded")
    assert error.message == (
        DENIED + "spec.replicas: exceeded quota: fq, requested: cpu=500m, used: cpu=2, limited: cpu=2; "
        "lower the request or raise spec.overall of FederatedQuota team/fq"
    )
    assert kube.get(DEPLOYMENTS, "web", namespace="team")["spec"]["replicas"] == 2

    # A delete is not reviewed: the manager's next count releases its use, and the room is usable.
    kube.delete(DEPLOYMENTS, "web", namespace="team")
    assert engine.run_cycle()
    assert status_of(kube, FEDERATEDQUOTAS, "fq", "team")["overallUsed"] == {
        "count/deployments.apps": "1",
        "cpu": "1",
    }
    kube.create(DEPLOYMENTS, deployment("late", "east", replicas=2), namespace="team")
    kube.create(DEPLOYMENTS, deployment("tiny", "west", cpu="0"), namespace="team")
    # The object count binds too: a fourth Deployment is one too many.
    error = refused(kube.create, DEPLOYMENTS, deployment("fourth", "west", cpu="0"), namespace="team")
    assert error.message == (
        DENIED + "metadata.name: exceeded quota: fq, requested: count/deployments.apps=1, "
        "used: count/deployments.apps=3, limited: count/deployments.apps=3; "
        "lower the request or raise spec.overall of FederatedQuota team/fq"
    )
    assert engine.run_cycle()
    assert status_of(kube, FEDERATEDQUOTAS, "fq", "team")["overallUsed"] == {
        "count/deployments.apps": "3",
        "cpu": "2",
    }


def test_kcp_cluster_scoped_resource_quota_vector(world: tuple[KubeClient, Engine]) -> None:
    """§6: counted across namespaces (configmaps) and within the workspace (workspaces); the create
    after the last that fits is Forbidden."""
    kube, engine = world
    assert status_of(kube, RESOURCEQUOTAS, "cluster-scoped", "admin")["used"] == {
        "count/configmaps": "2",
        "count/workspaces.tenancy.kcp.io": "1",
    }
    wait_for_cache(kube)
    kube.create(CONFIGMAPS, configmap("one", "default"), namespace="default")
    kube.create(CONFIGMAPS, configmap("two", "team"), namespace="team")
    error = refused(kube.create, CONFIGMAPS, configmap("three", "default"), namespace="default")
    assert (error.status, error.reason) == (403, "QuotaExceeded")
    assert error.message == (
        DENIED + "metadata.name: exceeded quota: cluster-scoped, requested: count/configmaps=1, "
        "used: count/configmaps=4, limited: count/configmaps=4; "
        "lower the request or raise spec.hard of ResourceQuota admin/cluster-scoped"
    )
    kube.create(WORKSPACES, workspace("second"))
    error = refused(kube.create, WORKSPACES, workspace("third"))
    assert error.message == (
        DENIED
        + "metadata.name: exceeded quota: cluster-scoped, requested: count/workspaces.tenancy.kcp.io=1, "
        "used: count/workspaces.tenancy.kcp.io=2, limited: count/workspaces.tenancy.kcp.io=2; "
        "lower the request or raise spec.hard of ResourceQuota admin/cluster-scoped"
    )
    # An update of a ConfigMap changes no count and is admitted even with the quota full.
    kube.merge_patch(CONFIGMAPS, "one", {"data": {"k": "v"}}, namespace="default")
    reserved = status_of(kube, RESOURCEQUOTAS, "cluster-scoped", "admin")["used"]
    assert reserved == {"count/configmaps": "4", "count/workspaces.tenancy.kcp.io": "2"}
    assert engine.run_cycle()
    assert status_of(kube, RESOURCEQUOTAS, "cluster-scoped", "admin")["used"] == reserved
