"""Counters, the write log, fault injection and the admission hook of the fake API server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from fakeapi_support import GROUP, PLURAL, SYNC_TARGET_CRD, VERSION, crd, failure, sync_target
from kubernetes import client

from kcp_tmc.testing import AdmissionAttributes, AdmissionResult, FakeAPIServer

ST_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
TOKENS = {"ctl": ("controller", ["system:serviceaccounts"])}


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(tokens=TOKENS, admission=False, seed=7) as server:
        server.install_crd(crd(SYNC_TARGET_CRD))
        yield server


def test_counters_count_requests_and_accepted_writes(api: FakeAPIServer) -> None:
    api.http("POST", ST_PATH, sync_target("a"), token="ctl")
    api.http("POST", ST_PATH, sync_target("a"), token="ctl")  # 409: a request, not a write
    api.http("GET", ST_PATH, token="ctl")
    api.http("GET", ST_PATH, token="ctl")
    api.http(
        "PATCH", f"{ST_PATH}/a/status", {"status": {"x": 1}}, "application/merge-patch+json", token="ctl"
    )
    api.http("POST", f"{ST_PATH}?dryRun=All", sync_target("b"), token="ctl")
    assert api.counters.requests(verb="list", resource="synctargets") == 2
    assert api.counters.requests(verb="create") == 3
    assert api.counters.writes(resource="synctargets") == 2
    assert api.counters.writes(verb="create", resource="synctargets") == 1
    assert api.counters.writes(resource="synctargets/status") == 1
    assert api.counters.writes(group="workload.kcp.io", verb="patch") == 1
    assert api.counters.snapshot()["writes"] == {"create synctargets": 1, "patch synctargets/status": 1}
    api.counters.reset()
    assert api.counters.requests() == 0
    assert api.counters.writes() == 0


def test_direct_helpers_are_not_counted(api: FakeAPIServer) -> None:
    api.create(sync_target("quiet"))
    assert api.counters.writes() == 0
    assert api.write_log == []


def test_write_log_says_who_wrote_what(api: FakeAPIServer) -> None:
    before = time.time()
    api.http("POST", ST_PATH, sync_target("logged"), token="ctl")
    api.http("DELETE", f"{ST_PATH}/logged")
    assert [(r.user, r.verb, r.resource, r.name) for r in api.write_log] == [
        ("controller", "create", "synctargets", "logged"),
        ("admin", "delete", "synctargets", "logged"),
    ]
    user, verb, resource, name, when = api.write_log[0]
    assert (user, verb, resource, name) == ("controller", "create", "synctargets", "logged")
    assert before <= when <= time.time()
    assert [r.verb for r in api.write_log.by("admin")] == ["delete"]
    api.write_log.reset()
    assert api.write_log == []


def test_error_rate_injects_500s_and_429s(api: FakeAPIServer) -> None:
    api.faults.error_rate(1.0, code=429, retry_after=3)
    reply = api.http("GET", "/api/v1/namespaces")
    assert reply.status == 429
    assert reply.header("retry-after") == "3"
    assert reply.json() == failure(
        429, "TooManyRequests", "Too many requests, please try again later.", {"retryAfterSeconds": 3}
    )
    api.faults.error_rate(1.0, code=500)
    assert (
        api.http("GET", "/api/v1/namespaces").json()["message"] == "Internal error occurred: injected fault"
    )
    assert api.http("GET", "/healthz").status == 200
    api.faults.error_rate(0.5)
    codes = [api.http("GET", "/api/v1/namespaces").status for _ in range(40)]
    assert 5 < codes.count(500) < 35
    api.faults.clear()
    assert api.http("GET", "/api/v1/namespaces").status == 200
    with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
        api.faults.error_rate(2)
    with pytest.raises(ValueError, match="code must be 500 or 429"):
        api.faults.error_rate(0.1, code=503)


def test_latency_delays_requests(api: FakeAPIServer) -> None:
    api.faults.latency(0.3)
    started = time.monotonic()
    api.http("GET", "/api/v1/namespaces")
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError, match="latency must not be negative"):
        api.faults.latency(-1)


def test_conflict_next_forces_409s(api: FakeAPIServer) -> None:
    api.create(sync_target("contended"))
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "free"}})
    api.faults.conflict_next(2, resource="synctargets")
    patch = {"spec": {"syncMode": "Pull"}}
    merge = "application/merge-patch+json"
    free = api.http("PATCH", "/api/v1/namespaces/default/configmaps/free", {"data": {"a": "b"}}, merge)
    assert free.status == 200
    first = api.http("PATCH", f"{ST_PATH}/contended", patch, merge)
    assert first.status == 409
    assert first.json()["message"] == (
        'Operation cannot be fulfilled on synctargets.workload.kcp.io "contended": '
        "the object has been modified; "
        "please apply your changes to the latest version and try again"
    )
    assert api.http("PATCH", f"{ST_PATH}/contended", patch, merge).status == 409
    assert api.http("PATCH", f"{ST_PATH}/contended", patch, merge).status == 200


def _connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_down_for_refuses_connections_then_comes_back_on_the_same_port(api: FakeAPIServer) -> None:
    port = api.port
    with api.api_client() as kube:
        core = client.CoreV1Api(kube)
        assert core.list_namespace().items
        api.faults.down_for(0.5)
        assert not _connect(port)
        deadline = time.monotonic() + 5
        while not _connect(port):
            assert time.monotonic() < deadline, "the server did not come back"
            time.sleep(0.05)
        assert api.port == port
        assert core.list_namespace().items


def test_admission_hook_sees_attributes_and_can_mutate_deny_and_warn(api: FakeAPIServer) -> None:
    seen: list[AdmissionAttributes] = []

    def hook(attrs: AdmissionAttributes) -> AdmissionResult:
        seen.append(attrs)
        if attrs.name == "denied":
            return AdmissionResult(
                status={"status": "Failure", "message": "nope", "reason": "Forbidden", "code": 403},
                warnings=["think again"],
            )
        if attrs.operation == "CREATE" and attrs.object is not None:
            mutated = dict(attrs.object)
            mutated["metadata"] = {**mutated["metadata"], "labels": {"mutated": "yes"}}
            return AdmissionResult(object=mutated, warnings=["mutated it"])
        return AdmissionResult()

    api.set_admission(hook)
    created = api.http("POST", ST_PATH, sync_target("ok"), token="ctl")
    assert created.status == 201
    assert created.json()["metadata"]["labels"] == {"mutated": "yes"}
    assert created.header_values("warning") == ['299 - "mutated it"']
    denied = api.http("POST", ST_PATH, sync_target("denied"), token="ctl")
    assert denied.status == 403
    assert denied.json()["message"] == "nope"
    assert denied.header_values("warning") == ['299 - "think again"']
    api.http(
        "PATCH", f"{ST_PATH}/ok/status", {"status": {"a": 1}}, "application/merge-patch+json", token="ctl"
    )
    api.http("DELETE", f"{ST_PATH}/ok?dryRun=All", token="ctl")
    first, _, status_write, delete = seen
    assert (first.operation, first.group, first.version, first.kind, first.resource) == (
        "CREATE",
        "workload.kcp.io",
        "v1alpha1",
        "SyncTarget",
        "synctargets",
    )
    assert first.user == {
        "username": "controller",
        "groups": ["system:serviceaccounts", "system:authenticated"],
    }
    assert first.options == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert first.object is not None and first.object["metadata"]["uid"]
    assert first.old_object is None and first.namespaced is False
    assert (status_write.operation, status_write.subresource) == ("UPDATE", "status")
    assert status_write.old_object is not None and status_write.object is not None
    assert (delete.operation, delete.dry_run, delete.object) == ("DELETE", True, None)
    assert delete.options == {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}


def test_webhook_dispatcher_is_the_default_admission() -> None:
    with FakeAPIServer() as api:
        assert api.rest.admission is not None


def test_down_twice_comes_back_once(api: FakeAPIServer) -> None:
    port = api.port
    api.faults.down_for(0.2)
    api.faults.down_for(0.3)
    deadline = time.monotonic() + 5
    while not _connect(port):
        assert time.monotonic() < deadline, "the server did not come back"
        time.sleep(0.05)
    time.sleep(0.3)
    assert api.http("GET", "/healthz").body == b"ok"


def test_scale_writes_are_admitted_as_scale(api: FakeAPIServer) -> None:
    seen: list[AdmissionAttributes] = []

    def hook(attrs: AdmissionAttributes) -> AdmissionResult:
        seen.append(attrs)
        return AdmissionResult(warnings=[f"{attrs.operation} {attrs.resource}/{attrs.subresource}"])

    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "scaled"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}},
            },
        }
    )
    api.set_admission(hook)
    path = "/apis/apps/v1/namespaces/default/deployments/scaled/scale"
    reply = api.http("PATCH", path, {"spec": {"replicas": 4}}, "application/merge-patch+json")
    assert reply.status == 200
    assert reply.header_values("warning") == ['299 - "UPDATE deployments/scale"']
    (attrs,) = seen
    assert (attrs.group, attrs.version, attrs.resource, attrs.subresource) == (
        "apps",
        "v1",
        "deployments",
        "scale",
    )
    assert (attrs.kind, attrs.kind_group_version) == ("Scale", ("autoscaling", "v1"))
    assert attrs.object is not None and attrs.object["spec"] == {"replicas": 4}
    assert attrs.old_object is not None and attrs.old_object["spec"] == {"replicas": 1}
    assert api.counters.writes(resource="deployments/scale") == 1
    api.set_admission(None)
