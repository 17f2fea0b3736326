"""No lock across a request: the client's per-thread deadline, and lease writes counted, not locked."""

from __future__ import annotations

import threading
import time

import pytest

from kcp_tmc.reconcilers.client import Unreachable
from tests.reconcilers.test_reconciler_leases import Clock, coordinator


def test_a_deadline_cuts_every_request_of_the_thread_and_then_refuses_to_send(api, kube):
    api.faults.latency(5.0)
    started = time.monotonic()
    with kube.deadline(0.4):
        with pytest.raises(Unreachable, match="timed out"):
            kube.get_text("/readyz", timeout=5.0)
        assert time.monotonic() - started < 2.0
        time.sleep(0.1)
        with pytest.raises(Unreachable, match="deadline exceeded, request not sent"):
            kube.get_text("/readyz")
    api.faults.clear()
    # Outside the block, and in other threads during it, requests are not limited.
    assert kube.get_text("/readyz").startswith("ok")


def test_a_deadline_is_per_thread_and_nested_ones_keep_the_earlier(api, kube):
    seen: list[str] = []
    with kube.deadline(10.0), kube.deadline(0.0):
        worker = threading.Thread(target=lambda: seen.append(kube.get_text("/readyz")))
        worker.start()
        worker.join(10)
        with pytest.raises(Unreachable, match="deadline exceeded"):
            kube.get_text("/readyz")
    assert seen and seen[0].startswith("ok")


def test_writes_of_many_threads_overlap_and_a_release_waits_for_them(kube):
    clock = Clock()
    a = coordinator(kube, "a", clock, partitions=1)
    a.tick()
    entered, leave = threading.Barrier(3), threading.Event()
    allowed: list[bool] = []

    def write() -> None:
        with a.writing(0) as ok:
            allowed.append(ok)
            entered.wait(5)  # all three inside at once: no lock is held for the write
            leave.wait(5)

    writers = [threading.Thread(target=write) for _ in range(2)]
    for w in writers:
        w.start()
    entered.wait(5)
    released = threading.Event()
    releaser = threading.Thread(target=lambda: (a.stop(release=True), released.set()))
    releaser.start()
    time.sleep(0.3)
    assert not released.is_set(), "the release did not wait for the writes in progress"
    assert not a.may_write(0), "no new write may start once the release began"
    with a.writing(0) as ok:
        assert not ok
    leave.set()
    for w in writers:
        w.join(5)
    releaser.join(5)
    assert released.is_set() and allowed == [True, True]
