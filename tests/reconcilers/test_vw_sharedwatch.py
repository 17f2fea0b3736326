"""The shared backing watch: fan-out, selector transitions, slow clients, relist on 410, client RVs."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kcp_tmc.reconcilers.virtualworkspace.backend import BackendReply, BackendUnreachable
from kcp_tmc.reconcilers.virtualworkspace.sharedwatch import ClientFilter, SharedWatch, SharedWatches
from tests.reconcilers.test_vw_watch import LABEL, _raw_watch, _ready
from tests.reconcilers.vw_env import CONFIGMAPS, VWEnv

Obj = dict[str, Any]


def cm(name: str, rv: int, **labels: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv), "labels": labels}}


class _Content:
    def __init__(self, lines: list[bytes], hang: bool, go: asyncio.Event) -> None:
        self._lines = lines
        self._hang = hang
        self._go = go

    async def readline(self) -> bytes:
        # Nothing is said until the test has its subscribers in place.
        await self._go.wait()
        if self._lines:
            line = self._lines.pop(0)
            if isinstance(line, Exception):
                raise line
            return line
        if self._hang:
            await asyncio.Event().wait()
        return b""


class _Response:
    def __init__(self, status: int, lines: list[bytes], hang: bool, go: asyncio.Event) -> None:
        self.status = status
        self.content = _Content(lines, hang, go)


class ScriptedBackend:
    """Lists and watches answered from scripts; the last watch stays open with nothing more to say."""

    def __init__(self, lists: list[Obj], watches: list[list[Any]]) -> None:
        self.lists = lists
        self.watches = watches
        self.watch_queries: list[dict[str, str]] = []
        self.go = asyncio.Event()

    async def request(self, method: str, path: str, **kwargs: Any) -> BackendReply:
        return BackendReply(200, json.dumps(self.lists.pop(0)).encode())

    @asynccontextmanager
    async def stream(self, path: str, query: dict[str, str]) -> AsyncIterator[_Response]:
        self.watch_queries.append(dict(query))
        lines = self.watches.pop(0) if self.watches else []
        yield _Response(200, list(lines), hang=not self.watches, go=self.go)


def event(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def listing(rv: int, *items: Obj) -> Obj:
    return {"metadata": {"resourceVersion": str(rv)}, "items": list(items)}


def render(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "name": obj["metadata"]["name"]}).encode()


def everything(obj: Obj) -> bool:
    return True


def labelled(obj: Obj) -> bool:
    return obj["metadata"]["labels"].get("tier") == "web"


def shared_watch(backend: ScriptedBackend, **kwargs: Any) -> SharedWatch:
    return SharedWatch(backend, "/api/v1/configmaps", "state=Sync", render, **kwargs)  # type: ignore[arg-type]


async def drain(subscriber: Any) -> list[tuple[str, str]]:
    lines: list[bytes] = []
    while True:
        try:
            lines += await asyncio.wait_for(subscriber.next_lines(), 0.2)
        except TimeoutError:
            break
        if subscriber.closed and not lines:
            break
        if subscriber.closed:
            lines += await subscriber.next_lines()
            break
    return [(json.loads(line)["type"], json.loads(line)["name"]) for line in lines]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def test_one_backing_watch_feeds_every_client_with_its_own_selector_transitions() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(
            [listing(10, cm("a", 9, tier="web"))],
            [
                [
                    event("MODIFIED", cm("a", 11, tier="db")),
                    event("MODIFIED", cm("a", 12, tier="web")),
                    event("ADDED", cm("b", 13, tier="db")),
                    event("DELETED", cm("a", 14, tier="web")),
                ]
            ],
        )
        shared = shared_watch(backend)
        everyone = await shared.subscribe(ClientFilter(everything), None, wait=2)
        web = await shared.subscribe(ClientFilter(labelled), None, wait=2)
        assert everyone is not None and web is not None
        backend.go.set()
        await settle()
        assert await drain(everyone) == [
            ("ADDED", "a"),
            ("MODIFIED", "a"),
            ("MODIFIED", "a"),
            ("ADDED", "b"),
            ("DELETED", "a"),
        ]
        # Leaving the client's selector is DELETED, entering it again ADDED, as the watch cache says.
        assert await drain(web) == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "a"), ("DELETED", "a")]
        assert backend.watch_queries[-1]["labelSelector"] == "state=Sync"
        assert shared.lists == 1
        await shared.stop()

    asyncio.run(scenario())


def test_client_resource_versions_replay_from_the_window_or_are_refused_before_it() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(
            [listing(10, cm("a", 9))],
            [[event("ADDED", cm("b", 11)), event("ADDED", cm("c", 12)), event("ADDED", cm("d", 13))]],
        )
        shared = shared_watch(backend, window=2)
        first = await shared.subscribe(ClientFilter(everything), None, wait=2)
        backend.go.set()
        await settle()
        assert first is not None
        assert [name for _, name in await drain(first)] == ["a", "b", "c", "d"]
        # resourceVersion=N: only what happened after N.
        after_c = await shared.subscribe(ClientFilter(everything), 12, wait=2)
        assert after_c is not None and await drain(after_c) == [("ADDED", "d")]
        # The window of two events starts after b: from b on is replayable, before it is not.
        assert shared.oldest == 11
        assert await shared.subscribe(ClientFilter(everything), 10, wait=2) is None
        replay = await shared.subscribe(ClientFilter(everything), 11, wait=2)
        assert replay is not None and await drain(replay) == [("ADDED", "c"), ("ADDED", "d")]
        # resourceVersion unset or 0: the current state as ADDED events.
        state = await shared.subscribe(ClientFilter(everything), None, wait=2)
        assert state is not None and sorted(await drain(state)) == [("ADDED", n) for n in "abcd"]
        await shared.stop()

    asyncio.run(scenario())


def test_a_slow_client_is_dropped_and_the_others_get_every_event() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend([listing(10)], [[]])
        shared = shared_watch(backend, queue=3)
        slow = await shared.subscribe(ClientFilter(everything), None, wait=2)
        fast = await shared.subscribe(ClientFilter(everything), None, wait=2)
        assert slow is not None and fast is not None
        received: list[tuple[str, str]] = []
        for n in range(6):
            shared._apply({"type": "ADDED", "object": cm(f"cm-{n}", 11 + n)})
            received += await drain(fast)
        assert received == [("ADDED", f"cm-{n}") for n in range(6)]
        assert slow.closed and slow.reason == "too slow"
        # Its unread lines went with it: the stream just ends and the client re-watches.
        assert await slow.next_lines() == []
        assert slow not in shared.subscribers and fast in shared.subscribers
        await shared.stop()

    asyncio.run(scenario())


def test_a_backing_410_relists_and_ends_the_client_watches() -> None:
    async def scenario() -> None:
        gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
        backend = ScriptedBackend(
            [listing(10, cm("a", 9)), listing(50, cm("b", 49))],
            [[json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"], []],
        )
        shared = shared_watch(backend)
        before = await shared.subscribe(ClientFilter(everything), None, wait=2)
        assert before is not None
        backend.go.set()
        await settle()
        assert before.closed and before.reason == "relisting"
        assert shared.lists == 2 and shared.oldest == 50
        assert [query["resourceVersion"] for query in backend.watch_queries] == ["10", "50"]
        # A client resuming from before the relist is not served from the shared watch.
        assert await shared.subscribe(ClientFilter(everything), 10, wait=2) is None
        now = await shared.subscribe(ClientFilter(everything), None, wait=2)
        assert now is not None and await drain(now) == [("ADDED", "b")]
        await shared.stop()

    asyncio.run(scenario())


def test_a_broken_backing_watch_ends_the_clients_and_resumes_without_a_relist() -> None:
    async def scenario() -> None:
        backend = ScriptedBackend(
            [listing(10)],
            [[event("ADDED", cm("a", 11)), BackendUnreachable("reset")], []],
        )
        shared = shared_watch(backend)
        subscriber = await shared.subscribe(ClientFilter(everything), None, wait=2)
        assert subscriber is not None
        backend.go.set()
        await asyncio.sleep(0.5)
        assert subscriber.closed and subscriber.reason == "backing watch broke"
        assert shared.lists == 1
        assert [query["resourceVersion"] for query in backend.watch_queries] == ["10", "11"]
        again = await shared.subscribe(ClientFilter(everything), 11, wait=2)
        assert again is not None
        await shared.stop()

    asyncio.run(scenario())


def test_an_unanswered_list_is_backend_unreachable_and_an_idle_watch_is_retired() -> None:
    async def scenario() -> None:
        class Down(ScriptedBackend):
            async def request(self, method: str, path: str, **kwargs: Any) -> BackendReply:
                raise BackendUnreachable("connection refused")

        watches = SharedWatches(Down([], []), linger=0.05)  # type: ignore[arg-type]
        shared = watches.get("/api/v1/configmaps", "state=Sync", render)
        try:
            await shared.subscribe(ClientFilter(everything), None, wait=0.3)
        except BackendUnreachable as exc:
            assert "connection refused" in str(exc)
        else:
            raise AssertionError("no BackendUnreachable")
        await asyncio.sleep(0.2)
        assert watches.watches == {}

    asyncio.run(scenario())


def test_many_client_watches_hold_one_backing_watch(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    rv = vw_env.configmap("before")["metadata"]["resourceVersion"]
    # ConfigMap watches alone: the workspace's own informers may start theirs meanwhile.
    baseline = vw_env.api.store.watcher_count(("", "configmaps"))
    url = vw_env.base(target) + CONFIGMAPS + f"?watch=true&resourceVersion={rv}&timeoutSeconds=10"
    results: list[list[dict[str, Any]]] = []
    watchers = [
        threading.Thread(target=lambda: results.append(_raw_watch(vw_env, url, 1))) for _ in range(12)
    ]
    for watcher in watchers:
        watcher.start()
    deadline = time.monotonic() + 10
    while sum(len(s.subscribers) for s in vw_env.server.workspace.shared.watches.values()) < 12:
        assert time.monotonic() < deadline, "the watches never subscribed"
        time.sleep(0.02)
    assert vw_env.api.store.watcher_count(("", "configmaps")) == baseline + 1
    vw_env.configmap("after")
    for watcher in watchers:
        watcher.join(15)
    assert [[(e["type"], e["object"]["metadata"]["name"]) for e in r] for r in results] == [
        [("ADDED", "after")]
    ] * 12


def test_client_selectors_and_resource_version_zero_through_the_server(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.configmap("web", labels={"tier": "web"})
    vw_env.configmap("db", labels={"tier": "db"})
    base = vw_env.base(target) + CONFIGMAPS
    zero = _raw_watch(
        vw_env, base + "?watch=true&resourceVersion=0&labelSelector=tier%3Dweb&timeoutSeconds=1", 5
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in zero] == [("ADDED", "web")]
    named = _raw_watch(vw_env, base + "?watch=true&fieldSelector=metadata.name%3Ddb&timeoutSeconds=1", 5)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in named] == [("ADDED", "db")]
    assert all(e["object"]["metadata"]["labels"][LABEL] == "Sync" for e in zero + named)
    # A selector only the apiserver can judge goes to it, and its error comes back worded by it.
    status, body = vw_env.http("GET", base + "?watch=true&labelSelector=tier%3D%3D%3D")
    assert status == 400 and body["reason"] == "BadRequest"


@pytest.mark.parametrize(
    "query",
    ["resourceVersion=not-a-number", "sendInitialEvents=true"],
    ids=["malformed-resource-version", "send-initial-events"],
)
def test_watches_the_shared_watch_cannot_judge_get_the_backing_apiservers_answer(
    vw_env: VWEnv, query: str
) -> None:
    target = _ready(vw_env)
    selector = f"labelSelector={LABEL}%3DSync"
    direct = vw_env.api.http("GET", f"{CONFIGMAPS}?watch=true&{query}&{selector}&timeoutSeconds=1")
    status, body = vw_env.http(
        "GET", vw_env.base(target) + CONFIGMAPS + f"?watch=true&{query}&timeoutSeconds=1"
    )
    assert direct.status >= 400
    assert (status, body) == (direct.status, direct.json())
    assert vw_env.server.workspace.shared.watches == {}
