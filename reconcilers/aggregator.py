"""The resource aggregator: SyncTarget ``status.used`` and Location status.

- SyncTarget ``status.used`` (this project's extension): what the workloads placed on the target
  (state label ``Sync``) request of its nodes, next to the ``capacity`` and ``allocatable`` the Cluster
  controller writes.
- Location status as kcp computes it (instances, available instances, the ``scheduling.kcp.io/labels``
  annotation) plus, as this project's extension, ``capacity``, ``allocatable`` and ``used`` summed
  over the Location's available instances (:func:`kcp_tmc.policies.aggregation.location_status`).

A cycle costs one list of SyncTargets, one of Locations and one per workload kind (shared with the
quota manager); writes happen only where something changed.  Locations are computed from the
SyncTargets' use of this same cycle, so they never lag a cycle behind.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from kcp_tmc.policies.aggregation import LOCATION_LABELS_ANNOTATION, location_status
from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.policies.selectors import SelectorError
from kcp_tmc.reconcilers.engine import Context, ObjectRef, Outcome, RetryLater
from kcp_tmc.reconcilers.leases import partition_of
from kcp_tmc.reconcilers.resources import LOCATIONS, SYNCTARGETS
from kcp_tmc.reconcilers.workloads import WorkloadController

__all__ = ["AggregatorController"]

Obj = dict[str, Any]

_MEMO: Final = "aggregator"
_QUANTITY_LISTS: Final = ("capacity", "allocatable", "used")


def _with_status(current: Mapping[str, Any], fields: Mapping[str, Any], drop: tuple[str, ...] = ()) -> Obj:
    status = copy.copy(current.get("status") or {})
    status.update(fields)
    for key in drop:
        status.pop(key, None)
    return {"status": status}


class AggregatorController(WorkloadController):
    """Writes SyncTarget use and Location status; see the module docstring."""

    name = "aggregator"
    kinds = (SYNCTARGETS, LOCATIONS)

    def _key(self, st: Mapping[str, Any]) -> str:
        return sync_target_key(cluster_of(st, self.logical_cluster), st["metadata"]["name"])

    def refs(self, ctx: Context) -> list[tuple[ObjectRef, Obj, int]]:
        out = []
        for st in ctx.snapshot.list(SYNCTARGETS):
            out.append((self.ref(SYNCTARGETS, st), st, partition_of(self._key(st), self.partitions)))
        # Locations are a kcp kind: an apiserver without them has no Locations to aggregate.
        for location in ctx.snapshot.list_optional(LOCATIONS):
            name = location["metadata"]["name"]
            key = f"location:{cluster_of(location, self.logical_cluster)}:{name}"
            out.append((self.ref(LOCATIONS, location), location, partition_of(key, self.partitions)))
        return out

    def _used(self, ctx: Context) -> dict[str, dict[str, str]]:
        """SyncTarget key -> its ``status.used`` this cycle."""
        memo = ctx.snapshot.memo.get(_MEMO)
        if memo is None:
            index = self.workloads.index(ctx)
            memo = ctx.snapshot.memo[_MEMO] = {
                key: totals.resource_list() for key, totals in index.node_use.items()
            }
        return memo

    def reconcile(self, ctx: Context, obj: Obj, partition: int) -> Outcome:
        if obj.get("kind") == LOCATIONS.kind:
            self._location(ctx, obj, partition)
        else:
            self._sync_target(ctx, obj, partition)
        return Outcome()

    def _sync_target(self, ctx: Context, st: Obj, partition: int) -> None:
        used = self._used(ctx).get(self._key(st), {})

        def desired_of(current: Obj) -> Obj:
            return _with_status(current, {"used": used}) if used else _with_status(current, {}, ("used",))

        ctx.apply(SYNCTARGETS, st, desired_of, partition)

    def _targets(self, ctx: Context) -> dict[str, list[Obj]]:
        """The SyncTargets by logical cluster, with the use this cycle computed (Locations never lag)."""
        memo = ctx.snapshot.memo.get(_MEMO + "/targets")
        if memo is None:
            used = self._used(ctx)
            memo = {}
            for st in ctx.snapshot.list(SYNCTARGETS):
                status = dict(st.get("status") or {})
                status["used"] = used.get(self._key(st), {})
                memo.setdefault(cluster_of(st, self.logical_cluster), []).append({**st, "status": status})
            ctx.snapshot.memo[_MEMO + "/targets"] = memo
        return memo

    def _location(self, ctx: Context, location: Obj, partition: int) -> None:
        # Only the Location's own logical cluster counts; the others are not even looked at.
        targets = self._targets(ctx).get(cluster_of(location, self.logical_cluster), [])

        def desired_of(current: Obj) -> Obj:
            try:
                view = location_status(current, targets, self.logical_cluster)
            except SelectorError as exc:
                raise RetryLater(f"spec.instanceSelector: {exc}") from None
            annotations = dict((current.get("metadata") or {}).get("annotations") or {})
            annotations[LOCATION_LABELS_ANNOTATION] = view.labels
            status = view.status()
            empty = tuple(key for key in _QUANTITY_LISTS if key not in status)
            desired = _with_status(current, status, empty)
            desired["metadata"] = {"annotations": annotations}
            return desired

        ctx.apply(LOCATIONS, location, desired_of, partition)
