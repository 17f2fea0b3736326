"""The webhook's view of the cluster: a cached policy Lookup, and the writer of quota reservations.

:class:`ApiLookup` gives policies read access to other objects through an informer-style
cache, and writes the quota reservations their verdicts carry (:class:`~kcp_tmc.policies.policy.Reserver`).

The cache holds the types it is told to (the quota types by default): for each, a background
thread lists every object, then watches from the list's resourceVersion (with bookmarks, and a
server-side timeout so that the watch is renewed often), relists on ``410 Expired`` and every
``resync`` seconds.  A read is served from the cache while it is fresh: synced and in contact
with the apiserver within ``max_staleness`` seconds.  Otherwise, and for types it does not cache,
a read is a live request bounded by ``request_timeout``; when that fails the read raises, the
policy fails and its failure mode decides, within the review's deadline (the engine keeps it).

A reservation is written with optimistic concurrency, as Kubernetes' quota admission does: start
from the cached quota, check the reservation against its status
(:func:`kcp_tmc.policies.quota.apply_reservation`), write the new status (a merge patch carrying the
quota's ``resourceVersion`` as its precondition); on ``409 Conflict`` re-read it live and try again,
until it fits or is denied, or the deadline passes. So any number of webhook processes never admit
more than a quota, whatever their caches show. Within one process, reservations on the same quota take
turns (a lock per quota, waited for within the deadline): each starts from the status the one before
it wrote, so concurrent reviews on one worker do not conflict with each other, and the one whose turn
it is writes every reservation waiting by then in the same patch (group commit).

The HTTP client is urllib3, over the ``kubernetes`` package's configuration.  The webhook's gevent
worker does not monkey-patch, so a call made on one of its greenlets goes through a second
connection pool of the same settings whose sockets are gevent's (:mod:`kcp_tmc.webhook.loophttp`, one
per thread): the greenlet waits for the apiserver on the event loop, the worker's other connections are
served meanwhile, and the deadline and failure modes are those of a direct call.  Reservations of
such greenlets take turns on a gevent lock, which waits on the loop too.  Anywhere else (a plain
thread, Flask's test client, the engine's policy threads, the caches' threads) calls block on
urllib3's own sockets.  Only behind a proxy, which the loop's pool does not reproduce, is a call
made on a greenlet handed to a thread of the loop's threadpool (:func:`_off_loop`) instead.
The caches list in pages (``limit``/``continue``, as client-go's reflector does) so that decoding
a large list never holds the interpreter's lock, and with it the event loop, for longer than one
page takes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import gevent
import gevent.lock
import urllib3
import yaml
from kubernetes import client as _k8s_client
from kubernetes import config as _k8s_config

from kcp_tmc.policies.kinds import FEDERATED_QUOTA, RESOURCE_QUOTA, ResourceType
from kcp_tmc.policies.policy import FieldError, Object, Reservation
from kcp_tmc.policies.quota import apply_reservation
from kcp_tmc.webhook.loophttp import loop_connection_pool

__all__ = ["ApiCallError", "ApiLookup", "ReservationTimeout"]

log = logging.getLogger("kcp_tmc.webhook.lookup")

# The kubernetes package is only partly typed; treat it as untyped at this one boundary.
k8s_client: Any = _k8s_client
k8s_config: Any = _k8s_config

#: Writes of one reservation before it gives up on conflicts (when no deadline stops it first).
_MAX_ATTEMPTS = 64
#: Less time than this left before a deadline is too little for an apiserver round trip (seconds).
_ROUND_TRIP = 0.005
#: What the webhook caches by default: the quotas the quota policies read on every review.
CACHED_TYPES: tuple[ResourceType, ...] = (FEDERATED_QUOTA, RESOURCE_QUOTA)
#: Objects per page of a cache's list: client-go's reflector uses the same.
LIST_PAGE = 500

_T = TypeVar("_T")


def _on_loop() -> bool:
    """Whether this runs on a greenlet of a gevent server (where a blocking call holds the loop)."""
    return isinstance(gevent.getcurrent(), gevent.Greenlet)


def _off_loop(call: Callable[[], _T]) -> _T:
    """``call()``, on the event loop's threadpool when made from a gevent server's greenlet.

    Only for calls that cannot wait on the loop themselves (through a proxy).  Exceptions come
    back as raised.  The pool is gevent's own per-hub pool (made on first use, so a forked
    gunicorn worker never inherits its master's threads).
    """
    if not _on_loop():
        return call()
    result: _T = gevent.get_hub().threadpool.apply(call)
    return result


class ApiCallError(Exception):
    """The apiserver could not be read or written: no answer, or an error status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ReservationTimeout(TimeoutError):
    """A reservation still conflicted when its deadline passed."""


