"""The status the quota manager writes: FederatedQuota use and kcp's cluster-scoped ResourceQuota counts.

Pure functions over plain dicts and :class:`~kcp_tmc.policies.quantities.Quantity` maps.  A quota's
``used`` lists carry exactly the keys of its limits, spelled as the limits spell them (``cpu`` stays
``cpu`` although it means ``requests.cpu``), as Kubernetes masks a quota's usage to its hard keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from kcp_tmc.policies.clusters import DEFAULT_CLUSTER, cluster_of
from kcp_tmc.policies.conditions import FALSE, TRUE, Condition, set_condition
from kcp_tmc.policies.model import is_cluster_scoped_quota, namespace_of, spec_of, status_of
from kcp_tmc.policies.quantities import Quantity, parse_resource_list
from kcp_tmc.policies.usage import canonical_resource

__all__ = [
    "COUNT_PREFIX",
    "EXCEEDED",
    "REASON_QUOTA_EXCEEDED",
    "REASON_WITHIN_QUOTA",
    "QuotaScope",
    "count_resource",
    "exceeded_message",
    "federated_quota_status",
    "masked",
    "quota_scope",
    "resource_quota_status",
]

#: The condition the quota manager sets on a FederatedQuota.
EXCEEDED: Final = "Exceeded"
REASON_QUOTA_EXCEEDED: Final = "QuotaExceeded"
REASON_WITHIN_QUOTA: Final = "WithinQuota"
COUNT_PREFIX: Final = "count/"
_ZERO: Final = Quantity(0)


@dataclass(frozen=True)
class QuotaScope:
    """The workloads a quota counts: those of ``cluster``, in ``namespace`` or (None) in all of them."""

    cluster: str
    namespace: str | None

    def covers(self, cluster: str, namespace: str) -> bool:
        """Whether an object of that logical cluster and namespace is counted."""
        return cluster == self.cluster and (self.namespace is None or namespace == self.namespace)


def quota_scope(quota: Mapping[str, Any], default_cluster: str = DEFAULT_CLUSTER) -> QuotaScope:
    """A quota's scope: its namespace, or its whole logical cluster when kcp's cluster-scoped rule holds.

    The rule (namespace ``admin`` and ``experimental.quota.kcp.io/cluster-scoped`` true by Go
    ``ParseBool``) is the same for FederatedQuota and ResourceQuota.
    """
    cluster = cluster_of(quota, default_cluster)
    if is_cluster_scoped_quota(quota):
        return QuotaScope(cluster, None)
    return QuotaScope(cluster, namespace_of(quota))


def masked(keys: Iterable[str], use: Mapping[str, Quantity]) -> dict[str, Quantity]:
    """``use`` under the quota's own keys (zero where nothing is used)."""
    return {key: use.get(canonical_resource(key), _ZERO) for key in keys}


def _wire(values: Mapping[str, Quantity]) -> dict[str, str]:
    return {key: str(values[key]) for key in sorted(values)}


def _overs(used: Mapping[str, Quantity], limits: Mapping[str, Quantity]) -> list[str]:
    out = []
    for key in sorted(limits):
        value = used.get(key, _ZERO)
        if value > limits[key]:
            out.append(f"{key} by {value - limits[key]} (used {value}, limited {limits[key]})")
    return out


def exceeded_message(
    overall_used: Mapping[str, Quantity],
    overall: Mapping[str, Quantity],
    per_target: Sequence[tuple[str, Mapping[str, Quantity], Mapping[str, Quantity]]] = (),
) -> str:
    """Where use is above a limit and by how much; ``""`` when it is nowhere.

    ``per_target`` holds ``(syncTarget, used, hard)`` of the static assignments.
    """
    parts = []
    overall_overs = _overs(overall_used, overall)
    if overall_overs:
        parts.append("overall: " + ", ".join(overall_overs))
    for name, used, hard in per_target:
        overs = _overs(used, hard)
        if overs:
            parts.append(f"SyncTarget {name}: " + ", ".join(overs))
    return "use exceeds the quota: " + "; ".join(parts) if parts else ""


def federated_quota_status(
    quota: Mapping[str, Any],
    overall_use: Mapping[str, Quantity],
    target_use: Mapping[str, Mapping[str, Quantity]],
    now: datetime,
) -> dict[str, Any]:
    """The status of a FederatedQuota from the use of the workloads in its scope.

    ``overall_use`` is their use across all targets, ``target_use`` their use per SyncTarget name (both
    in canonical resource names, as :mod:`kcp_tmc.policies.usage` computes them).  ``aggregatedStatus``
    has one entry per SyncTarget with a static assignment or with use, sorted by name; assigned ones
    carry their ``hard``.  Condition ``Exceeded`` is True, saying where and by how much, while use is
    above a limit (a limit lowered below current use), else False.  A quantity of the spec that does
    not parse raises :class:`~kcp_tmc.policies.quantities.ResourceListError`.
    """
    spec = spec_of(quota)
    overall = parse_resource_list(spec.get("overall"))
    hard_of: dict[str, dict[str, Quantity]] = {}
    for assignment in spec.get("staticAssignments") or ():
        if isinstance(assignment, Mapping) and assignment.get("syncTarget"):
            hard_of[str(assignment["syncTarget"])] = parse_resource_list(assignment.get("hard"))
    overall_used = masked(overall, overall_use)
    aggregated: list[dict[str, Any]] = []
    assigned: list[tuple[str, Mapping[str, Quantity], Mapping[str, Quantity]]] = []
    for name in sorted(set(hard_of) | set(target_use)):
        used = masked(overall, target_use.get(name, {}))
        entry: dict[str, Any] = {"syncTarget": name}
        if name in hard_of:
            entry["hard"] = _wire(hard_of[name])
            assigned.append((name, used, hard_of[name]))
        entry["used"] = _wire(used)
        aggregated.append(entry)
    message = exceeded_message(overall_used, overall, assigned)
    condition: Condition = (
        {"type": EXCEEDED, "status": TRUE, "reason": REASON_QUOTA_EXCEEDED, "message": message}
        if message
        else {"type": EXCEEDED, "status": FALSE, "reason": REASON_WITHIN_QUOTA}
    )
    status: dict[str, Any] = {
        "overall": dict(spec.get("overall") or {}),
        "overallUsed": _wire(overall_used),
        "aggregatedStatus": aggregated,
        "conditions": set_condition(status_of(quota).get("conditions"), condition, now),
    }
    return status


def count_resource(name: str) -> tuple[str, str] | None:
    """``(plural, group)`` of a ``count/<resource>[.<group>]`` quota key; None for any other key."""
    if not name.startswith(COUNT_PREFIX) or len(name) == len(COUNT_PREFIX):
        return None
    plural, _, group = name[len(COUNT_PREFIX) :].partition(".")
    return plural, group


def resource_quota_status(quota: Mapping[str, Any], counts: Mapping[str, int]) -> dict[str, Any]:
    """A ResourceQuota's status as kcp's quota controller writes it: ``hard`` and the object counts.

    kcp evaluates object counts only, so ``used`` has the ``count/...`` keys of ``spec.hard``;
    ``counts`` maps such a key to the number of objects in the quota's scope.
    """
    hard = dict(spec_of(quota).get("hard") or {})
    used = {key: str(counts.get(key, 0)) for key in sorted(hard) if count_resource(key) is not None}
    return {"hard": hard, "used": used}
