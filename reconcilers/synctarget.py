"""The SyncTarget controller: kcp's SyncTarget, heartbeat and syncedResources controllers as one pass.

kcp runs three controllers on SyncTargets, each writing its own patch.  Here they
are three pure steps over the same object, so an object needs at most one main patch (the key label)
and one status patch (virtualWorkspaces, conditions, syncedResources) per cycle, and none when
nothing changed.  Each step can be switched off (``--controllers``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.keys import LABEL_SYNC_TARGET_KEY, sync_target_key
from kcp_tmc.reconcilers.client import NotFound
from kcp_tmc.reconcilers.engine import Context, ObjectRef, Outcome, not_found_is_none
from kcp_tmc.reconcilers.heartbeat import heartbeat_conditions
from kcp_tmc.reconcilers.leases import partition_of
from kcp_tmc.reconcilers.resources import APIEXPORTS, APIRESOURCEIMPORTS, APIRESOURCESCHEMAS, SYNCTARGETS
from kcp_tmc.reconcilers.syncedresources import ExportIndex, SchemaKey, desired_synced_resources
from kcp_tmc.reconcilers.virtualworkspaces import virtual_workspaces

__all__ = ["SyncTargetController", "desired_sync_target"]

Obj = dict[str, Any]

#: Wake-ups for a heartbeat going stale come this long after ``latest + threshold``, since staleness is
#: strictly greater than the threshold.
STALE_MARGIN = timedelta(milliseconds=5)


@dataclass
class Inputs:
    """Everything besides the SyncTarget itself that its desired state depends on."""

    cluster: str
    #: Shard URLs for ``status.virtualWorkspaces``; None leaves the key label and the field alone
    #: (the ``synctarget`` step switched off).
    shard_urls: list[str] | None = field(default_factory=list)
    heartbeat_threshold: timedelta | None = None
    exports: ExportIndex | None = None
    downstream: Mapping[SchemaKey, Any] | None = None


def desired_sync_target(
    current: Mapping[str, Any], inputs: Inputs, now: datetime
) -> tuple[Obj, datetime | None]:
    """The desired SyncTarget (a new dict) and when to evaluate it again (a heartbeat going stale)."""
    desired: Obj = {"metadata": {}, "status": copy.copy(current.get("status") or {})}
    meta = current.get("metadata") or {}
    name, uid = str(meta.get("name", "")), str(meta.get("uid", ""))
    status = desired["status"]
    if inputs.shard_urls is not None:
        labels = dict(meta.get("labels") or {})
        labels[LABEL_SYNC_TARGET_KEY] = sync_target_key(inputs.cluster, name)
        desired["metadata"]["labels"] = labels
        workspaces = virtual_workspaces(inputs.shard_urls, inputs.cluster, name, uid)
        if workspaces is None:
            status.pop("virtualWorkspaces", None)
        else:
            status["virtualWorkspaces"] = workspaces

    due: datetime | None = None
    if inputs.heartbeat_threshold is not None:
        status["conditions"], due = heartbeat_conditions(
            status.get("conditions"), status.get("lastSyncerHeartbeatTime"), now, inputs.heartbeat_threshold
        )

    if inputs.exports is not None:
        synced = desired_synced_resources(current, inputs.cluster, inputs.exports, inputs.downstream)
        if synced is None:
            status.pop("syncedResources", None)
        else:
            status["syncedResources"] = synced
    return desired, due


class SyncTargetController:
    """Key label and virtual workspaces, heartbeat, and syncedResources of every SyncTarget.

    An object already brought to its desired state is not computed again while its resourceVersion,
    the export/schema/import lists and the time (its heartbeat due time) stay the same: at steady state
    a cycle costs a list and a dictionary lookup per object.
    """

    name = "synctarget"

    def __init__(
        self,
        *,
        logical_cluster: str = "root",
        shard_urls: list[str] | None = None,
        workspaces: bool = True,
        heartbeat_threshold: timedelta | None = timedelta(minutes=1),
        synced_resources: bool = True,
        partitions: int = 1,
    ) -> None:
        self.logical_cluster = logical_cluster
        self.shard_urls: list[str] | None = list(shard_urls or []) if workspaces else None
        self.heartbeat_threshold = heartbeat_threshold
        self.synced_resources = synced_resources
        self.partitions = partitions
        self._keys: dict[tuple[str, str], str] = {}
        # name -> (resourceVersion, inputs fingerprint, due time) of objects at their desired state
        self._settled: dict[str, tuple[str, int, float | None]] = {}

    def _cluster(self, obj: Mapping[str, Any]) -> str:
        return cluster_of(obj, self.logical_cluster)

    def _key(self, cluster: str, name: str) -> str:
        key = self._keys.get((cluster, name))
        if key is None:
            key = self._keys[(cluster, name)] = sync_target_key(cluster, name)
        return key

    def refs(self, ctx: Context) -> list[tuple[ObjectRef, Obj, int]]:
        out = []
        keys: dict[tuple[str, str], str] = {}
        for st in ctx.snapshot.list(SYNCTARGETS):
            name = st["metadata"]["name"]
            cluster = self._cluster(st)
            keys[(cluster, name)] = key = self._key(cluster, name)
            out.append((ObjectRef(self.name, name), st, partition_of(key, self.partitions)))
        # Forget what is gone, so that memory follows the number of objects.
        self._keys = keys
        names = {name for _, name in keys}
        for name in [n for n in self._settled if n not in names]:
            del self._settled[name]
        return out

    def _index(
        self, ctx: Context
    ) -> tuple[ExportIndex | None, dict[tuple[str, str], dict[SchemaKey, Any]], int]:
        # Built once per snapshot: the export index, the imported schemas by (cluster, location), and a
        # fingerprint of everything they were built from.
        memo = ctx.snapshot.memo.get(self.name)
        if memo is not None:
            return memo  # type: ignore[no-any-return]
        index: ExportIndex | None = None
        imports: dict[tuple[str, str], dict[SchemaKey, Any]] = {}
        fingerprint: list[tuple[str, str]] = []
        if self.synced_resources:
            exports = _list_optional(ctx, APIEXPORTS)
            schemas = _list_optional(ctx, APIRESOURCESCHEMAS)
            listed_imports = _list_optional(ctx, APIRESOURCEIMPORTS)
            index = ExportIndex.build(exports, schemas, self._cluster)
            for imp in listed_imports:
                spec = imp.get("spec") or {}
                gv = spec.get("groupVersion") or {}
                gvr = (
                    str(gv.get("group") or ""),
                    str(gv.get("version") or ""),
                    str(spec.get("plural") or ""),
                )
                location = (self._cluster(imp), str(spec.get("location") or ""))
                imports.setdefault(location, {})[gvr] = spec.get("openAPIV3Schema")
            for obj in (*exports, *schemas, *listed_imports):
                fingerprint.append(
                    (obj["metadata"].get("uid", ""), obj["metadata"].get("resourceVersion", ""))
                )
        memo = (index, imports, hash(tuple(sorted(fingerprint))))
        ctx.snapshot.memo[self.name] = memo
        return memo

    def inputs_for(self, ctx: Context, st: Mapping[str, Any]) -> Inputs:
        index, imports, _ = self._index(ctx)
        cluster = self._cluster(st)
        return Inputs(
            cluster=cluster,
            shard_urls=self.shard_urls,
            heartbeat_threshold=self.heartbeat_threshold,
            exports=index,
            downstream=imports.get((cluster, st["metadata"]["name"]), {}) if index is not None else None,
        )

    def reconcile(self, ctx: Context, obj: Obj, partition: int) -> Outcome:
        meta = obj["metadata"]
        fingerprint = self._index(ctx)[2]
        settled = self._settled.get(meta["name"])
        if (
            settled is not None
            and settled[0] == meta.get("resourceVersion")
            and settled[1] == fingerprint
            and (settled[2] is None or ctx.now.timestamp() < settled[2])
        ):
            return Outcome(due_at=settled[2])
        inputs = self.inputs_for(ctx, obj)
        due: list[datetime | None] = [None]

        def desired_of(current: Obj) -> Obj:
            desired, due[0] = desired_sync_target(current, inputs, ctx.now)
            return desired

        stored = ctx.apply(SYNCTARGETS, obj, desired_of, partition)
        due_at = (due[0] + STALE_MARGIN).timestamp() if due[0] is not None else None
        self._settled[meta["name"]] = (stored["metadata"].get("resourceVersion", ""), fingerprint, due_at)
        return Outcome(due_at=due_at)

    def fetch(self, ctx: Context, ref: ObjectRef) -> Obj | None:
        return not_found_is_none(lambda: ctx.client.get(SYNCTARGETS, ref.name))


def _list_optional(ctx: Context, resource: Any) -> list[Obj]:
    # The kcp API kinds may be missing on a plain apiserver; that means "no exports", not an error.
    try:
        return ctx.snapshot.list(resource)
    except NotFound:
        return []
