"""The poll engine: list each kind once per cycle, compute desired state in memory, write differences.

A *cycle* runs every enabled controller over a :class:`Snapshot`, which lists each resource at most once
(one request per kind, whatever the number of objects).  Controllers compute the desired object and
hand it to :meth:`Context.apply`, which sends at most one merge patch to the main resource and one to
``/status`` and nothing at all when they already agree; so at steady state a cycle makes no writes.

Between cycles the engine sleeps until the earliest of: the next poll tick, the earliest time an object
asked to be looked at again (a heartbeat going stale), or the earliest retry of a failed object.  Due
objects are re-read with a GET each (or, when many are due at once, with a full cycle: a list is then
cheaper).  Failures are isolated per object and retried with exponential backoff; a failed list (the
apiserver unreachable) backs the whole cycle off, and the next successful cycle catches up.

A controller whose reconciles wait on other servers (the Cluster controller talks to every member
cluster) declares ``workers > 1``: its objects are then reconciled in a bounded pool of that many
threads, and the cycle does not wait for *stragglers*, reconciles still running long after the others of
their cycle finished (``STRAGGLER_FACTOR`` times the median, at least ``STRAGGLER_FLOOR``): they finish
in the background, write their own results and are not started twice.  A member cluster that never
answers thus costs one worker until its own deadline, not the cycle of everyone else.
"""

from __future__ import annotations

import heapq
import logging
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kcp_tmc.reconcilers.client import ApiError, Conflict, KubeClient, NotFound, Resource, Unreachable
from kcp_tmc.reconcilers.diff import split_patches
from kcp_tmc.reconcilers.gcpause import paused_gc
from kcp_tmc.reconcilers.leases import Ownership, StaticOwnership
from kcp_tmc.reconcilers.metrics import Metrics

__all__ = [
    "Backoff",
    "Context",
    "Controller",
    "Engine",
    "NotOwner",
    "ObjectRef",
    "Outcome",
    "RetryLater",
    "Snapshot",
]

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ObjList = list[Obj]

#: Conflicts re-read and retried this many times within one reconcile before it counts as an error.
CONFLICT_RETRIES = 3

#: Set in the threads of the reconcile pools while they run a reconcile.
_pooled = threading.local()

#: A pooled reconcile running this many times the median of its cycle's finished ones (and at least
#: the floor, in seconds) is a straggler: the cycle goes on without it.
STRAGGLER_FACTOR = 4.0
STRAGGLER_FLOOR = 0.25


class RetryLater(Exception):
    """A reconcile that cannot finish yet (its status says why); retried with the object's backoff."""


class NotOwner(Exception):
    """This replica does not hold the partition of the object (any more); the write was not sent."""


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One object a controller is responsible for."""

    controller: str
    name: str
    namespace: str = ""


class Snapshot:
    """The lists of one cycle: each resource is listed at most once, on first use."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._lists: dict[tuple[Resource, str | None], list[Obj]] = {}
        #: Values derived from the lists, computed once per cycle by whoever needs them.
        self.memo: dict[str, Any] = {}
        # Pooled reconciles share the snapshot: the first to need a list fetches it and the others
        # wait for that list (one lock per list, so different lists are fetched side by side).
        self._lock = threading.Lock()
        self._fetching: dict[tuple[Resource, str | None], threading.Lock] = {}

    def list(self, resource: Resource, label_selector: str | None = None) -> list[Obj]:
        key = (resource, label_selector)
        with self._lock:
            fetching = self._fetching.setdefault(key, threading.Lock())
        with fetching:
            if key not in self._lists:
                self._lists[key] = self.client.list(resource, label_selector=label_selector)[0]
            return self._lists[key]

    def list_optional(self, resource: Resource) -> ObjList:
        """:meth:`list`, but a kind the server does not serve (404) lists as empty."""
        try:
            return self.list(resource)
        except NotFound:
            return []


