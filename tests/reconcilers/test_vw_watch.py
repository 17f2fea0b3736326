"""Watches through the syncer virtual workspace: events, unmatching, bookmarks, 410, outages."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import urllib3
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.rest import ApiException

from kcp_tmc.policies.keys import state_label, sync_target_key
from tests.reconcilers.vw_env import CONFIGMAPS, SYNCER_TOKEN, VWEnv

LABEL = state_label(sync_target_key("root", "st1"))


def _ready(env: VWEnv) -> dict[str, Any]:
    target = env.create_target()
    env.wait_for_target()
    return target


def _collect(env: VWEnv, base: str, until: int, **kwargs: Any) -> list[tuple[str, str]]:
    """(type, name) of the first ``until`` events of a watch through the kubernetes client."""
    seen: list[tuple[str, str]] = []
    with env.client(base) as api_client:
        core = k8s.CoreV1Api(api_client)
        watcher = k8s_watch.Watch()
        for event in watcher.stream(core.list_namespaced_config_map, "default", timeout_seconds=10, **kwargs):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) >= until:
                watcher.stop()
    return seen


def test_watch_delivers_events_of_synced_objects_and_deleted_when_one_stops_matching(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    rv = vw_env.configmap("before")["metadata"]["resourceVersion"]
    results: list[list[tuple[str, str]]] = []
    watching = threading.Thread(
        target=lambda: results.append(_collect(vw_env, vw_env.base(target), 4, resource_version=rv))
    )
    watching.start()
    time.sleep(0.5)
    vw_env.configmap("other-target", target="st2")
    placed = vw_env.configmap("placed")
    vw_env.configmap("pending", state="")
    placed["data"] = {"k": "v"}
    placed = vw_env.api.update(placed)
    placed["metadata"]["labels"][LABEL] = ""
    vw_env.api.update(placed)
    again = vw_env.configmap("again")
    vw_env.api.delete("v1", "configmaps", "again", "default")
    watching.join(15)
    assert results == [
        [("ADDED", "placed"), ("MODIFIED", "placed"), ("DELETED", "placed"), ("ADDED", "again")]
    ]
    assert again["metadata"]["name"] == "again"


def _raw_watch(env: VWEnv, url: str, lines: int, timeout: float = 10) -> list[dict[str, Any]]:
    pool = urllib3.PoolManager(ca_certs=env.ca_path, retries=False)
    events: list[dict[str, Any]] = []
    try:
        reply = pool.request(
            "GET",
            url,
            headers={"Authorization": f"Bearer {SYNCER_TOKEN}"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=timeout),
        )
        assert reply.status == 200, reply.data
        buffer = b""
        for chunk in reply.stream(1024):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                events.append(json.loads(line))
                if len(events) >= lines:
                    reply.release_conn()
                    return events
        return events
    finally:
        pool.clear()


def test_bookmarks_are_passed_through(tmp_path) -> None:
    with VWEnv.running(tmp_path, bookmark_interval=0.2) as env:
        target = _ready(env)
        rv = env.configmap("placed")["metadata"]["resourceVersion"]
        url = env.base(target) + CONFIGMAPS + f"?watch=true&allowWatchBookmarks=true&resourceVersion={rv}"
        events = _raw_watch(env, url, 1)
        assert events[0]["type"] == "BOOKMARK"
        assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_a_watch_from_a_compacted_version_gets_410_and_the_client_relists(tmp_path) -> None:
    with VWEnv.running(tmp_path, watch_window=5) as env:
        target = _ready(env)
        first = env.configmap("cm-0")["metadata"]["resourceVersion"]
        for i in range(1, 12):
            env.configmap(f"cm-{i}")
        with env.client(env.base(target)) as api_client:
            core = k8s.CoreV1Api(api_client)
            with pytest.raises(ApiException) as caught:
                for _ in k8s_watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=first, timeout_seconds=5
                ):
                    pass
            assert caught.value.status == 410
            listed = core.list_namespaced_config_map("default")
            assert len(listed.items) == 12
        rv = listed.metadata.resource_version
        results: list[list[tuple[str, str]]] = []
        watching = threading.Thread(
            target=lambda: results.append(_collect(env, env.base(target), 1, resource_version=rv))
        )
        watching.start()
        time.sleep(0.3)
        env.configmap("after-relist")
        watching.join(15)
        assert results == [[("ADDED", "after-relist")]]


def test_an_unreachable_backing_apiserver_gives_503_and_open_watches_end(tmp_path) -> None:
    with VWEnv.running(tmp_path, auth_ttl=60) as env:
        target = _ready(env)
        env.configmap("placed")
        url = env.base(target) + CONFIGMAPS
        assert env.http("GET", url)[0] == 200
        ended = threading.Event()

        def watch() -> None:
            _raw_watch(env, url + "?watch=true&resourceVersion=0", 1000, timeout=20)
            ended.set()

        watching = threading.Thread(target=watch)
        watching.start()
        time.sleep(0.5)
        env.api.faults.down_for(3)
        assert ended.wait(5), "the open watch did not end when the backing apiserver went away"
        status, body = env.http("GET", url)
        assert (status, body["reason"]) == (503, "ServiceUnavailable")
        assert body["message"].startswith("the backing apiserver is unavailable: ")
        watching.join(5)


def test_watch_events_are_transformed_once_for_every_watch_of_the_target(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    key = sync_target_key("root", "st1")
    created = vw_env.namespace(
        "ns1", metadata={"annotations": {f"diff.syncer.internal.kcp.io/{key}": '{"status":{"phase":"Seen"}}'}}
    )
    rv = created["metadata"]["resourceVersion"]
    url = vw_env.base(target) + f"/api/v1/namespaces?watch=true&resourceVersion={rv}&timeoutSeconds=10"
    results: list[list[dict[str, Any]]] = []
    watchers = [threading.Thread(target=lambda: results.append(_raw_watch(vw_env, url, 1))) for _ in range(2)]
    for watcher in watchers:
        watcher.start()
    time.sleep(0.5)
    created["metadata"]["annotations"]["extra"] = "x"
    vw_env.api.update(created)
    for watcher in watchers:
        watcher.join(15)
    assert len(results) == 2
    for [event] in results:
        assert event["type"] == "MODIFIED"
        assert event["object"]["status"] == {"phase": "Seen"}
        assert event["object"]["metadata"]["annotations"] == {"extra": "x"}
        assert event["object"]["metadata"]["finalizers"] == [f"workload.kcp.io/syncer-{key}"]
    # Both watches share one backing watch, whose event was rendered once for the two.
    assert len(vw_env.server.workspace.shared.watches) == 1


def test_stopping_the_server_ends_open_watches(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.configmap("placed")
    url = vw_env.base(target) + CONFIGMAPS + "?watch=true&resourceVersion=0&timeoutSeconds=60"
    received: list[list[dict[str, Any]]] = []
    watching = threading.Thread(target=lambda: received.append(_raw_watch(vw_env, url, 1000, timeout=30)))
    watching.start()
    time.sleep(0.5)
    started = time.monotonic()
    vw_env.server.stop()
    watching.join(10)
    assert not watching.is_alive(), "the watch outlived the server"
    assert time.monotonic() - started < 10
    assert [event["type"] for event in received[0]] == ["ADDED"]
