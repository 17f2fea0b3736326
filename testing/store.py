"""The fake server's storage: objects, one global resourceVersion, and the watch event log.

One re-entrant lock guards everything, so a write and the events it emits are
atomic and watchers see events in resourceVersion order.  Watchers are called
back under the lock and must only hand the event on (the server's watchers put
it on an asyncio queue with ``call_soon_threadsafe``).
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kcp_tmc.testing.errors import expired
from kcp_tmc.testing.resources import ResourceInfo, ResourceTable

Object = dict[str, Any]
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change: ``type`` is ``ADDED``, ``MODIFIED`` or ``DELETED``; ``old`` is the previous state."""

    rv: int
    key: Key
    type: str
    object: Object
    old: Object | None = None

    @property
    def namespace(self) -> str:
        """The namespace of the object (``""`` when cluster-scoped)."""
        return str((self.object.get("metadata") or {}).get("namespace", ""))


class Watcher:
    """A registration for events of one resource, optionally one namespace."""

    def __init__(self, key: Key, namespace: str, deliver: Callable[[WatchEvent], None]) -> None:
        self.key = key
        self.namespace = namespace
        self.deliver = deliver


class Store:
    """Thread-safe object storage keyed by (group, plural), then (namespace, name)."""

    def __init__(self, watch_window: int = 1000) -> None:
        self.lock = threading.RLock()
        self.table = ResourceTable()
        self._objects: dict[Key, dict[tuple[str, str], Object]] = {}
        self._rv = 0
        self._events: deque[WatchEvent] = deque(maxlen=max(1, watch_window))
        self._trimmed = 0
        self._watchers: dict[Key, set[Watcher]] = {}

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Holds the store lock (re-entrant) for a read-modify-write sequence."""
        with self.lock:
            yield

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion handed out."""
        with self.lock:
            return self._rv

    # --- raw access (callers hold the lock; objects are the stored ones, do not mutate) ---

    def read(self, key: Key, namespace: str, name: str) -> Object | None:
        """The stored object or ``None``."""
        return self._objects.get(key, {}).get((namespace, name))

    def scan(self, key: Key, namespace: str | None = None) -> list[Object]:
        """Stored objects of a resource in key order (namespace, then name)."""
        bucket = self._objects.get(key, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [bucket[k] for k in keys]

    def scan_at(self, key: Key, namespace: str | None, rv: int) -> list[Object]:
        """Objects of a resource as they were at resourceVersion ``rv`` (undoing later logged events).

        Raises 410 Expired when the log no longer reaches back to ``rv``, as etcd
        does for a compacted revision.
        """
        with self.lock:
            if rv < self._trimmed:
                raise expired(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter."
                )
            state = dict(self._objects.get(key, {}))
            for event in reversed(self._events):
                if event.rv <= rv:
                    break
                if event.key != key:
                    continue
                meta = event.object["metadata"]
                where = (meta.get("namespace", ""), meta["name"])
                if event.type == "ADDED":
                    state.pop(where, None)
                elif event.old is not None:
                    state[where] = event.old
            return [state[k] for k in sorted(state) if namespace is None or k[0] == namespace]

    def namespaces_in_use(self, namespace: str) -> list[tuple[Key, Object]]:
        """Every stored object in ``namespace``, of any resource."""
        with self.lock:
            found: list[tuple[Key, Object]] = []
            for key, bucket in self._objects.items():
                for (ns, _), obj in sorted(bucket.items()):
                    if ns == namespace:
                        found.append((key, obj))
            return found

    def commit(self, key: Key, obj: Object, old: Object | None) -> Object:
        """Stores ``obj`` with a new resourceVersion and emits ADDED or MODIFIED."""
        with self.lock:
            self._rv += 1
            meta = obj.setdefault("metadata", {})
            meta["resourceVersion"] = str(self._rv)
            self._objects.setdefault(key, {})[(meta.get("namespace", ""), meta["name"])] = obj
            self._emit(WatchEvent(self._rv, key, "MODIFIED" if old is not None else "ADDED", obj, old))
            return obj

    def remove(self, key: Key, obj: Object) -> Object:
        """Deletes the object; the DELETED event carries a new resourceVersion, as etcd's does."""
        with self.lock:
            meta = obj.get("metadata") or {}
            self._objects.get(key, {}).pop((meta.get("namespace", ""), meta.get("name", "")), None)
            self._rv += 1
            gone = copy.deepcopy(obj)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._emit(WatchEvent(self._rv, key, "DELETED", gone, obj))
            return gone

    def drop_resource(self, key: Key) -> list[Object]:
        """Deletes every object of a resource (a CRD went away); returns what was deleted."""
        with self.lock:
            return [self.remove(key, obj) for obj in self.scan(key)]

    def _emit(self, event: WatchEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self._trimmed = self._events[0].rv
        self._events.append(event)
        for watcher in list(self._watchers.get(event.key, ())):
            if not watcher.namespace or watcher.namespace == event.namespace:
                watcher.deliver(event)

    # --- watch ---

    def watch(
        self, key: Key, namespace: str, since: int | None, deliver: Callable[[WatchEvent], None]
    ) -> tuple[list[WatchEvent], Watcher]:
        """Registers a watcher; returns the events to send first.

        ``since=None`` gives a synthetic ADDED for every current object; a number
        gives the logged events after it, or raises 410 Expired when the log no
        longer reaches back that far.
        """
        with self.lock:
            if since is None:
                initial = [
                    WatchEvent(int(obj["metadata"]["resourceVersion"]), key, "ADDED", obj)
                    for obj in self.scan(key, namespace or None)
                ]
            else:
                if since < self._trimmed:
                    raise expired(f"too old resource version: {since} ({self._trimmed})")
                initial = [
                    e
                    for e in self._events
                    if e.rv > since and e.key == key and (not namespace or e.namespace == namespace)
                ]
            watcher = Watcher(key, namespace, deliver)
            self._watchers.setdefault(key, set()).add(watcher)
            return initial, watcher

    def unwatch(self, watcher: Watcher) -> None:
        """Stops delivering to ``watcher``."""
        with self.lock:
            self._watchers.get(watcher.key, set()).discard(watcher)

    def watcher_count(self, key: Key | None = None) -> int:
        """How many watches are open (of the resource ``key``, ``(group, plural)``, when given)."""
        with self.lock:
            if key is not None:
                return len(self._watchers.get(key, ()))
            return sum(len(w) for w in self._watchers.values())

    # --- StoreReader (kcp_tmc.testing.types): deep copies, by group/version/plural ---

    def _info(self, group: str, version: str, resource: str) -> ResourceInfo | None:
        return self.table.lookup(group, version, resource) or self.table.any_version(group, resource)

    def get(self, group: str, version: str, resource: str, name: str, namespace: str = "") -> Object | None:
        """A deep copy of one object, with ``apiVersion`` of the version asked for, or ``None``."""
        with self.lock:
            obj = self.read((group, resource), namespace, name)
            if obj is None:
                return None
            out = copy.deepcopy(obj)
        out["apiVersion"] = f"{group}/{version}" if group else version
        return out

    def list(self, group: str, version: str, resource: str, namespace: str | None = None) -> list[Object]:
        """Deep copies of every object of a resource (in one namespace when given)."""
        with self.lock:
            found = copy.deepcopy(self.scan((group, resource), namespace))
        api_version = f"{group}/{version}" if group else version
        for obj in found:
            obj["apiVersion"] = api_version
        return found
