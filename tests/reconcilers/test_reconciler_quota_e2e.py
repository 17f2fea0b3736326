"""The aggregator and the quota manager end to end on the fake apiserver.

SyncTargets with capacity, workloads placed on them by their state labels, and the status the two
controllers write: SyncTarget use, Location status, FederatedQuota use per target and overall, kcp's
cluster-scoped ResourceQuota counts; updated when a workload moves or is deleted; no writes at rest.
"""

from __future__ import annotations

import pytest

from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.reconcilers.aggregator import AggregatorController
from kcp_tmc.reconcilers.client import Resource
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
from tests.reconcilers.reconciler_processes import (
    WORKSPACE_CRD,
    cluster_scoped_quota,
    federated_quota,
    placed_deployment,
)

WS = "root:org:ws"
PODS = Resource("", "v1", "pods", namespaced=True, kind="Pod")
CONFIGMAPS = Resource("", "v1", "configmaps", namespaced=True, kind="ConfigMap")
WORKSPACES = Resource("tenancy.kcp.io", "v1alpha1", "workspaces", kind="Workspace")


def key(name: str) -> str:
    return sync_target_key(WS, name)


def engine_for(kube) -> Engine:
    workloads = WorkloadUsage(logical_cluster=WS)
    return Engine(
        kube,
        [
            AggregatorController(logical_cluster=WS, workloads=workloads),
            QuotaController(logical_cluster=WS, workloads=workloads),
        ],
    )


def make_target(kube, name, *, ready="True", cpu="4", memory="8Gi", region="us-east1", cluster=None):
    meta = {"name": name, "labels": {"region": region}}
    if cluster:
        meta["annotations"] = {"kcp.io/cluster": cluster}
    kube.create(
        SYNCTARGETS, {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": meta}
    )
    kube.merge_patch(
        SYNCTARGETS,
        name,
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            }
        },
        subresource="status",
    )


def ensure_namespace(kube, name):
    kube.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def deployment(name, targets, replicas=1, cpu="500m", memory="256Mi", namespace="team", cluster=None):
    return placed_deployment(name, [key(t) for t in targets], replicas, cpu, memory, namespace, cluster)


@pytest.fixture
def world(kube):
    return build_world(kube)


def build_world(kube):
    """Two Ready targets east/west and a NotReady one, a Location over all, a FederatedQuota in team."""
    make_target(kube, "east")
    make_target(kube, "west", cpu="2", memory="4Gi", region="us-west1")
    make_target(kube, "down", ready="False", cpu="64")
    # Another logical cluster's target: never an instance of this workspace's Location.
    make_target(kube, "foreign", cpu="1000", cluster="root:other")
    kube.create(
        LOCATIONS,
        {
            "apiVersion": "scheduling.kcp.io/v1alpha1",
            "kind": "Location",
            "metadata": {"name": "all", "labels": {"tier": "gold", "cloud": "x"}},
            "spec": {
                "resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
                "instanceSelector": {},
            },
        },
    )
    ensure_namespace(kube, "team")
    overall = {"cpu": "4", "memory": "4Gi", "count/deployments.apps": "10"}
    kube.create(FEDERATEDQUOTAS, federated_quota(overall, {"east": {"cpu": "2"}}), namespace="team")
    kube.create(DEPLOYMENTS, deployment("web", ["east"], replicas=2), namespace="team")
    kube.create(DEPLOYMENTS, deployment("api", ["west"], cpu="1", memory="1Gi"), namespace="team")
    # Not counted: placed nowhere yet (counts overall, not on a target), another namespace, another cluster.
    kube.create(DEPLOYMENTS, deployment("pending", [], cpu="100m", memory="0"), namespace="team")
    ensure_namespace(kube, "other")
    kube.create(DEPLOYMENTS, deployment("elsewhere", ["east"], cpu="3", namespace="other"), namespace="other")
    return kube


def status_of(kube, resource, name, namespace=None):
    return kube.get(resource, name, namespace=namespace).get("status") or {}


