"""The use of every workload, summed per SyncTarget and per namespace, once per cycle.

The aggregator (SyncTarget and Location use) and the quota manager read the same sums, so they are
computed once per cycle (:meth:`WorkloadUsage.index`, kept in the snapshot's memo) from one list per
workload kind.  The lists are parsed one object at a time and not kept: with 100,000 workloads the
parsed lists would not fit the memory budget, while the sums are small.  A workload's use is
recomputed only when its resourceVersion changed since the last cycle (the usage model parses every
quantity of a pod template); the sums themselves are rebuilt from the current objects every cycle,
so they are always exactly the sum of what exists now.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kcp_tmc.policies.aggregation import Compact, Totals, compact, node_requests
from kcp_tmc.policies.clusters import DEFAULT_CLUSTER, cluster_of
from kcp_tmc.policies.quantities import QuantityError
from kcp_tmc.policies.usage import usage_of
from kcp_tmc.reconcilers.client import ApiError, NotFound, Resource, Unreachable
from kcp_tmc.reconcilers.engine import Context, ObjectRef, RetryLater, not_found_is_none

__all__ = ["WORKLOAD_RESOURCES", "WorkloadController", "WorkloadIndex", "WorkloadUsage"]

log = logging.getLogger(__name__)

#: The workload kinds whose use is modelled, in the order they are listed.
WORKLOAD_RESOURCES: Final = (
    Resource("", "v1", "pods", namespaced=True, kind="Pod"),
    Resource("apps", "v1", "deployments", namespaced=True, kind="Deployment"),
    Resource("apps", "v1", "replicasets", namespaced=True, kind="ReplicaSet"),
    Resource("apps", "v1", "statefulsets", namespaced=True, kind="StatefulSet"),
    Resource("batch", "v1", "jobs", namespaced=True, kind="Job"),
)
_MEMO: Final = "workloads"

Namespace = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one workload (at one resourceVersion) adds to the sums."""

    resource_version: str
    cluster: str
    namespace: str
    overall: Compact
    per_target: Compact
    node: Compact
    targets: tuple[str, ...]


@dataclass
class WorkloadIndex:
    """The sums of one cycle."""

    #: SyncTarget key -> what the workloads placed on it request of its nodes (``cpu``, ``pods``...).
    node_use: dict[str, Totals] = field(default_factory=dict)
    #: (cluster, namespace) -> the use of its workloads across all targets (quota resource names).
    namespace_use: dict[Namespace, Totals] = field(default_factory=dict)
    #: (cluster, namespace) -> SyncTarget key -> the use of its workloads on that target.
    namespace_target_use: dict[Namespace, dict[str, Totals]] = field(default_factory=dict)
    #: Workloads seen, and the list requests made for them.
    workloads: int = 0
    requests: int = 0
    _by_cluster: dict[str, list[Namespace]] | None = None

    def add(self, entry: _Entry) -> None:
        where = (entry.cluster, entry.namespace)
        use = self.namespace_use.get(where)
        if use is None:
            use = self.namespace_use[where] = Totals()
        use.add(entry.overall)
        if not entry.targets:
            return
        per_target = self.namespace_target_use.setdefault(where, {})
        for key in entry.targets:
            on = per_target.get(key)
            if on is None:
                on = per_target[key] = Totals()
            on.add(entry.per_target)
            node = self.node_use.get(key)
            if node is None:
                node = self.node_use[key] = Totals()
            node.add(entry.node)

    def namespaces_of(self, cluster: str) -> list[Namespace]:
        """The namespaces of ``cluster`` that have workloads."""
        if self._by_cluster is None:
            self._by_cluster = {}
            for where in self.namespace_use:
                self._by_cluster.setdefault(where[0], []).append(where)
        return self._by_cluster.get(cluster, [])

    def use_in(self, namespaces: Iterable[Namespace]) -> tuple[Totals, dict[str, Totals]]:
        """The use of the workloads of ``namespaces``: overall, and per SyncTarget key."""
        overall = Totals()
        per_target: dict[str, Totals] = {}
        for where in namespaces:
            use = self.namespace_use.get(where)
            if use is not None:
                overall.add_totals(use)
            for key, on in self.namespace_target_use.get(where, {}).items():
                per_target.setdefault(key, Totals()).add_totals(on)
        return overall, per_target


