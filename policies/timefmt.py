"""Times and durations in the formats Kubernetes and Go use on the wire and in messages.

- ``metav1.Time`` travels as RFC 3339 with second precision and ``Z`` (:func:`format_rfc3339`) and is read
  with Go's ``time.RFC3339`` layout (:func:`parse_rfc3339`).
- kcp's heartbeat message embeds Go ``time.Time.String()`` (:func:`go_time_string`).
- Flags and settings such as the heartbeat threshold use Go ``time.ParseDuration`` syntax
  (:func:`parse_go_duration`, :func:`format_go_duration`).

Python datetimes hold microseconds; nanoseconds in the input are truncated.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

__all__ = [
    "format_go_duration",
    "format_go_duration_ns",
    "format_rfc3339",
    "go_time_string",
    "parse_go_duration",
    "parse_go_duration_ns",
    "parse_rfc3339",
    "utc",
]

# Go's RFC3339 layout: a 4-digit year, "T", fractional seconds of any length after "." (or ",", which
# Go's general parser also takes), and "Z" or ±hh:mm.
_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:[.,](?P<frac>\d+))?(?P<zone>Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def utc(dt: datetime) -> datetime:
    """``dt`` in UTC; a naive datetime is taken to be UTC already."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_rfc3339(s: str) -> datetime:
    """Parse an RFC 3339 time as Go's ``time.Parse(time.RFC3339, s)`` and metav1.Time do; returns aware UTC.

    Accepts ``Z`` or a ``±hh:mm`` offset and fractional seconds of any length (beyond microseconds they
    are truncated).  Raises :class:`ValueError` naming the input and the expected form.
    """
    if not isinstance(s, str):
        raise ValueError(f"invalid RFC 3339 time {s!r}: expected a string such as 2023-02-22T17:38:27Z")
    match = _RFC3339.fullmatch(s)
    if match is None:
        raise ValueError(
            f"invalid RFC 3339 time {s!r}: expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM"
        )
    zone = match["zone"]
    if zone == "Z":
        tz = UTC
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError(f"invalid RFC 3339 time {s!r}: time zone offset {zone} out of range")
        offset = timedelta(hours=hours, minutes=minutes)
        tz = timezone(-offset if zone[0] == "-" else offset)
    micro = int((match["frac"] or "0")[:6].ljust(6, "0"))
    try:
        parsed = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            micro,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueError(f"invalid RFC 3339 time {s!r}: {exc}") from None
    return parsed.astimezone(UTC)


def format_rfc3339(dt: datetime) -> str:
    """``dt`` as metav1.Time serialises it: UTC, whole seconds, ``Z`` (``2023-02-22T17:38:27Z``)."""
    moment = utc(dt)
    # strftime("%Y") does not pad years below 1000 on every platform; format by hand.
    return f"{moment:%Y}".zfill(4) + f"-{moment:%m-%dT%H:%M:%S}Z"


def go_time_string(dt: datetime) -> str:
    """Go ``time.Time.String()`` of ``dt`` in UTC: ``2023-02-22 17:38:27 +0000 UTC``.

    Non-zero fractional seconds are printed as Go does, trailing zeros removed (``17:38:27.5 +0000 UTC``).
    """
    moment = utc(dt)
    text = f"{moment:%Y}".zfill(4) + f"-{moment:%m-%d %H:%M:%S}"
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + " +0000 UTC"


# --- durations -------------------------------------------------------------------------------------

_NANOSECOND: Final = 1
_MICROSECOND: Final = 1000 * _NANOSECOND
_MILLISECOND: Final = 1000 * _MICROSECOND
_SECOND: Final = 1000 * _MILLISECOND
_MINUTE: Final = 60 * _SECOND
_HOUR: Final = 60 * _MINUTE
_UNITS: Final = {
    "ns": _NANOSECOND,
    "us": _MICROSECOND,
    "\u00b5s": _MICROSECOND,  # U+00B5 micro sign
    "\u03bcs": _MICROSECOND,  # U+03BC Greek small letter mu
    "ms": _MILLISECOND,
    "s": _SECOND,
    "m": _MINUTE,
    "h": _HOUR,
}
_MAX_INT64: Final = (1 << 63) - 1


