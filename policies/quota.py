"""Quota admission arithmetic: which quotas bind a request, whether its change fits, and reservations.

Pure functions over plain dicts, shared by the built-in quota policies and by the webhook that
writes their reservations.  Two kinds of quota are read the same way, as a :class:`QuotaView`:

* ``tmc.kcp.io/v1alpha1`` FederatedQuota: limits in ``spec.overall`` (and per SyncTarget in
  ``spec.staticAssignments[].hard``), use in ``status.overallUsed`` (and
  ``status.aggregatedStatus[].used``), read by meaning (``requests.cpu`` in the status counts for
  ``cpu`` in the spec) and written back in the spec's spelling;
* kcp's cluster-scoped core ResourceQuota: limits in ``status.hard``, use in ``status.used``; only
  object counts (``count/...`` and the legacy names such as ``configmaps``) bind, as kcp runs
  only the generic object-count evaluators.

A quota binds the objects of its own namespace, or of every namespace of its logical cluster
when it lives in namespace ``admin`` with the annotation
``experimental.quota.kcp.io/cluster-scoped`` true by Go ``ParseBool``.  Never across logical
clusters.

The check follows Kubernetes' quota admission: only resources whose use grows are checked
(a relabel or a scale-down always passes, even above a lowered limit); a quota whose status does
not list a constrained resource yet denies, since its use is unknown; messages read as
Kubernetes words them (``exceeded quota: <name>, requested: cpu=2, used: cpu=7, limited: cpu=8``,
resources sorted and comma-joined).  A reservation adds only the increases to the status; the
quota manager's recomputation of true use releases what a later step rejected or a scale-down
freed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kcp_tmc.policies.clusters import cluster_of
from kcp_tmc.policies.kinds import FEDERATED_QUOTA, RESOURCE_QUOTA, ResourceType
from kcp_tmc.policies.model import (
    CLUSTER_SCOPED_QUOTA_NAMESPACE,
    is_cluster_scoped_quota,
    name_of,
    namespace_of,
    spec_of,
    status_of,
)
from kcp_tmc.policies.policy import FieldError, Lookup, Reservation
from kcp_tmc.policies.quantities import Quantity, QuantityError, parse_quantity
from kcp_tmc.policies.usage import canonical_resource

__all__ = [
    "QUOTA_EXCEEDED",
    "QuotaView",
    "UnreadableQuota",
    "apply_reservation",
    "binding_quotas",
    "check",
    "exceeded_message",
    "federated_view",
    "pretty",
    "resource_quota_view",
    "view_of",
]

#: The ``status.reason`` of a quota denial (Karmada's word; Kubernetes says Forbidden).
QUOTA_EXCEEDED: Final = "QuotaExceeded"
_ZERO: Final = Quantity(0)

ResourceList = dict[str, Quantity]


class UnreadableQuota(ValueError):
    """A quota object that cannot be read as a quota (it is validation's job to refuse it)."""


@dataclass(frozen=True)
class QuotaView:
    """One quota as admission reads it; resource names are the quota's own spellings.

    ``targets`` maps the name of a SyncTarget with a static assignment to its limits, and
    ``target_used`` to what the status says it uses there.
    """

    rtype: ResourceType
    namespace: str
    name: str
    cluster: str
    hard: ResourceList
    used: ResourceList
    targets: Mapping[str, ResourceList] = field(default_factory=dict)
    target_used: Mapping[str, ResourceList] = field(default_factory=dict)
    resource_version: str = ""

    @property
    def display(self) -> str:
        """``namespace/name`` of the quota."""
        return f"{self.namespace}/{self.name}"


def _list(raw: object) -> ResourceList:
    if not isinstance(raw, Mapping):
        return {}
    out: ResourceList = {}
    for key, value in raw.items():
        try:
            out[str(key)] = parse_quantity(value)
        except (QuantityError, TypeError) as exc:
            raise UnreadableQuota(f"{key}: {exc}") from None
    return out


def _aligned(used: ResourceList, limits: Mapping[str, Quantity]) -> ResourceList:
    """``used`` keyed by the limits' spellings: a status may write ``requests.cpu`` for ``cpu``."""
    by_meaning = {canonical_resource(k): v for k, v in used.items()}
    out = dict(used)
    for key in limits:
        if key not in out and canonical_resource(key) in by_meaning:
            out[key] = by_meaning[canonical_resource(key)]
    return out


def _respelled(used: ResourceList, limits: Mapping[str, Quantity]) -> ResourceList:
    """``used`` without other spellings of the limited resources (the limits' spelling is written)."""
    meanings = {canonical_resource(k): k for k in limits}
    return {k: v for k, v in used.items() if meanings.get(canonical_resource(k), k) == k}


def federated_view(obj: Mapping[str, Any], default_cluster: str = "root") -> QuotaView:
    """A FederatedQuota as a :class:`QuotaView`; :class:`UnreadableQuota` for unreadable quantities."""
    spec, status = spec_of(obj), status_of(obj)
    targets: dict[str, ResourceList] = {}
    for entry in spec.get("staticAssignments") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("syncTarget"), str):
            targets[entry["syncTarget"]] = _list(entry.get("hard"))
    target_used: dict[str, ResourceList] = {}
    for entry in status.get("aggregatedStatus") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("syncTarget"), str):
            name = entry["syncTarget"]
            target_used[name] = _aligned(_list(entry.get("used")), targets.get(name, {}))
    overall = _list(spec.get("overall"))
    return QuotaView(
        FEDERATED_QUOTA,
        namespace_of(obj),
        name_of(obj),
        cluster_of(obj, default_cluster),
        overall,
        _aligned(_list(status.get("overallUsed")), overall),
        targets,
        target_used,
        str((obj.get("metadata") or {}).get("resourceVersion") or ""),
    )


