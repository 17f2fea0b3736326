"""Log lines of the webhook, in the format of :mod:`kcp_tmc.policies.jsonlog` (or its text form for humans).

Every answered review is one record on the ``kcp_tmc.webhook.reviews`` logger with the fields
in :data:`REVIEW_FIELDS` (in the record's ``fields`` attribute; the formatters put them at the top
level of the line).  The object under review never reaches a log: it may hold secrets.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from kcp_tmc.policies.jsonlog import JsonFormatter, TextFormatter

__all__ = ["REVIEW_FIELDS", "configure_logging", "review_log"]

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
