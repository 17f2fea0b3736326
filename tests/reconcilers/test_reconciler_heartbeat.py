"""Heartbeat table of kcp v0.11 heartbeat_manager_test.go."""

from datetime import UTC, datetime, timedelta

import pytest

from kcp_tmc.reconcilers.heartbeat import heartbeat_conditions, last_heartbeat

NOW = datetime(2023, 2, 22, 17, 39, 27, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
HEALTHY = [
    {"type": "Ready", "status": "True", "lastTransitionTime": "2023-02-22T17:00:00Z"},
    {"type": "HeartbeatHealthy", "status": "True", "lastTransitionTime": "2023-02-22T17:00:00Z"},
]


def stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_no_heartbeat_yet_seen():
    conds, due = heartbeat_conditions(HEALTHY, None, NOW, MINUTE)
    expected = {
        "status": "False",
        "severity": "Warning",
        "reason": "ErrorHeartbeat",
        "message": "No heartbeat yet seen",
        "lastTransitionTime": "2023-02-22T17:39:27Z",
    }
    assert conds == [{"type": "Ready", **expected}, {"type": "HeartbeatHealthy", **expected}]
    assert due is None


def test_fresh_heartbeat_is_ready_and_due_when_it_goes_stale():
    conds, due = heartbeat_conditions(HEALTHY, stamp(NOW - timedelta(seconds=10)), NOW, MINUTE)
    assert conds == HEALTHY  # unchanged, lastTransitionTime kept
    assert due == NOW + timedelta(seconds=50)


def test_stale_heartbeat_message_uses_go_time_string():
    conds, due = heartbeat_conditions(HEALTHY, "2023-02-22T17:37:57Z", NOW, MINUTE)
    assert conds[0] == {
        "type": "Ready",
        "status": "False",
        "severity": "Warning",
        "reason": "ErrorHeartbeat",
        "message": "No heartbeat since 2023-02-22 17:37:57 +0000 UTC",
        "lastTransitionTime": "2023-02-22T17:39:27Z",
    }
    assert conds[1]["type"] == "HeartbeatHealthy" and conds[1]["message"] == conds[0]["message"]
    assert due is None


def test_staleness_is_strictly_greater_than_the_threshold():
    exactly = NOW - MINUTE
    conds, due = heartbeat_conditions(HEALTHY, stamp(exactly), NOW, MINUTE)
    assert conds == HEALTHY and due == NOW
    conds, _ = heartbeat_conditions(HEALTHY, stamp(exactly), NOW + timedelta(microseconds=1), MINUTE)
    assert conds[0]["status"] == "False"


def test_transition_time_kept_while_the_message_is_unchanged():
    first, _ = heartbeat_conditions([], None, NOW, MINUTE)
    second, _ = heartbeat_conditions(first, None, NOW + timedelta(minutes=5), MINUTE)
    assert second == first


def test_recovery_sets_true_without_reason():
    stale, _ = heartbeat_conditions([], None, NOW, MINUTE)
    later = NOW + timedelta(seconds=30)
    conds, _ = heartbeat_conditions(stale, stamp(later), later, MINUTE)
    assert conds == [
        {"type": "Ready", "status": "True", "lastTransitionTime": "2023-02-22T17:39:57Z"},
        {"type": "HeartbeatHealthy", "status": "True", "lastTransitionTime": "2023-02-22T17:39:57Z"},
    ]


def test_other_conditions_are_kept_and_sorted():
    syncer = {"type": "SyncerAuthorized", "status": "True", "lastTransitionTime": "2023-01-01T00:00:00Z"}
    conds, _ = heartbeat_conditions([syncer], stamp(NOW), NOW, MINUTE)
    assert [c["type"] for c in conds] == ["Ready", "HeartbeatHealthy", "SyncerAuthorized"]


@pytest.mark.parametrize("value", [None, "", "0001-01-01T00:00:00Z", "yesterday", 42])
def test_absent_zero_or_bad_heartbeat_is_none(value):
    assert last_heartbeat(value) is None