def _path(rtype: ResourceType, namespace: str = "", name: str = "", subresource: str = "") -> str:
    base = f"/apis/{rtype.group}/{rtype.version}" if rtype.group else f"/api/{rtype.version}"
    if rtype.namespaced and namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{rtype.plural}"
    if name:
        base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
    return base


#: How long the credentials header is reused before the configuration is asked again.
AUTH_REUSE = 10.0


class _Http:
    """The few HTTP calls the lookup needs: urllib3 over the ``kubernetes`` package's configuration.

    A call is sent the way of the context it is made in (see the module documentation): through the
    loop's connection pool on a greenlet, through the ``kubernetes`` client's own (blocking) pool
    manager anywhere else.
    """

    def __init__(self, configuration: Any, clock: Callable[[], float] = time.monotonic) -> None:
        configuration.retries = False  # the callers have deadlines of their own
        self.configuration = configuration
        self.api: Any = k8s_client.ApiClient(configuration=configuration)
        self.host: str = configuration.host
        # A server URL may carry a path (kcp's /clusters/<name>): a pool is asked for paths below it.
        self._prefix = urlsplit(self.host).path.rstrip("/")
        self.clock = clock
        self._auth: dict[str, str] = {}
        self._auth_until = float("-inf")
        self._blocking: urllib3.PoolManager = self.api.rest_client.pool_manager
        # One pool per process and thread: a gevent socket belongs to the loop that made it.
        self._loop_pools: dict[tuple[int, int], urllib3.HTTPConnectionPool | None] = {}
        self._loop_pools_guard = threading.Lock()

    def _loop_pool(self) -> urllib3.HTTPConnectionPool | None:
        """This thread's loop pool (made on first use); ``None`` behind a proxy."""
        key = (os.getpid(), threading.get_ident())
        try:
            return self._loop_pools[key]
        except KeyError:
            with self._loop_pools_guard:
                if key not in self._loop_pools:
                    self._loop_pools[key] = loop_connection_pool(self._blocking, self.host)
                return self._loop_pools[key]

    def _headers(self, content_type: str | None) -> dict[str, str]:
        # Asking the configuration for its token runs the kubeconfig loader's refresh hook, which
        # rebuilds the configuration (scanning the environment for proxies) on every call: half a
        # millisecond of each reservation in a profile. The header is reused for a few seconds
        # instead; a 401 asks again at once (an exec plugin's token may expire sooner).
        now = self.clock()
        if now >= self._auth_until:
            setting = self.configuration.auth_settings().get("BearerToken")
            self._auth = {"Authorization": setting["value"]} if setting and setting.get("value") else {}
            self._auth_until = now + AUTH_REUSE
        headers = {**self.api.default_headers, "Accept": "application/json", **self._auth}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    def _call(
        self,
        pool: urllib3.HTTPConnectionPool | None,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        timeout: float,
        content_type: str = "application/json",
    ) -> Any:
        if query:
            path = f"{path}?{urlencode(query)}"
        data = None if body is None else json.dumps(body).encode()
        response = self._send(pool, method, path, data, timeout, content_type)
        if response.status == 401 and self._auth:
            # The reused token was refused: drop it and ask the configuration for a fresh one, once.
            response.drain_conn()  # read to its end, or the pool hands out a dirty connection
            response.release_conn()
            self._auth_until = float("-inf")
            response = self._send(pool, method, path, data, timeout, content_type)
        return response

    def _send(
        self,
        pool: urllib3.HTTPConnectionPool | None,
        method: str,
        path: str,
        data: bytes | None,
        timeout: float,
        content_type: str,
    ) -> Any:
        """One request: on ``pool`` (the loop's) when given, else through the blocking manager."""
        headers = self._headers(content_type if data is not None else None)
        options: dict[str, Any] = {
            "body": data,
            "headers": headers,
            "timeout": urllib3.Timeout(total=timeout),
            "retries": False,
            "preload_content": False,
        }
        try:
            if pool is not None:
                return pool.urlopen(method, self._prefix + path, redirect=False, **options)
            return self._blocking.request(method, self.host + path, **options)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiCallError(f"{method} {self.host}{path}: {exc}") from exc

    def json(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        timeout: float,
        content_type: str = "application/json",
    ) -> Any:
        if not _on_loop():
            return self._json(None, method, path, query, body, timeout, content_type)
        pool = self._loop_pool()
        if pool is None:  # on the loop behind a proxy: the blocking manager, on the threadpool
            return _off_loop(lambda: self._json(None, method, path, query, body, timeout, content_type))
        return self._json(pool, method, path, query, body, timeout, content_type)

    def _json(
        self,
        pool: urllib3.HTTPConnectionPool | None,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        timeout: float,
        content_type: str,
    ) -> Any:
        response = self._call(pool, method, path, query, body, timeout, content_type)
        try:
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiCallError(f"{method} {self.host}{path}: {exc}") from exc
        finally:
            response.release_conn()
        if response.status >= 300:
            message = ""
            try:
                message = str(json.loads(data).get("message") or "")
            except (ValueError, AttributeError):
                message = data[:200].decode("utf-8", "replace")
            raise ApiCallError(f"{method} {path}: {response.status} {message}".rstrip(), response.status)
        return json.loads(data)

    def lines(self, path: str, query: Mapping[str, str], timeout: float) -> Iterator[bytes]:
        """The lines of a streamed answer (a watch); made by the caches' threads, so it blocks."""
        response = self._call(None, "GET", path, query, None, timeout)
        if response.status >= 300:
            response.release_conn()
            raise ApiCallError(f"GET {path}: {response.status}", response.status)
        try:
            buffer = b""
            for chunk in response.stream(64 * 1024, decode_content=False):
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                yield from (line for line in complete if line.strip())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiCallError(f"watch {path}: {exc}") from exc
        finally:
            # A watch connection may still be streaming: never hand it back to the pool.
            response.close()
            response.release_conn()

    def close(self) -> None:
        # The loops' pools are left to their threads: a gevent socket is closed by its own loop.
        self.api.close()


