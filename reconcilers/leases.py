"""Leader election and partition ownership on ``coordination.k8s.io/v1`` Leases.

Kubernetes is the coordination engine: every claim is a Lease write guarded by its resourceVersion, so
two replicas can never both succeed in taking the same Lease.  ``--partitions N`` uses one Lease per
partition, ``<prefix>-partition-<i>``; ``--leader-elect`` is the same with one partition.

Live replicas: each replica also keeps a *presence* Lease, ``<prefix>-replica-<identity>``, renewed
like the others.  The replica count is the number of distinct holders of unexpired presence and
partition Leases (a replica that holds no partition is still counted, which is what lets a newcomer get
its share).  Every replica targets ``ceil(N / live replicas)`` partitions: it releases the ones above its
share (after the write in progress finished) and takes free or expired ones below it.

Expiry is judged the way client-go judges it, without trusting clocks across machines: a Lease is
expired when its record (holder, renewTime, transitions) has not changed for ``leaseDurationSeconds`` of
*our* monotonic clock since we first saw that record.

A replica stops writing for a partition at once when (a) a renewal is refused (someone else wrote the
Lease) or (b) no renewal succeeded for ``renew_deadline`` (``may_write`` checks this at every write, so
a stuck renewal thread cannot extend ownership); ``renew_deadline < lease_duration`` leaves the margin.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kcp_tmc.reconcilers.client import ApiError, Conflict, KubeClient, Resource, Unreachable

__all__ = [
    "LEASES",
    "LeaseConfig",
    "LeaseCoordinator",
    "Ownership",
    "StaticOwnership",
    "partition_of",
]

log = logging.getLogger(__name__)

LEASES = Resource("coordination.k8s.io", "v1", "leases", namespaced=True, kind="Lease")
#: Label on every Lease of one reconciler deployment (value: the name prefix); lets one list find them all.
LABEL_LEASE_GROUP = "tmc.kcp.io/lease-group"
LABEL_LEASE_ROLE = "tmc.kcp.io/lease-role"


def partition_of(key: str, partitions: int) -> int:
    """The partition of a SyncTarget key: a stable hash (SHA-256), the same in every process and release."""
    if partitions <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % partitions


class Ownership(Protocol):
    """What the engine asks before it writes."""

    @property
    def partitions(self) -> int:
        """The number of partitions."""

    def may_write(self, partition: int) -> bool:
        """True when this replica may write objects of ``partition`` now."""

    def owned(self) -> frozenset[int]:
        """The partitions currently held."""

    def writing(self, partition: int) -> Any:
        """Context manager held around one write; yields whether the write may go ahead."""


class StaticOwnership:
    """No leader election: this replica owns every partition (one replica, or tests)."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions

    def may_write(self, partition: int) -> bool:
        return True

    def owned(self) -> frozenset[int]:
        return frozenset(range(self.partitions))

    @contextmanager
    def writing(self, partition: int) -> Iterator[bool]:
        yield True


def _micro_time(now: datetime | None = None) -> str:
    # metav1.MicroTime: RFC 3339 with exactly six fractional digits.
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaseConfig:
    """Timings as kube controllers use them (15 s / 10 s / 2 s); tests shorten them."""

    namespace: str
    identity: str
    partitions: int = 1
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    prefix: str = "tmc-reconciler"

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"--partitions must be >= 1 ({self.partitions})")
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timings must satisfy 0 < retry period < renew deadline < lease duration "
                f"({self.retry_period}, {self.renew_deadline}, {self.lease_duration})"
            )

    def partition_lease(self, index: int) -> str:
        return f"{self.prefix}-partition-{index}"

    @property
    def presence_lease(self) -> str:
        """``<prefix>-replica-<identity>``, made a valid object name when the identity is not one.

        The default identity is ``<hostname>_<random>`` as in client-go, where it only fills
        ``holderIdentity``; here it also names a Lease, and kube-apiserver refuses ``_`` and capitals in
        names.  Such an identity is lowercased, other characters become ``-``, and a hash of the
        original keeps two identities that map to the same text apart.
        """
        safe = re.sub(r"[^a-z0-9.-]+", "-", self.identity.lower()).strip("-.") or "replica"
        if safe != self.identity:
            safe = f"{safe}-{hashlib.sha256(self.identity.encode('utf-8')).hexdigest()[:8]}"
        return f"{self.prefix}-replica-{safe}"


@dataclass
class _Observed:
    record: tuple[Any, ...]
    since: float


