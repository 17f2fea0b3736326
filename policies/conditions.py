"""kcp conditions (``conditionsv1alpha1.Condition``) and the setter/summary rules kcp applies to them.

Follows kcp v0.11 ``pkg/apis/third_party/conditions/util/conditions`` (a copy of Cluster API's):

- :func:`set_condition` keeps ``lastTransitionTime`` unless status, reason, severity or message changed,
  and keeps the list sorted with ``Ready`` first, then by type.
- :func:`set_summary` derives ``Ready`` from the in-scope conditions by (status, severity) priority.

Every function returns a new list and leaves its input untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, NotRequired, TypeAlias, TypedDict

from kcp_tmc.policies.timefmt import format_rfc3339

__all__ = [
    "API_IMPORTER_READY",
    "ERROR",
    "FALSE",
    "HEARTBEAT_HEALTHY",
    "INFO",
    "READY",
    "REASON_ERROR_HEARTBEAT",
    "REASON_SYNCER_UNAUTHORIZED",
    "SUMMARY_TYPES",
    "SYNCER_AUTHORIZED",
    "SYNCER_READY",
    "TRUE",
    "UNKNOWN",
    "WARNING",
    "Condition",
    "ConditionList",
    "get_condition",
    "is_false",
    "is_true",
    "is_unknown",
    "mark_false",
    "mark_true",
    "mark_unknown",
    "merge_priority",
    "set_condition",
    "set_summary",
    "sort_conditions",
    "summarize",
]

#: Condition types on a SyncTarget.
READY: Final = "Ready"
HEARTBEAT_HEALTHY: Final = "HeartbeatHealthy"
SYNCER_READY: Final = "SyncerReady"
API_IMPORTER_READY: Final = "APIImporterReady"
SYNCER_AUTHORIZED: Final = "SyncerAuthorized"

#: Reasons kcp uses.
REASON_ERROR_HEARTBEAT: Final = "ErrorHeartbeat"
REASON_SYNCER_UNAUTHORIZED: Final = "SyncerUnauthorized"

#: Severities of a False condition.
ERROR: Final = "Error"
WARNING: Final = "Warning"
INFO: Final = "Info"

#: Condition statuses.
TRUE: Final = "True"
FALSE: Final = "False"
UNKNOWN: Final = "Unknown"

#: The conditions the heartbeat controller summarises into Ready, in kcp's order.
SUMMARY_TYPES: Final = (SYNCER_READY, API_IMPORTER_READY, HEARTBEAT_HEALTHY)


class Condition(TypedDict):
    """One entry of ``status.conditions``; optional fields are omitted when empty, as upstream JSON does."""

    type: str
    status: str
    severity: NotRequired[str]
    lastTransitionTime: NotRequired[str]
    reason: NotRequired[str]
    message: NotRequired[str]


ConditionList: TypeAlias = "list[Condition]"


def get_condition(conds: Iterable[Condition] | None, type: str) -> Condition | None:
    """The condition of ``type``, or None."""
    for condition in conds or ():
        if condition.get("type") == type:
            return condition
    return None


def _status_is(conds: Iterable[Condition] | None, type_: str, status: str) -> bool:
    condition = get_condition(conds, type_)
    return condition is not None and condition.get("status") == status


def is_true(conds: Iterable[Condition] | None, type: str) -> bool:
    """True when the condition exists and its status is ``True``."""
    return _status_is(conds, type, TRUE)


def is_false(conds: Iterable[Condition] | None, type: str) -> bool:
    """True when the condition exists and its status is ``False``."""
    return _status_is(conds, type, FALSE)


def is_unknown(conds: Iterable[Condition] | None, type: str) -> bool:
    """True when the condition is missing or its status is ``Unknown`` (kcp ``IsUnknown``)."""
    condition = get_condition(conds, type)
    return condition is None or condition.get("status") == UNKNOWN


def _same_state(a: Condition, b: Condition) -> bool:
    return all(
        a.get(field, "") == b.get(field, "") for field in ("type", "status", "reason", "severity", "message")
    )


def sort_conditions(conds: Iterable[Condition]) -> list[Condition]:
    """``Ready`` first, then by type ascending (kcp ``lexicographicLess``)."""
    return sorted(conds, key=lambda condition: (condition.get("type") != READY, condition.get("type", "")))


def _clean(condition: Condition) -> Condition:
    # Upstream marks severity, reason and message omitempty: drop them when empty.
    cleaned: Condition = {"type": condition["type"], "status": condition["status"]}
    if condition.get("severity"):
        cleaned["severity"] = condition["severity"]
    if condition.get("lastTransitionTime"):
        cleaned["lastTransitionTime"] = condition["lastTransitionTime"]
    if condition.get("reason"):
        cleaned["reason"] = condition["reason"]
    if condition.get("message"):
        cleaned["message"] = condition["message"]
    return cleaned


def set_condition(conds: Sequence[Condition] | None, new: Condition, now: datetime) -> list[Condition]:
    """``conds`` with ``new`` set, as kcp ``conditions.Set``.

    ``lastTransitionTime`` becomes ``now`` (UTC, whole seconds) when the condition is new without a time
    of its own, or when its status, reason, severity or message changed; otherwise the old time and the
    old condition stay.
    """
    stamp = format_rfc3339(now)
    result = [copy.deepcopy(condition) for condition in conds or ()]
    incoming = _clean(new)
    for index, existing in enumerate(result):
        if existing.get("type") == incoming["type"]:
            if not _same_state(existing, incoming):
                incoming["lastTransitionTime"] = stamp
                result[index] = incoming
            break
    else:
        if not incoming.get("lastTransitionTime"):
            incoming["lastTransitionTime"] = stamp
        result.append(incoming)
    return sort_conditions(result)


def mark_true(conds: Sequence[Condition] | None, type: str, now: datetime) -> list[Condition]:
    """Set ``type`` to True with no reason, severity or message."""
    return set_condition(conds, {"type": type, "status": TRUE}, now)


def mark_false(
    conds: Sequence[Condition] | None,
    type: str,
    reason: str,
    severity: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    """Set ``type`` to False with ``reason``, ``severity`` and ``message``."""
    condition: Condition = {
        "type": type,
        "status": FALSE,
        "reason": reason,
        "severity": severity,
        "message": message,
    }
    return set_condition(conds, condition, now)


def mark_unknown(
    conds: Sequence[Condition] | None,
    type: str,
    reason: str,
    message: str,
    now: datetime,
) -> list[Condition]:
    """Set ``type`` to Unknown with ``reason`` and ``message``."""
    return set_condition(conds, {"type": type, "status": UNKNOWN, "reason": reason, "message": message}, now)


def merge_priority(condition: Condition) -> int:
    """Summary priority: False/Error 0, False/Warning 1, False/Info 2, True 3, Unknown 4, anything else 99."""
    status = condition.get("status")
    if status == FALSE:
        return {ERROR: 0, WARNING: 1, INFO: 2}.get(condition.get("severity", ""), 99)
    if status == TRUE:
        return 3
    if status == UNKNOWN:
        return 4
    return 99


def summarize(conds: Sequence[Condition] | None, types: Sequence[str] = SUMMARY_TYPES) -> Condition | None:
    """The Ready condition kcp's ``summary`` computes (without a time); None when nothing is in scope."""
    in_scope = [c for c in conds or () if c.get("type") != READY and c.get("type") in types]
    if not in_scope:
        return None
    # Groups are keyed by (status, severity); the top group is the one with the lowest priority number.
    top_key = min(
        ((c.get("status"), c.get("severity", "")) for c in in_scope),
        key=lambda key: merge_priority({"type": "", "status": key[0] or "", "severity": key[1]}),
    )
    top = [c for c in in_scope if (c.get("status"), c.get("severity", "")) == top_key]
    status, severity = top_key
    if status == TRUE:
        return {"type": READY, "status": TRUE}
    first = top[0]
    if len(top) > 1:
        first = next((c for t in types for c in top if c.get("type") == t), top[0])
    summary: Condition = {"type": READY, "status": FALSE if status == FALSE else UNKNOWN}
    if status == FALSE:
        summary["severity"] = severity
    summary["reason"] = first.get("reason", "")
    summary["message"] = first.get("message", "")
    return _clean(summary)


def set_summary(
    conds: Sequence[Condition] | None, now: datetime, types: Sequence[str] = SUMMARY_TYPES
) -> list[Condition]:
    """``conds`` with Ready set from the summary of ``types`` (kcp ``SetSummary``).

    With no condition of ``types`` present, Ready is left as it is.
    """
    summary = summarize(conds, types)
    if summary is None:
        return sort_conditions(copy.deepcopy(list(conds or ())))
    return set_condition(conds, summary, now)