class _Informer:
    """One type's cache: list, then watch; relist on expiry and every ``resync`` seconds."""

    def __init__(
        self,
        http: _Http,
        rtype: ResourceType,
        resync: float,
        watch_timeout: int,
        clock: Callable[[], float],
        page: int = LIST_PAGE,
    ):
        self.http = http
        self.page = page
        self.rtype = rtype
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.clock = clock
        self.objects: dict[tuple[str, str], Object] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.last_contact = float("-inf")
        self.watching = False
        self.thread = threading.Thread(target=self._run, name=f"tmc-lookup-{rtype.plural}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def fresh(self, max_staleness: float) -> bool:
        return self.synced.is_set() and (self.watching or self.clock() - self.last_contact <= max_staleness)

    def put(self, obj: Object) -> None:
        """Take a newer copy of an object (a write's answer) before its watch event arrives."""
        key = _key(obj)
        with self.lock:
            held = self.objects.get(key)
            if held is None or _rv(held) <= _rv(obj):
                self.objects[key] = obj

    def _run(self) -> None:
        backoff = 0.2
        while not self.stopping.is_set():
            try:
                version = self._list()
                backoff = 0.2
                listed_at = self.clock()
                while not self.stopping.is_set() and self.clock() - listed_at < self.resync:
                    renewed = self._watch(version)
                    if renewed is None:
                        break  # expired: relist
                    version = renewed
            except Exception as exc:  # keep the cache alive through any outage; reads go live meanwhile
                self.watching = False
                if self.stopping.is_set():
                    return
                log.warning("cache of %s: %s; retrying in %.1fs", self.rtype.plural, exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _list(self) -> str:
        objects: dict[tuple[str, str], Object] = {}
        query = {"limit": str(self.page)}
        while True:
            try:
                data = self.http.json("GET", _path(self.rtype), query=query, timeout=30.0)
            except ApiCallError as exc:
                if exc.status != 410 or "continue" not in query:
                    raise
                # The snapshot the pages come from has been compacted away: start over.
                objects, query = {}, {"limit": str(self.page)}
                continue
            for item in data.get("items") or ():
                item.setdefault("apiVersion", self.rtype.api_version)
                item.setdefault("kind", self.rtype.kind)
                objects[_key(item)] = item
            meta = data.get("metadata") or {}
            self.last_contact = self.clock()
            if not meta.get("continue"):
                break
            query = {"limit": str(self.page), "continue": str(meta["continue"])}
        with self.lock:
            self.objects = objects
        self.synced.set()
        return str(meta.get("resourceVersion") or "")

    def _watch(self, version: str) -> str | None:
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self.watch_timeout),
        }
        self.watching = True
        try:
            for line in self.http.lines(_path(self.rtype), query, self.watch_timeout + 10.0):
                if self.stopping.is_set():
                    return version
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                self.last_contact = self.clock()
                if kind == "ERROR":
                    return None if obj.get("code") == 410 else version
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                obj.setdefault("apiVersion", self.rtype.api_version)
                obj.setdefault("kind", self.rtype.kind)
                with self.lock:
                    if kind == "DELETED":
                        self.objects.pop(_key(obj), None)
                    else:
                        self.objects[_key(obj)] = obj
        finally:
            self.watching = False
            self.last_contact = self.clock()
        return version

    def get(self, name: str, namespace: str) -> Object | None:
        with self.lock:
            return self.objects.get((namespace, name))

    def list(self, namespace: str, labels: Mapping[str, str] | None) -> list[Object]:
        with self.lock:
            found = list(self.objects.values())
        return [o for o in found if _matches(o, namespace, labels)]


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Mapping[str, Any]) -> int:
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0


