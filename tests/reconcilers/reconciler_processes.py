"""Helpers of the reconciler tests: our CRDs, and ``tmc-reconciler`` run as real processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.cluster import ClusterController
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.resources import (
    APIEXPORTS,
    APIRESOURCESCHEMAS,
    CLUSTERS,
    NODES,
    SECRETS,
    SYNCTARGETS,
)
from kcp_tmc.reconcilers.synctarget import SyncTargetController
from kcp_tmc.testing import FakeAPIServer

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "kcp-tmc" / "crds"

#: kcp's Workspace kind, schemaless: what its cluster-scoped quota counts as
#: ``count/workspaces.tenancy.kcp.io``.
WORKSPACE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "workspaces.tenancy.kcp.io"},
    "spec": {
        "group": "tenancy.kcp.io",
        "names": {
            "kind": "Workspace",
            "listKind": "WorkspaceList",
            "plural": "workspaces",
            "singular": "workspace",
        },
        "scope": "Cluster",
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def cluster_scoped_quota(
    hard: dict[str, str], name: str = "cluster-scoped", flag: str = "true"
) -> dict[str, Any]:
    """kcp's quota on a whole logical cluster: a ResourceQuota in ``admin`` with the annotation ``flag``."""
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": name,
            "namespace": "admin",
            "annotations": {"experimental.quota.kcp.io/cluster-scoped": flag},
        },
        "spec": {"hard": hard},
    }


def federated_quota(
    overall: dict[str, str], assignments: dict[str, dict[str, str]] | None = None, name: str = "fq"
) -> dict[str, Any]:
    """A FederatedQuota in namespace ``team``; ``assignments`` maps SyncTarget names to their ``hard``."""
    spec: dict[str, Any] = {"overall": overall}
    if assignments:
        spec["staticAssignments"] = [{"syncTarget": t, "hard": hard} for t, hard in assignments.items()]
    return {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "FederatedQuota",
        "metadata": {"name": name, "namespace": "team"},
        "spec": spec,
    }


def placed_deployment(
    name: str,
    target_keys: Iterable[str],
    replicas: int = 1,
    cpu: str = "500m",
    memory: str = "256Mi",
    namespace: str = "team",
    cluster: str | None = None,
) -> dict[str, Any]:
    """A Deployment placed (``state.workload.kcp.io/<key>: Sync``) on the SyncTargets of ``target_keys``."""
    labels = {f"state.workload.kcp.io/{k}": "Sync" for k in target_keys}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if cluster:
        meta["annotations"] = {"kcp.io/cluster": cluster}
    container = {"name": "c", "image": "nginx", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions the reconciler needs, from charts/kcp-tmc/crds."""
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(CRD_DIR.glob("*.yaml"))]


def store_kubeconfig(kube: KubeClient, name: str, kubeconfig: bytes) -> None:
    """Create Secret ``default/<name>`` holding ``kubeconfig`` under the key a Cluster reads by default."""
    kube.create(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {"kubeconfig": base64.b64encode(kubeconfig).decode()},
        },
        namespace="default",
    )


def ready_of(obj: dict[str, Any]) -> dict[str, Any]:
    """The Ready condition of an object's status."""
    return next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")


def add_member_cluster(kube: KubeClient, server: Any, folder: Path, name: str) -> None:
    """A member cluster: one Ready Node of 4 CPUs on ``server`` (a fake apiserver), its kubeconfig
    Secret ``default/<name>`` and a Push-mode Cluster ``<name>`` for it in kcp."""
    created = server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})
    status = {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    server.update({**created, "status": status}, subresource="status")
    store_kubeconfig(
        kube, name, Path(server.write_kubeconfig(str(folder / f"{name}.kubeconfig"))).read_bytes()
    )
    kube.create(
        CLUSTERS,
        {
            "apiVersion": "tmc.kcp.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": name},
            "spec": {"kubeconfigSecretRef": {"namespace": "default", "name": name}},
        },
    )


def register_and_converge(
    kcp: Any, physical: Any, before_cycles: Callable[[], None] | None = None
) -> list[float]:
    """The registration flow: a physical cluster with one node, its Cluster, cycles until settled.

    ``kcp`` and ``physical`` are apiservers (fake or real) with a ``kubeconfig_path``.  Returns the
    waits the engine asked for between cycles (seconds until its next due retry).
    """
    waits: list[float] = []
    with (
        KubeClient.from_kubeconfig_file(kcp.kubeconfig_path) as kube,
        KubeClient.from_kubeconfig_file(physical.kubeconfig_path) as phys,
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
        store_kubeconfig(kube, "phys", Path(physical.kubeconfig_path).read_bytes())
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
            engine.close()
            clusters.close()

        cluster = kube.get(CLUSTERS, "real")
        ready = ready_of(cluster)
        assert ready["status"] == "True" and "reason" not in ready
        assert cluster["status"]["capacity"] == {"cpu": "4", "memory": "8Gi", "pods": "110"}
        assert cluster["status"]["allocatable"] == {"cpu": "3800m", "memory": "7Gi", "pods": "110"}
        st = kube.get(SYNCTARGETS, "real")
        assert st["metadata"]["labels"]["internal.workload.kcp.io/key"]
        assert ready_of(st)["status"] == "True"
        states = {e["resource"]: e["state"] for e in st["status"]["syncedResources"]}
        assert states["deployments"] == "Accepted" and states["services"] == "Accepted"
    return waits


FAST_LEASES = [
    "--leader-elect-lease-duration=2s",
    "--leader-elect-renew-deadline=1500ms",
    "--leader-elect-retry-period=250ms",
    "--poll-interval=300ms",
]


class Reconciler:
    """One ``tmc-reconciler`` process; its JSON log lines are kept in a file."""

    def __init__(self, kubeconfig: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcp_tmc.reconcilers.cli",
                "--kubeconfig",
                kubeconfig,
                "--metrics-bind=127.0.0.1:0",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def metrics_port(self, timeout: float = 10.0) -> int:
        def port() -> int | None:
            for line in self.lines():
                if line.get("message") == "started":
                    return int(line["metrics_port"])
            return None

        return wait_for(port, timeout, "the reconciler did not start")

    def stop(self, sig: str = "TERM", timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            if sig == "KILL":
                self.process.kill()
            else:
                self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self._log.close()
        return code


def process_figures(pid: int) -> tuple[float, int, int]:
    """RSS (MiB), threads and open file descriptors of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"]), fds


@contextmanager
def kcp_for_replicas(names: Iterable[str]) -> Iterator[FakeAPIServer]:
    """A fake kcp apiserver with our CRDs and a token ``token-<n>`` for user ``replica-<n>`` per name."""
    tokens = {f"token-{n}": (f"replica-{n}", ["system:authenticated"]) for n in names}
    with FakeAPIServer(tokens=tokens) as api:
        for crd in crds():
            api.install_crd(crd)
        yield api


def start_replica(server: FakeAPIServer, folder: Path, name: str, *args: str) -> Reconciler:
    """``tmc-reconciler --identity <name>`` with the token of ``kcp_for_replicas`` and fast Leases."""
    kubeconfig = server.write_kubeconfig(str(folder / f"{name}.kubeconfig"), token=f"token-{name}", user=name)
    return Reconciler(kubeconfig, folder / f"{name}.log", "--identity", name, *FAST_LEASES, *args)


def wait_for(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)
