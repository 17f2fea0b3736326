"""RFC 3339 times, Go time strings and Go durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcp_tmc.policies.timefmt import (
    format_go_duration,
    format_go_duration_ns,
    format_rfc3339,
    go_time_string,
    parse_go_duration,
    parse_go_duration_ns,
    parse_rfc3339,
    utc,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-02-22T17:38:27Z", datetime(2023, 2, 22, 17, 38, 27, tzinfo=UTC)),
        ("2023-02-22T17:38:27.5Z", datetime(2023, 2, 22, 17, 38, 27, 500000, tzinfo=UTC)),
        ("2023-02-22T17:38:27.123456789Z", datetime(2023, 2, 22, 17, 38, 27, 123456, tzinfo=UTC)),
        ("2023-02-22T18:38:27+01:00", datetime(2023, 2, 22, 17, 38, 27, tzinfo=UTC)),
        ("2023-02-22T12:08:27-05:30", datetime(2023, 2, 22, 17, 38, 27, tzinfo=UTC)),
        ("2023-02-22T17:38:27+00:00", datetime(2023, 2, 22, 17, 38, 27, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2023-02-22T17:38:27,25Z", datetime(2023, 2, 22, 17, 38, 27, 250000, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "2023-02-22 17:38:27Z",
            "invalid RFC 3339 time '2023-02-22 17:38:27Z': expected YYYY-MM-DDTHH:MM:SS[.fraction] "
            "followed by Z or ±HH:MM",
        ),
        (
            "2023-02-22T17:38:27",
            "invalid RFC 3339 time '2023-02-22T17:38:27': expected YYYY-MM-DDTHH:MM:SS[.fraction] "
            "followed by Z or ±HH:MM",
        ),
        (
            "2023-02-22t17:38:27z",
            "invalid RFC 3339 time '2023-02-22t17:38:27z': expected YYYY-MM-DDTHH:MM:SS[.fraction] "
            "followed by Z or ±HH:MM",
        ),
        (
            "2023-02-22T17:38:27.Z",
            "invalid RFC 3339 time '2023-02-22T17:38:27.Z': expected YYYY-MM-DDTHH:MM:SS[.fraction] "
            "followed by Z or ±HH:MM",
        ),
        ("", "invalid RFC 3339 time '': expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM"),
        (
            "2023-02-30T00:00:00Z",
            "invalid RFC 3339 time '2023-02-30T00:00:00Z': day is out of range for month",
        ),
        ("2023-02-22T24:00:00Z", "invalid RFC 3339 time '2023-02-22T24:00:00Z': hour must be in 0..23"),
        ("2023-02-22T23:59:60Z", "invalid RFC 3339 time '2023-02-22T23:59:60Z': second must be in 0..59"),
        (
            "2023-02-22T17:38:27+24:00",
            "invalid RFC 3339 time '2023-02-22T17:38:27+24:00': time zone offset +24:00 out of range",
        ),
        (
            "2023-02-22T17:38:27+01:60",
            "invalid RFC 3339 time '2023-02-22T17:38:27+01:60': time zone offset +01:60 out of range",
        ),
    ],
)
def test_parse_rfc3339_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rfc3339(text)
    assert str(info.value) == message


def test_parse_rfc3339_rejects_non_strings() -> None:
    with pytest.raises(ValueError) as info:
        parse_rfc3339(12)  # type: ignore[arg-type]
    assert str(info.value) == "invalid RFC 3339 time 12: expected a string such as 2023-02-22T17:38:27Z"


def test_format_rfc3339_truncates_to_seconds_in_utc() -> None:
    assert format_rfc3339(datetime(2023, 2, 22, 17, 38, 27, 999999, tzinfo=UTC)) == "2023-02-22T17:38:27Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_rfc3339(datetime(2023, 2, 22, 19, 38, 27, tzinfo=plus_two)) == "2023-02-22T17:38:27Z"
    assert format_rfc3339(datetime(2023, 2, 22, 17, 38, 27)) == "2023-02-22T17:38:27Z"  # naive = UTC


def test_utc() -> None:
    assert utc(datetime(2023, 1, 1)).tzinfo is UTC
    assert utc(datetime(2023, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))) == datetime(
        2023, 1, 1, tzinfo=UTC
    )


@given(st.datetimes(timezones=st.just(UTC)))
def test_rfc3339_round_trip(dt: datetime) -> None:
    assert parse_rfc3339(format_rfc3339(dt)) == dt.replace(microsecond=0)


def test_go_time_string() -> None:
    # kcp's heartbeat message: "No heartbeat since 2023-02-22 17:38:27 +0000 UTC"
    assert go_time_string(datetime(2023, 2, 22, 17, 38, 27, tzinfo=UTC)) == "2023-02-22 17:38:27 +0000 UTC"
    assert go_time_string(datetime(2023, 2, 22, 17, 38, 27, 500000, tzinfo=UTC)) == (
        "2023-02-22 17:38:27.5 +0000 UTC"
    )
    assert go_time_string(datetime(2023, 2, 22, 17, 38, 27, 120, tzinfo=UTC)) == (
        "2023-02-22 17:38:27.00012 +0000 UTC"
    )
    assert go_time_string(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02 03:04:05 +0000 UTC"
    other = datetime(2023, 2, 22, 18, 38, 27, tzinfo=timezone(timedelta(hours=1)))
    assert go_time_string(other) == "2023-02-22 17:38:27 +0000 UTC"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("+0", 0),
        ("-0", 0),
        ("0s", 0),
        ("1m", 60 * 10**9),
        ("90s", 90 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("300ms", 300 * 10**6),
        ("1.5s", 1_500_000_000),
        (".5s", 500_000_000),
        ("5.s", 5 * 10**9),
        ("-1.5h", -5400 * 10**9),
        ("+2m", 120 * 10**9),
        ("1ns", 1),
        ("1us", 1000),
        ("1\u00b5s", 1000),
        ("1\u03bcs", 1000),
        ("1h1m1s1ms1us1ns", 3661_001_001_001),
        ("3h0m0.5s", 10800_500_000_000),
        ("0.3333333333333333333h", 1_200_000_000_000),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("2562047h47m16.854775807s", (1 << 63) - 1),
        ("0.100000000000000000000h", 360_000_000_000),
    ],
)
def test_parse_go_duration(text: str, ns: int) -> None:
    assert parse_go_duration_ns(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        ("s", 'time: invalid duration "s"'),
        (".", 'time: invalid duration "."'),
        (".s", 'time: invalid duration ".s"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1m1", 'time: missing unit in duration "1m1"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        ("1 s", 'time: unknown unit " s" in duration "1 s"'),
        ("1sec", 'time: unknown unit "sec" in duration "1sec"'),
        ('1"', 'time: unknown unit "\\"" in duration "1\\""'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("99999999999999999999ns", 'time: invalid duration "99999999999999999999ns"'),
        ("9223372036854775807ns1ns", 'time: invalid duration "9223372036854775807ns1ns"'),
        ("2562048h", 'time: invalid duration "2562048h"'),
        ("2562047.9h", 'time: invalid duration "2562047.9h"'),
        ("2562047h47m16.9s", 'time: invalid duration "2562047h47m16.9s"'),
    ],
)
def test_parse_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_go_duration_ns(text)
    assert str(info.value) == message


def test_parse_go_duration_as_timedelta() -> None:
    assert parse_go_duration("1m") == timedelta(minutes=1)
    assert parse_go_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_go_duration("1500ns") == timedelta(microseconds=1)
    assert parse_go_duration("-1500ns") == timedelta(microseconds=-1)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1100, "1.1\u00b5s"),
        (2_200_000, "2.2ms"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (60 * 10**9, "1m0s"),
        (90 * 10**9, "1m30s"),
        (5400 * 10**9, "1h30m0s"),
        (7200 * 10**9, "2h0m0s"),
        (3661_001_001_001, "1h1m1.001001001s"),
        (-5400 * 10**9, "-1h30m0s"),
        (-1, "-1ns"),
        ((1 << 63) - 1, "2562047h47m16.854775807s"),
        (-(1 << 63), "-2562047h47m16.854775808s"),
    ],
)
def test_format_go_duration_ns(ns: int, text: str) -> None:
    assert format_go_duration_ns(ns) == text


def test_format_go_duration() -> None:
    assert format_go_duration(timedelta(minutes=1)) == "1m0s"
    assert format_go_duration(timedelta(seconds=20)) == "20s"
    assert format_go_duration(timedelta(days=1)) == "24h0m0s"
    assert format_go_duration(timedelta(microseconds=-1500)) == "-1.5ms"


@given(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1))
def test_duration_round_trip(ns: int) -> None:
    assert parse_go_duration_ns(format_go_duration_ns(ns)) == ns