def _matches(obj: Mapping[str, Any], namespace: str, labels: Mapping[str, str] | None) -> bool:
    meta = obj.get("metadata") or {}
    if namespace and (meta.get("namespace") or "") != namespace:
        return False
    have = meta.get("labels") or {}
    return not labels or all(have.get(k) == v for k, v in labels.items())


class _Ticket:
    """One review's reservation waiting for a write, and what became of it."""

    __slots__ = ("abandoned", "deadline", "denial", "done", "error", "reservation")

    def __init__(self, reservation: Reservation, deadline: float | None) -> None:
        self.reservation = reservation
        self.deadline = deadline
        self.done = False
        self.abandoned = False  # its review stopped waiting (its deadline passed)
        self.denial: FieldError | None = None
        self.error: Exception | None = None

    def settle(self, denial: FieldError | None = None, error: Exception | None = None) -> None:
        self.denial, self.error, self.done = denial, error, True

    def outcome(self) -> FieldError | None:
        if self.error is not None:
            raise self.error
        return self.denial


class _Turn:
    """One quota's turn (for callers of one context): its lock, and the reservations waiting for it."""

    __slots__ = ("lock", "waiting")

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.waiting: list[_Ticket] = []


_Tickets = list[_Ticket]
_Denials = list[tuple[_Ticket, FieldError | None]]