def resource_quota_view(obj: Mapping[str, Any], default_cluster: str = "root") -> QuotaView:
    """A ResourceQuota as a :class:`QuotaView`, its limits cut down to object counts."""
    status = status_of(obj)
    hard_raw = status.get("hard") if "hard" in status else spec_of(obj).get("hard")
    hard = {k: v for k, v in _list(hard_raw).items() if canonical_resource(k).startswith("count/")}
    return QuotaView(
        RESOURCE_QUOTA,
        namespace_of(obj),
        name_of(obj),
        cluster_of(obj, default_cluster),
        hard,
        _list(status.get("used")),
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
    )


def view_of(rtype: ResourceType, obj: Mapping[str, Any], default_cluster: str = "root") -> QuotaView:
    """The view of a quota of either type."""
    if rtype == RESOURCE_QUOTA:
        return resource_quota_view(obj, default_cluster)
    return federated_view(obj, default_cluster)


def _in_scope(obj: Mapping[str, Any], namespace: str, cluster: str, default_cluster: str) -> bool:
    if cluster_of(obj, default_cluster) != cluster:
        return False
    quota_namespace = namespace_of(obj)
    if is_cluster_scoped_quota(obj):
        return True
    return bool(namespace) and quota_namespace == namespace


def binding_quotas(
    lookup: Lookup, namespace: str, cluster: str, default_cluster: str = "root"
) -> list[QuotaView]:
    """The quotas that bind an object of ``namespace`` (``""``: cluster-scoped) in ``cluster``.

    FederatedQuotas of the namespace and cluster-scoped ones of namespace ``admin``, then
    cluster-scoped ResourceQuotas of ``admin``; sorted by namespace and name within each type.
    A quota whose quantities cannot be read is left out: validation refuses such objects.
    """
    views: list[QuotaView] = []
    namespaces = [CLUSTER_SCOPED_QUOTA_NAMESPACE]
    if namespace and namespace != CLUSTER_SCOPED_QUOTA_NAMESPACE:
        namespaces.insert(0, namespace)
    for rtype in (FEDERATED_QUOTA, RESOURCE_QUOTA):
        found: list[QuotaView] = []
        for ns in namespaces if rtype == FEDERATED_QUOTA else [CLUSTER_SCOPED_QUOTA_NAMESPACE]:
            for obj in lookup.list(rtype, ns):
                if rtype == RESOURCE_QUOTA and not is_cluster_scoped_quota(obj):
                    continue  # namespaced ResourceQuotas are the apiserver's own to enforce
                if not _in_scope(obj, namespace, cluster, default_cluster):
                    continue
                try:
                    found.append(view_of(rtype, obj, default_cluster))
                except UnreadableQuota:
                    continue
        views.extend(sorted(found, key=lambda v: (v.namespace, v.name)))
    return views


def pretty(values: Mapping[str, Quantity], keys: Iterable[str]) -> str:
    """``name=quantity`` for ``keys``, sorted and comma-joined, as Kubernetes prints a resource list."""
    return ",".join(f"{k}={values.get(k, _ZERO)}" for k in sorted(keys))


def exceeded_message(
    name: str, requested: Mapping[str, Quantity], used: Mapping[str, Quantity], hard: Mapping[str, Quantity]
) -> str:
    """``exceeded quota: <name>, requested: ..., used: ..., limited: ...`` over ``requested``'s keys."""
    keys = list(requested)
    return (
        f"exceeded quota: {name}, requested: {pretty(requested, keys)}, "
        f"used: {pretty(used, keys)}, limited: {pretty(hard, keys)}"
    )


def _increases(limits: Mapping[str, Quantity], change: Mapping[str, Quantity]) -> ResourceList:
    """The growth of each limited resource, by the limit's own spelling (zero and shrinkage left out)."""
    out: ResourceList = {}
    for key in limits:
        delta = change.get(canonical_resource(key))
        if delta is not None and delta.sign > 0:
            out[key] = delta
    return out


def _fix(view: QuotaView, where: str) -> str:
    kind = view.rtype.kind
    return f"lower the request or raise {where} of {kind} {view.display}"