class WorkloadUsage:
    """Builds the :class:`WorkloadIndex` of a cycle; one instance may serve several controllers."""

    def __init__(
        self, *, logical_cluster: str = DEFAULT_CLUSTER, resources: Iterable[Resource] = WORKLOAD_RESOURCES
    ) -> None:
        self.logical_cluster = logical_cluster
        self.resources = tuple(resources)
        self._cache: dict[str, _Entry] = {}
        self._shared: dict[Any, Any] = {}

    def index(self, ctx: Context) -> WorkloadIndex:
        """This cycle's sums (listed and summed on the first call of the cycle)."""
        memo = ctx.snapshot.memo.get(_MEMO)
        if isinstance(memo, WorkloadIndex):
            return memo
        if isinstance(memo, RetryLater):
            # Listing failed earlier this cycle: every object waiting for the sums fails the same way,
            # without listing everything again for each of them.
            raise RetryLater(str(memo))
        try:
            index = self._build(ctx)
        except (ApiError, Unreachable, ValueError) as exc:
            failure = ctx.snapshot.memo[_MEMO] = RetryLater(f"listing workloads failed: {exc}")
            raise RetryLater(str(failure)) from exc
        ctx.snapshot.memo[_MEMO] = index
        return index

    def _build(self, ctx: Context) -> WorkloadIndex:
        index = WorkloadIndex()
        cache: dict[str, _Entry] = {}
        for resource in self.resources:
            index.requests += 1
            try:
                for obj in ctx.client.iter_list(resource):
                    entry = self._entry(resource, obj)
                    if entry is None:
                        continue
                    cache[str(obj["metadata"].get("uid", ""))] = entry
                    index.add(entry)
                    index.workloads += 1
            except NotFound:
                continue  # the kind is not served here: no workloads of it
        # Only what exists now stays cached, so memory follows the number of workloads.
        self._cache = cache
        if len(self._shared) > 2 * len(cache) + 1000:
            self._shared = {}  # shared tuples of workloads gone: start over (entries keep theirs)
        return index

    def _entry(self, resource: Resource, obj: Mapping[str, Any]) -> _Entry | None:
        meta = obj.get("metadata") or {}
        uid, rv = str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
        cached = self._cache.get(uid)
        if cached is not None and cached.resource_version == rv:
            return cached
        try:
            usage = usage_of(obj, resource.group, resource.kind, resource.plural)
            overall, per_target = usage.overall(), usage.on(next(iter(usage.targets), ""))
            node = node_requests(usage.compute)
        except (QuantityError, TypeError, ValueError) as exc:
            # The apiserver validates workload quantities, so this is a foreign or broken object:
            # leave it out rather than stop counting everything else.
            log.warning(
                "workload use not computable",
                extra={"object": meta.get("name"), "namespace": meta.get("namespace"), "error": str(exc)},
            )
            return None
        # Workloads of one template use the same: share the tuples (and the names), so that the cache
        # costs little more than a key and a resourceVersion per workload.
        shared = self._shared
        return _Entry(
            resource_version=rv,
            cluster=sys.intern(cluster_of(obj, self.logical_cluster)),
            namespace=sys.intern(str(meta.get("namespace") or "")),
            overall=shared.setdefault(c := compact(overall), c),
            per_target=shared.setdefault(c := compact(per_target), c),
            node=shared.setdefault(c := compact(node), c),
            targets=shared.setdefault(t := tuple(sorted(usage.targets)), t),
        )


class WorkloadController:
    """What the aggregator and the quota manager share: their settings, the workload index, and
    refs naming the kind (``<plural>/<name>``), so that two objects of one name and different kinds
    stay apart."""

    name = ""
    #: The kinds whose objects the controller writes.
    kinds: tuple[Resource, ...] = ()

    def __init__(
        self,
        *,
        logical_cluster: str = DEFAULT_CLUSTER,
        partitions: int = 1,
        workloads: WorkloadUsage | None = None,
    ) -> None:
        self.logical_cluster = logical_cluster
        self.partitions = partitions
        self.workloads = workloads or WorkloadUsage(logical_cluster=logical_cluster)

    def ref(self, resource: Resource, obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj["metadata"]
        return ObjectRef(self.name, f"{resource.plural}/{meta['name']}", str(meta.get("namespace") or ""))

    def fetch(self, ctx: Context, ref: ObjectRef) -> dict[str, Any] | None:
        plural, _, name = ref.name.partition("/")
        resource = next(r for r in self.kinds if r.plural == plural)
        return not_found_is_none(lambda: ctx.client.get(resource, name, namespace=ref.namespace or None))
