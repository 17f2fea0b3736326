"""The one log line format of every kcp-tmc process (webhook, reconciler): a JSON object per line.

Keys, in this order:

- ``time``: when the record was made, RFC 3339 in UTC with milliseconds, ``2024-05-02T10:04:05.123Z``.
- ``level``: the level name in lower case (``debug``, ``info``, ``warning``, ``error``, ``critical``).
- ``logger``: the logger's name (``kcp_tmc.webhook.reviews``, ``kcp_tmc.reconcilers.engine``, ...).
- ``message``: the message with its ``%`` arguments filled in.
- the record's extras: every key passed with ``extra={...}``, at the top level.  A dict passed as
  ``extra={"fields": {...}}`` is spread out too; it carries names ``LogRecord`` reserves (``name``).
  Extras whose value is ``None`` and names starting with ``_`` are left out.  An extra named like one of
  the keys above (or ``exception``) is written with a trailing ``_`` (``level_``) so it never hides them.
- ``exception``: the formatted traceback, only when the record carries one.

Values that JSON cannot hold are written as ``str(value)``.  :class:`TextFormatter` renders the same
content as ``<time> <level> <logger>: <message> key=value ...`` for a terminal.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Final

__all__ = ["RESERVED_KEYS", "JsonFormatter", "TextFormatter", "format_time", "record_extras"]

#: The keys the formatter itself writes; extras never overwrite them.
RESERVED_KEYS: Final = frozenset({"time", "level", "logger", "message", "exception"})

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def format_time(created: float) -> str:
    """``created`` (seconds since the epoch) as RFC 3339 UTC with milliseconds (truncated), ``...05.123Z``."""
    global _second  # noqa: PLW0603 - a one-entry cache; the tuple is swapped whole, so threads agree
    secs = int(created)
    cached = _second
    if cached[0] != secs:  # one strftime per second, not per line: the webhook logs every review
        cached = _second = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
    millis = min(int((created - secs) * 1000), 999)
    return f"{cached[1]}.{millis:03d}Z"


def record_extras(record: logging.LogRecord) -> dict[str, object]:
    """The extras of ``record`` as they appear in a line (see the module docstring for the rules)."""
    out: dict[str, object] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        if key == "fields" and isinstance(value, dict):
            for name, item in value.items():
                _put(out, str(name), item)
        else:
            _put(out, key, value)
    return out


def _put(out: dict[str, object], key: str, value: object) -> None:
    if value is None:
        return
    out[f"{key}_" if key in RESERVED_KEYS else key] = value


class JsonFormatter(logging.Formatter):
    """``{"time": ..., "level": ..., "logger": ..., "message": ..., <extras>, "exception": ...}``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": format_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(record_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """``<time> <level> <logger>: <message> key=value ...`` for a terminal; empty extras are left out."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in record_extras(record).items() if v not in ("", [], ()))
        head = f"{format_time(record.created)} {record.levelname.lower()} {record.name}"
        text = f"{head}: {record.getMessage()}"
        if fields:
            text += " " + fields
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
