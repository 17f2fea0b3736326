"""Watch: events after a resourceVersion, initial state, selectors, 410 Gone, bookmarks, timeouts."""

from __future__ import annotations

import re
import threading
import time

from conformance_kit import FAKE_WATCH_WINDOW, Backend, configmap, failure, synctarget, unique

MERGE_PATCH = "application/merge-patch+json"


def test_events_after_a_resource_version_in_order(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    before = backend.http("POST", path, configmap("before", namespace)).body["metadata"]["resourceVersion"]
    with backend.watch(f"{path}?watch=true&resourceVersion={before}&timeoutSeconds=10") as stream:
        assert stream.status == 200
        backend.http("POST", path, configmap("cm", namespace, a="1"))
        backend.http("PATCH", f"{path}/cm", {"data": {"a": "2"}}, content_type=MERGE_PATCH)
        backend.http("DELETE", f"{path}/cm")
        events = stream.take(3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "cm"),
        ("MODIFIED", "cm"),
        ("DELETED", "cm"),
    ]
    assert events[1]["object"]["data"] == {"a": "2"}
    assert events[0]["object"]["kind"] == "ConfigMap" and events[0]["object"]["apiVersion"] == "v1"
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(before)


def test_watch_without_resource_version_starts_with_current_state(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name in ("a", "b"):
        backend.http("POST", path, configmap(name, namespace))
    with backend.watch(f"{path}?watch=true&timeoutSeconds=10") as stream:
        initial = stream.take(2)
        backend.http("POST", path, configmap("c", namespace))
        later = stream.take(1)
    assert sorted((e["type"], e["object"]["metadata"]["name"]) for e in initial) == [
        ("ADDED", "a"),
        ("ADDED", "b"),
    ]
    assert (later[0]["type"], later[0]["object"]["metadata"]["name"]) == ("ADDED", "c")


def test_watch_with_selectors(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = backend.http("GET", path).body["metadata"]["resourceVersion"]
    url = f"{path}?watch=true&resourceVersion={rv}&timeoutSeconds=10&labelSelector=app%3Dweb"
    with (
        backend.watch(url) as labelled,
        backend.watch(
            f"{path}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dz&timeoutSeconds=10"
        ) as named,
    ):
        backend.http("POST", path, configmap("x", namespace, {"app": "db"}))
        backend.http("POST", path, configmap("y", namespace, {"app": "web"}))
        backend.http("POST", path, configmap("z", namespace, {"app": "db"}))
        # Losing the label is a DELETED event for a watch that selected it.
        backend.http("PATCH", f"{path}/y", {"metadata": {"labels": {"app": "db"}}}, content_type=MERGE_PATCH)
        label_events = labelled.take(2)
        name_events = named.take(1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in label_events] == [
        ("ADDED", "y"),
        ("DELETED", "y"),
    ]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in name_events] == [("ADDED", "z")]


def test_watch_across_namespaces(backend: Backend, namespace: str) -> None:
    rv = backend.http("GET", "/api/v1/configmaps?limit=1").body["metadata"]["resourceVersion"]
    with backend.watch(
        f"/api/v1/configmaps?watch=true&resourceVersion={rv}&fieldSelector=metadata.namespace%3D{namespace}&timeoutSeconds=10"
    ) as stream:
        backend.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap("cm", namespace))
        [event] = stream.take(1)
    assert event["type"] == "ADDED" and event["object"]["metadata"]["namespace"] == namespace