def _go_quote(s: str) -> str:
    # Go's strconv.Quote for the printable text these messages carry.
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _leading_int(s: str) -> tuple[int, str]:
    digits = len(s) - len(s.lstrip("0123456789"))
    if digits == 0:
        return 0, s
    value = int(s[:digits])
    if value > 1 << 63:
        raise OverflowError
    return value, s[digits:]


def _leading_fraction(s: str) -> tuple[int, float, str]:
    # Like Go: accumulate digits until the next one would overflow, keep counting the scale anyway.
    value, scale, overflow, i = 0, 1.0, False, 0
    while i < len(s) and "0" <= s[i] <= "9":
        if not overflow:
            candidate = value * 10 + int(s[i])
            if value > _MAX_INT64 // 10 or candidate > 1 << 63:
                overflow = True
            else:
                value = candidate
                scale *= 10
        i += 1
    return value, scale, s[i:]


def parse_go_duration_ns(s: str) -> int:
    """Parse Go ``time.ParseDuration`` syntax (``1h30m``, ``300ms``, ``-1.5s``) to integer nanoseconds.

    Raises :class:`ValueError` with Go's message, e.g. ``time: missing unit in duration "1"``.
    """
    orig = s
    negative = False
    if s and s[0] in "+-":
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    total = 0
    while s:
        if not (s[0] == "." or ("0" <= s[0] <= "9")):
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        before = len(s)
        try:
            whole, s = _leading_int(s)
        except OverflowError:
            raise ValueError(f"time: invalid duration {_go_quote(orig)}") from None
        pre = len(s) != before
        frac, scale, post = 0, 1.0, False
        if s.startswith("."):
            s = s[1:]
            before = len(s)
            frac, scale, s = _leading_fraction(s)
            post = len(s) != before
        if not pre and not post:
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        end = 0
        while end < len(s) and s[end] != "." and not ("0" <= s[end] <= "9"):
            end += 1
        if end == 0:
            raise ValueError(f"time: missing unit in duration {_go_quote(orig)}")
        unit_name, s = s[:end], s[end:]
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise ValueError(f"time: unknown unit {_go_quote(unit_name)} in duration {_go_quote(orig)}")
        if whole > (1 << 63) // unit:
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        value = whole * unit
        if frac > 0:
            # Go computes the fractional part in float64; so do we, for identical results.
            value += int(float(frac) * (float(unit) / scale))
            if value > 1 << 63:
                raise ValueError(f"time: invalid duration {_go_quote(orig)}")
        total += value
        if total > 1 << 63:
            raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    if negative:
        return -total
    if total > _MAX_INT64:
        raise ValueError(f"time: invalid duration {_go_quote(orig)}")
    return total


def parse_go_duration(s: str) -> timedelta:
    """Parse Go duration syntax (``1m``, ``90s``, ``1h30m``, ``300ms``) to a :class:`timedelta`.

    Sub-microsecond parts are truncated towards zero.  Errors as :func:`parse_go_duration_ns`.
    """
    ns = parse_go_duration_ns(s)
    micro = abs(ns) // _MICROSECOND
    return timedelta(microseconds=-micro if ns < 0 else micro)


def _fmt_frac(value: int, precision: int) -> tuple[str, int]:
    # The digits after the decimal point of value / 10**precision, trailing zeros dropped.
    digits = []
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits.append(str(digit))
        value //= 10
    frac = ("." + "".join(reversed(digits))) if printed else ""
    return frac, value


def format_go_duration_ns(ns: int) -> str:
    """Go ``time.Duration.String()`` of ``ns`` nanoseconds: ``1m0s``, ``1h30m0s``, ``1.5s``, ``300ms``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < _SECOND:
        if u < _MICROSECOND:
            return f"{sign}{u}ns"
        if u < _MILLISECOND:
            frac, whole = _fmt_frac(u, 3)
            return f"{sign}{whole}{frac}\u00b5s"
        frac, whole = _fmt_frac(u, 6)
        return f"{sign}{whole}{frac}ms"
    frac, seconds = _fmt_frac(u, 9)
    text = f"{seconds % 60}{frac}s"
    minutes = seconds // 60
    if minutes:
        text = f"{minutes % 60}m{text}"
        hours = minutes // 60
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def format_go_duration(td: timedelta) -> str:
    """Go ``time.Duration.String()`` of ``td``: ``timedelta(minutes=1)`` → ``1m0s``."""
    micro = (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds
    return format_go_duration_ns(micro * _MICROSECOND)
