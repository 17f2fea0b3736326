"""Log lines of the webhook: one JSON object per line (or ``key=value`` text for humans).

Every answered review is one record on the ``kcp_tmc.webhook.reviews`` logger with the fields
in :data:`REVIEW_FIELDS` (in the record's ``fields`` attribute; the formatters put them at the top
level of the line).  The object under review never reaches a log: it may hold secrets.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["REVIEW_FIELDS", "JsonFormatter", "TextFormatter", "configure_logging", "review_log"]

review_log = logging.getLogger("kcp_tmc.webhook.reviews")

#: The fields of a review record, in the order they are written.
REVIEW_FIELDS = (
    "uid",
    "webhook",
    "kind",
    "namespace",
    "name",
    "operation",
    "subResource",
    "user",
    "dryRun",
    "decision",
    "code",
    "denied",
    "warned",
    "errored",
    "durationMs",
)

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    attrs = vars(record)
    out: dict[str, Any] = {}
    for key in attrs.keys() - _STANDARD:
        value = attrs[key]
        if key == "fields" and isinstance(value, dict):
            # ``extra={"fields": {...}}`` carries names LogRecord reserves (``name``).
            out.update(value)
        elif not key.startswith("_"):
            out[key] = value
    return out


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def _timestamp(created: float) -> str:
    global _second  # noqa: PLW0603 - a one-entry cache; the tuple is swapped whole, so threads agree
    secs = int(created)
    cached = _second
    if cached[0] != secs:  # one strftime per second, not per line
        cached = _second = (secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)))
    return f"{cached[1]}.{int((created - secs) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., <extra fields>}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(_extra(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


class TextFormatter(logging.Formatter):
    """``<time> <level> <logger>: <msg> key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _extra(record).items() if v not in (None, "", [], ()))
        text = f"{_timestamp(record.created)} {record.levelname.lower()} {record.name}: {record.getMessage()}"
        if fields:
            text += " " + fields
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


_HANDLER_MARK = "_kcp_tmc_webhook_handler"


def configure_logging(
    log_format: str = "json", level: int = logging.INFO, stream: TextIO | None = None
) -> None:
    """Send the ``kcp_tmc`` loggers to ``stream`` (stderr) in ``log_format``; idempotent.

    Only our own logger tree is configured, so an application embedding the app keeps its
    logging as it is.
    """
    logger = logging.getLogger("kcp_tmc")
    for handler in list(logger.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
