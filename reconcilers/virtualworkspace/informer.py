"""A list-then-watch cache of one cluster-scoped resource of the backing apiserver.

The virtual workspaces look up SyncTargets, APIExports and APIResourceSchemas on every request; this
keeps them in memory and current.  A failed list or watch is retried with backoff; a watch that ends
(timeout, 410, the server going away) is followed by a fresh list, so the cache never misses a change
it could not replay.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any

import aiohttp

from kcp_tmc.reconcilers.virtualworkspace.backend import Backend, BackendUnreachable

__all__ = ["Informer"]

log = logging.getLogger("kcp_tmc.reconcilers.virtualworkspace")

Obj = dict[str, Any]

#: A watch is re-established after this many seconds even when the server keeps it open.
WATCH_SECONDS = 300


class Informer:
    """``objects`` by name; ``synced`` is set once the first list has been read."""

    def __init__(
        self, backend: Backend, path: str, *, absent_retry: float = 5.0, absent_ok: bool = True
    ) -> None:
        self._backend = backend
        self.path = path
        self.objects: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        #: Bumped on every change, so that derived views know when to recompute.
        self.generation = 0
        self._absent_retry = absent_retry
        #: Whether a resource the server does not serve (404) counts as an empty, synced list.
        self._absent_ok = absent_ok
        self._backoff = 0.0

    async def _sleep_backoff(self) -> None:
        self._backoff = min(max(self._backoff * 2, 0.2), 10.0)
        await asyncio.sleep(self._backoff * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not crypto

    async def _list(self) -> str | None:
        reply = await self._backend.request("GET", self.path)
        if reply.status == 404:
            # The resource is not installed (no APIExport CRD on a plain apiserver): empty, when allowed.
            if self._absent_ok:
                self._replace({})
            return None
        if reply.status != 200:
            raise BackendUnreachable(f"list {self.path}: HTTP {reply.status}")
        data = json.loads(reply.body)
        self._replace({item["metadata"]["name"]: item for item in data.get("items") or []})
        return str((data.get("metadata") or {}).get("resourceVersion", ""))

    def _replace(self, objects: dict[str, Obj]) -> None:
        if objects != self.objects:
            self.objects = objects
            self.generation += 1
        self.synced.set()

    async def _watch(self, resource_version: str) -> None:
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self._backend.stream(self.path, query) as response:
            if response.status != 200:
                return
            self._backoff = 0.0
            while line := await response.content.readline():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind in ("ADDED", "MODIFIED"):
                    self.objects = {**self.objects, obj["metadata"]["name"]: obj}
                    self.generation += 1
                elif kind == "DELETED":
                    self.objects = {k: v for k, v in self.objects.items() if k != obj["metadata"]["name"]}
                    self.generation += 1
                elif kind == "ERROR":
                    return

    async def run(self) -> None:
        """List and watch until cancelled."""
        while True:
            try:
                resource_version = await self._list()
                if resource_version is None:
                    await asyncio.sleep(self._absent_retry)
                    continue
                await self._watch(resource_version)
            except (TimeoutError, BackendUnreachable, aiohttp.ClientError, ValueError, KeyError) as exc:
                log.warning("informer retrying", extra={"path": self.path, "error": str(exc)})
                await self._sleep_backoff()