@dataclass
class LeaseCoordinator:
    """Holds this replica's share of the partition Leases; :meth:`tick` runs one election round."""

    client: KubeClient
    config: LeaseConfig
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[frozenset[int]], None] | None = None
    _owned: dict[int, float] = field(default_factory=dict)  # partition -> monotonic time of last renewal
    _observed: dict[str, _Observed] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: Writes in progress per partition; a release waits for its partition's to finish (see writing()).
    _in_flight: dict[int, int] = field(default_factory=dict)
    _idle: threading.Condition = field(init=False)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    live_replicas: int = 1

    def __post_init__(self) -> None:
        self._idle = threading.Condition(self._lock)

    @property
    def partitions(self) -> int:
        return self.config.partitions

    # --- the engine's view ----------------------------------------------------------------------------

    def may_write(self, partition: int) -> bool:
        with self._lock:
            return self._may_write_locked(partition)

    def _may_write_locked(self, partition: int) -> bool:
        renewed = self._owned.get(partition)
        return renewed is not None and self.clock() - renewed < self.config.renew_deadline

    def owned(self) -> frozenset[int]:
        now = self.clock()
        with self._lock:
            return frozenset(p for p, t in self._owned.items() if now - t < self.config.renew_deadline)

    @contextmanager
    def writing(self, partition: int) -> Iterator[bool]:
        """Around one write: a voluntary release waits for it, so no two replicas write at once.

        No lock is held while the write is on the wire: writes of many workers go out in parallel, and
        only a release of this partition waits for them (it is counted, not locked).
        """
        with self._lock:
            allowed = self._may_write_locked(partition)
            if allowed:
                self._in_flight[partition] = self._in_flight.get(partition, 0) + 1
        try:
            yield allowed
        finally:
            if allowed:
                with self._lock:
                    self._in_flight[partition] -= 1
                    if not self._in_flight[partition]:
                        del self._in_flight[partition]
                        self._idle.notify_all()

    # --- election ---------------------------------------------------------------------------------------

    def _expired(self, lease: dict[str, Any], now: float) -> bool:
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return True
        name = lease["metadata"]["name"]
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        seen = self._observed.get(name)
        if seen is None or seen.record != record:
            self._observed[name] = seen = _Observed(record, now)
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        return now - seen.since > duration

    def _lease_body(self, name: str, role: str, existing: dict[str, Any] | None) -> dict[str, Any]:
        stamp = _micro_time()
        spec = dict((existing or {}).get("spec") or {})
        taking = spec.get("holderIdentity") != self.config.identity
        spec.update(
            {
                "holderIdentity": self.config.identity,
                "leaseDurationSeconds": math.ceil(self.config.lease_duration),
                "renewTime": stamp,
            }
        )
        if taking:
            spec["acquireTime"] = stamp
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if existing else 0)
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": self.config.namespace,
            "labels": {LABEL_LEASE_GROUP: self.config.prefix, LABEL_LEASE_ROLE: role},
        }
        if existing is not None:
            metadata["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _claim(self, name: str, role: str, existing: dict[str, Any] | None) -> dict[str, Any] | None:
        """Create or renew one Lease for us; the stored Lease, or None when someone else won."""
        body = self._lease_body(name, role, existing)
        try:
            if existing is None:
                return self.client.create(LEASES, body, namespace=self.config.namespace)
            return self.client.replace(LEASES, body)
        except Conflict:
            return None

    def tick(self) -> None:
        """One round: renew what we hold, count live replicas, then release or take up to our share."""
        now = self.clock()
        cfg = self.config
        try:
            items, _ = self.client.list(
                LEASES, namespace=cfg.namespace, label_selector=f"{LABEL_LEASE_GROUP}={cfg.prefix}"
            )
        except (ApiError, Unreachable) as exc:
            log.warning("lease list failed", extra={"error": str(exc)})
            self._drop_overdue(now)
            return
        by_name = {item["metadata"]["name"]: item for item in items}

        try:
            self._claim(cfg.presence_lease, "replica", by_name.get(cfg.presence_lease))
        except (ApiError, Unreachable) as exc:
            log.warning("presence lease renewal failed", extra={"error": str(exc)})

        self._renew_owned(by_name, now)

        live = {cfg.identity}
        for item in items:
            holder = (item.get("spec") or {}).get("holderIdentity")
            if holder and not self._expired(item, now):
                live.add(holder)
        self.live_replicas = len(live)
        share = math.ceil(cfg.partitions / len(live))

        with self._lock:
            held = sorted(self._owned)
        for partition in reversed(held[share:]):
            self._release(partition, by_name.get(cfg.partition_lease(partition)))
        if len(held) < share:
            self._acquire(by_name, share - len(held), now)
        self._cleanup_presence(items, now)

    def _renew_owned(self, by_name: dict[str, dict[str, Any]], now: float) -> None:
        with self._lock:
            held = sorted(self._owned)
        for partition in held:
            lease = by_name.get(self.config.partition_lease(partition))
            holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
            if lease is None or holder != self.config.identity:
                self._lose(partition, "the lease was taken or deleted")
                continue
            try:
                renewed = self._claim(self.config.partition_lease(partition), "partition", lease)
            except (ApiError, Unreachable) as exc:
                log.warning("lease renewal failed", extra={"partition": partition, "error": str(exc)})
                continue
            if renewed is not None:
                by_name[renewed["metadata"]["name"]] = renewed
                with self._lock:
                    if partition in self._owned:
                        self._owned[partition] = now
            else:
                self._lose(partition, "renewal conflicted")
        self._drop_overdue(now)

    def _drop_overdue(self, now: float) -> None:
        with self._lock:
            overdue = [p for p, t in self._owned.items() if now - t >= self.config.renew_deadline]
        for partition in overdue:
            self._lose(partition, "no renewal within the renew deadline")

    def _lose(self, partition: int, why: str) -> None:
        with self._lock:
            if self._owned.pop(partition, None) is None:
                return
        log.warning("lost partition lease", extra={"partition": partition, "reason": why})
        self._changed()

    def _acquire(self, by_name: dict[str, dict[str, Any]], wanted: int, now: float) -> None:
        cfg = self.config
        # Start at a point derived from the identity, so that replicas starting together spread out.
        start = partition_of(cfg.identity, cfg.partitions)
        for step in range(cfg.partitions):
            if wanted <= 0:
                return
            partition = (start + step) % cfg.partitions
            with self._lock:
                if partition in self._owned:
                    continue
            name = cfg.partition_lease(partition)
            lease = by_name.get(name)
            mine = ((lease or {}).get("spec") or {}).get("holderIdentity") == cfg.identity
            # A Lease still naming us (a restart with the same --identity) is ours to renew at once.
            if lease is not None and not mine and not self._expired(lease, now):
                continue
            try:
                taken = self._claim(name, "partition", lease)
            except (ApiError, Unreachable) as exc:
                log.warning("lease acquisition failed", extra={"partition": partition, "error": str(exc)})
                return
            if taken is not None:
                with self._lock:
                    self._owned[partition] = self.clock()
                wanted -= 1
                log.info("acquired partition lease", extra={"partition": partition, "lease": name})
                self._changed()

    def _release(self, partition: int, lease: dict[str, Any] | None) -> None:
        # Stop writing first (no new write starts once it is not owned), wait for the writes in
        # progress (each is bounded by the client's timeout), then hand the Lease back.
        with self._lock:
            self._owned.pop(partition, None)
            self._idle.wait_for(lambda: partition not in self._in_flight, timeout=self.client.timeout)
        self._changed()
        if lease is None:
            return
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": lease["metadata"]["name"],
                "namespace": self.config.namespace,
                "labels": (lease["metadata"].get("labels") or {}),
                "resourceVersion": lease["metadata"]["resourceVersion"],
            },
            "spec": {
                **(lease.get("spec") or {}),
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": _micro_time(),
            },
        }
        try:
            self.client.replace(LEASES, body)
            log.info("released partition lease", extra={"partition": partition})
        except (ApiError, Unreachable) as exc:
            # It expires by itself; someone else takes it over then.
            log.warning("lease release failed", extra={"partition": partition, "error": str(exc)})

    def _cleanup_presence(self, items: list[dict[str, Any]], now: float) -> None:
        # Presence Leases of replicas gone for five lease durations are garbage; anyone may delete them.
        for item in items:
            labels = item["metadata"].get("labels") or {}
            if (
                labels.get(LABEL_LEASE_ROLE) != "replica"
                or item["metadata"]["name"] == self.config.presence_lease
            ):
                continue
            seen = self._observed.get(item["metadata"]["name"])
            if seen is not None and now - seen.since > 5 * self.config.lease_duration:
                with suppress(ApiError, Unreachable):
                    self.client.delete(LEASES, item["metadata"]["name"], namespace=self.config.namespace)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.owned())

    # --- lifecycle ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`tick` every retry period in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="lease-coordinator", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug in one round must not end leader election for good
                log.exception("lease round failed")
            self._stop.wait(self.config.retry_period)

    def stop(self, release: bool = True) -> None:
        """Stop the thread; with ``release`` hand back every held Lease and delete the presence Lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.config.retry_period + self.client.timeout)
        if not release:
            return
        with self._lock:
            held = sorted(self._owned)
        for partition in held:
            try:
                lease = self.client.get(
                    LEASES, self.config.partition_lease(partition), namespace=self.config.namespace
                )
            except (ApiError, Unreachable):
                continue
            if (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
                self._release(partition, lease)
        with self._lock:
            self._owned.clear()
        with suppress(ApiError, Unreachable):
            self.client.delete(LEASES, self.config.presence_lease, namespace=self.config.namespace)
