"""The Cluster controller: a physical cluster registered by its kubeconfig Secret (``tmc.kcp.io/v1alpha1``).

Per Cluster and cycle:

1. the finalizer ``tmc.kcp.io/cluster-cleanup``;
2. its SyncTarget ``spec.syncTargetName``: created with annotation ``tmc.kcp.io/cluster: <name>``, never
   adopted from another owner (``SyncTargetConflict``), ``unschedulable``/``evictAfter`` mirrored;
3. a client from the Secret (``InvalidKubeConfig`` / ``ErrorCreatingClient``), ``GET /readyz`` with a 5 s
   timeout (``ClusterNotReady`` / ``ClusterUnreachable``, ``Error getting /readyz: <err>``) and
   ``/version`` for ``status.kubernetesVersion``;
4. capacity and allocatable of Ready, schedulable Nodes into the Cluster's and the SyncTarget's status;
5. every import period, the APIResourceImports of the synced resources (stale ones removed);
6. Push mode: the SyncTarget heartbeat while healthy; Pull mode: the syncer installation
   (``ErrorInstallingSyncer``), healthy once its Deployment is available.

Member clusters are contacted in parallel: the engine runs up to ``workers`` reconciles at once (see
the engine's pooled controllers), and all remote calls of one reconcile share a ``deadline``, so a
cluster that accepts connections and never answers holds one worker for at most that long and leaves
the others alone.  No lock is held while a request is on the wire.

On deletion it removes the syncer installation (Pull mode), the imports and its SyncTarget, then the
finalizer; an unreachable cluster keeps the finalizer (``ClusterUnreachable`` saying why, retried with
backoff) unless the annotation ``tmc.kcp.io/force-cleanup: "true"`` asks to skip the remote part.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.conditions import ERROR, FALSE, INFO, READY, TRUE, Condition, set_condition
from kcp_tmc.policies.keys import (
    ANNOTATION_FORCE_CLEANUP,
    ANNOTATION_OWNING_CLUSTER,
    FINALIZER_CLUSTER_CLEANUP,
    sync_target_key,
)
from kcp_tmc.policies.quantities import QuantityError
from kcp_tmc.policies.timefmt import format_rfc3339, parse_rfc3339
from kcp_tmc.reconcilers.capacity import sum_node_resources
from kcp_tmc.reconcilers.client import (
    ApiError,
    Conflict,
    InvalidKubeconfig,
    KubeClient,
    NotFound,
    Resource,
    Unreachable,
)
from kcp_tmc.reconcilers.engine import Context, ObjectRef, Outcome, RetryLater, not_found_is_none
from kcp_tmc.reconcilers.imports import LABEL_IMPORT_CLUSTER, desired_imports, discover, wanted_group_versions
from kcp_tmc.reconcilers.leases import partition_of
from kcp_tmc.reconcilers.resources import (
    APIRESOURCEIMPORTS,
    CLUSTERROLEBINDINGS,
    CLUSTERROLES,
    CLUSTERS,
    DEPLOYMENTS,
    NAMESPACES,
    NODES,
    SECRETS,
    SERVICEACCOUNTS,
    SYNCTARGETS,
)
from kcp_tmc.reconcilers.syncer_install import (
    ANNOTATION_INSTALL_HASH,
    KCP_IDENTITY_NAMESPACE,
    SYNCER_NAME,
    deployment_available,
    desired_install,
    kcp_identity,
    syncer_namespace,
)

__all__ = [
    "REASON_CLUSTER_NOT_READY",
    "REASON_CLUSTER_READY",
    "REASON_CLUSTER_UNREACHABLE",
    "REASON_ERROR_CREATING_CLIENT",
    "REASON_ERROR_INSTALLING_SYNCER",
    "REASON_INVALID_KUBECONFIG",
    "REASON_SYNC_TARGET_CONFLICT",
    "ClusterController",
]

log = logging.getLogger(__name__)
Obj = dict[str, Any]

REASON_CLUSTER_READY = "ClusterReady"
REASON_CLUSTER_NOT_READY = "ClusterNotReady"
REASON_CLUSTER_UNREACHABLE = "ClusterUnreachable"
REASON_INVALID_KUBECONFIG = "InvalidKubeConfig"
REASON_ERROR_CREATING_CLIENT = "ErrorCreatingClient"
REASON_ERROR_INSTALLING_SYNCER = "ErrorInstallingSyncer"
REASON_ERROR_STARTING_API_IMPORTER = "ErrorStartingAPIImporter"
REASON_SYNC_TARGET_CONFLICT = "SyncTargetConflict"

MESSAGE_SYNCER_NOT_READY = "Syncer not yet ready"
READYZ_TIMEOUT = 5.0
#: Default number of member clusters reconciled at once, and the time all remote calls of one
#: reconcile of one cluster may take together (seconds).
WORKERS = 8
DEADLINE = 20.0

_RESOURCES: dict[str, Resource] = {
    "namespaces": NAMESPACES,
    "serviceaccounts": SERVICEACCOUNTS,
    "clusterroles": CLUSTERROLES,
    "clusterrolebindings": CLUSTERROLEBINDINGS,
    "secrets": SECRETS,
    "deployments": DEPLOYMENTS,
}


#: A cluster found unreachable is not contacted again for this long, doubling up to the cap, unless the
#: Cluster object changes: connection timeouts must not stall the cycle of every other object.
UNREACHABLE_BACKOFF = 5.0
UNREACHABLE_BACKOFF_CAP = 300.0


@dataclass
class _Unreachable:
    failures: int
    retry_at: float
    resource_version: str


class _Failure(Exception):
    def __init__(self, reason: str, message: str, severity: str = ERROR) -> None:
        super().__init__(message)
        self.reason, self.message, self.severity = reason, message, severity
        self.unanswered = reason == REASON_CLUSTER_UNREACHABLE


def _ready(reason: str, message: str = "", severity: str = ERROR, status: str = FALSE) -> Condition:
    # As kcp's conditions: a True condition carries no reason, severity or message.
    if status == TRUE:
        return {"type": READY, "status": TRUE}
    condition: Condition = {"type": READY, "status": status, "reason": reason}
    if status == FALSE:
        condition["severity"] = severity
    if message:
        condition["message"] = message
    return condition


class ClusterController:
    """Registers physical clusters; see the module docstring."""

    name = "cluster"

    def __init__(
        self,
        *,
        logical_cluster: str = "root",
        partitions: int = 1,
        import_period: float = 60.0,
        heartbeat_interval: float = 20.0,
        client_factory: Callable[[bytes], KubeClient] | None = None,
        workers: int = WORKERS,
        deadline: float = DEADLINE,
        readyz_timeout: float = READYZ_TIMEOUT,
    ) -> None:
        if workers < 1:
            raise ValueError(f"--cluster-workers must be >= 1 ({workers})")
        if deadline <= 0:
            raise ValueError(f"--cluster-deadline must be >0 ({deadline})")
        self.workers = workers
        self.deadline = deadline
        self.readyz_timeout = readyz_timeout
        self.logical_cluster = logical_cluster
        self.partitions = partitions
        self.import_period = import_period
        self.heartbeat_interval = heartbeat_interval
        self.client_factory = client_factory or (
            lambda text: KubeClient.from_kubeconfig_text(text, timeout=10.0)
        )
        self._clients: dict[str, tuple[tuple[str, str], KubeClient]] = {}
        self._imports_at: dict[str, float] = {}
        self._imported: dict[str, dict[tuple[str, str], set[str]]] = {}
        self._unreachable: dict[str, _Unreachable] = {}

    def close(self) -> None:
        """Close the clients of the physical clusters."""
        clients, self._clients = list(self._clients.values()), {}
        for _, client in clients:
            client.close()

    # --- engine protocol ------------------------------------------------------------------------------

    def _target_name(self, cluster: Mapping[str, Any]) -> str:
        return str((cluster.get("spec") or {}).get("syncTargetName") or cluster["metadata"]["name"])

    def refs(self, ctx: Context) -> list[tuple[ObjectRef, Obj, int]]:
        out = []
        for cluster in ctx.snapshot.list(CLUSTERS):
            key = sync_target_key(cluster_of(cluster, self.logical_cluster), self._target_name(cluster))
            out.append(
                (
                    ObjectRef(self.name, cluster["metadata"]["name"]),
                    cluster,
                    partition_of(key, self.partitions),
                )
            )
        return out

    def fetch(self, ctx: Context, ref: ObjectRef) -> Obj | None:
        return not_found_is_none(lambda: ctx.client.get(CLUSTERS, ref.name))

    def reconcile(self, ctx: Context, obj: Obj, partition: int) -> Outcome:
        if obj["metadata"].get("deletionTimestamp"):
            self._delete(ctx, obj, partition)
            return Outcome()
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if FINALIZER_CLUSTER_CLEANUP not in finalizers:
            obj = ctx.apply(
                CLUSTERS,
                obj,
                lambda cur: {
                    "metadata": {
                        "finalizers": [*(cur["metadata"].get("finalizers") or []), FINALIZER_CLUSTER_CLEANUP]
                    }
                },
                partition,
            )
        blocked = self._unreachable.get(obj["metadata"]["name"])
        if (
            blocked is not None
            and blocked.resource_version == obj["metadata"].get("resourceVersion")
            and ctx.now.timestamp() < blocked.retry_at
        ):
            # Unreachable last time and unchanged since: do not spend the cycle on connection timeouts.
            return Outcome(due_at=blocked.retry_at)
        return self._reconcile(ctx, obj, partition)

    # --- reconcile ------------------------------------------------------------------------------------

    def _reconcile(self, ctx: Context, cluster: Obj, partition: int) -> Outcome:
        name = cluster["metadata"]["name"]
        spec = cluster.get("spec") or {}
        status: Obj = {}
        due: list[float] = []
        target: Obj | None = None
        try:
            target = self._ensure_sync_target(ctx, cluster, partition)
            remote = self._remote(ctx, cluster)
            with remote.deadline(self.deadline):
                self._check_health(remote, status)
                capacity, allocatable = self._capacity(remote)
                status["capacity"], status["allocatable"] = capacity, allocatable
                target = self._write_target_status(ctx, target, partition, capacity, allocatable)
                due.append(self._imports(ctx, cluster, target, remote, partition))
                if (spec.get("syncMode") or "Push") == "Pull":
                    self._install(ctx, cluster, target, remote, partition)
                else:
                    target, next_beat = self._heartbeat(ctx, target, partition)
                    due.append(next_beat)
            ready = _ready(REASON_CLUSTER_READY, status=TRUE)
            unanswered = False
        except _Failure as failure:
            ready = _ready(failure.reason, failure.message, failure.severity)
            unanswered = failure.unanswered
        target_status = (target or {}).get("status") or {}
        for field in ("syncedResources", "lastSyncerHeartbeatTime"):
            if field in target_status:
                status["syncedResources" if field == "syncedResources" else "lastHeartbeatTime"] = (
                    target_status[field]
                )
        stored = self._write_status(ctx, cluster, partition, status, ready)
        log.debug("cluster reconciled", extra={"cluster": name, "ready": ready["status"]})
        if unanswered:
            failures = self._unreachable[name].failures + 1 if name in self._unreachable else 1
            retry_at = ctx.now.timestamp() + min(
                UNREACHABLE_BACKOFF_CAP, UNREACHABLE_BACKOFF * 2 ** (failures - 1)
            )
            self._unreachable[name] = _Unreachable(
                failures, retry_at, stored["metadata"].get("resourceVersion", "")
            )
            due.append(retry_at)
        else:
            self._unreachable.pop(name, None)
        return Outcome(due_at=min(due) if due else None)

    def _write_status(self, ctx: Context, cluster: Obj, partition: int, fields: Obj, ready: Condition) -> Obj:
        def desired_of(current: Obj) -> Obj:
            status = copy.copy(current.get("status") or {})
            for key in (
                "capacity",
                "allocatable",
                "kubernetesVersion",
                "syncedResources",
                "lastHeartbeatTime",
            ):
                if key in fields:
                    status[key] = fields[key]
            status["conditions"] = set_condition(status.get("conditions"), ready, ctx.now)
            return {"status": status}

        return ctx.apply(CLUSTERS, cluster, desired_of, partition)

    def _ensure_sync_target(self, ctx: Context, cluster: Obj, partition: int) -> Obj:
        name = cluster["metadata"]["name"]
        target_name = self._target_name(cluster)
        spec = cluster.get("spec") or {}
        target = next(
            (st for st in ctx.snapshot.list(SYNCTARGETS) if st["metadata"]["name"] == target_name), None
        )
        if target is None:
            body: Obj = {
                "apiVersion": "workload.kcp.io/v1alpha1",
                "kind": "SyncTarget",
                "metadata": {"name": target_name, "annotations": {ANNOTATION_OWNING_CLUSTER: name}},
                "spec": {"unschedulable": bool(spec.get("unschedulable", False))},
            }
            if spec.get("evictAfter"):
                body["spec"]["evictAfter"] = spec["evictAfter"]
            with ctx.guard(partition):
                ctx.engine.log_write(ctx.controller, SYNCTARGETS, body["metadata"], "")
                return ctx.client.create(SYNCTARGETS, body)
        owner = (target["metadata"].get("annotations") or {}).get(ANNOTATION_OWNING_CLUSTER)
        if owner != name:
            by = f"Cluster {owner}" if owner else "no Cluster (it was not created by one)"
            raise _Failure(
                REASON_SYNC_TARGET_CONFLICT,
                f"SyncTarget {target_name} exists and is owned by {by}; it is not adopted",
            )

        def desired_of(current: Obj) -> Obj:
            want = copy.copy(current.get("spec") or {})
            want["unschedulable"] = bool(spec.get("unschedulable", False))
            if spec.get("evictAfter"):
                want["evictAfter"] = spec["evictAfter"]
            else:
                want.pop("evictAfter", None)
            return {"spec": want}

        return ctx.apply(SYNCTARGETS, target, desired_of, partition)

    def _remote(self, ctx: Context, cluster: Obj) -> KubeClient:
        name = cluster["metadata"]["name"]
        ref = (cluster.get("spec") or {}).get("kubeconfigSecretRef") or {}
        namespace, secret_name, key = (
            ref.get("namespace", ""),
            ref.get("name", ""),
            ref.get("key") or "kubeconfig",
        )
        try:
            secret = ctx.client.get(SECRETS, secret_name, namespace=namespace)
        except NotFound:
            raise _Failure(
                REASON_INVALID_KUBECONFIG,
                f"Error invalid kubeconfig: secret {namespace}/{secret_name} not found",
            ) from None
        raw = (secret.get("data") or {}).get(key)
        if not raw:
            raise _Failure(
                REASON_INVALID_KUBECONFIG,
                f'Error invalid kubeconfig: secret {namespace}/{secret_name} has no key "{key}"',
            )
        version = (
            secret["metadata"].get("uid", ""),
            f"{secret['metadata'].get('resourceVersion', '')}/{key}",
        )
        cached = self._clients.get(name)
        if cached is not None and cached[0] == version:
            return cached[1]
        try:
            text = base64.b64decode(raw, validate=True)
            client = self.client_factory(text)
        except (ValueError, InvalidKubeconfig) as exc:
            raise _Failure(REASON_INVALID_KUBECONFIG, f"Error invalid kubeconfig: {exc}") from None
        except Exception as exc:  # whatever the client library raises while building a client
            raise _Failure(REASON_ERROR_CREATING_CLIENT, f"Error creating client: {exc}") from None
        if cached is not None:
            cached[1].close()
        self._clients[name] = (version, client)
        return client

    def _check_health(self, remote: KubeClient, status: Obj) -> None:
        try:
            remote.get_text("/readyz", timeout=self.readyz_timeout)
            version = remote.get_json("/version", timeout=self.readyz_timeout)
        except (Unreachable, ApiError) as exc:
            # kcp reports any failed /readyz, answered or not, as ClusterNotReady; the backoff below still
            # tells the two apart (an unanswered one is not retried at once).
            failure = _Failure(REASON_CLUSTER_NOT_READY, f"Error getting /readyz: {exc}")
            failure.unanswered = isinstance(exc, Unreachable)
            raise failure from None
        if isinstance(version, Mapping) and version.get("gitVersion"):
            status["kubernetesVersion"] = str(version["gitVersion"])

    def _capacity(self, remote: KubeClient) -> tuple[dict[str, str], dict[str, str]]:
        try:
            nodes, _ = remote.list(NODES)
        except Unreachable as exc:
            raise _Failure(REASON_CLUSTER_UNREACHABLE, f"Error listing nodes: {exc}") from None
        except ApiError as exc:
            raise _Failure(REASON_CLUSTER_NOT_READY, f"Error listing nodes: {exc}") from None
        try:
            return sum_node_resources(nodes)
        except QuantityError as exc:
            raise _Failure(REASON_CLUSTER_NOT_READY, f"Error summing node resources: {exc}") from None

    def _write_target_status(
        self, ctx: Context, target: Obj, partition: int, capacity: dict[str, str], allocatable: dict[str, str]
    ) -> Obj:
        def desired_of(current: Obj) -> Obj:
            status = copy.copy(current.get("status") or {})
            status["capacity"], status["allocatable"] = capacity, allocatable
            return {"status": status}

        return ctx.apply(SYNCTARGETS, target, desired_of, partition)

    def _heartbeat(self, ctx: Context, target: Obj, partition: int) -> tuple[Obj, float]:
        """Push mode: write ``lastSyncerHeartbeatTime`` when the last one is older than the interval."""
        now = ctx.now
        last_text = (target.get("status") or {}).get("lastSyncerHeartbeatTime")
        try:
            last = parse_rfc3339(last_text) if last_text else None
        except ValueError:
            last = None
        interval = timedelta(seconds=self.heartbeat_interval)
        if last is not None and now - last < interval:
            return target, (last + interval).timestamp()

        def desired_of(current: Obj) -> Obj:
            status = copy.copy(current.get("status") or {})
            status["lastSyncerHeartbeatTime"] = format_rfc3339(now)
            return {"status": status}

        target = ctx.apply(SYNCTARGETS, target, desired_of, partition)
        return target, (now + interval).timestamp()

    # --- imports --------------------------------------------------------------------------------------

    def _imports(self, ctx: Context, cluster: Obj, target: Obj, remote: KubeClient, partition: int) -> float:
        name = cluster["metadata"]["name"]
        now = ctx.now.timestamp()
        wanted = wanted_group_versions(target)
        due = self._imports_at.get(name, 0.0)
        # A change of what the SyncTarget syncs is imported at once; otherwise once per import period.
        if now < due and self._imported.get(name) == wanted:
            return due
        try:
            discovered = discover(remote, wanted)
        except (Unreachable, ApiError) as exc:
            failure = _Failure(REASON_ERROR_STARTING_API_IMPORTER, f"Error starting the API importer: {exc}")
            failure.unanswered = isinstance(exc, Unreachable)
            raise failure from None
        desired = desired_imports(discovered, target, name)
        try:
            existing = [
                imp
                for imp in ctx.snapshot.list(APIRESOURCEIMPORTS)
                if (imp["metadata"].get("labels") or {}).get(LABEL_IMPORT_CLUSTER) == name
            ]
        except NotFound:
            existing = []
        by_name = {imp["metadata"]["name"]: imp for imp in existing}
        for import_name, body in sorted(desired.items()):
            current = by_name.get(import_name)
            if current is None:
                with ctx.guard(partition):
                    ctx.engine.log_write(ctx.controller, APIRESOURCEIMPORTS, body["metadata"], "")
                    ctx.client.create(APIRESOURCEIMPORTS, body)
            else:
                desired_import: Obj = {
                    "metadata": {"labels": body["metadata"]["labels"]},
                    "spec": body["spec"],
                }
                ctx.apply(APIRESOURCEIMPORTS, current, _constant(desired_import), partition)
        for import_name in sorted(set(by_name) - set(desired)):
            with ctx.guard(partition):
                ctx.engine.log_write(ctx.controller, APIRESOURCEIMPORTS, {"name": import_name}, "delete")
                ctx.client.delete(APIRESOURCEIMPORTS, import_name)
        self._imports_at[name] = now + self.import_period
        self._imported[name] = wanted
        return now + self.import_period

    # --- Pull mode ------------------------------------------------------------------------------------

    def _install(self, ctx: Context, cluster: Obj, target: Obj, remote: KubeClient, partition: int) -> None:
        spec = cluster.get("spec") or {}
        name = cluster["metadata"]["name"]
        key = sync_target_key(cluster_of(cluster, self.logical_cluster), target["metadata"]["name"])
        status = target.get("status") or {}
        synced = [
            (str(e.get("group") or ""), str(e["resource"]))
            for e in status.get("syncedResources") or []
            if isinstance(e, Mapping) and e.get("resource") and e.get("state") == "Accepted"
        ]
        workspaces = status.get("virtualWorkspaces") or []
        syncer_url = workspaces[0]["syncerURL"] if workspaces else ctx.client.host
        try:
            token = self._kcp_token(ctx, target, name, partition)
        except (ApiError, Unreachable) as exc:
            raise _Failure(
                REASON_ERROR_INSTALLING_SYNCER, f"Error writing kubeconfig for syncer: {exc}"
            ) from None
        install = desired_install(
            cluster_name=name,
            sync_target=target,
            key=key,
            logical_cluster=cluster_of(cluster, self.logical_cluster),
            image=str(spec.get("syncerImage") or ""),
            resources=synced,
            syncer_url=syncer_url,
            token=token,
            ca_data=ctx.client.ca_data,
        )
        try:
            deployment = not_found_is_none(
                lambda: remote.get(DEPLOYMENTS, SYNCER_NAME, namespace=install.namespace)
            )
            current_hash = ((deployment or {}).get("metadata", {}).get("annotations") or {}).get(
                ANNOTATION_INSTALL_HASH
            )
            if current_hash != install.digest:
                for plural, body in install.objects:
                    self._ensure_remote(ctx, remote, _RESOURCES[plural], body, partition)
                deployment = remote.get(DEPLOYMENTS, SYNCER_NAME, namespace=install.namespace)
        except (ApiError, Unreachable) as exc:
            raise _Failure(REASON_ERROR_INSTALLING_SYNCER, f"Error installing syncer: {exc}") from None
        if not deployment_available(deployment):
            raise _Failure(REASON_CLUSTER_NOT_READY, MESSAGE_SYNCER_NOT_READY, INFO)

    def _kcp_token(self, ctx: Context, target: Obj, cluster_name: str, partition: int) -> str:
        """The syncer's ServiceAccount token in kcp; creates its identity there when it is missing.

        The token appears once kcp's token controller filled the Secret; until then the kubeconfig is
        written without one (and rewritten when it appears, since it changes the installation hash).
        """
        objects = kcp_identity(target, cluster_name)
        secret_body = objects[1][1]
        try:
            secret = ctx.client.get(
                SECRETS, secret_body["metadata"]["name"], namespace=KCP_IDENTITY_NAMESPACE
            )
        except NotFound:
            for plural, body in objects:
                resource = _RESOURCES[plural]
                namespace = KCP_IDENTITY_NAMESPACE if resource.namespaced else None
                with ctx.guard(partition), suppress(Conflict):
                    ctx.engine.log_write(ctx.controller, resource, body["metadata"], "")
                    ctx.client.create(resource, body, namespace=namespace)
            return ""
        raw = (secret.get("data") or {}).get("token")
        return base64.b64decode(raw).decode("utf-8", "replace") if raw else ""

    def _ensure_remote(
        self, ctx: Context, remote: KubeClient, resource: Resource, body: Obj, partition: int
    ) -> None:
        meta = body["metadata"]
        namespace = meta.get("namespace") if resource.namespaced else None
        try:
            current = remote.get(resource, meta["name"], namespace=namespace)
        except NotFound:
            with ctx.guard(partition):
                remote.create(resource, body, namespace=namespace)
            return
        replacement = copy.deepcopy(body)
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        with ctx.guard(partition):
            remote.replace(resource, replacement)

    # --- deletion -------------------------------------------------------------------------------------

    def _delete(self, ctx: Context, cluster: Obj, partition: int) -> None:
        meta = cluster["metadata"]
        name = meta["name"]
        if FINALIZER_CLUSTER_CLEANUP not in (meta.get("finalizers") or []):
            return
        force = (meta.get("annotations") or {}).get(ANNOTATION_FORCE_CLEANUP) == "true"
        pull = ((cluster.get("spec") or {}).get("syncMode") or "Push") == "Pull"
        if pull and not force:
            try:
                self._uninstall(ctx, cluster, partition)
            except (_Failure, Unreachable, ApiError) as exc:
                message = (
                    f"Cleanup of the physical cluster failed: {getattr(exc, 'message', None) or exc}; "
                    f'set annotation {ANNOTATION_FORCE_CLEANUP}: "true" to skip it'
                )
                self._write_status(ctx, cluster, partition, {}, _ready(REASON_CLUSTER_UNREACHABLE, message))
                raise RetryLater(message) from None
        try:
            imports = ctx.snapshot.list(APIRESOURCEIMPORTS)
        except NotFound:
            imports = []
        for imp in imports:
            if (imp["metadata"].get("labels") or {}).get(LABEL_IMPORT_CLUSTER) == name:
                with ctx.guard(partition):
                    ctx.client.delete(APIRESOURCEIMPORTS, imp["metadata"]["name"])
        target_name = self._target_name(cluster)
        for st in ctx.snapshot.list(SYNCTARGETS):
            owner = (st["metadata"].get("annotations") or {}).get(ANNOTATION_OWNING_CLUSTER)
            if st["metadata"]["name"] == target_name and owner == name:
                with ctx.guard(partition):
                    ctx.engine.log_write(ctx.controller, SYNCTARGETS, st["metadata"], "delete")
                    ctx.client.delete(SYNCTARGETS, target_name)

        def without_finalizer(current: Obj) -> Obj:
            finalizers = current["metadata"].get("finalizers") or []
            return {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER_CLUSTER_CLEANUP]}}

        ctx.apply(CLUSTERS, cluster, without_finalizer, partition)
        cached = self._clients.pop(name, None)
        if cached is not None:
            cached[1].close()
        self._imports_at.pop(name, None)
        self._imported.pop(name, None)
        self._unreachable.pop(name, None)

    def _uninstall(self, ctx: Context, cluster: Obj, partition: int) -> None:
        target_name = self._target_name(cluster)
        target = next(
            (st for st in ctx.snapshot.list(SYNCTARGETS) if st["metadata"]["name"] == target_name), None
        )
        if target is not None:
            for plural, body in kcp_identity(target, cluster["metadata"]["name"]):
                resource = _RESOURCES[plural]
                with ctx.guard(partition):
                    ctx.client.delete(
                        resource,
                        body["metadata"]["name"],
                        namespace=KCP_IDENTITY_NAMESPACE if resource.namespaced else None,
                    )
        remote = self._remote(ctx, cluster)
        key = sync_target_key(cluster_of(cluster, self.logical_cluster), self._target_name(cluster))
        namespace = syncer_namespace(self._target_name(cluster), key)
        with remote.deadline(self.deadline):
            for resource in (CLUSTERROLEBINDINGS, CLUSTERROLES, NAMESPACES):
                with ctx.guard(partition):
                    remote.delete(resource, namespace)


def _constant(desired: Obj) -> Callable[[Obj], Obj]:
    return lambda _current: desired
