"""The poll engine with in-memory controllers: isolation, backoff, due scheduling, ownership."""

from __future__ import annotations

import threading
import time

import pytest

from kcp_tmc.reconcilers.client import ApiError, Unreachable
from kcp_tmc.reconcilers.engine import Backoff, Engine, ObjectRef, Outcome, Snapshot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A controller over a fixed set of names; ``fail`` names raise, ``due`` names ask to come back."""

    name = "recorder"

    def __init__(self, names, fail=(), due=None, partitions=None):
        self.names = list(names)
        self.fail = set(fail)
        self.due = due or {}
        self.partitions = partitions or {}
        self.seen: list[str] = []
        self.fetched: list[str] = []
        self.list_error: Exception | None = None

    def refs(self, ctx):
        if self.list_error is not None:
            raise self.list_error
        return [
            (ObjectRef(self.name, n), {"metadata": {"name": n}}, self.partitions.get(n, 0))
            for n in self.names
        ]

    def reconcile(self, ctx, obj, partition):
        name = obj["metadata"]["name"]
        self.seen.append(name)
        if name in self.fail:
            raise ApiError(500, "InternalError", "boom")
        return Outcome(due_at=self.due.get(name))

    def fetch(self, ctx, ref):
        self.fetched.append(ref.name)
        return None if ref.name == "gone" else {"metadata": {"name": ref.name}}


class Owner:
    def __init__(self, owned):
        self._owned = frozenset(owned)
        self.partitions = 4

    def may_write(self, partition):
        return partition in self._owned

    def owned(self):
        return self._owned

    def writing(self, partition):  # pragma: no cover - not used by the recorder
        raise NotImplementedError


def make(controller, **kwargs):
    clock = FakeClock()
    return Engine(client=None, controllers=[controller], clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_one_failing_object_does_not_stop_the_others_and_backs_off():
    rec = Recorder(["a", "bad", "c"], fail={"bad"})
    engine, clock = make(rec)
    assert engine.run_cycle()
    assert rec.seen == ["a", "bad", "c"]
    ref = ObjectRef("recorder", "bad")
    assert engine.backoff.failures == {ref: 1}
    retry_at = engine.next_due()
    assert retry_at is not None and 0.4 <= retry_at - clock.now <= 0.5
    # While backing off, a full cycle skips it.
    rec.seen.clear()
    assert engine.run_cycle()
    assert rec.seen == ["a", "c"]
    # Once due, it is fetched and retried; success clears the backoff.
    rec.fail.clear()
    clock.now = retry_at
    engine.run_due(engine._pop_due(clock.now))
    assert rec.fetched == ["bad"] and engine.backoff.failures == {}
    assert engine.metrics.errors.labels("recorder")._value.get() == 1


def test_backoff_doubles_and_is_capped():
    backoff = Backoff(base=1.0, cap=8.0)
    ref = ObjectRef("c", "x")
    delays = [backoff.fail(ref) for _ in range(6)]
    assert [round(d / b) if b else 0 for d, b in zip(delays, [1, 2, 4, 8, 8, 8], strict=True)] == [1] * 6
    assert all(0.8 * b <= d <= b for d, b in zip(delays, [1, 2, 4, 8, 8, 8], strict=True))
    backoff.reset(ref)
    assert backoff.fail(ref) <= 1.0


def test_only_owned_partitions_are_reconciled():
    rec = Recorder(["a", "b", "c"], partitions={"a": 0, "b": 1, "c": 2})
    engine, _ = make(rec, ownership=Owner({0, 2}))
    assert engine.run_cycle()
    assert rec.seen == ["a", "c"]


def test_due_objects_are_fetched_and_reconciled():
    rec = Recorder(["a", "gone"])
    engine, clock = make(rec)
    rec.due = {"a": clock.now + 5, "gone": clock.now + 5}
    assert engine.run_cycle()
    assert engine.next_due() == clock.now + 5
    assert engine._pop_due(clock.now + 4) == []
    due = engine._pop_due(clock.now + 5)
    assert sorted(r.name for r in due) == ["a", "gone"]
    rec.seen.clear()
    engine.run_due(due)
    assert rec.seen == ["a"] and sorted(rec.fetched) == ["a", "gone"]


def test_rescheduling_replaces_the_earlier_due_time():
    rec = Recorder([])
    engine, clock = make(rec)
    ref = ObjectRef("recorder", "x")
    engine.schedule(ref, clock.now + 10)
    engine.schedule(ref, clock.now + 20)
    assert engine.next_due() == clock.now + 20
    engine.schedule(ref, None)
    assert engine.next_due() is None


def test_failed_list_fails_the_cycle():
    rec = Recorder(["a"])
    rec.list_error = Unreachable("connection refused")
    engine, _ = make(rec)
    assert not engine.run_cycle()
    assert rec.seen == []


def test_gone_objects_leave_the_schedule():
    rec = Recorder(["a"], fail={"a"})
    engine, _ = make(rec)
    engine.run_cycle()
    assert engine.next_due() is not None
    rec.names = []
    engine.run_cycle()
    assert engine.next_due() is None and engine.backoff.failures == {}


def test_run_stops_and_many_due_objects_trigger_a_full_cycle():
    rec = Recorder([f"o{i}" for i in range(5)])
    engine = Engine(client=None, controllers=[rec], poll_interval=3600, due_batch_limit=2)  # type: ignore[arg-type]
    import time

    now = time.time()
    rec.due = dict.fromkeys(rec.names, now + 0.1)
    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while engine.cycles < 2:
            assert time.monotonic() < deadline, "no second full cycle"
            time.sleep(0.01)
    finally:
        engine.stop()
        runner.join(timeout=5)
    assert not runner.is_alive()
    assert rec.fetched == []  # five due objects over the limit of two: a list, not five GETs


def test_snapshot_lists_each_resource_once(kube):
    from kcp_tmc.reconcilers.resources import SYNCTARGETS

    snapshot = Snapshot(kube)
    before = kube.requests
    assert snapshot.list(SYNCTARGETS) == [] and snapshot.list(SYNCTARGETS) == []
    assert kube.requests - before == 1


@pytest.mark.parametrize("count", [0, 3])
def test_request_cycle_wakes_the_loop(count):
    rec = Recorder([f"o{i}" for i in range(count)])
    engine = Engine(client=None, controllers=[rec], poll_interval=3600)  # type: ignore[arg-type]
    import time

    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while engine.cycles < 1:
            time.sleep(0.01)
        engine.request_cycle()
        while engine.cycles < 2:
            assert time.monotonic() < deadline, "request_cycle did not wake the engine"
            time.sleep(0.01)
    finally:
        engine.stop()
        runner.join(timeout=5)


def test_a_bug_in_one_object_is_isolated_and_logged_with_its_traceback(caplog):
    class Buggy(Recorder):
        def reconcile(self, ctx, obj, partition):
            if obj["metadata"]["name"] == "b":
                raise AttributeError("'NoneType' object has no attribute 'get'")
            return super().reconcile(ctx, obj, partition)

    rec = Buggy(["a", "b", "c"])
    engine, _ = make(rec)
    with caplog.at_level("WARNING"):
        assert engine.run_cycle()
    assert rec.seen == ["a", "c"]
    assert ObjectRef("recorder", "b") in engine.backoff.failures
    record = next(r for r in caplog.records if r.getMessage() == "reconcile failed")
    assert record.exc_info is not None and record.object == "b"


def test_a_bug_in_a_list_does_not_end_the_loop(caplog):
    rec = Recorder(["a"])
    rec.list_error = RuntimeError("bug")
    engine = Engine(client=None, controllers=[rec], poll_interval=0.05)  # type: ignore[arg-type]
    import time

    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while not any(r.getMessage() == "cycle failed" for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rec.list_error = None
        while not engine.ready:
            assert time.monotonic() < deadline, "the loop did not recover"
            time.sleep(0.01)
    finally:
        engine.stop()
        runner.join(timeout=5)


def test_a_stopping_engine_ends_the_cycle_after_the_current_object():
    rec = Recorder(["a", "b", "c"])
    engine, _ = make(rec)
    original = rec.reconcile

    def stop_after_first(ctx, obj, partition):
        outcome = original(ctx, obj, partition)
        engine.stop()
        return outcome

    rec.reconcile = stop_after_first
    assert not engine.run_cycle()
    assert rec.seen == ["a"]
    engine.run_due([ObjectRef("recorder", "b")])
    assert rec.fetched == []


# --- pooled controllers -----------------------------------------------------------------------------


class Pooled(Recorder):
    """A Recorder reconciled in a pool; ``slow`` names block until ``release`` is set."""

    workers = 3

    def __init__(self, names, slow=(), **kwargs):
        super().__init__(names, **kwargs)
        self.slow = set(slow)
        self.release = threading.Event()
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def reconcile(self, ctx, obj, partition):
        with self._lock:
            self.threads.add(threading.current_thread().name)
        if obj["metadata"]["name"] in self.slow:
            assert self.release.wait(10)
        with self._lock:
            return super().reconcile(ctx, obj, partition)


def test_a_pooled_controller_runs_in_its_pool_and_leaves_stragglers_behind(caplog):
    rec = Pooled([f"o{i}" for i in range(9)], slow={"o0"}, due={"o0": 2_000_000.0})
    engine, _ = make(rec)
    try:
        with caplog.at_level("INFO"):
            assert engine.run_cycle()
        assert sorted(rec.seen) == [f"o{i}" for i in range(1, 9)]  # the straggler is still running
        assert all(name.startswith("reconcile-recorder") for name in rec.threads)
        assert ObjectRef("recorder", "o0") in engine._in_flight and not engine.settled
        record = next(r for r in caplog.records if r.getMessage() == "stragglers left running")
        assert record.objects == ["o0"]
        # The next cycle does not start it twice.
        assert engine.run_cycle()
        assert rec.seen.count("o1") == 2 and "o0" not in rec.seen
        rec.release.set()
        deadline = time.monotonic() + 5
        while ObjectRef("recorder", "o0") in engine._in_flight:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # It finished in the background and scheduled itself as it asked.
        assert "o0" in rec.seen and engine.next_due() == 2_000_000.0
    finally:
        rec.release.set()
        engine.close()


def test_a_pooled_due_object_is_fetched_and_reconciled_in_the_pool():
    rec = Pooled(["a"])
    engine, _ = make(rec)
    try:
        engine.run_due([ObjectRef("recorder", "a"), ObjectRef("recorder", "gone")])
        assert sorted(rec.fetched) == ["a", "gone"]
        assert rec.seen == ["a"] and all(n.startswith("reconcile-") for n in rec.threads)
    finally:
        engine.close()


def test_a_pooled_fetch_that_fails_backs_off():
    class Unfetchable(Pooled):
        def fetch(self, ctx, ref):
            raise Unreachable("GET https://127.0.0.1:1/x: connection refused")

    rec = Unfetchable(["a"])
    engine, clock = make(rec)
    try:
        engine.run_due([ObjectRef("recorder", "a")])
        assert engine.backoff.failures == {ObjectRef("recorder", "a"): 1}
        assert engine.next_due() is not None and engine.next_due() > clock.now
    finally:
        engine.close()


def test_a_bug_around_a_pooled_reconcile_is_logged_and_the_cycle_goes_on(caplog):
    class Broken(Pooled):
        def fetch(self, ctx, ref):
            raise RuntimeError("bug in fetch")

    rec = Broken(["a"])
    engine, _ = make(rec)
    try:
        with caplog.at_level("ERROR"):
            engine.run_due([ObjectRef("recorder", "a")])
        assert any(r.getMessage() == "pooled reconcile failed" for r in caplog.records)
        assert not engine._in_flight
    finally:
        engine.close()


def test_with_nothing_finished_the_cycle_waits_for_a_slow_pooled_reconcile():
    # No other reconcile to compare with: the slow one is waited for (its own deadline bounds it).
    rec = Pooled(["only"], slow={"only"})
    engine, _ = make(rec)
    threading.Timer(0.6, rec.release.set).start()
    try:
        started = time.monotonic()
        assert engine.run_cycle()
        assert time.monotonic() - started >= 0.5 and rec.seen == ["only"]
        assert engine.settled
    finally:
        rec.release.set()
        engine.close()


def test_a_snapshot_shared_by_pooled_reconciles_lists_each_resource_once(api, kube):
    from kcp_tmc.reconcilers.resources import SYNCTARGETS

    api.faults.latency(0.3)
    snapshot = Snapshot(kube)
    before = kube.requests
    results: list[list] = []
    threads = [threading.Thread(target=lambda: results.append(snapshot.list(SYNCTARGETS))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [[]] * 4 and kube.requests - before == 1
