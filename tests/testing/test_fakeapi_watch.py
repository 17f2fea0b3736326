"""Watches on the fake API server: ordering, resume, 410 Gone, bookmarks, selectors, many at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
from fakeapi_support import GROUP, PLURAL, SYNC_TARGET_CRD, VERSION, crd, failure, sync_target
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kcp_tmc.testing import FakeAPIServer


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(admission=False, watch_window=20, bookmark_interval=0.2) as server:
        server.install_crd(crd(SYNC_TARGET_CRD))
        yield server


def _stream_lines(api: FakeAPIServer, path: str, count: int, timeout: float = 5.0) -> list[dict]:
    """Reads ``count`` watch events over raw HTTP (chunked, one JSON object a line)."""
    import http.client

    context = ssl.create_default_context(cadata=api.ca_pem.decode())
    connection = http.client.HTTPSConnection(api.host, api.port, timeout=timeout, context=context)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {api.admin_token}"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Transfer-Encoding") == "chunked"
        events = []
        while len(events) < count:
            line = response.readline()
            if not line:
                break
            events.append(json.loads(line))
        return events
    finally:
        connection.close()


def test_events_come_in_resource_version_order(api: FakeAPIServer) -> None:
    start = api.store.resource_version
    with api.api_client() as kube:
        objects = client.CustomObjectsApi(kube)
        objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("w1"))
        objects.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "w1", {"spec": {"syncMode": "Pull"}})
        objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "w1")
        events = list(
            watch.Watch().stream(
                objects.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                resource_version=str(start),
                timeout_seconds=1,
            )
        )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert events[0]["object"]["kind"] == "SyncTarget"


def test_watch_from_zero_sends_current_state_then_live_events(api: FakeAPIServer) -> None:
    api.create(sync_target("existing"))
    received: list[tuple[str, str]] = []
    with api.api_client() as kube:
        objects = client.CustomObjectsApi(kube)
        w = watch.Watch()

        def writer() -> None:
            time.sleep(0.3)
            api.create(sync_target("later"))

        thread = threading.Thread(target=writer)
        thread.start()
        for event in w.stream(objects.list_cluster_custom_object, GROUP, VERSION, PLURAL, timeout_seconds=3):
            received.append((event["type"], event["object"]["metadata"]["name"]))
            if len(received) == 2:
                w.stop()
        thread.join()
    assert received == [("ADDED", "existing"), ("ADDED", "later")]


def test_too_old_resource_version_is_410_gone(api: FakeAPIServer) -> None:
    for index in range(30):
        api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"churn-{index}"}})
    events = _stream_lines(api, "/api/v1/configmaps?watch=true&resourceVersion=2", 1)
    oldest = api.store.resource_version - 20
    assert events == [
        {
            "type": "ERROR",
            "object": failure(410, "Expired", f"too old resource version: 2 ({oldest})"),
        }
    ]
    with api.api_client() as kube, pytest.raises(ApiException) as exc:
        for _ in watch.Watch().stream(
            client.CoreV1Api(kube).list_config_map_for_all_namespaces, resource_version="2", timeout_seconds=1
        ):
            pass
    assert exc.value.status == 410


def test_bookmarks_carry_the_current_resource_version(api: FakeAPIServer) -> None:
    events = _stream_lines(api, "/api/v1/configmaps?watch=1&allowWatchBookmarks=true&resourceVersion=1", 1)
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["object"]["kind"] == "ConfigMap"
    assert events[0]["object"]["metadata"]["resourceVersion"] == str(api.store.resource_version)


def test_timeout_seconds_ends_the_watch(api: FakeAPIServer) -> None:
    started = time.monotonic()
    with api.api_client() as kube:
        list(watch.Watch().stream(client.CoreV1Api(kube).list_namespaced_pod, "default", timeout_seconds=1))
    assert 0.9 <= time.monotonic() - started < 3


def test_label_selector_turns_transitions_into_added_and_deleted(api: FakeAPIServer) -> None:
    start = api.store.resource_version
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "moving"}})
    current = api.get("v1", "ConfigMap", "moving", "default")
    current["metadata"]["labels"] = {"watched": "yes"}
    current = api.update(current)
    current["data"] = {"k": "v"}
    current = api.update(current)
    current["metadata"]["labels"] = {"watched": "no"}
    api.update(current)
    events = _stream_lines(
        api,
        f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}&labelSelector=watched%3Dyes",
        3,
    )
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[2]["object"]["metadata"]["labels"] == {"watched": "no"}


def test_field_selector_on_watch(api: FakeAPIServer) -> None:
    start = api.store.resource_version
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}})
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "target"}})
    events = _stream_lines(
        api, f"/api/v1/configmaps?watch=true&resourceVersion={start}&fieldSelector=metadata.name%3Dtarget", 1
    )
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "target")]


def test_namespaced_watch_sees_only_its_namespace(api: FakeAPIServer) -> None:
    start = api.store.resource_version
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "elsewhere"}})
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "y", "namespace": "default"}})
    events = _stream_lines(
        api, f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}", 1
    )
    assert [e["object"]["metadata"]["name"] for e in events] == ["y"]


async def _open_watches(api: FakeAPIServer, count: int) -> tuple[int, list[int]]:
    context = ssl.create_default_context(cadata=api.ca_pem.decode())
    streams = []
    request = (
        "GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {api.admin_token}\r\n\r\n"
    ).format(rv=api.store.resource_version)
    for _ in range(count):
        reader, writer = await asyncio.open_connection(api.host, api.port, ssl=context)
        writer.write(request.encode())
        streams.append((reader, writer))
    for reader, _ in streams:
        await reader.readuntil(b"\r\n\r\n")
    deadline = time.monotonic() + 10
    while api.store.watcher_count() < count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    threads_while_open = threading.active_count()
    await asyncio.to_thread(
        api.create, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "broadcast"}}
    )
    got = []
    for reader, _ in streams:
        size = await asyncio.wait_for(reader.readline(), 10)
        data = await reader.readexactly(int(size, 16) + 2)
        got.append(json.loads(data)["object"]["metadata"]["name"] == "broadcast")
    for _, writer in streams:
        writer.close()
    for _, writer in streams:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
    return threads_while_open, [int(ok) for ok in got]


def test_three_hundred_concurrent_watches_without_a_thread_each(api: FakeAPIServer) -> None:
    baseline = threading.active_count()
    threads, delivered = asyncio.run(_open_watches(api, 300))
    assert sum(delivered) == 300
    # The server's loop thread and its small worker pool; never one thread per watch.
    assert threads - baseline < 20
    deadline = time.monotonic() + 5
    while api.store.watcher_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.store.watcher_count() == 0
