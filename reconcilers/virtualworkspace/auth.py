"""Who a caller is (TokenReview) and whether it may sync a SyncTarget (SubjectAccessReview).

Both answers are cached in one bounded LRU map with a time to live, so that a syncer's steady stream
of requests costs no review per request, while a revoked grant (or token) stops working within the
TTL.  Denials are kept for a tenth of it: a grant just given should let the caller in quickly, and a
burst of refused requests still costs at most one review per tenth of the TTL.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kcp_tmc.reconcilers.virtualworkspace.backend import Backend

__all__ = ["Authorizer", "Caller", "ReviewFailed", "TTLCache"]

V = TypeVar("V")

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class TTLCache(Generic[V]):
    """At most ``size`` entries, each valid for its own time to live; least recently used go first."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        if size < 0:
            raise ValueError(f"cache size must be >= 0 ({size})")
        self.size = size
        self._clock = clock
        self._entries: OrderedDict[Any, tuple[float, V]] = OrderedDict()

    def get(self, key: Any) -> V | None:
        """The value, or None when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: Any, value: V, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (nothing when the TTL or the size is zero)."""
        if ttl <= 0 or self.size == 0:
            return
        self._entries[key] = (self._clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class Caller:
    """An authenticated user, as a TokenReview returns it."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @classmethod
    def from_user_info(cls, info: dict[str, Any]) -> Caller:
        extra = info.get("extra") or {}
        return cls(
            name=str(info.get("username", "")),
            uid=str(info.get("uid", "")),
            groups=tuple(str(g) for g in info.get("groups") or ()),
            extra=tuple(sorted((str(k), tuple(str(x) for x in v)) for k, v in extra.items())),
        )


class ReviewFailed(Exception):
    """The backing apiserver could not answer a review (it was reachable but refused it)."""


class Authorizer:
    """TokenReview and SubjectAccessReview through the backend, behind a :class:`TTLCache`."""

    def __init__(self, backend: Backend, *, ttl: float = 10.0, size: int = 1024) -> None:
        self._backend = backend
        self.ttl = ttl
        self._cache: TTLCache[Caller | bool] = TTLCache(size)
        #: Reviews sent to the backing apiserver (for tests and metrics).
        self.reviews = 0

    async def _review(self, path: str, review: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        reply = await self._backend.request(
            "POST", path, body=json.dumps(review).encode(), content_type="application/json"
        )
        if reply.status not in {201, 200}:
            raise ReviewFailed(f"{path}: HTTP {reply.status}: {reply.body[:200].decode('utf-8', 'replace')}")
        answer: dict[str, Any] = json.loads(reply.body)
        return answer

    async def authenticate(self, token: str) -> Caller | None:
        """The caller a bearer token stands for; None when the token is not valid."""
        key = ("token", hashlib.sha256(token.encode()).hexdigest())
        cached = self._cache.get(key)
        if cached is not None:
            return cached if isinstance(cached, Caller) else None
        review = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        status = (await self._review(TOKENREVIEWS, review)).get("status") or {}
        if status.get("authenticated"):
            caller = Caller.from_user_info(status.get("user") or {})
            self._cache.put(key, caller, self.ttl)
            return caller
        self._cache.put(key, False, self.ttl / 10)
        return None

    async def may_sync(self, caller: Caller, target_name: str) -> bool:
        """Whether ``caller`` has verb ``sync`` on ``synctargets/<target_name>`` in ``workload.kcp.io``."""
        key = ("sync", caller, target_name)
        cached = self._cache.get(key)
        if cached is not None:
            return bool(cached)
        spec: dict[str, Any] = {
            "user": caller.name,
            "resourceAttributes": {
                "verb": "sync",
                "group": "workload.kcp.io",
                "version": "v1alpha1",
                "resource": "synctargets",
                "name": target_name,
            },
        }
        if caller.uid:
            spec["uid"] = caller.uid
        if caller.groups:
            spec["groups"] = list(caller.groups)
        if caller.extra:
            spec["extra"] = {k: list(v) for k, v in caller.extra}
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
        allowed = bool(
            ((await self._review(SUBJECTACCESSREVIEWS, review)).get("status") or {}).get("allowed")
        )
        self._cache.put(key, allowed, self.ttl if allowed else self.ttl / 10)
        return allowed
