"""The Cluster controller end to end: one fake apiserver as kcp, another as the physical cluster."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from kcp_tmc.policies.keys import sync_target_key, syncer_id
from kcp_tmc.reconcilers.client import KubeClient, NotFound
from kcp_tmc.reconcilers.cluster import ClusterController
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.resources import (
    APIEXPORTS,
    APIRESOURCEIMPORTS,
    APIRESOURCESCHEMAS,
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    CLUSTERS,
    DEPLOYMENTS,
    NAMESPACES,
    SECRETS,
    SERVICEACCOUNTS,
    SYNCTARGETS,
)
from kcp_tmc.reconcilers.synctarget import SyncTargetController
from kcp_tmc.testing import FakeAPIServer
from tests.reconcilers.reconciler_processes import ready_of, store_kubeconfig


def node(name: str, cpu: str, memory: str, ready: str = "True", unschedulable: bool = False) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "100"},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


@pytest.fixture
def physical(tmp_path: Path) -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        for item in (
            node("n1", "2", "4Gi"),
            node("n2", "500m", "1536Mi"),
            node("n3", "8", "8Gi", ready="False"),
            node("n4", "8", "8Gi", unschedulable=True),
        ):
            created = server.create({k: v for k, v in item.items() if k != "status"})
            server.update({**created, "status": item["status"]}, subresource="status")
        yield server


def kubeconfig_secret(kube: KubeClient, physical: FakeAPIServer, tmp_path: Path, name: str = "phys") -> None:
    text = Path(physical.write_kubeconfig(str(tmp_path / f"{name}.kubeconfig"))).read_bytes()
    store_kubeconfig(kube, name, text)


def cluster(name: str, mode: str = "Push", secret: str = "phys", **spec) -> dict:
    body = {"kubeconfigSecretRef": {"namespace": "default", "name": secret}, "syncMode": mode, **spec}
    if mode == "Pull":
        body.setdefault("syncerImage", "ghcr.io/kcp-dev/kcp/syncer:v0.11.0")
    return {"apiVersion": "tmc.kcp.io/v1alpha1", "kind": "Cluster", "metadata": {"name": name}, "spec": body}


@pytest.fixture
def engine(kube: KubeClient) -> Iterator[Engine]:
    clusters = ClusterController(logical_cluster="root", import_period=3600)
    targets = SyncTargetController(logical_cluster="root", shard_urls=["https://vw.example:6443/"])
    yield Engine(kube, [clusters, targets])
    clusters.close()


def converge(engine: Engine, limit: int = 8) -> int:
    """Run cycles until one writes nothing; the number of cycles it took."""
    for count in range(1, limit + 1):
        assert engine.run_cycle()
        if engine.last_cycle_writes == 0:
            return count
    raise AssertionError(f"still writing after {limit} cycles")


def install_export(kube: KubeClient) -> None:
    for obj in kubernetes_export():
        kube.create(APIEXPORTS if obj["kind"] == "APIExport" else APIRESOURCESCHEMAS, obj)


def test_push_registration_ready_capacity_and_imports(kube, physical, tmp_path, engine):
    install_export(kube)
    kubeconfig_secret(kube, physical, tmp_path)
    kube.create(CLUSTERS, cluster("east", unschedulable=True))
    # Cycle 1 creates the SyncTarget, 2 fills its syncedResources, 3 imports, 4 accepts what was
    # imported, 5 mirrors it into the Cluster, 6 writes nothing.
    assert converge(engine) <= 6

    east = kube.get(CLUSTERS, "east")
    assert east["metadata"]["finalizers"] == ["tmc.kcp.io/cluster-cleanup"]
    assert ready_of(east) == {
        "type": "Ready",
        "status": "True",
        "lastTransitionTime": ready_of(east)["lastTransitionTime"],
    }
    assert east["status"]["kubernetesVersion"].startswith("v1.")
    # Only n1 and n2 count (n3 not Ready, n4 cordoned): exact quantity sums.
    assert east["status"]["capacity"] == {"cpu": "2500m", "memory": "5632Mi", "pods": "220"}
    assert east["status"]["allocatable"] == {"cpu": "2500m", "memory": "5632Mi", "pods": "200"}

    st = kube.get(SYNCTARGETS, "east")
    assert st["metadata"]["annotations"]["tmc.kcp.io/cluster"] == "east"
    assert st["spec"]["unschedulable"] is True
    assert st["status"]["capacity"] == east["status"]["capacity"]
    assert st["status"]["lastSyncerHeartbeatTime"] == east["status"]["lastHeartbeatTime"]
    assert ready_of(st)["status"] == "True"

    imports = {imp["metadata"]["name"]: imp for imp in kube.list(APIRESOURCEIMPORTS)[0]}
    # The fake physical cluster serves no networking.k8s.io: ingresses cannot be imported.
    assert sorted(imports) == ["deployments.east.v1.apps", "services.east.v1.core"]
    dep = imports["deployments.east.v1.apps"]
    assert dep["spec"]["location"] == "east"
    assert dep["spec"]["groupVersion"] == {"group": "apps", "version": "v1"}
    assert dep["metadata"]["ownerReferences"][0] == {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "name": "east",
        "uid": st["metadata"]["uid"],
    }
    states = {e["resource"]: e["state"] for e in st["status"]["syncedResources"]}
    assert states == {"ingresses": "Incompatible", "deployments": "Accepted", "services": "Accepted"}
    assert east["status"]["syncedResources"] == st["status"]["syncedResources"]


def test_steady_state_push_cluster_makes_no_writes(kube, physical, tmp_path, engine, api):
    kubeconfig_secret(kube, physical, tmp_path)
    kube.create(CLUSTERS, cluster("east"))
    converge(engine)
    api.counters.reset()
    physical.counters.reset()
    assert engine.run_cycle()
    assert api.counters.writes() == 0
    assert physical.counters.writes() == 0


def test_pull_mode_installs_the_syncer_and_waits_for_it(kube, physical, tmp_path, engine):
    kubeconfig_secret(kube, physical, tmp_path)
    kube.create(CLUSTERS, cluster("west", mode="Pull"))
    converge(engine)
    key = sync_target_key("root", "west")
    namespace = f"kcp-syncer-west-{key[:8].lower()}"
    with KubeClient.from_kubeconfig_file(physical.kubeconfig_path) as phys:
        ns = phys.get(NAMESPACES, namespace)
        assert ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "tmc-reconciler"
        deployment = phys.get(DEPLOYMENTS, "kcp-syncer", namespace=namespace)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "ghcr.io/kcp-dev/kcp/syncer:v0.11.0"
        assert "--sync-target-name=west" in container["args"]
        secret = phys.get(SECRETS, "kcp-syncer-kubeconfig", namespace=namespace)
        config = base64.b64decode(secret["data"]["kubeconfig"]).decode()
        assert "https://vw.example:6443/services/syncer/root/west/" in config
        ready = ready_of(kube.get(CLUSTERS, "west"))
        assert (ready["status"], ready["reason"], ready["severity"], ready["message"]) == (
            "False",
            "ClusterNotReady",
            "Info",
            "Syncer not yet ready",
        )

        # The syncer's identity in kcp, as `kubectl kcp workload sync` creates it.
        st = kube.get(SYNCTARGETS, "west")
        syncer = syncer_id("west", st["metadata"]["uid"])
        assert kube.get(SERVICEACCOUNTS, syncer, namespace="default")["metadata"]["name"] == syncer
        role = kube.get(CLUSTERROLES, syncer)
        assert role["rules"][0] == {
            "apiGroups": ["workload.kcp.io"],
            "resources": ["synctargets"],
            "resourceNames": ["west"],
            "verbs": ["sync", "get", "list", "watch"],
        }
        assert kube.get(CLUSTERROLEBINDINGS, syncer)["subjects"][0]["name"] == syncer
        assert "certificate-authority-data" in config and "token" not in config.split("users:")[1]
        # Once kcp's token controller fills the token Secret, the kubeconfig carries the token.
        token_secret = kube.get(SECRETS, syncer, namespace="default")
        assert token_secret["type"] == "kubernetes.io/service-account-token"
        token_secret["data"] = {"token": base64.b64encode(b"syncer-token").decode()}
        kube.replace(SECRETS, token_secret)
        converge(engine)
        secret = phys.get(SECRETS, "kcp-syncer-kubeconfig", namespace=namespace)
        assert "token: syncer-token" in base64.b64decode(secret["data"]["kubeconfig"]).decode()
        deployment = phys.get(DEPLOYMENTS, "kcp-syncer", namespace=namespace)

        deployment["status"] = {
            "availableReplicas": 1,
            "conditions": [{"type": "Available", "status": "True"}],
        }
        physical.update(deployment, subresource="status")
        assert engine.run_cycle()
        assert ready_of(kube.get(CLUSTERS, "west"))["status"] == "True"

        # Deletion removes the installation, the SyncTarget and the imports, then the finalizer.
        kube.delete(CLUSTERS, "west")
        assert engine.run_cycle()
        with pytest.raises(NotFound):
            kube.get(CLUSTERS, "west")
        with pytest.raises(NotFound):
            kube.get(SYNCTARGETS, "west")
        with pytest.raises(NotFound):
            kube.get(CLUSTERROLES, syncer)
        with pytest.raises(NotFound):
            kube.get(SERVICEACCOUNTS, syncer, namespace="default")
        # The namespace is either still terminating or already gone: the apiserver's namespace
        # controller finishes it asynchronously, so read it once (an exists-then-get check races it).
        try:
            remaining = phys.get(NAMESPACES, namespace)
        except NotFound:
            remaining = None
        assert remaining is None or remaining["metadata"].get("deletionTimestamp")


def test_unreachable_cluster_keeps_the_finalizer_until_force_cleanup(kube, physical, tmp_path, engine):
    kubeconfig_secret(kube, physical, tmp_path)
    kube.create(CLUSTERS, cluster("gone", mode="Pull"))
    assert engine.run_cycle()
    physical.faults.down_for(30)
    kube.delete(CLUSTERS, "gone")
    engine.run_cycle()
    stuck = kube.get(CLUSTERS, "gone")
    assert stuck["metadata"]["finalizers"] == ["tmc.kcp.io/cluster-cleanup"]
    ready = ready_of(stuck)
    assert ready["reason"] == "ClusterUnreachable"
    assert ready["message"].startswith("Cleanup of the physical cluster failed: ")
    assert ready["message"].endswith('set annotation tmc.kcp.io/force-cleanup: "true" to skip it')
    assert engine.backoff.failures  # retried with backoff, not every cycle

    kube.merge_patch(CLUSTERS, "gone", {"metadata": {"annotations": {"tmc.kcp.io/force-cleanup": "true"}}})
    engine.backoff.failures.clear()
    engine.schedule(next(iter(engine._due_at)), None)
    assert engine.run_cycle()
    with pytest.raises(NotFound):
        kube.get(CLUSTERS, "gone")
    with pytest.raises(NotFound):
        kube.get(SYNCTARGETS, "gone")


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "Error invalid kubeconfig: secret default/phys not found"),
        (
            {"other": base64.b64encode(b"x").decode()},
            'Error invalid kubeconfig: secret default/phys has no key "kubeconfig"',
        ),
        (
            {"kubeconfig": base64.b64encode(b"- just a list").decode()},
            "Error invalid kubeconfig: kubeconfig is not a mapping",
        ),
    ],
)
def test_invalid_kubeconfig(kube, engine, secret, message):
    if secret is not None:
        kube.create(
            SECRETS,
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "phys"}, "data": secret},
            namespace="default",
        )
    kube.create(CLUSTERS, cluster("bad"))
    assert engine.run_cycle()
    ready = ready_of(kube.get(CLUSTERS, "bad"))
    assert (ready["status"], ready["reason"], ready["severity"], ready["message"]) == (
        "False",
        "InvalidKubeConfig",
        "Error",
        message,
    )


def test_unreachable_cluster_condition(kube, physical, tmp_path, engine):
    kubeconfig_secret(kube, physical, tmp_path)
    physical.faults.down_for(30)
    kube.create(CLUSTERS, cluster("far"))
    assert engine.run_cycle()
    ready = ready_of(kube.get(CLUSTERS, "far"))
    assert (ready["reason"], ready["severity"]) == ("ClusterNotReady", "Error")
    assert ready["message"].startswith("Error getting /readyz: GET https://127.0.0.1:")
    assert "Connection refused" in ready["message"]

    # Not contacted again until its backoff is due (nor are writes made), unless the Cluster changes.
    clusters = engine.controllers[0]
    remote = clusters._clients["far"][1]
    before = remote.requests
    cluster_writes = engine.metrics.writes.labels("cluster")._value.get()
    assert engine.run_cycle()
    assert remote.requests == before
    assert engine.metrics.writes.labels("cluster")._value.get() == cluster_writes
    retry_at = clusters._unreachable["far"].retry_at
    assert engine.next_due() == retry_at
    kube.merge_patch(CLUSTERS, "far", {"spec": {"unschedulable": True}})
    assert engine.run_cycle()
    assert remote.requests > before
    assert clusters._unreachable["far"].failures == 2


def test_sync_target_of_another_owner_is_not_adopted(kube, physical, tmp_path, engine):
    kubeconfig_secret(kube, physical, tmp_path)
    kube.create(
        SYNCTARGETS,
        {
            "apiVersion": "workload.kcp.io/v1alpha1",
            "kind": "SyncTarget",
            "metadata": {"name": "shared", "annotations": {"tmc.kcp.io/cluster": "first"}},
        },
    )
    kube.create(CLUSTERS, cluster("second", syncTargetName="shared"))
    assert engine.run_cycle()
    ready = ready_of(kube.get(CLUSTERS, "second"))
    assert (ready["reason"], ready["message"]) == (
        "SyncTargetConflict",
        "SyncTarget shared exists and is owned by Cluster first; it is not adopted",
    )
    assert kube.get(SYNCTARGETS, "shared")["metadata"]["annotations"] == {"tmc.kcp.io/cluster": "first"}


def test_client_that_cannot_be_built(kube, physical, tmp_path):
    kubeconfig_secret(kube, physical, tmp_path)
    kube.create(CLUSTERS, cluster("odd"))

    def factory(text: bytes) -> KubeClient:
        raise RuntimeError("exec plugin kubectl-oidc_login not found")

    clusters = ClusterController(client_factory=factory)
    engine = Engine(kube, [clusters])
    assert engine.run_cycle()
    ready = ready_of(kube.get(CLUSTERS, "odd"))
    assert (ready["reason"], ready["severity"], ready["message"]) == (
        "ErrorCreatingClient",
        "Error",
        "Error creating client: exec plugin kubectl-oidc_login not found",
    )


def test_install_refused_by_the_physical_cluster(kube, tmp_path, engine):
    # The physical cluster's credentials may read (readyz, version, nodes) but not create anything.
    rules = [{"user": "reader", "verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]}]
    with FakeAPIServer(tokens={"reader-token": ("reader", [])}, rules=rules) as limited:
        text = Path(
            limited.write_kubeconfig(str(tmp_path / "ro"), token="reader-token", user="reader")
        ).read_bytes()
        store_kubeconfig(kube, "ro", text)
        kube.create(CLUSTERS, cluster("locked", mode="Pull", secret="ro"))
        converge(engine)
        ready = ready_of(kube.get(CLUSTERS, "locked"))
        assert (ready["reason"], ready["severity"]) == ("ErrorInstallingSyncer", "Error")
        assert ready["message"].startswith("Error installing syncer: 403 Forbidden: ")


def test_stale_imports_are_removed_and_evict_after_mirrored(kube, physical, tmp_path, engine):
    install_export(kube)
    kubeconfig_secret(kube, physical, tmp_path)
    stale = {
        "apiVersion": "apiresource.kcp.io/v1alpha1",
        "kind": "APIResourceImport",
        "metadata": {"name": "pods.east.v1.core", "labels": {"tmc.kcp.io/cluster": "east"}},
        "spec": {
            "location": "east",
            "groupVersion": {"version": "v1"},
            "scope": "Namespaced",
            "plural": "pods",
            "kind": "Pod",
            "openAPIV3Schema": {"type": "object"},
        },
    }
    kube.create(APIRESOURCEIMPORTS, stale)
    kube.create(CLUSTERS, cluster("east", evictAfter="2030-01-01T00:00:00Z"))
    converge(engine)
    names = sorted(imp["metadata"]["name"] for imp in kube.list(APIRESOURCEIMPORTS)[0])
    assert names == ["deployments.east.v1.apps", "services.east.v1.core"]
    assert kube.get(SYNCTARGETS, "east")["spec"]["evictAfter"] == "2030-01-01T00:00:00Z"
    kube.merge_patch(CLUSTERS, "east", {"spec": {"evictAfter": None}})
    converge(engine)
    assert "evictAfter" not in kube.get(SYNCTARGETS, "east")["spec"]