def _judge(
    view: QuotaView,
    label: str,
    limits: Mapping[str, Quantity],
    used: Mapping[str, Quantity],
    increase: Mapping[str, Quantity],
    path: str,
    where: str,
    need_stats: bool,
) -> FieldError | None:
    if need_stats:
        unknown = sorted(k for k in increase if k not in used)
        if unknown:
            return FieldError(
                path,
                f"status unknown for quota: {view.name}, resources: {','.join(unknown)}; "
                "wait until the quota manager has written the quota's status, then retry",
                "FieldValueForbidden",
            )
    exceeded = {k: v for k, v in increase.items() if used.get(k, _ZERO) + v > limits[k]}
    if not exceeded:
        return None
    message = exceeded_message(label, exceeded, used, limits)
    if all(k.startswith("count/") for k in exceeded):
        path = "metadata.name"  # the object itself is one too many, whatever else it changes
    return FieldError(path, f"{message}; {_fix(view, where)}", "FieldValueForbidden")


def check(
    view: QuotaView,
    overall_change: Mapping[str, Quantity],
    target_change: Mapping[str, Mapping[str, Quantity]],
    *,
    policy: str,
    path: str,
) -> tuple[FieldError | None, Reservation | None]:
    """Whether a change fits ``view``: the denial, or the reservation to write (``None``: nothing to).

    ``overall_change`` is keyed by canonical resource names (:func:`~kcp_tmc.policies.usage.change`);
    ``target_change`` by SyncTarget **name**, for the targets of the object's logical cluster.
    """
    increase = _increases(view.hard, overall_change)
    denial = _judge(view, view.name, view.hard, view.used, increase, path, _overall_field(view), True)
    if denial is not None:
        return denial, None
    per_target: dict[str, ResourceList] = {}
    for target, limits in sorted(view.targets.items()):
        change = target_change.get(target, {})
        grown = _increases(limits, change)
        if grown:
            label = f"{view.name} (static assignment of SyncTarget {target})"
            used = view.target_used.get(target, {})
            where = f"spec.staticAssignments[syncTarget={target}].hard"
            denial = _judge(view, label, limits, used, grown, path, where, False)
            if denial is not None:
                return denial, None
        # The target's entry also shows the overall resources the manager counts there: reserving
        # them too keeps the entry whole until the next count, not right for the assignment alone.
        tracked = {**_increases(view.hard, change), **grown}
        if tracked:
            per_target[target] = tracked
    if not increase and not per_target:
        return None, None
    reservation = Reservation(
        policy=policy,
        quota=view.rtype,
        namespace=view.namespace,
        name=view.name,
        overall=increase,
        per_target=per_target,
        path=path,
    )
    return None, reservation


def _overall_field(view: QuotaView) -> str:
    return "spec.overall" if view.rtype == FEDERATED_QUOTA else "spec.hard"


def _written(values: Mapping[str, Quantity]) -> dict[str, str]:
    return {k: str(values[k]) for k in sorted(values)}


def _added(base: Mapping[str, Quantity], delta: Mapping[str, Quantity]) -> ResourceList:
    out = dict(base)
    for key, value in delta.items():
        total = out.get(key, _ZERO) + value
        out[key] = total if total.sign >= 0 else _ZERO  # a status never shows negative use
    return out


def apply_reservation(
    quota: Mapping[str, Any], reservation: Reservation, default_cluster: str = "root"
) -> tuple[dict[str, Any] | None, FieldError | None]:
    """The quota's new ``status`` with the reservation added, or the denial when it no longer fits.

    ``quota`` is the object as just read from the apiserver: the check runs again against its
    status, so a reservation that concurrent ones outran is refused in the policy's words.  The
    returned status is the whole new ``status`` (other fields kept) to write with the quota's
    ``resourceVersion`` as precondition.
    """
    try:
        view = view_of(reservation.quota, quota, default_cluster)
    except UnreadableQuota as exc:
        return None, FieldError(reservation.path, f"quota {reservation.name} cannot be read: {exc}")
    status = dict(status_of(quota))
    denial = _judge(
        view,
        view.name,
        view.hard,
        view.used,
        {k: v for k, v in reservation.overall.items() if k in view.hard and v.sign > 0},
        reservation.path,
        _overall_field(view),
        True,
    )
    if denial is not None:
        return None, denial
    used_key = "overallUsed" if reservation.quota == FEDERATED_QUOTA else "used"
    status[used_key] = _written(_respelled(_added(view.used, reservation.overall), view.hard))
    if reservation.per_target:
        entries = [dict(e) for e in status.get("aggregatedStatus") or () if isinstance(e, Mapping)]
        for target, grown in sorted(reservation.per_target.items()):
            limits = view.targets.get(target)
            if limits is None:
                continue  # the assignment was removed meanwhile: nothing binds the target
            used = view.target_used.get(target, {})
            label = f"{view.name} (static assignment of SyncTarget {target})"
            where = f"spec.staticAssignments[syncTarget={target}].hard"
            growing = {k: v for k, v in grown.items() if k in limits and v.sign > 0}
            denial = _judge(view, label, limits, used, growing, reservation.path, where, False)
            if denial is not None:
                return None, denial
            entry = next((e for e in entries if e.get("syncTarget") == target), None)
            if entry is None:
                entry = {"syncTarget": target, "hard": _written(limits)}
                entries.append(entry)
            entry["used"] = _written(_respelled(_added(used, grown), limits))
        status["aggregatedStatus"] = entries
    return status, None