def test_status_of_targets_location_and_quota(world, api):
    engine = engine_for(world)
    assert engine.run_cycle()
    # east: web (2 x 500m) and elsewhere (3 cpu, other namespace: the target counts everything on it)
    assert status_of(world, SYNCTARGETS, "east")["used"] == {"cpu": "4", "memory": "768Mi", "pods": "3"}
    assert status_of(world, SYNCTARGETS, "west")["used"] == {"cpu": "1", "memory": "1Gi", "pods": "1"}
    assert "used" not in status_of(world, SYNCTARGETS, "down")

    location = world.get(LOCATIONS, "all")
    assert location["metadata"]["annotations"]["scheduling.kcp.io/labels"] == "cloud=x tier=gold"
    assert location["status"] == {
        "instances": 3,
        "availableInstances": 2,
        "capacity": {"cpu": "6", "memory": "12Gi", "pods": "220"},
        "allocatable": {"cpu": "6", "memory": "12Gi", "pods": "220"},
        "used": {"cpu": "5", "memory": "1792Mi", "pods": "4"},
    }

    quota = status_of(world, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overall"] == {"cpu": "4", "memory": "4Gi", "count/deployments.apps": "10"}
    # web 1 cpu + api 1 cpu + pending 100m (placed nowhere yet); 3 deployments
    assert quota["overallUsed"] == {"count/deployments.apps": "3", "cpu": "2100m", "memory": "1536Mi"}
    assert quota["aggregatedStatus"] == [
        {
            "syncTarget": "east",
            "hard": {"cpu": "2"},
            "used": {"count/deployments.apps": "1", "cpu": "1", "memory": "512Mi"},
        },
        {"syncTarget": "west", "used": {"count/deployments.apps": "1", "cpu": "1", "memory": "1Gi"}},
    ]
    assert [(c["type"], c["status"]) for c in quota["conditions"]] == [("Exceeded", "False")]

    # At rest: the next cycle writes nothing.
    before = api.counters.writes()
    assert engine.run_cycle()
    assert engine.last_cycle_writes == 0
    assert api.counters.writes() == before


def test_requests_per_cycle_do_not_grow_with_objects(world):
    engine = engine_for(world)
    assert engine.run_cycle()
    world.requests = 0
    assert engine.run_cycle()
    small = world.requests
    for i in range(30):
        world.create(DEPLOYMENTS, deployment(f"more-{i}", ["west"], cpu="1m", memory="1Mi"), namespace="team")
    assert engine.run_cycle()  # writes the new use
    world.requests = 0
    assert engine.run_cycle()
    # SyncTargets, Locations, five workload kinds, FederatedQuotas, ResourceQuotas: one list each.
    assert world.requests == small == 9


def test_moving_and_deleting_a_workload_updates_every_status(world):
    engine = engine_for(world)
    assert engine.run_cycle()
    web = world.get(DEPLOYMENTS, "web", namespace="team")
    # Move web from east to west: the state label changes.
    world.merge_patch(
        DEPLOYMENTS,
        "web",
        {
            "metadata": {
                "labels": {
                    f"state.workload.kcp.io/{key('east')}": None,
                    f"state.workload.kcp.io/{key('west')}": "Sync",
                }
            }
        },
        namespace="team",
    )
    assert (
        web["metadata"]["resourceVersion"]
        != world.get(DEPLOYMENTS, "web", namespace="team")["metadata"]["resourceVersion"]
    )
    assert engine.run_cycle()
    assert status_of(world, SYNCTARGETS, "east")["used"] == {"cpu": "3", "memory": "256Mi", "pods": "1"}
    assert status_of(world, SYNCTARGETS, "west")["used"] == {"cpu": "2", "memory": "1536Mi", "pods": "3"}
    quota = status_of(world, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overallUsed"]["cpu"] == "2100m"  # moving costs nothing overall
    assert quota["aggregatedStatus"][0] == {
        "syncTarget": "east",
        "hard": {"cpu": "2"},
        "used": {"count/deployments.apps": "0", "cpu": "0", "memory": "0"},
    }
    assert quota["aggregatedStatus"][1]["used"] == {
        "count/deployments.apps": "2",
        "cpu": "2",
        "memory": "1536Mi",
    }

    world.delete(DEPLOYMENTS, "api", namespace="team")
    world.delete(DEPLOYMENTS, "elsewhere", namespace="other")
    assert engine.run_cycle()
    assert "used" not in status_of(world, SYNCTARGETS, "east")
    assert status_of(world, SYNCTARGETS, "west")["used"] == {"cpu": "1", "memory": "512Mi", "pods": "2"}
    location = status_of(world, LOCATIONS, "all")
    assert location["used"] == {"cpu": "1", "memory": "512Mi", "pods": "2"}
    quota = status_of(world, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overallUsed"] == {"count/deployments.apps": "2", "cpu": "1100m", "memory": "512Mi"}


def test_lowered_limit_sets_exceeded_and_target_going_unready_leaves_the_location(world):
    engine = engine_for(world)
    assert engine.run_cycle()
    world.merge_patch(FEDERATEDQUOTAS, "fq", {"spec": {"overall": {"cpu": "1"}}}, namespace="team")
    world.merge_patch(
        SYNCTARGETS,
        "west",
        {
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ]
            }
        },
        subresource="status",
    )
    assert engine.run_cycle()
    quota = status_of(world, FEDERATEDQUOTAS, "fq", "team")
    assert quota["overall"]["cpu"] == "1"
    (condition,) = quota["conditions"]
    assert (condition["status"], condition["reason"]) == ("True", "QuotaExceeded")
    assert condition["message"] == "use exceeds the quota: overall: cpu by 1100m (used 2100m, limited 1)"
    location = status_of(world, LOCATIONS, "all")
    assert (location["instances"], location["availableInstances"]) == (3, 1)
    assert location["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110"}


def test_cluster_scoped_federated_quota_counts_every_namespace_of_its_cluster(world):
    ensure_namespace(world, "admin")
    world.create(
        FEDERATEDQUOTAS,
        {
            "apiVersion": "tmc.kcp.io/v1alpha1",
            "kind": "FederatedQuota",
            "metadata": {
                "name": "all",
                "namespace": "admin",
                "annotations": {"experimental.quota.kcp.io/cluster-scoped": "True"},
            },
            "spec": {"overall": {"requests.cpu": "100"}},
        },
        namespace="admin",
    )
    # A workload of another logical cluster in the same namespace name is not counted.
    world.create(
        DEPLOYMENTS, deployment("foreign", ["east"], cpu="50", cluster="root:other"), namespace="team"
    )
    assert engine_for(world).run_cycle()
    quota = status_of(world, FEDERATEDQUOTAS, "all", "admin")
    assert quota["overallUsed"] == {"requests.cpu": "5100m"}  # team 2100m + other 3
    assert status_of(world, FEDERATEDQUOTAS, "fq", "team")["overallUsed"]["cpu"] == "2100m"


def configmap(name, namespace, cluster=None):
    meta = {"name": name, "namespace": namespace}
    if cluster:
        meta["annotations"] = {"kcp.io/cluster": cluster}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"ca.crt": "x"}}