class ApiLookup:
    """A policy :class:`~kcp_tmc.policies.policy.Lookup` and quota ``Reserver`` over one apiserver.

    Build it with :meth:`from_kubeconfig` (or :meth:`in_cluster`) and :meth:`start` it; the
    webhook app does both for ``WebhookConfig.kubeconfig``.  ``cached`` are the types kept in the
    cache; ``max_staleness`` bounds how old a cached answer may be; ``request_timeout`` bounds
    each live request; ``list_page`` is the page size of the caches' lists.  Live requests and
    reservations made on a gevent worker's greenlet wait on its event loop (see the module
    documentation).
    """

    def __init__(
        self,
        configuration: Any,
        *,
        cached: Iterable[ResourceType] = CACHED_TYPES,
        resync: float = 300.0,
        max_staleness: float = 30.0,
        request_timeout: float = 2.0,
        watch_timeout: int = 30,
        clock: Callable[[], float] = time.monotonic,
        list_page: int = LIST_PAGE,
    ) -> None:
        self.http = _Http(configuration, clock)
        self.max_staleness = max_staleness
        self.request_timeout = request_timeout
        self.clock = clock
        self.informers = {t: _Informer(self.http, t, resync, watch_timeout, clock, list_page) for t in cached}
        #: Conflicts met while reserving (for tests and benchmarks).
        self.conflicts = 0
        # One reservation at a time per quota in this process (see _reserve); one lock per quota
        # ever reserved against, so the map is as large as the set of quotas.
        self._quota_locks: dict[tuple[int | None, ResourceType, str, str], _Turn] = {}
        self._quota_locks_guard = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: str, **options: Any) -> ApiLookup:
        """A lookup from a kubeconfig file; :class:`ValueError` when it cannot be used."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
            configuration = k8s_client.Configuration()
            k8s_config.load_kube_config_from_dict(
                data, client_configuration=configuration, persist_config=False
            )
        except Exception as exc:  # any reason the file is unusable, named in one message
            raise ValueError(f"kubeconfig {path}: {exc or type(exc).__name__}") from exc
        return cls(configuration, **options)

    @classmethod
    def in_cluster(cls, **options: Any) -> ApiLookup:
        """A lookup from the pod's service account; :class:`ValueError` outside a cluster."""
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except Exception as exc:  # ConfigException, or a missing token file
            raise ValueError(f"in-cluster configuration: {exc or type(exc).__name__}") from exc
        return cls(configuration, **options)

    def start(self, wait: float = 0.0) -> ApiLookup:
        """Start the caches; wait up to ``wait`` seconds for their first list."""
        for informer in self.informers.values():
            informer.start()
        deadline = self.clock() + wait
        for informer in self.informers.values():
            informer.synced.wait(max(0.0, deadline - self.clock()))
        return self

    def close(self) -> None:
        """Stop the caches' threads (each ends at its watch's next event or timeout) and the pool."""
        for informer in self.informers.values():
            informer.stop()

    # -- Lookup ------------------------------------------------------------------------------

    def _fresh(self, rtype: ResourceType) -> _Informer | None:
        informer = self.informers.get(rtype)
        return informer if informer is not None and informer.fresh(self.max_staleness) else None

    def _live_list(
        self, rtype: ResourceType, namespace: str, labels: Mapping[str, str] | None
    ) -> list[Object]:
        query = {"labelSelector": ",".join(f"{k}={v}" for k, v in labels.items())} if labels else None
        try:
            data = self.http.json("GET", _path(rtype, namespace), query=query, timeout=self.request_timeout)
        except ApiCallError as exc:
            if exc.status == 404:
                return []  # the type is not served: nothing of it exists
            raise
        items: list[Object] = data.get("items") or []
        for item in items:
            item.setdefault("apiVersion", rtype.api_version)
            item.setdefault("kind", rtype.kind)
        return items

    def get(self, rtype: ResourceType, name: str, namespace: str = "") -> Object | None:
        informer = self._fresh(rtype)
        if informer is not None:
            return informer.get(name, namespace)
        return self._live_get(rtype, name, namespace)

    def list(
        self, rtype: ResourceType, namespace: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Object]:
        informer = self._fresh(rtype)
        if informer is not None:
            return informer.list(namespace, labels)
        return self._live_list(rtype, namespace, labels)

    def _live_get(
        self, rtype: ResourceType, name: str, namespace: str, timeout: float | None = None
    ) -> Object | None:
        try:
            obj: Object = self.http.json(
                "GET", _path(rtype, namespace, name), timeout=timeout or self.request_timeout
            )
        except ApiCallError as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    # -- Reserver ----------------------------------------------------------------------------

    def reserve(self, reservation: Reservation, deadline: float | None = None) -> FieldError | None:
        """Write ``reservation`` (see the module documentation); the denial when it no longer fits."""
        return self._reserve(reservation, deadline)

    def _turn(self, reservation: Reservation) -> _Turn:
        """The turn on the reservation's quota for callers of this context.

        Greenlets of one thread share a gevent lock (it waits on their loop); plain threads share a
        thread lock.  Greenlets and threads never reserve in one process in practice (a server has
        one kind of handler): were they to, they would only meet each other's preconditions.
        """
        context = threading.get_ident() if _on_loop() else None
        key = (context, reservation.quota, reservation.namespace, reservation.name)
        with self._quota_locks_guard:
            turn = self._quota_locks.get(key)
            if turn is None:
                lock = threading.Lock() if context is None else gevent.lock.Semaphore(1)
                turn = self._quota_locks[key] = _Turn(lock)
            return turn

    def _reserve(self, reservation: Reservation, deadline: float | None) -> FieldError | None:
        # Reservations of this process on the same quota take turns: each starts from the status
        # the previous one wrote (its answer goes into the cache), so they never conflict with each
        # other; without the turn, concurrent reviews on one worker each wrote the same
        # resourceVersion and all but one re-read and retried, again and again (x30 p99 at 10
        # connections in bench.quota). Other processes and replicas still meet the precondition.
        # The one whose turn it is writes every reservation waiting by then in one patch (group
        # commit, as Kubernetes' quota admission batches its waiters): ten reviews queued behind
        # one write cost one more write, not ten.
        turn = self._turn(reservation)
        ticket = _Ticket(reservation, deadline)
        with self._quota_locks_guard:
            turn.waiting.append(ticket)
        if deadline is None:
            turn.lock.acquire()
        else:
            # The turn is waited for until the review's deadline, not for one call's timeout: ten
            # reviews queued behind a slow apiserver may each need longer than one round trip
            # (bounding the wait by ``request_timeout`` failed reviews that had seconds left).
            try:
                self._budget(deadline)  # raises when too little is left for a round trip
            except ReservationTimeout:
                self._give_up(turn, ticket)
                raise
            if not turn.lock.acquire(timeout=max(0.0, deadline - self.clock())):
                self._give_up(turn, ticket)
                if not ticket.done:
                    raise ReservationTimeout(
                        "the review's deadline passed while earlier reservations on the quota were written"
                    )
                return ticket.outcome()
        try:
            if not ticket.done:  # else a write made while this one waited settled it
                with self._quota_locks_guard:
                    batch, turn.waiting = [t for t in turn.waiting if not t.abandoned], []
                try:
                    self._reserve_locked(batch, ticket)
                except Exception as exc:  # settles this review only: the others try in their turn
                    ticket.settle(error=exc)
                finally:
                    with self._quota_locks_guard:
                        turn.waiting[:0] = [t for t in batch if not t.done and not t.abandoned]
        finally:
            turn.lock.release()
        return ticket.outcome()

    def _give_up(self, turn: _Turn, ticket: _Ticket) -> None:
        with self._quota_locks_guard:
            ticket.abandoned = True
            if ticket in turn.waiting:
                turn.waiting.remove(ticket)

    def _reserve_locked(self, batch: _Tickets, own: _Ticket) -> None:
        deadline = own.deadline
        try:
            self._reserve_attempts(batch, own)
        except ApiCallError as exc:
            # A call cut short because the review's deadline left it too little time is the deadline's
            # doing, not the apiserver's: the policy's failure mode then speaks of the deadline.
            if exc.status == 0 and deadline is not None and self.clock() >= deadline - _ROUND_TRIP:
                raise ReservationTimeout(
                    f"the review's deadline passed while the quota was being written: {exc}"
                ) from exc
            raise

    def _reserve_attempts(self, batch: _Tickets, own: _Ticket) -> None:
        """Settle the tickets of ``batch`` (one quota's) with one write; raises when it cannot be made.

        In their order, each reservation is checked against the status with the ones before it
        added: those that fit are written together, the others denied (on the live object: the
        cache may be behind a release).  The calls are bounded by the deadline of ``own``, the
        writer's ticket; other tickets whose deadline has passed are left out (their reviews have
        been answered by now).
        """
        deadline = own.deadline
        first = batch[0].reservation
        rtype = first.quota
        informer = self.informers.get(rtype)
        quota = self.get(rtype, first.name, first.namespace)
        live = informer is None or quota is None
        for _ in range(_MAX_ATTEMPTS):
            if quota is None:
                quota = self._live_get(rtype, first.name, first.namespace, self._budget(deadline))
                live = True
                if quota is None:  # the quota was deleted meanwhile: nothing left to reserve against
                    for ticket in batch:
                        ticket.settle()
                    return
            now = self.clock()
            current = quota
            fits: _Tickets = []
            denied: _Denials = []
            for ticket in batch:
                if ticket is not own and ticket.deadline is not None and ticket.deadline - now <= _ROUND_TRIP:
                    continue  # its review has been answered by now
                status, denial = apply_reservation(current, ticket.reservation)
                if status is None:
                    denied.append((ticket, denial))
                else:
                    current = {**current, "status": status}
                    fits.append(ticket)
            if denied and not live:
                quota = None  # the cache may be behind a release: decide on the live object
                continue
            if fits:
                # A merge patch of the status alone, with the resourceVersion as its precondition.
                version = (quota.get("metadata") or {}).get("resourceVersion")
                body = {"metadata": {"resourceVersion": version}, "status": current["status"]}
                path = _path(rtype, first.namespace, first.name, "status")
                try:
                    written = self.http.json(
                        "PATCH",
                        path,
                        body=body,
                        timeout=self._budget(deadline),
                        content_type="application/merge-patch+json",
                    )
                except ApiCallError as exc:
                    if exc.status != 409:
                        raise
                    self.conflicts += 1
                    quota = None
                    continue
                if informer is not None:
                    informer.put(written)
            for ticket in fits:
                ticket.settle()
            for ticket, denial in denied:
                ticket.settle(denial=denial)
            return
        raise ReservationTimeout(f"the quota's status still conflicted after {_MAX_ATTEMPTS} attempts")

    def _budget(self, deadline: float | None) -> float:
        if deadline is None:
            return self.request_timeout
        left = deadline - self.clock()
        if left <= _ROUND_TRIP:
            raise ReservationTimeout("the review's deadline passed before the quota could be written")
        return min(left, self.request_timeout)
