"""What tests measure and break: request and write counters, the write log, fault injection."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True, slots=True)
class _Key:
    verb: str
    group: str
    resource: str
    subresource: str


class Counters:
    """Requests and successful writes per verb and resource; thread-safe and resettable.

    ``requests(verb="list", resource="synctargets")`` counts every request the
    server received (refused ones too); ``writes(...)`` counts the mutating
    requests it accepted (dry runs excluded).  Any filter left out matches all;
    ``resource`` may be ``"synctargets/status"`` to count one subresource.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[_Key] = Counter()
        self._writes: Counter[_Key] = Counter()

    def record_request(self, verb: str, group: str, resource: str, subresource: str = "") -> None:
        """Counts one request."""
        with self._lock:
            self._requests[_Key(verb, group, resource, subresource)] += 1

    def record_write(self, verb: str, group: str, resource: str, subresource: str = "") -> None:
        """Counts one accepted write."""
        with self._lock:
            self._writes[_Key(verb, group, resource, subresource)] += 1

    @staticmethod
    def _sum(counter: Counter[_Key], verb: str | None, resource: str | None, group: str | None) -> int:
        sub: str | None = None
        if resource is not None and "/" in resource:
            resource, sub = resource.split("/", 1)
        return sum(
            n
            for key, n in counter.items()
            if (verb is None or key.verb == verb)
            and (resource is None or key.resource == resource)
            and (sub is None or key.subresource == sub)
            and (group is None or key.group == group)
        )

    def requests(self, verb: str | None = None, resource: str | None = None, group: str | None = None) -> int:
        """How many requests matched."""
        with self._lock:
            return self._sum(self._requests, verb, resource, group)

    def writes(self, verb: str | None = None, resource: str | None = None, group: str | None = None) -> int:
        """How many accepted writes matched."""
        with self._lock:
            return self._sum(self._writes, verb, resource, group)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{"requests": {"list synctargets": 3, ...}, "writes": {...}}`` for printing."""

        def name(key: _Key) -> str:
            resource = f"{key.resource}/{key.subresource}" if key.subresource else key.resource
            return f"{key.verb} {resource}".strip()

        with self._lock:
            return {
                "requests": {name(k): n for k, n in sorted(self._requests.items(), key=lambda i: name(i[0]))},
                "writes": {name(k): n for k, n in sorted(self._writes.items(), key=lambda i: name(i[0]))},
            }

    def reset(self) -> None:
        """Zeroes every counter."""
        with self._lock:
            self._requests.clear()
            self._writes.clear()


class WriteRecord(NamedTuple):
    """One accepted write: who, which verb, which resource (``plural`` or ``plural/status``), name, when."""

    user: str
    verb: str
    resource: str
    name: str
    time: float


class WriteLog(list[WriteRecord]):
    """The accepted writes in order; a plain list, with helpers."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def add(self, record: WriteRecord) -> None:
        """Appends (thread-safe)."""
        with self._lock:
            self.append(record)

    def by(self, user: str) -> list[WriteRecord]:
        """The writes of one user."""
        with self._lock:
            return [r for r in self if r.user == user]

    def reset(self) -> None:
        """Forgets every record."""
        with self._lock:
            self.clear()


class Faults:
    """Fault injection; every setting holds until :meth:`clear` (or its own end).

    ``down_for(s)`` closes the listening socket and every open connection, then
    listens again on the same port after ``s`` seconds; ``error_rate(f, code,
    retry_after)`` answers a fraction ``f`` of requests with 500 or 429 (with
    ``Retry-After``); ``latency(s)`` delays every request; ``conflict_next(n,
    resource)`` answers the next ``n`` updates and patches (of ``resource``, a
    plural, when given) with the apiserver's 409 Conflict.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 (jitter and fault draws, not secrets)
        self.error_fraction = 0.0
        self.error_code = 500
        self.retry_after = 1
        self.delay = 0.0
        self._conflicts = 0
        self._conflict_resource: str | None = None
        self.down_until = 0.0
        self._initializing = 0
        self._initializing_resource: str | None = None
        self._initializing_verbs: tuple[str, ...] = ()
        self._down_hook: Callable[[float], None] | None = None

    def bind(self, hook: Callable[[float], None]) -> None:
        """The server registers how it goes down."""
        self._down_hook = hook

    def down_for(self, seconds: float) -> None:
        """Refuses connections for ``seconds`` (the port stays the same)."""
        if self._down_hook is None:
            raise RuntimeError("the server is not running")
        self.down_until = time.monotonic() + seconds
        self._down_hook(seconds)

    def error_rate(self, fraction: float, code: int = 500, retry_after: int = 1) -> None:
        """Answers ``fraction`` (0..1) of requests with ``code`` (500 or 429)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be between 0 and 1, got {fraction}")
        if code not in (500, 429):
            raise ValueError(f"code must be 500 or 429, got {code}")
        with self._lock:
            self.error_fraction, self.error_code, self.retry_after = fraction, code, retry_after

    def latency(self, seconds: float) -> None:
        """Delays every request by ``seconds``."""
        if seconds < 0:
            raise ValueError(f"latency must not be negative, got {seconds}")
        self.delay = seconds

    def conflict_next(self, n: int, resource: str | None = None) -> None:
        """Answers the next ``n`` updates/patches (of ``resource`` when given) with 409 Conflict."""
        with self._lock:
            self._conflicts, self._conflict_resource = n, resource

    def storage_initializing(self, n: int, resource: str, verbs: tuple[str, ...] = ()) -> None:
        """Answers the next ``n`` requests for ``resource`` (a plural; of ``verbs`` when given) as a
        warming watch cache does.

        kube-apiserver answers ``429 storage is (re)initializing`` with ``Retry-After: 1``
        for a resource whose watch cache is not ready yet, as happens in the first moments
        after its CRD is established.  That window cannot be provoked on demand on a real
        server; this fault gives the same answer deterministically.
        """
        with self._lock:
            self._initializing, self._initializing_resource = n, resource
            self._initializing_verbs = verbs

    def clear(self) -> None:
        """Removes every fault (a server that is down comes back when its time is up)."""
        with self._lock:
            self.error_fraction, self.delay, self._conflicts, self._conflict_resource = 0.0, 0.0, 0, None
            self._initializing, self._initializing_resource = 0, None

    # --- used by the server ---

    def draw_error(self) -> int | None:
        """The status code to fail this request with, or ``None``."""
        with self._lock:
            if self.error_fraction and self._random.random() < self.error_fraction:
                return self.error_code
            return None

    def take_initializing(self, resource: str, verb: str) -> bool:
        """True when this request must get the warming cache's 429 (uses one up)."""
        with self._lock:
            if self._initializing <= 0 or self._initializing_resource != resource:
                return False
            if self._initializing_verbs and verb not in self._initializing_verbs:
                return False
            self._initializing -= 1
            return True

    def take_conflict(self, resource: str) -> bool:
        """True when this update must fail with a conflict (uses one up)."""
        with self._lock:
            if self._conflicts <= 0:
                return False
            if self._conflict_resource is not None and self._conflict_resource != resource:
                return False
            self._conflicts -= 1
            return True
