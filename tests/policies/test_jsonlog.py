"""The shared log line format: key names and order, time format, extras, exceptions, text form."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kcp_tmc.policies.jsonlog import RESERVED_KEYS, JsonFormatter, TextFormatter, format_time, record_extras

MAY_2 = 1714644245  # 2024-05-02T10:04:05Z


def make_record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("kcp_tmc.test", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.created = MAY_2 + 0.1234567
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_line_keys_in_order_with_extras_between_message_and_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = make_record(controller="synctarget", attempt=2)
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert "\n" not in text  # one line, even with a traceback
    line = json.loads(text)
    assert list(line) == ["time", "level", "logger", "message", "controller", "attempt", "exception"]
    assert line["time"] == "2024-05-02T10:04:05.123Z"
    assert line["level"] == "warning"
    assert line["logger"] == "kcp_tmc.test"
    assert line["message"] == "hello world"
    assert (line["controller"], line["attempt"]) == ("synctarget", 2)
    assert "ValueError: bad" in line["exception"]


def test_no_exception_key_without_a_traceback() -> None:
    assert "exception" not in json.loads(JsonFormatter().format(make_record()))


def test_fields_are_spread_none_and_private_are_left_out() -> None:
    record = make_record(fields={"uid": "u1", "name": "n", "skipped": None}, _private=1, gone=None)
    assert record_extras(record) == {"uid": "u1", "name": "n"}


def test_extras_never_hide_the_formatters_keys() -> None:
    record = make_record(level="custom", fields={"message": "m", "time": 1, "logger": "l", "exception": "e"})
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["message"] == "hello world"
    assert {k: line[k] for k in ("level_", "message_", "time_", "logger_", "exception_")} == {
        "level_": "custom",
        "message_": "m",
        "time_": 1,
        "logger_": "l",
        "exception_": "e",
    }
    assert {"time", "level", "logger", "message", "exception"} == RESERVED_KEYS


def test_values_json_cannot_hold_are_strings() -> None:
    line = json.loads(JsonFormatter().format(make_record(at=datetime(2024, 5, 2, tzinfo=UTC), kinds={1})))
    assert line["at"] == "2024-05-02 00:00:00+00:00"
    assert line["kinds"] == "{1}"


def test_time_is_rfc3339_utc_milliseconds_truncated() -> None:
    assert format_time(MAY_2) == "2024-05-02T10:04:05.000Z"
    assert format_time(MAY_2 + 0.9999) == "2024-05-02T10:04:05.999Z"
    assert format_time(MAY_2 + 1.5) == "2024-05-02T10:04:06.500Z"  # the cached second moves on
    assert format_time(0.0) == "1970-01-01T00:00:00.000Z"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_time_matches_datetime(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC)
    got = datetime.strptime(format_time(created), "%Y-%m-%dT%H:%M:%S.%f%z")
    # Truncated to milliseconds, and never past the instant itself.
    assert 0 <= (expected - got).total_seconds() < 0.001 + 1e-6


def test_text_form_leaves_empty_extras_out() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        record = make_record(fields={"uid": "u1", "namespace": "", "denied": []})
        record.exc_info = sys.exc_info()
    first, *rest = TextFormatter().format(record).splitlines()
    assert first == "2024-05-02T10:04:05.123Z warning kcp_tmc.test: hello world uid=u1"
    assert "KeyError: 'k'" in rest[-1]
    assert TextFormatter().format(make_record()).endswith("kcp_tmc.test: hello world")