def test_too_old_resource_version_is_410_gone(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    # The real server's watch caches start after the revisions RealAPIServer writes before it
    # starts (a brand-new etcd would keep resourceVersion 1 in every cache); the fake keeps a
    # window of FAKE_WATCH_WINDOW events, so push resourceVersion 1 out of it first.
    writes = FAKE_WATCH_WINDOW + 1 if backend.kind == "fake" else 3
    backend.http("POST", path, configmap("churn", namespace))
    for i in range(writes):
        backend.http("PATCH", f"{path}/churn", {"data": {"i": str(i)}}, content_type=MERGE_PATCH)
    with backend.watch(f"{path}?watch=true&resourceVersion=1&timeoutSeconds=5") as stream:
        assert stream.status == 200
        event = stream.next()
    assert event is not None
    assert event["type"] == "ERROR"
    status = event["object"]
    assert {k: status[k] for k in ("kind", "apiVersion", "status", "reason", "code")} == {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Expired",
        "code": 410,
    }
    assert re.fullmatch(r"too old resource version: 1 \(\d+\)", status["message"]), status["message"]


def test_timeout_seconds_ends_the_watch_and_bookmarks_arrive(backend: Backend, namespace: str) -> None:
    # Periodic bookmarks come about once a minute, longer than a test should wait; a watch-list
    # (sendInitialEvents) gets one at once, marking the end of its initial events.
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = backend.http("POST", path, configmap("cm", namespace)).body["metadata"]["resourceVersion"]
    started = time.monotonic()
    events = []
    query = "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    with backend.watch(f"{path}?{query}&timeoutSeconds=3") as stream:
        while (event := stream.next()) is not None:
            events.append(event)
        assert stream.ended
    elapsed = time.monotonic() - started
    assert 2.5 <= elapsed < 8, elapsed
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"], events
    assert events[0]["object"]["metadata"]["name"] == "cm"
    mark = events[1]["object"]
    assert mark["kind"] == "ConfigMap" and mark["apiVersion"] == "v1"
    assert mark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert int(mark["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_list_without_bookmarks_sends_the_initial_events_only(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace, {"tier": "web"}))
    backend.http("POST", path, configmap("other", namespace, {"tier": "db"}))
    query = "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&labelSelector=tier%3Dweb"
    with backend.watch(f"{path}?{query}&timeoutSeconds=1") as stream:
        events = []
        while (event := stream.next()) is not None:
            events.append(event)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "cm")]


def test_watch_list_needs_resource_version_match(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    response = backend.http("GET", f"{path}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true")
    detail = "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    assert response.body == failure(
        422,
        "Invalid",
        f'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: {detail}',
        {
            "group": "meta.k8s.io",
            "kind": "ListOptions",
            "causes": [{"reason": "FieldValueForbidden", "message": detail, "field": "resourceVersionMatch"}],
        },
    )


def test_no_bookmarks_unless_asked(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = backend.http("POST", path, configmap("cm", namespace)).body["metadata"]["resourceVersion"]
    with backend.watch(f"{path}?watch=true&resourceVersion={rv}&timeoutSeconds=1") as stream:
        assert stream.next() is None


def test_watch_custom_resources(backend: Backend, synctargets: str) -> None:
    rv = backend.http("GET", synctargets).body["metadata"]["resourceVersion"]
    name = unique("st")
    with backend.watch(
        f"{synctargets}?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3D{name}&timeoutSeconds=10"
    ) as stream:
        backend.http("POST", synctargets, synctarget(name))
        backend.http(
            "PATCH",
            f"{synctargets}/{name}/status",
            {"status": {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}},
            content_type=MERGE_PATCH,
        )
        events = stream.take(2)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED"]
    assert events[1]["object"]["status"]["lastSyncerHeartbeatTime"] == "2024-01-01T00:00:00Z"
    assert events[0]["object"]["kind"] == "SyncTarget"


def test_many_concurrent_watches(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    rv = backend.http("GET", path).body["metadata"]["resourceVersion"]
    threads_before = threading.active_count()
    streams = [backend.watch(f"{path}?watch=true&resourceVersion={rv}&timeoutSeconds=20") for _ in range(150)]
    try:
        assert all(s.status == 200 for s in streams)
        if backend.kind == "fake":
            # The fake serves watches as coroutines: 150 watchers must not cost 150 threads.
            assert threading.active_count() - threads_before < 20
        backend.http("POST", path, configmap("fanout", namespace))
        for stream in streams:
            [event] = stream.take(1)
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "fanout")
    finally:
        for stream in streams:
            stream.close()
