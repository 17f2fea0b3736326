"""The SyncTarget controller: kcp's SyncTarget, heartbeat and syncedResources controllers as one pass.

kcp runs three controllers on SyncTargets (reference §3.1-3.3), each writing its own patch.  Here they
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
    shard_urls: list[str] = field(default_factory=list)
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
    labels = dict(meta.get("labels") or {})
    labels[LABEL_SYNC_TARGET_KEY] = sync_target_key(inputs.cluster, name)
    desired["metadata"]["labels"] = labels
    status = desired["status"]

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
    """Key label and virtual workspaces, heartbeat, and syncedResources of every SyncTarget."""

    name = "synctarget"

    def __init__(
        self,
        *,
        logical_cluster: str = "root",
        shard_urls: list[str] | None = None,
        heartbeat_threshold: timedelta | None = timedelta(minutes=1),
        synced_resources: bool = True,
        partitions: int = 1,
    ) -> None:
        self.logical_cluster = logical_cluster
        self.shard_urls = list(shard_urls or [])
        self.heartbeat_threshold = heartbeat_threshold
        self.synced_resources = synced_resources
        self.partitions = partitions
        self._cycle_inputs: (
            tuple[int, ExportIndex | None, dict[tuple[str, str], dict[SchemaKey, Any]]] | None
        ) = None

    def _cluster(self, obj: Mapping[str, Any]) -> str:
        return cluster_of(obj, self.logical_cluster)

    def refs(self, ctx: Context) -> list[tuple[ObjectRef, Obj, int]]:
        out = []
        for st in ctx.snapshot.list(SYNCTARGETS):
            name = st["metadata"]["name"]
            key = sync_target_key(self._cluster(st), name)
            out.append((ObjectRef(self.name, name), st, partition_of(key, self.partitions)))
        return out

    def _index(self, ctx: Context) -> tuple[ExportIndex | None, dict[tuple[str, str], dict[SchemaKey, Any]]]:
        # Built once per snapshot: the export index and the imported schemas by (cluster, location).
        if self._cycle_inputs is not None and self._cycle_inputs[0] == id(ctx.snapshot):
            return self._cycle_inputs[1], self._cycle_inputs[2]
        index: ExportIndex | None = None
        imports: dict[tuple[str, str], dict[SchemaKey, Any]] = {}
        if self.synced_resources:
            index = ExportIndex.build(
                _list_optional(ctx, APIEXPORTS), _list_optional(ctx, APIRESOURCESCHEMAS), self._cluster
            )
            for imp in _list_optional(ctx, APIRESOURCEIMPORTS):
                spec = imp.get("spec") or {}
                gv = spec.get("groupVersion") or {}
                gvr = (
                    str(gv.get("group") or ""),
                    str(gv.get("version") or ""),
                    str(spec.get("plural") or ""),
                )
                location = (self._cluster(imp), str(spec.get("location") or ""))
                imports.setdefault(location, {})[gvr] = spec.get("openAPIV3Schema")
        self._cycle_inputs = (id(ctx.snapshot), index, imports)
        return index, imports

    def inputs_for(self, ctx: Context, st: Mapping[str, Any]) -> Inputs:
        index, imports = self._index(ctx)
        cluster = self._cluster(st)
        return Inputs(
            cluster=cluster,
            shard_urls=self.shard_urls,
            heartbeat_threshold=self.heartbeat_threshold,
            exports=index,
            downstream=imports.get((cluster, st["metadata"]["name"]), {}) if index is not None else None,
        )

    def reconcile(self, ctx: Context, obj: Obj, partition: int) -> Outcome:
        inputs = self.inputs_for(ctx, obj)
        due: list[datetime | None] = [None]

        def desired_of(current: Obj) -> Obj:
            desired, due[0] = desired_sync_target(current, inputs, ctx.now)
            return desired

        ctx.apply(SYNCTARGETS, obj, desired_of, partition)
        return Outcome(due_at=(due[0] + STALE_MARGIN).timestamp() if due[0] is not None else None)

    def fetch(self, ctx: Context, ref: ObjectRef) -> Obj | None:
        return not_found_is_none(lambda: ctx.client.get(SYNCTARGETS, ref.name))


def _list_optional(ctx: Context, resource: Any) -> list[Obj]:
    # The kcp API kinds may be missing on a plain apiserver; that means "no exports", not an error.
    try:
        return ctx.snapshot.list(resource)
    except NotFound:
        return []
