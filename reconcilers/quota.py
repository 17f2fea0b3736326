"""The quota manager: FederatedQuota status, and kcp's cluster-scoped ResourceQuota counts.

- FederatedQuota (``tmc.kcp.io/v1alpha1``): ``status.overall`` mirrors ``spec.overall``;
  ``status.overallUsed`` is the true use of the workloads in the quota's scope (its namespace, or its
  whole logical cluster for a quota in namespace ``admin`` annotated cluster-scoped); per SyncTarget
  ``aggregatedStatus``; condition ``Exceeded`` while use is above a limit.  Admission adds reservations
  to ``overallUsed`` between cycles; every cycle recomputes it from the workloads that exist, which
  also releases reservations whose request a later admission step rejected.
- ResourceQuota in namespace ``admin`` with kcp's cluster-scoped annotation: ``status.used`` of its
  ``count/...`` keys across all namespaces of its logical cluster, as kcp's quota controller counts
  them.  Namespaced ResourceQuotas are left to kcp's (or Kubernetes') own quota controller.

Quotas and counts never cross logical clusters.  A cycle costs the quota lists, the workload lists
(shared with the aggregator) and one list per other counted kind; a discovery lookup per counted kind
the first time it is seen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Final

from kcp_tmc.policies.aggregation import Totals
from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.policies.model import is_cluster_scoped_quota
from kcp_tmc.policies.quantities import ResourceListError
from kcp_tmc.policies.quotastatus import (
    count_resource,
    federated_quota_status,
    quota_scope,
    resource_quota_status,
)
from kcp_tmc.policies.usage import object_count_name
from kcp_tmc.reconcilers.client import ApiError, NotFound, Resource
from kcp_tmc.reconcilers.engine import Context, ObjectRef, Outcome, RetryLater
from kcp_tmc.reconcilers.leases import partition_of
from kcp_tmc.reconcilers.resources import FEDERATEDQUOTAS, RESOURCEQUOTAS, SYNCTARGETS
from kcp_tmc.reconcilers.workloads import WorkloadController, WorkloadIndex

__all__ = ["QuotaController"]

log = logging.getLogger(__name__)

Obj = dict[str, Any]

_MEMO: Final = "quota"


def _fingerprint(totals: Totals) -> tuple[tuple[str, int, str], ...]:
    return tuple(sorted((name, value, totals.formats[name]) for name, value in totals.nanos.items()))


class QuotaController(WorkloadController):
    """Writes FederatedQuota and cluster-scoped ResourceQuota status; see the module docstring."""

    name = "quota"
    kinds = (FEDERATEDQUOTAS, RESOURCEQUOTAS)

    def __init__(self, **settings: Any) -> None:
        """Takes the settings of :class:`~kcp_tmc.reconcilers.workloads.WorkloadController`."""
        super().__init__(**settings)
        #: ``(plural, group)`` -> the Resource discovery found for it (None: not served).
        self._discovered: dict[tuple[str, str], Resource | None] = {}
        #: FederatedQuota uid -> (resourceVersion, use) of the status last written or found right.
        self._settled: dict[str, tuple[Any, Any]] = {}

    def _partition(self, quota: Mapping[str, Any], kind: str) -> int:
        meta = quota["metadata"]
        key = f"{kind}:{cluster_of(quota, self.logical_cluster)}:{meta.get('namespace', '')}/{meta['name']}"
        return partition_of(key, self.partitions)

    def refs(self, ctx: Context) -> list[tuple[ObjectRef, Obj, int]]:
        out = []
        # Without the FederatedQuota CRD there are only ResourceQuotas to look after.
        listed = ctx.snapshot.list_optional(FEDERATEDQUOTAS)
        uids = {quota["metadata"].get("uid", "") for quota in listed}
        self._settled = {uid: v for uid, v in self._settled.items() if uid in uids}
        for quota in listed:
            out.append((self.ref(FEDERATEDQUOTAS, quota), quota, self._partition(quota, "federatedquota")))
        for quota in ctx.snapshot.list(RESOURCEQUOTAS):
            if not is_cluster_scoped_quota(quota):
                continue
            out.append((self.ref(RESOURCEQUOTAS, quota), quota, self._partition(quota, "resourcequota")))
        return out

    def reconcile(self, ctx: Context, obj: Obj, partition: int) -> Outcome:
        if obj.get("kind") == RESOURCEQUOTAS.kind:
            self._resource_quota(ctx, obj, partition)
        else:
            self._federated_quota(ctx, obj, partition)
        return Outcome()

    # --- FederatedQuota -------------------------------------------------------------------------------

    def _target_names(self, ctx: Context) -> dict[str, str]:
        """SyncTarget key -> name, for ``aggregatedStatus`` (keys hash the cluster, so they are unique)."""
        memo = ctx.snapshot.memo.get(_MEMO + "/names")
        if memo is None:
            memo = {}
            for st in ctx.snapshot.list(SYNCTARGETS):
                name = st["metadata"]["name"]
                memo[sync_target_key(cluster_of(st, self.logical_cluster), name)] = name
            ctx.snapshot.memo[_MEMO + "/names"] = memo
        return memo

    def _federated_quota(self, ctx: Context, quota: Obj, partition: int) -> None:
        index = self.workloads.index(ctx)
        scope = quota_scope(quota, self.logical_cluster)
        if scope.namespace is not None:
            overall, per_key = index.use_in([(scope.cluster, scope.namespace)])
        else:
            overall, per_key = index.use_in(index.namespaces_of(scope.cluster))
        names = self._target_names(ctx)
        # A target not found (deleted while workloads still name it) is shown under its key.
        inputs = (
            _fingerprint(overall),
            tuple(sorted((names.get(key, key), _fingerprint(totals)) for key, totals in per_key.items())),
        )
        meta = quota["metadata"]
        uid = str(meta.get("uid", ""))
        if self._settled.get(uid) == (meta.get("resourceVersion"), inputs):
            return  # same quota, same use: the status written last time still holds
        per_target = {names.get(key, key): totals.quantities() for key, totals in per_key.items()}
        overall_use = overall.quantities()

        def desired_of(current: Obj) -> Obj:
            try:
                return {"status": federated_quota_status(current, overall_use, per_target, ctx.now)}
            except ResourceListError as exc:
                raise RetryLater(f"spec: {exc}") from None

        stored = ctx.apply(FEDERATEDQUOTAS, quota, desired_of, partition)
        self._settled[uid] = (stored["metadata"].get("resourceVersion"), inputs)

    # --- ResourceQuota ------------------------------------------------------------------------------

    def _discover(self, ctx: Context, plural: str, group: str) -> Resource | None:
        key = (plural, group)
        if key in self._discovered:
            return self._discovered[key]
        found: Resource | None = None
        try:
            if group:
                preferred = ctx.client.get_json(f"/apis/{group}")["preferredVersion"]["groupVersion"]
                path = f"/apis/{preferred}"
            else:
                path = "/api/v1"
            listing = ctx.client.get_json(path)
        except NotFound:
            listing = None
        if listing is not None:
            version = str(listing.get("groupVersion", "v1")).rpartition("/")[2]
            for entry in listing.get("resources") or ():
                if entry.get("name") == plural:
                    found = Resource(
                        group,
                        version,
                        plural,
                        namespaced=bool(entry.get("namespaced")),
                        kind=entry.get("kind", ""),
                    )
                    break
        self._discovered[key] = found
        return found

    def _counts(self, ctx: Context, cluster: str, keys: Iterable[str]) -> dict[str, int]:
        """``count/...`` key -> objects of that kind in ``cluster``, all namespaces."""
        memo: dict[tuple[str, str], int] = ctx.snapshot.memo.setdefault(_MEMO + "/counts", {})
        out = {}
        for key in keys:
            parsed = count_resource(key)
            if parsed is None:
                continue
            name = object_count_name(*parsed)  # the canonical spelling of the key
            if ("", name) not in memo:  # the marker of a kind counted this cycle
                memo.update(self._count_kind(ctx, name, *parsed))
            out[key] = memo.get((cluster, name), 0)
        return out

    def _count_kind(self, ctx: Context, name: str, plural: str, group: str) -> dict[tuple[str, str], int]:
        """Objects of one kind per logical cluster (a zero entry for every cluster not seen is implied)."""
        counts: dict[tuple[str, str], int] = {}
        workload = next((r for r in self.workloads.resources if (r.plural, r.group) == (plural, group)), None)
        if workload is not None:
            # Already listed for the workload sums: add up the object counts of each namespace.
            index: WorkloadIndex = self.workloads.index(ctx)
            for (cluster, _), totals in index.namespace_use.items():
                value = totals.nanos.get(name, 0) // 10**9
                counts[(cluster, name)] = counts.get((cluster, name), 0) + value
            return counts | {("", name): 0}
        resource = self._discover(ctx, plural, group)
        if resource is not None:
            try:
                for obj in ctx.client.iter_list(resource):
                    where = (cluster_of(obj, self.logical_cluster), name)
                    counts[where] = counts.get(where, 0) + 1
            except NotFound:
                self._discovered.pop((plural, group), None)  # gone since discovery: look again next time
            except ApiError as exc:
                raise RetryLater(f"cannot count {name}: {exc}") from None
        return counts | {("", name): 0}

    def _resource_quota(self, ctx: Context, quota: Obj, partition: int) -> None:
        cluster = cluster_of(quota, self.logical_cluster)

        def desired_of(current: Obj) -> Obj:
            hard = (current.get("spec") or {}).get("hard") or {}
            return {"status": resource_quota_status(current, self._counts(ctx, cluster, hard))}

        ctx.apply(RESOURCEQUOTAS, quota, desired_of, partition)
