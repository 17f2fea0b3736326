"""kcp condition setter and Ready summary semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kcp_tmc.policies.conditions import (
    API_IMPORTER_READY,
    ERROR,
    HEARTBEAT_HEALTHY,
    INFO,
    READY,
    REASON_ERROR_HEARTBEAT,
    SUMMARY_TYPES,
    SYNCER_AUTHORIZED,
    SYNCER_READY,
    WARNING,
    Condition,
    get_condition,
    is_false,
    is_true,
    is_unknown,
    mark_false,
    mark_true,
    mark_unknown,
    merge_priority,
    set_condition,
    set_summary,
    sort_conditions,
    summarize,
)

T0 = datetime(2023, 2, 22, 17, 38, 27, 654321, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
T0_TEXT = "2023-02-22T17:38:27Z"
T1_TEXT = "2023-02-22T17:43:27Z"


def test_constants() -> None:
    assert (READY, HEARTBEAT_HEALTHY, SYNCER_READY, API_IMPORTER_READY, SYNCER_AUTHORIZED) == (
        "Ready",
        "HeartbeatHealthy",
        "SyncerReady",
        "APIImporterReady",
        "SyncerAuthorized",
    )
    assert (ERROR, WARNING, INFO) == ("Error", "Warning", "Info")
    assert SUMMARY_TYPES == ("SyncerReady", "APIImporterReady", "HeartbeatHealthy")


def test_set_new_condition_stamps_now_truncated() -> None:
    conds = mark_true(None, HEARTBEAT_HEALTHY, T0)
    assert conds == [{"type": "HeartbeatHealthy", "status": "True", "lastTransitionTime": T0_TEXT}]


def test_set_new_condition_keeps_its_own_time() -> None:
    new: Condition = {"type": "X", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    assert set_condition([], new, T0)[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_same_state_keeps_time_and_old_condition() -> None:
    first = mark_false([], HEARTBEAT_HEALTHY, REASON_ERROR_HEARTBEAT, WARNING, "No heartbeat yet seen", T0)
    again = mark_false(first, HEARTBEAT_HEALTHY, REASON_ERROR_HEARTBEAT, WARNING, "No heartbeat yet seen", T1)
    assert again == first
    assert again[0]["lastTransitionTime"] == T0_TEXT


@pytest.mark.parametrize(
    ("reason", "severity", "message", "status"),
    [
        ("Other", WARNING, "m", "False"),
        (REASON_ERROR_HEARTBEAT, ERROR, "m", "False"),
        (REASON_ERROR_HEARTBEAT, WARNING, "other message", "False"),
        (REASON_ERROR_HEARTBEAT, WARNING, "m", "Unknown"),
    ],
)
def test_any_state_change_moves_the_time(reason: str, severity: str, message: str, status: str) -> None:
    first = mark_false([], "C", REASON_ERROR_HEARTBEAT, WARNING, "m", T0)
    changed: Condition = {
        "type": "C",
        "status": status,
        "reason": reason,
        "severity": severity,
        "message": message,
    }
    result = set_condition(first, changed, T1)
    assert result[0]["lastTransitionTime"] == T1_TEXT
    assert result[0]["status"] == status


def test_true_drops_reason_severity_and_message() -> None:
    conds = mark_false([], "C", "R", ERROR, "broken", T0)
    assert mark_true(conds, "C", T1) == [{"type": "C", "status": "True", "lastTransitionTime": T1_TEXT}]


def test_input_is_not_mutated() -> None:
    conds: list[Condition] = [{"type": "C", "status": "True", "lastTransitionTime": T0_TEXT}]
    snapshot = [dict(c) for c in conds]
    result = mark_false(conds, "C", "R", ERROR, "m", T1)
    assert conds == snapshot
    result[0]["status"] = "Unknown"
    assert conds == snapshot


def test_sorted_ready_first_then_by_type() -> None:
    conds: list[Condition] = []
    for type_ in ["SyncerAuthorized", "HeartbeatHealthy", "Ready", "APIImporterReady"]:
        conds = mark_true(conds, type_, T0)
    assert [c["type"] for c in conds] == ["Ready", "APIImporterReady", "HeartbeatHealthy", "SyncerAuthorized"]
    assert [
        c["type"] for c in sort_conditions([{"type": "b", "status": "True"}, {"type": "a", "status": "True"}])
    ] == [
        "a",
        "b",
    ]


def test_mark_unknown_and_empty_fields_are_omitted() -> None:
    conds = mark_unknown([], "C", "", "", T0)
    assert conds == [{"type": "C", "status": "Unknown", "lastTransitionTime": T0_TEXT}]
    conds = mark_unknown([], "C", "Waiting", "not yet", T0)
    assert conds[0] == {
        "type": "C",
        "status": "Unknown",
        "reason": "Waiting",
        "message": "not yet",
        "lastTransitionTime": T0_TEXT,
    }


def test_getters() -> None:
    conds = mark_false(mark_true([], "A", T0), "B", "R", INFO, "m", T0)
    assert get_condition(conds, "A") == conds[0]
    assert get_condition(conds, "Z") is None
    assert get_condition(None, "A") is None
    assert is_true(conds, "A") and not is_true(conds, "B") and not is_true(conds, "Z")
    assert is_false(conds, "B") and not is_false(conds, "A") and not is_false(None, "B")
    assert is_unknown(conds, "Z") and not is_unknown(conds, "A")
    assert is_unknown(mark_unknown([], "U", "", "", T0), "U")


@pytest.mark.parametrize(
    ("status", "severity", "priority"),
    [
        ("False", ERROR, 0),
        ("False", WARNING, 1),
        ("False", INFO, 2),
        ("True", "", 3),
        ("Unknown", "", 4),
        ("False", "", 99),
        ("False", "Fatal", 99),
        ("Maybe", "", 99),
    ],
)
def test_merge_priority(status: str, severity: str, priority: int) -> None:
    assert merge_priority({"type": "X", "status": status, "severity": severity}) == priority


def _c(type_: str, status: str, severity: str = "", reason: str = "", message: str = "") -> Condition:
    condition: Condition = {"type": type_, "status": status}
    if severity:
        condition["severity"] = severity
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


# kcp's Ready summary of the heartbeat condition
@pytest.mark.parametrize(
    ("conds", "expected"),
    [
        # nothing in scope: Ready is left untouched
        ([], None),
        ([_c(READY, "True"), _c(SYNCER_AUTHORIZED, "False", ERROR, "SyncerUnauthorized", "x")], None),
        # Ready mirrors HeartbeatHealthy in K11
        ([_c(HEARTBEAT_HEALTHY, "True")], {"type": "Ready", "status": "True"}),
        (
            [_c(HEARTBEAT_HEALTHY, "False", WARNING, "ErrorHeartbeat", "No heartbeat yet seen")],
            _c(READY, "False", WARNING, "ErrorHeartbeat", "No heartbeat yet seen"),
        ),
        (
            [_c(HEARTBEAT_HEALTHY, "Unknown", "", "Pending", "waiting")],
            _c(READY, "Unknown", "", "Pending", "waiting"),
        ),
        # False/Error beats False/Warning beats False/Info beats True beats Unknown
        (
            [
                _c(SYNCER_READY, "False", WARNING, "W", "warn"),
                _c(HEARTBEAT_HEALTHY, "False", ERROR, "E", "err"),
            ],
            _c(READY, "False", ERROR, "E", "err"),
        ),
        (
            [
                _c(SYNCER_READY, "False", INFO, "I", "info"),
                _c(HEARTBEAT_HEALTHY, "False", WARNING, "W", "warn"),
            ],
            _c(READY, "False", WARNING, "W", "warn"),
        ),
        (
            [_c(SYNCER_READY, "True"), _c(HEARTBEAT_HEALTHY, "False", INFO, "I", "info")],
            _c(READY, "False", INFO, "I", "info"),
        ),
        ([_c(SYNCER_READY, "Unknown", "", "U", "u"), _c(HEARTBEAT_HEALTHY, "True")], _c(READY, "True")),
        # upstream quirk: False without severity ranks 99, below Unknown and True
        ([_c(SYNCER_READY, "False", "", "F", "f"), _c(HEARTBEAT_HEALTHY, "True")], _c(READY, "True")),
        (
            [_c(SYNCER_READY, "False", "", "F", "f"), _c(HEARTBEAT_HEALTHY, "Unknown", "", "U", "u")],
            _c(READY, "Unknown", "", "U", "u"),
        ),
        ([_c(SYNCER_READY, "False", "", "F", "f")], _c(READY, "False", "", "F", "f")),
        # several in the top group: searched in the order SyncerReady, APIImporterReady, HeartbeatHealthy
        (
            [
                _c(API_IMPORTER_READY, "False", ERROR, "A", "api"),
                _c(HEARTBEAT_HEALTHY, "False", ERROR, "H", "hb"),
                _c(SYNCER_READY, "False", ERROR, "S", "syncer"),
            ],
            _c(READY, "False", ERROR, "S", "syncer"),
        ),
        (
            [
                _c(HEARTBEAT_HEALTHY, "False", ERROR, "H", "hb"),
                _c(API_IMPORTER_READY, "False", ERROR, "A", "api"),
            ],
            _c(READY, "False", ERROR, "A", "api"),
        ),
        # SyncerAuthorized is not part of the summary
        (
            [_c(SYNCER_AUTHORIZED, "False", ERROR, "SyncerUnauthorized", "x"), _c(HEARTBEAT_HEALTHY, "True")],
            _c(READY, "True"),
        ),
    ],
)
def test_summarize(conds: list[Condition], expected: Condition | None) -> None:
    assert summarize(conds) == expected


def test_summarize_with_custom_order() -> None:
    conds = [_c("A", "False", ERROR, "RA", "a"), _c("B", "False", ERROR, "RB", "b")]
    assert summarize(conds, types=("B", "A")) == _c(READY, "False", ERROR, "RB", "b")
    assert summarize(conds, types=("A", "B")) == _c(READY, "False", ERROR, "RA", "a")
    assert summarize(conds, types=("C",)) is None


def test_set_summary_leaves_ready_untouched_when_nothing_in_scope() -> None:
    conds = mark_false([], READY, "Old", ERROR, "old", T0)
    conds = mark_true(conds, SYNCER_AUTHORIZED, T0)
    assert set_summary(conds, T1) == conds
    assert set_summary(None, T1) == []


def test_set_summary_heartbeat_flow() -> None:
    # no heartbeat → HeartbeatHealthy False/Warning, and Ready mirrors it
    conds = mark_false([], HEARTBEAT_HEALTHY, REASON_ERROR_HEARTBEAT, WARNING, "No heartbeat yet seen", T0)
    conds = set_summary(conds, T0)
    assert conds == [
        {
            "type": "Ready",
            "status": "False",
            "severity": "Warning",
            "reason": "ErrorHeartbeat",
            "message": "No heartbeat yet seen",
            "lastTransitionTime": T0_TEXT,
        },
        {
            "type": "HeartbeatHealthy",
            "status": "False",
            "severity": "Warning",
            "reason": "ErrorHeartbeat",
            "message": "No heartbeat yet seen",
            "lastTransitionTime": T0_TEXT,
        },
    ]
    # the heartbeat arrives: both turn True at T1
    conds = set_summary(mark_true(conds, HEARTBEAT_HEALTHY, T1), T1)
    assert conds == [
        {"type": "Ready", "status": "True", "lastTransitionTime": T1_TEXT},
        {"type": "HeartbeatHealthy", "status": "True", "lastTransitionTime": T1_TEXT},
    ]
    # no change on a later pass: the times stay
    later = set_summary(mark_true(conds, HEARTBEAT_HEALTHY, T1 + timedelta(hours=1)), T1 + timedelta(hours=1))
    assert later == conds
