"""The reconciler and the webhook write the same log line format (issue 14)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from kcp_tmc.reconcilers.logs import setup_logging
from kcp_tmc.webhook.logs import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger("kcp_tmc")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    urllib3_level = logging.getLogger("urllib3").level
    yield
    root.handlers[:], ours.handlers[:] = saved[0], saved[2]
    root.setLevel(saved[1])
    ours.setLevel(saved[3])
    ours.propagate = saved[4]
    logging.getLogger("urllib3").setLevel(urllib3_level)


def installed_formatter(logger: logging.Logger, stream: io.StringIO) -> logging.Formatter:
    (handler,) = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and h.stream is stream]
    assert handler.formatter is not None
    return handler.formatter


def test_both_processes_write_the_same_keys_for_the_same_record(restore_logging: None) -> None:
    webhook_stream, reconciler_stream = io.StringIO(), io.StringIO()
    configure_logging("json", stream=webhook_stream)
    setup_logging("info", stream=reconciler_stream)
    webhook = installed_formatter(logging.getLogger("kcp_tmc"), webhook_stream)
    reconciler = installed_formatter(logging.getLogger(), reconciler_stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("kcp_tmc.engine").makeRecord(
            "kcp_tmc.engine",
            logging.ERROR,
            __file__,
            1,
            "reconcile of %s failed",
            ("st-1",),
            sys.exc_info(),
            extra={"controller": "synctarget", "skipped": None, "fields": {"name": "st-1"}},
        )
    from_webhook, from_reconciler = json.loads(webhook.format(record)), json.loads(reconciler.format(record))
    assert (
        list(from_webhook)
        == list(from_reconciler)
        == [
            "time",
            "level",
            "logger",
            "message",
            "controller",
            "name",
            "exception",
        ]
    )
    assert from_webhook == from_reconciler
    assert from_webhook["message"] == "reconcile of st-1 failed"
