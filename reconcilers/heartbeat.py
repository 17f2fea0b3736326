"""``HeartbeatHealthy`` and the ``Ready`` summary of a SyncTarget, as kcp's heartbeat manager sets them.

- heartbeat absent, empty or the zero time: False, ``ErrorHeartbeat``, ``Warning``,
  ``No heartbeat yet seen``; nothing to look at again;
- ``now - latest > threshold`` (strictly greater): False, ``ErrorHeartbeat``, ``Warning``,
  ``No heartbeat since <Go time.String()>``; nothing to look at again;
- otherwise True; look again at ``latest + threshold``.

``Ready`` is then kcp's summary of SyncerReady, APIImporterReady and HeartbeatHealthy; conditions keep
their ``lastTransitionTime`` unless status, reason, severity or message changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from kcp_tmc.policies.conditions import (
    HEARTBEAT_HEALTHY,
    REASON_ERROR_HEARTBEAT,
    WARNING,
    Condition,
    mark_false,
    mark_true,
    set_summary,
)
from kcp_tmc.policies.timefmt import go_time_string, parse_rfc3339

__all__ = ["MESSAGE_NO_HEARTBEAT", "heartbeat_conditions", "last_heartbeat"]

MESSAGE_NO_HEARTBEAT = "No heartbeat yet seen"
_ZERO = datetime(1, 1, 1, tzinfo=UTC)


def last_heartbeat(value: object) -> datetime | None:
    """The heartbeat time, or None for absent, empty, unparseable or Go's zero time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parse_rfc3339(value)
    except ValueError:
        return None
    return None if parsed == _ZERO else parsed


def heartbeat_conditions(
    conditions: Sequence[Condition] | None,
    heartbeat: object,
    now: datetime,
    threshold: timedelta,
) -> tuple[list[Condition], datetime | None]:
    """The conditions after one heartbeat evaluation, and when the heartbeat goes stale (None: never)."""
    latest = last_heartbeat(heartbeat)
    due: datetime | None = None
    if latest is None:
        result = mark_false(
            conditions, HEARTBEAT_HEALTHY, REASON_ERROR_HEARTBEAT, WARNING, MESSAGE_NO_HEARTBEAT, now
        )
    elif now - latest > threshold:
        message = f"No heartbeat since {go_time_string(latest)}"
        result = mark_false(conditions, HEARTBEAT_HEALTHY, REASON_ERROR_HEARTBEAT, WARNING, message, now)
    else:
        result = mark_true(conditions, HEARTBEAT_HEALTHY, now)
        due = latest + threshold
    return set_summary(result, now), due
