"""One backing watch per (workspace, SyncTarget, resource), fanned out to every client watch of it.

A client watch used to open a watch of its own on the backing apiserver: with 200 syncer watches one
write was encoded 200 times by the apiserver and decoded 200 times here.  A :class:`SharedWatch` lists
and watches the resource once (cluster-wide, with the SyncTarget's state requirement), keeps the
objects and a window of recent events, and hands each event to the client watches, each with its own
filter (namespace, label and field selectors, logical cluster) and the transformation rendered once per
event.  This is what the apiserver's watch cache does for its own clients, and the client watches get
the same resourceVersion semantics from it:

- ``resourceVersion`` unset or ``0``: an ``ADDED`` event for every object held, then the changes;
- ``resourceVersion=N``: the events after ``N``.  An ``N`` older than the window (a syncer resuming
  from before the shared watch's list) is not ours to refuse: that client watch is proxied to a
  backing watch of its own, and the backing apiserver replays from ``N`` or answers ``410 Expired``,
  so a client sees exactly what the apiserver would have shown it.

A client that does not keep up (its queue of lines full) is dropped as the apiserver drops an
unresponsive watcher: its stream ends, it re-watches from its last resourceVersion, and no other watch
waits for it.  A backing ``410`` is followed by a fresh list; the client watches are ended then, since
the events between the two lists are lost (their re-watch gets a 410 when they predate the new list).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from kcp_tmc.reconcilers.virtualworkspace.backend import Backend, BackendUnreachable

__all__ = ["ClientFilter", "SharedWatch", "SharedWatches", "Subscriber"]

log = logging.getLogger("kcp_tmc.reconcilers.virtualworkspace")

Obj = dict[str, Any]
#: How an event is rendered for the client watches: its whole line, ``type`` and the object's view (the
#: read transformation).  A line of type ``ERROR`` (a transformation that failed) ends the watch.
Render = Callable[[str, Obj], bytes]
_ERROR_LINE = b'{"type":"ERROR"'

#: Events kept for client watches that resume from a resourceVersion.
WINDOW = 1024
#: Lines a client watch may have waiting before it is dropped as unresponsive.
QUEUE = 1024
#: Seconds a backing watch is kept without client watches, for the next one (a syncer re-watching).
LINGER = 30.0
#: A backing watch is re-established after this many seconds even when the server keeps it open.
WATCH_SECONDS = 300


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


@dataclass(frozen=True)
class ClientFilter:
    """What one client watch sees of the shared stream."""

    accepts: Callable[[Obj], bool]
    bookmarks: bool = False


class Subscriber:
    """One client watch: a bounded queue of lines, ended (``closed``) by the watch or by being slow."""

    def __init__(self, client: ClientFilter, limit: int = QUEUE) -> None:
        self.client = client
        self._lines: collections.deque[bytes] = collections.deque()
        self._limit = limit
        self._wake = asyncio.Event()
        self.closed = False
        #: Why the watch was ended by the server side ("" while open or ended by the client).
        self.reason = ""

    def push(self, line: bytes) -> None:
        if self.closed:
            return
        if len(self._lines) >= self._limit:
            # The apiserver closes an unresponsive watcher rather than hold the others back; the lines
            # it has not read go with it (the client resumes from the last one it did read).
            self._lines.clear()
            self.close("too slow")
            return
        self._lines.append(line)
        self._wake.set()

    def close(self, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            self._wake.set()

    async def next_lines(self) -> list[bytes]:
        """The lines waiting (at least one), or ``[]`` once closed and drained."""
        while not self._lines:
            if self.closed:
                return []
            self._wake.clear()
            await self._wake.wait()
        lines = list(self._lines)
        self._lines.clear()
        return lines


@dataclass
class _Event:
    rv: int
    kind: str
    obj: Obj
    prev: Obj | None
    # The rendered line per client-side type: rendered at most once per event for all watches.
    lines: dict[str, bytes | None]


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _rv(obj: Obj) -> int:
    return int((obj.get("metadata") or {}).get("resourceVersion") or 0)


class SharedWatch:
    """The list-then-watch of one backing collection with a label requirement, and its subscribers."""

    def __init__(
        self,
        backend: Backend,
        path: str,
        selector: str,
        render: Render,
        *,
        window: int = WINDOW,
        on_idle: Callable[[SharedWatch], None] | None = None,
        linger: float = LINGER,
        queue: int = QUEUE,
    ) -> None:
        self._backend = backend
        self.path = path
        self.selector = selector
        self._render = render
        self.objects: dict[tuple[str, str], Obj] = {}
        self._window: collections.deque[_Event] = collections.deque(maxlen=window)
        #: Every event after this resourceVersion is in the window.
        self.oldest = 0
        self.rv = 0
        self.synced = asyncio.Event()
        self.subscribers: set[Subscriber] = set()
        self.lists = 0
        self.error = ""
        self._task: asyncio.Task[None] | None = None
        self._on_idle = on_idle
        self._linger = linger
        self._queue = queue
        self._idle_handle: asyncio.TimerHandle | None = None
        self._backoff = 0.0

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """End every subscriber and the backing watch."""
        self._end_all("server stopping")
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _end_all(self, reason: str) -> None:
        for subscriber in list(self.subscribers):
            subscriber.close(reason)
        self.subscribers.clear()

    # --- subscribing --------------------------------------------------------------------------------

    async def subscribe(self, client: ClientFilter, since: int | None, *, wait: float) -> Subscriber | None:
        """A subscriber, its queue holding the initial events; ``since=None`` means the current state.

        None for a ``since`` the window does not reach back to; :class:`BackendUnreachable` when the
        backing list cannot be read within ``wait`` seconds.
        """
        self.start()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        if not self.synced.is_set():
            try:
                await asyncio.wait_for(self.synced.wait(), wait)
            except TimeoutError:
                self._schedule_idle()
                raise BackendUnreachable(self.error or f"watch {self.path}: no answer") from None
        subscriber = Subscriber(client, self._queue)
        if since is None:
            for obj in self.objects.values():
                if client.accepts(obj):
                    self._push(subscriber, self._render("ADDED", obj))
        else:
            if since < self.oldest:
                self._schedule_idle()
                return None
            for event in self._window:
                if event.rv > since:
                    self._offer(subscriber, event)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.close()
        self.subscribers.discard(subscriber)
        self._schedule_idle()

    def _schedule_idle(self) -> None:
        if self.subscribers or self._idle_handle is not None or self._on_idle is None:
            return
        on_idle = self._on_idle
        self._idle_handle = asyncio.get_running_loop().call_later(
            self._linger, lambda: None if self.subscribers else on_idle(self)
        )

    # --- fan-out ------------------------------------------------------------------------------------

    def _line(self, event: _Event, kind: str) -> bytes:
        line = event.lines.get(kind)
        if line is None:
            line = event.lines[kind] = self._render(kind, event.obj)
        return line

    @staticmethod
    def _push(subscriber: Subscriber, line: bytes) -> None:
        subscriber.push(line)
        if line.startswith(_ERROR_LINE):
            subscriber.close("the read transformation failed")

    def _offer(self, subscriber: Subscriber, event: _Event) -> None:
        accepts = subscriber.client.accepts
        was = event.prev is not None and accepts(event.prev)
        if event.kind == "DELETED":
            if was or accepts(event.obj):
                self._push(subscriber, self._line(event, "DELETED"))
            return
        now = accepts(event.obj)
        # As the watch cache does for a selector: entering it is ADDED, leaving it is DELETED.
        if now:
            self._push(subscriber, self._line(event, "MODIFIED" if was else "ADDED"))
        elif was:
            self._push(subscriber, self._line(event, "DELETED"))

    def _publish(self, event: _Event) -> None:
        if len(self._window) == self._window.maxlen:
            self.oldest = self._window[0].rv
        self._window.append(event)
        for subscriber in list(self.subscribers):
            self._offer(subscriber, event)
            if subscriber.closed:
                self.subscribers.discard(subscriber)

    def _bookmark(self, line: bytes) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.client.bookmarks:
                subscriber.push(line)
            if subscriber.closed:
                self.subscribers.discard(subscriber)

    # --- the backing list and watch -----------------------------------------------------------------

    async def _list(self) -> None:
        reply = await self._backend.request("GET", self.path, query={"labelSelector": self.selector})
        if reply.status != 200:
            raise BackendUnreachable(f"list {self.path}: HTTP {reply.status}")
        data = json.loads(reply.body)
        self.objects = {_key(item): item for item in data.get("items") or []}
        self.rv = int((data.get("metadata") or {}).get("resourceVersion") or 0)
        # Nothing before the list can be replayed: a client resuming from earlier must relist.
        self.oldest = self.rv
        self._window.clear()
        self.lists += 1
        self.synced.set()

    def _apply(self, event: Obj) -> None:
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(obj, dict):
            raise ValueError(f"a watch event without an object: {kind}")
        key = _key(obj)
        prev = self.objects.get(key)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.rv = _rv(obj)
        self._publish(_Event(self.rv, str(kind), obj, prev, {}))

    async def _watch(self) -> bool:
        """Watch from ``rv`` until the stream ends; False when a fresh list is needed."""
        query = {
            "watch": "true",
            "labelSelector": self.selector,
            "resourceVersion": str(self.rv),
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self._backend.stream(self.path, query) as response:
            if response.status != 200:
                # 410 for a resourceVersion compacted meanwhile; anything else is retried by a list.
                return False
            self._backoff = 0.0
            self.synced.set()
            while line := await response.content.readline():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind = event.get("type")
                if kind == "BOOKMARK":
                    self.rv = _rv(event.get("object") or {})
                    self._bookmark(line if line.endswith(b"\n") else line + b"\n")
                elif kind == "ERROR":
                    return False
                else:
                    self._apply(event)
        return True

    async def _run(self) -> None:
        listed = False
        while True:
            try:
                if not listed:
                    self._end_all("relisting")
                    await self._list()
                    listed = True
                listed = await self._watch()
            except (TimeoutError, BackendUnreachable, aiohttp.ClientError, ValueError, KeyError) as exc:
                # The backing watch broke: the client watches end cleanly and re-watch; new ones wait.
                self.error = str(exc) or type(exc).__name__
                log.info("shared watch retrying", extra={"path": self.path, "error": self.error})
                self.synced.clear()
                self._end_all("backing watch broke")
                self._backoff = min(max(self._backoff * 2, 0.2), 5.0)
                await asyncio.sleep(self._backoff * (0.5 + random.random() / 2))  # noqa: S311 - jitter


class SharedWatches:
    """The shared watches of one server, by (collection path, label requirement)."""

    def __init__(self, backend: Backend, *, linger: float = LINGER, window: int = WINDOW) -> None:
        self._backend = backend
        self._linger = linger
        self._window = window
        self.watches: dict[tuple[str, str], SharedWatch] = {}

    def get(self, path: str, selector: str, render: Render) -> SharedWatch:
        key = (path, selector)
        shared = self.watches.get(key)
        if shared is None:
            shared = self.watches[key] = SharedWatch(
                self._backend,
                path,
                selector,
                render,
                window=self._window,
                on_idle=self._retire,
                linger=self._linger,
            )
        return shared

    def _retire(self, shared: SharedWatch) -> None:
        if self.watches.get((shared.path, shared.selector)) is shared:
            del self.watches[(shared.path, shared.selector)]
        asyncio.get_running_loop().create_task(shared.stop())

    async def stop(self, watches: Iterable[SharedWatch] | None = None) -> None:
        for shared in list(watches if watches is not None else self.watches.values()):
            await shared.stop()
        if watches is None:
            self.watches.clear()