def test_kcp_cluster_scoped_resource_quota_vector(api, kube):
    """kcp's e2e: configmaps counted across namespaces, workspaces within the workspace."""
    api.install_crd(WORKSPACE_CRD)
    # A real apiserver keeps configmaps of its own in kube-system; they count too.
    own = len(kube.list(CONFIGMAPS)[0])
    ensure_namespace(kube, "admin")
    for namespace in ("default", "admin"):
        # kcp publishes kube-root-ca.crt into every namespace; the fake server does not.
        kube.create(CONFIGMAPS, configmap("kube-root-ca.crt", namespace), namespace=namespace)
    kube.create(
        WORKSPACES,
        {"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace", "metadata": {"name": "child"}},
    )
    # Another logical cluster's objects never count.
    kube.create(CONFIGMAPS, configmap("foreign", "default", cluster="root:other"), namespace="default")
    hard = {"count/configmaps": "3", "count/workspaces.tenancy.kcp.io": "2"}
    kube.create(RESOURCEQUOTAS, cluster_scoped_quota(hard), namespace="admin")
    # Not cluster-scoped (annotation false): left to the namespace's own quota controller.
    kube.create(RESOURCEQUOTAS, cluster_scoped_quota(hard, name="plain", flag="no"), namespace="admin")

    engine = engine_for(kube)
    assert engine.run_cycle()
    status = status_of(kube, RESOURCEQUOTAS, "cluster-scoped", "admin")
    assert status == {
        "hard": {"count/configmaps": "3", "count/workspaces.tenancy.kcp.io": "2"},
        "used": {"count/configmaps": str(own + 2), "count/workspaces.tenancy.kcp.io": "1"},
    }
    assert "used" not in status_of(kube, RESOURCEQUOTAS, "plain", "admin")

    kube.create(CONFIGMAPS, configmap("one-more", "default"), namespace="default")
    assert engine.run_cycle()
    assert status_of(kube, RESOURCEQUOTAS, "cluster-scoped", "admin")["used"]["count/configmaps"] == str(
        own + 3
    )
    assert engine.run_cycle()
    assert engine.last_cycle_writes == 0


def test_resource_quota_counting_workloads_and_unknown_kinds(api, kube):
    ensure_namespace(kube, "admin")
    ensure_namespace(kube, "team")
    kube.create(DEPLOYMENTS, deployment("web", ["x"]), namespace="team")
    kube.create(
        PODS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "admin"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
        namespace="admin",
    )
    kube.create(
        RESOURCEQUOTAS,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {
                "name": "q",
                "namespace": "admin",
                "annotations": {"experimental.quota.kcp.io/cluster-scoped": "1"},
            },
            "spec": {
                "hard": {
                    "count/deployments.apps": "5",
                    "count/pods": "5",
                    "count/widgets.example.com": "1",
                    "pods": "3",
                }
            },
        },
        namespace="admin",
    )
    assert engine_for(kube).run_cycle()
    assert status_of(kube, RESOURCEQUOTAS, "q", "admin")["used"] == {
        "count/deployments.apps": "1",
        "count/pods": "1",
        "count/widgets.example.com": "0",
    }
