"""Logging of the reconciler process: JSON lines in the format of :mod:`kcp_tmc.policies.jsonlog`."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from kcp_tmc.policies.jsonlog import JsonFormatter

__all__ = ["setup_logging"]


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 logs every retry of a refused connection at WARNING; our own lines already say it.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