@dataclass
class Backoff:
    """Per-object exponential backoff with jitter: ``base * 2**failures``, capped."""

    base: float = 0.5
    cap: float = 60.0
    failures: dict[ObjectRef, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def fail(self, ref: ObjectRef) -> float:
        """Record a failure; the delay before the next attempt."""
        with self._lock:
            count = self.failures.get(ref, 0)
            self.failures[ref] = count + 1
        delay = min(self.cap, self.base * (2.0**count))
        return delay * random.uniform(0.8, 1.0)  # noqa: S311 (jitter and fault draws, not secrets)

    def reset(self, ref: ObjectRef) -> None:
        """Forget the failures of ``ref`` (it succeeded, or it is gone)."""
        with self._lock:
            self.failures.pop(ref, None)


class Context:
    """What a controller sees during one reconcile: the snapshot, the time, and guarded writes."""

    def __init__(self, engine: Engine, snapshot: Snapshot, now: datetime) -> None:
        self.engine = engine
        self.client = engine.client
        self.snapshot = snapshot
        self.now = now
        self.controller = ""

    @contextmanager
    def guard(self, partition: int) -> Iterator[None]:
        """Around one write: refuses (:class:`NotOwner`) unless this replica holds ``partition`` now."""
        with self.engine.ownership.writing(partition) as allowed:
            if not allowed or self.engine.stopping.is_set():
                raise NotOwner(f"partition {partition} is not held by this replica")
            yield
        self.engine.metrics.writes.labels(self.controller).inc()

    def apply(
        self,
        resource: Resource,
        current: Obj,
        desired_of: Callable[[Obj], Obj],
        partition: int,
    ) -> Obj:
        """Bring ``current`` to ``desired_of(current)`` with at most one main and one status merge patch.

        On 409 the object is re-read and ``desired_of`` is applied to the fresh copy, up to
        :data:`CONFLICT_RETRIES` times.  Returns the object as stored.
        """
        obj = current
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                return self._apply_once(resource, obj, desired_of(obj), partition)
            except Conflict:
                if attempt == CONFLICT_RETRIES:
                    raise
                meta = obj["metadata"]
                obj = self.client.get(resource, meta["name"], namespace=meta.get("namespace"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _apply_once(self, resource: Resource, current: Obj, desired: Obj, partition: int) -> Obj:
        meta = current["metadata"]
        main, status = split_patches(current, desired)
        if main is not None:
            with self.guard(partition):
                self.engine.log_write(self.controller, resource, meta, "")
                current = self.client.merge_patch(
                    resource, meta["name"], main, namespace=meta.get("namespace")
                )
            _, status = split_patches(current, desired)
        if status is not None:
            with self.guard(partition):
                self.engine.log_write(self.controller, resource, meta, "status")
                current = self.client.merge_patch(
                    resource, meta["name"], status, namespace=meta.get("namespace"), subresource="status"
                )
        return current


@dataclass
class Outcome:
    """What one reconcile asks of the engine: when to look at the object again (epoch seconds)."""

    due_at: float | None = None


class Controller(Protocol):
    """A controller the engine drives.

    An optional attribute ``workers`` (default 1) asks for that many reconciles at once, in a pool.
    """

    name: str

    def refs(self, ctx: Context) -> list[tuple[ObjectRef, Obj, int]]:
        """The objects of this cycle with their partition, from ``ctx.snapshot`` (lists only)."""

    def reconcile(self, ctx: Context, obj: Obj, partition: int) -> Outcome:
        """Bring one object to its desired state."""

    def fetch(self, ctx: Context, ref: ObjectRef) -> Obj | None:
        """A fresh copy of one object (for due and retried objects); None when it is gone."""


@dataclass
class Engine:
    """Runs controllers in cycles; see the module docstring."""

    client: KubeClient
    controllers: list[Controller]
    poll_interval: float = 30.0
    ownership: Ownership = field(default_factory=StaticOwnership)
    metrics: Metrics = field(default_factory=Metrics)
    #: When more objects than this are due at once, a full cycle (lists) is cheaper than a GET each.
    due_batch_limit: int = 50
    clock: Callable[[], float] = time.time
    max_cycle_backoff: float = 30.0
    stopping: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _due: list[tuple[float, ObjectRef]] = field(default_factory=list)
    _due_at: dict[ObjectRef, float] = field(default_factory=dict)
    _partition: dict[ObjectRef, int] = field(default_factory=dict)
    backoff: Backoff = field(default_factory=Backoff)
    _cycle_failures: int = 0
    cycles: int = 0
    #: When the loop last went round (liveness), and whether the last full cycle succeeded (readiness).
    healthy_at: float = 0.0
    ready: bool = False
    last_cycle_writes: int = 0
    #: Reconciles of pooled controllers still running, with the perf_counter time each started (0.0
    #: while queued); a ref in here is not started again.
    _in_flight: dict[ObjectRef, float] = field(default_factory=dict)
    _pools: dict[str, ThreadPoolExecutor] = field(default_factory=dict)
    _cycle_requested: bool = False
    _writes_mark: float = 0.0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- scheduling -----------------------------------------------------------------------------------

    def schedule(self, ref: ObjectRef, at: float | None) -> None:
        """Look at ``ref`` again at ``at`` (epoch seconds); None cancels."""
        with self._lock:
            if at is None:
                self._due_at.pop(ref, None)
                return
            self._due_at[ref] = at
            heapq.heappush(self._due, (at, ref))
        if getattr(_pooled, "active", False):
            self._wake.set()  # a reconcile that outlived its cycle: the loop recomputes its sleep

    def _pop_due(self, now: float) -> list[ObjectRef]:
        out: list[ObjectRef] = []
        with self._lock:
            while self._due and self._due[0][0] <= now:
                at, ref = heapq.heappop(self._due)
                if self._due_at.get(ref) == at:
                    del self._due_at[ref]
                    out.append(ref)
        return out

    def next_due(self) -> float | None:
        with self._lock:
            while self._due and self._due_at.get(self._due[0][1]) != self._due[0][0]:
                heapq.heappop(self._due)
            return self._due[0][0] if self._due else None

    # --- pooled controllers ---------------------------------------------------------------------------

    def _pool(self, controller: Controller) -> ThreadPoolExecutor | None:
        workers = int(getattr(controller, "workers", 1) or 1)
        if workers <= 1:
            return None
        with self._lock:
            pool = self._pools.get(controller.name)
            if pool is None:
                pool = self._pools[controller.name] = ThreadPoolExecutor(
                    max_workers=workers, thread_name_prefix=f"reconcile-{controller.name}"
                )
        return pool

    def _submit(
        self,
        pool: ThreadPoolExecutor,
        job: Callable[[Context], None],
        ref: ObjectRef,
        snapshot: Snapshot,
        now: datetime,
    ) -> Future[float] | None:
        """Run ``job`` in ``pool`` with its own Context; None when ``ref`` is still running.

        The future's result is how long the reconcile ran (queueing excluded).
        """
        with self._lock:
            if ref in self._in_flight:
                return None
            self._in_flight[ref] = 0.0

        def run() -> float:
            started = time.perf_counter()
            with self._lock:
                self._in_flight[ref] = started
            _pooled.active = True
            try:
                job(Context(self, snapshot, now))
            except Exception:  # _reconcile isolates reconcile errors; this is a bug around it
                log.exception("pooled reconcile failed", extra={"object": ref.name})
            finally:
                _pooled.active = False
                with self._lock:
                    self._in_flight.pop(ref, None)
            return time.perf_counter() - started

        return pool.submit(run)

    def _await(self, jobs: dict[Future[float], ObjectRef], workers: int) -> None:
        """Wait for ``jobs`` until each is done or a straggler (see the module docstring)."""
        pending = set(jobs)
        took: list[float] = []
        while pending:
            done, pending = wait(pending, timeout=0.02, return_when=FIRST_COMPLETED)
            now = time.perf_counter()
            took.extend(f.result() for f in done)
            if not pending or not took:
                continue  # nothing to compare with yet: wait (each reconcile has its own deadline)
            limit = max(STRAGGLER_FLOOR, STRAGGLER_FACTOR * statistics.median(took))
            with self._lock:
                started = [self._in_flight.get(jobs[f], 0.0) for f in pending]
            running = [t for t in started if t]
            fresh = [t for t in running if now - t < limit]
            # Stop when no running reconcile is fresh and none is queued that a free worker could run.
            if not fresh and (len(running) >= workers or len(running) == len(started)):
                log.info(
                    "stragglers left running",
                    extra={"count": len(pending), "objects": sorted(jobs[f].name for f in pending)},
                )
                return

    def close(self) -> None:
        """Wait for pooled reconciles still running (each bounded by its deadline) and end the pools."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)

    # --- logging --------------------------------------------------------------------------------------

    def log_write(self, controller: str, resource: Resource, meta: dict[str, Any], subresource: str) -> None:
        log.info(
            "write",
            extra={
                "controller": controller,
                "resource": resource.group_resource,
                "object": meta.get("name"),
                "namespace": meta.get("namespace") or None,
                "subresource": subresource or None,
            },
        )

    # --- cycles ---------------------------------------------------------------------------------------

    def _controller(self, name: str) -> Controller | None:
        return next((c for c in self.controllers if c.name == name), None)

    def _reconcile(
        self, ctx: Context, controller: Controller, ref: ObjectRef, obj: Obj, partition: int
    ) -> int:
        ctx.controller = controller.name
        self._partition[ref] = partition
        try:
            outcome = controller.reconcile(ctx, obj, partition)
        except NotOwner:
            return 0
        except NotFound:
            # Deleted between the list and the write: nothing left to reconcile, not an error.
            log.debug("object gone", extra={"controller": controller.name, "object": ref.name})
            self.backoff.reset(ref)
            self.schedule(ref, None)
            return 0
        except Exception as exc:  # one object, even one that trips a bug, must not stop the others
            delay = self.backoff.fail(ref)
            if isinstance(exc, ApiError) and exc.retry_after is not None:
                # The server said when to come back (a warming watch cache, max-in-flight): do so,
                # instead of backing off as from a failure of ours.
                delay = exc.retry_after
            self.schedule(ref, self.clock() + delay)
            self.metrics.errors.labels(controller.name).inc()
            expected = isinstance(exc, (ApiError, Unreachable, RetryLater))
            log.warning(
                "reconcile failed",
                extra={
                    "controller": controller.name,
                    "object": ref.name,
                    "error": str(exc),
                    "retry_in": delay,
                },
                exc_info=not expected,
            )
            return 1
        self.backoff.reset(ref)
        self.metrics.reconciled.labels(controller.name).inc()
        self.schedule(ref, outcome.due_at)
        return 0

    def run_cycle(self) -> bool:
        """One full cycle; False when a list failed (the apiserver is unreachable or refused it)."""
        # The cycle's lists are freed when _cycle returns, before the collector runs again.
        with paused_gc():
            return self._cycle()

    def _cycle(self) -> bool:
        started, cpu = time.perf_counter(), time.process_time()
        # Writes since the last cycle ended: a straggler of the last cycle that wrote since counts here.
        writes_before = self._writes_mark
        snapshot = Snapshot(self.client)
        ctx = Context(self, snapshot, datetime.fromtimestamp(self.clock(), UTC))
        owned = self.ownership.owned()
        ok = True
        seen: set[ObjectRef] = set()
        for controller in self.controllers:
            try:
                work = controller.refs(ctx)
            except (ApiError, Unreachable) as exc:
                self.metrics.errors.labels(controller.name).inc()
                log.warning("list failed", extra={"controller": controller.name, "error": str(exc)})
                ok = False
                continue
            pool = self._pool(controller)
            jobs: dict[Future[float], ObjectRef] = {}
            for ref, obj, partition in work:
                if self.stopping.is_set():
                    return False  # SIGTERM: the write in progress is done, stop here
                seen.add(ref)
                if partition not in owned:
                    self._partition[ref] = partition
                    continue
                retry_at = self._due_at.get(ref)
                if ref in self.backoff.failures and retry_at is not None and retry_at > self.clock():
                    continue  # still backing off; it is scheduled
                if pool is None:
                    self._reconcile(ctx, controller, ref, obj, partition)
                    continue
                future = self._submit(
                    pool, self._job(controller, ref, obj, partition), ref, snapshot, ctx.now
                )
                if future is not None:
                    jobs[future] = ref
            if jobs:
                self._await(jobs, int(getattr(controller, "workers", 1)))
        if ok:
            # Objects that no longer exist leave the schedule.
            with self._lock:
                gone = [r for r in self._due_at if r not in seen]
            for ref in gone:
                self.schedule(ref, None)
                self.backoff.reset(ref)
        self.cycles += 1
        elapsed = time.perf_counter() - started
        self.metrics.cycle_duration.observe(elapsed)
        self._writes_mark = self.metrics.total_writes()
        self.last_cycle_writes = int(self._writes_mark - writes_before)
        log.debug(
            "cycle",
            extra={
                "duration_s": round(elapsed, 4),
                "cpu_s": round(time.process_time() - cpu, 4),
                "writes": self.last_cycle_writes,
                "ok": ok,
            },
        )
        return ok

    @property
    def settled(self) -> bool:
        """The last cycle wrote nothing and no object is waiting to retry a failed reconcile.

        A cycle without writes alone says little: an object that failed is skipped
        until its retry is due, so the cycles in between write nothing either.
        """
        return self.last_cycle_writes == 0 and not self.backoff.failures and not self._in_flight

    def _job(
        self, controller: Controller, ref: ObjectRef, obj: Obj | None, partition: int
    ) -> Callable[[Context], None]:
        """One pooled reconcile; with ``obj`` None it fetches the object first (a due object)."""

        def job(ctx: Context) -> None:
            current = obj
            if current is None:
                current = self._fetch(ctx, controller, ref)
                if current is None:
                    return
            self._reconcile(ctx, controller, ref, current, partition)

        return job

    def _fetch(self, ctx: Context, controller: Controller, ref: ObjectRef) -> Obj | None:
        ctx.controller = controller.name
        try:
            obj = controller.fetch(ctx, ref)
        except (ApiError, Unreachable) as exc:
            self.schedule(ref, self.clock() + self.backoff.fail(ref))
            self.metrics.errors.labels(controller.name).inc()
            log.warning("get failed", extra={"object": ref.name, "error": str(exc)})
            return None
        if obj is None:
            self.backoff.reset(ref)
        return obj

    def run_due(self, refs: list[ObjectRef]) -> None:
        """Re-read and reconcile the objects that became due, one GET each."""
        snapshot = Snapshot(self.client)
        ctx = Context(self, snapshot, datetime.fromtimestamp(self.clock(), UTC))
        owned = self.ownership.owned()
        jobs: dict[Future[float], ObjectRef] = {}
        workers = 1
        for ref in refs:
            if self.stopping.is_set():
                return
            controller = self._controller(ref.controller)
            partition = self._partition.get(ref, 0)
            if controller is None or partition not in owned:
                continue
            pool = self._pool(controller)
            if pool is not None:
                future = self._submit(
                    pool, self._job(controller, ref, None, partition), ref, snapshot, ctx.now
                )
                if future is not None:
                    jobs[future] = ref
                    workers = max(workers, int(getattr(controller, "workers", 1)))
                continue
            obj = self._fetch(ctx, controller, ref)
            if obj is not None:
                self._reconcile(ctx, controller, ref, obj, partition)
        if jobs:
            self._await(jobs, workers)

    def request_cycle(self) -> None:
        """Run a full cycle as soon as possible (a partition was just acquired)."""
        self._cycle_requested = True
        self._wake.set()

    def run(self) -> None:
        """Cycle until :attr:`stopping` is set."""
        try:
            self._loop()
        finally:
            self.close()

    def _loop(self) -> None:
        next_full = self.clock()
        while not self.stopping.is_set():
            # Cleared before anything is looked at: a wake-up set from now on ends the next wait at once.
            self._wake.clear()
            now = self.clock()
            if self._cycle_requested:
                self._cycle_requested = False
                next_full = now
            if now >= next_full:
                try:
                    ok = self.run_cycle()
                except Exception:  # a bug in a list or an index: log it, back off, keep the process up
                    log.exception("cycle failed")
                    ok = False
                self.ready = ok
                if ok:
                    self._cycle_failures = 0
                    next_full = now + self.poll_interval
                else:
                    self._cycle_failures += 1
                    delay = min(self.max_cycle_backoff, 0.5 * 2 ** (self._cycle_failures - 1))
                    next_full = self.clock() + min(delay, self.poll_interval)
            else:
                due = self._pop_due(now)
                if len(due) > self.due_batch_limit:
                    next_full = now  # a list is cheaper than this many GETs
                    continue
                if due:
                    self.run_due(due)
            # Liveness is the loop going round, whether or not the apiserver answers: an apiserver
            # outage must not get the reconciler restarted.
            self.healthy_at = self.clock()
            wake = next_full
            upcoming = self.next_due()
            if upcoming is not None:
                wake = min(wake, upcoming)
            self._wake.wait(max(0.0, wake - self.clock()))

    def stop(self) -> None:
        """Ask :meth:`run` to return after the write in progress."""
        self.stopping.set()
        self._wake.set()


def not_found_is_none(fetch: Callable[[], Obj]) -> Obj | None:
    """``fetch()``, or None when the object is gone."""
    try:
        return fetch()
    except NotFound:
        return None
