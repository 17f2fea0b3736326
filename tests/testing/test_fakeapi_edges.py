"""Edge cases of the fake API server: malformed requests, routing, the store reader, CRD changes."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
from fakeapi_support import GROUP, PLURAL, SYNC_TARGET_CRD, VERSION, crd, sync_target

from kcp_tmc.testing import FakeAPIServer

ST_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
CM_PATH = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    rules = [
        {"user": "viewer", "verbs": ["get"], "nonResourceURLs": ["/metrics*"]},
        {"verbs": ["list"], "apiGroups": [""], "resources": ["*/status"]},
    ]
    with FakeAPIServer(tokens={"v": ("viewer", [])}, rules=rules, admission=False) as server:
        server.install_crd(crd(SYNC_TARGET_CRD))
        yield server


def test_store_reader_returns_copies_in_the_version_asked(api: FakeAPIServer) -> None:
    api.create(sync_target("reader"))
    copy = api.store.get(GROUP, VERSION, PLURAL, "reader")
    assert copy is not None and copy["apiVersion"] == f"{GROUP}/{VERSION}"
    copy["spec"]["syncMode"] = "Pull"
    assert api.store.get(GROUP, VERSION, PLURAL, "reader")["spec"]["syncMode"] == "Push"
    assert api.store.get(GROUP, VERSION, PLURAL, "absent") is None
    listed = api.store.list("", "v1", "namespaces")
    assert {"default", "kube-system"} <= {n["metadata"]["name"] for n in listed}
    assert all(n["apiVersion"] == "v1" for n in listed)
    assert api.store.list("", "v1", "configmaps", namespace="kube-public") == []


def test_yaml_bodies_are_accepted(api: FakeAPIServer) -> None:
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    reply = api.http("POST", CM_PATH, body, "application/yaml")
    assert reply.status == 201
    assert reply.json()["data"] == {"a": "b"}


def test_yaml_timestamps_stay_strings(api: FakeAPIServer) -> None:
    # YAML would read an unquoted timestamp as a datetime; kubectl and the
    # apiserver keep it a string, and so must we (it once made json.dumps fail).
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stamped\ndata:\n  at: 2024-01-02T15:04:05Z\n"
    reply = api.http("POST", CM_PATH, body, "application/yaml")
    assert reply.status == 201
    assert reply.json()["data"] == {"at": "2024-01-02T15:04:05Z"}


def test_body_must_be_an_object(api: FakeAPIServer) -> None:
    reply = api.http("POST", CM_PATH, [1, 2])
    assert reply.status == 400
    assert reply.json()["message"].startswith(
        "the object provided is unrecognized (must be of type ConfigMap)"
    )


def test_kind_and_api_version_must_match_the_url(api: FakeAPIServer) -> None:
    wrong_kind = api.http("POST", CM_PATH, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "k"}})
    assert wrong_kind.status == 400
    assert wrong_kind.json()["message"] == (
        'Secret in version "v1" cannot be handled as a ConfigMap: '
        'no kind "Secret" is registered for version "v1"'
    )
    wrong_group = api.http("POST", CM_PATH, {"apiVersion": "apps/v1", "metadata": {"name": "k"}})
    assert wrong_group.status == 400
    assert wrong_group.json()["message"] == (
        "the API version in the data (apps/v1) does not match the expected API version (v1)"
    )


def test_namespace_in_body_must_match_the_url(api: FakeAPIServer) -> None:
    reply = api.http("POST", CM_PATH, {"metadata": {"name": "n", "namespace": "kube-system"}})
    assert reply.status == 400
    assert reply.json()["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ns-put"}})
    put = api.http("PUT", f"{CM_PATH}/ns-put", {"metadata": {"name": "ns-put", "namespace": "kube-system"}})
    assert put.status == 400
    assert put.json()["message"] == (
        "the namespace of the provided object does not match the namespace sent on the request"
    )


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", f"{CM_PATH}/named", 405),
        ("GET", f"{CM_PATH}/x/unknown", 404),
        ("GET", "/api/v1/configmaps/x", 404),
        ("POST", "/api/v1/configmaps", 404),
        ("GET", "/api/v1/namespaces/default/nodes", 404),
        ("GET", "/api/v1/namespaces/default/configmaps/a/b/c", 404),
        ("GET", "/apis/nothing.example.com", 404),
        ("GET", "/apis/nothing.example.com/v1", 404),
        ("GET", "/nonsense", 404),
        ("POST", "/version", 404),
        ("PUT", "/apis/apps/v1/namespaces/default/deployments/x/status", 404),
        ("DELETE", "/api/v1/namespaces/default/pods/x/status", 405),
        ("GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews/x", 405),
    ],
)
def test_routing(api: FakeAPIServer, method: str, path: str, status: int) -> None:
    assert api.http(method, path, {} if method in ("POST", "PUT") else None).status == status


def test_namespace_finalize_subresource(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fin-ns"}})
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "fin-ns"},
        "spec": {"finalizers": []},
    }
    reply = api.http("PUT", "/api/v1/namespaces/fin-ns/finalize", body)
    assert reply.status == 200
    assert "finalizers" not in reply.json()["spec"]
    assert reply.json()["status"] == {"phase": "Active"}


def test_bad_patch_bodies(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "patchy"}})
    garbage = api.http("PATCH", f"{CM_PATH}/patchy", b"{", "application/merge-patch+json")
    assert garbage.status == 400
    assert garbage.json()["message"].startswith("error decoding patch: ")
    not_object = api.http("PATCH", f"{CM_PATH}/patchy", [1], "application/merge-patch+json")
    assert not_object.status == 400
    missing = api.http("PATCH", f"{CM_PATH}/nobody", {}, "application/merge-patch+json")
    assert missing.status == 404


def test_watch_with_a_bad_resource_version(api: FakeAPIServer) -> None:
    reply = api.http("GET", f"{CM_PATH}?watch=true&resourceVersion=abc")
    assert reply.status == 400
    assert reply.json()["message"] == "invalid resource version: abc"
    bad_selector = api.http("GET", f"{CM_PATH}?watch=true&labelSelector=%3D%3D")
    assert bad_selector.status == 400


def test_crd_validation_and_update(api: FakeAPIServer) -> None:
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    empty = {"metadata": {"name": "x.example.com"}, "spec": {"scope": "Everywhere", "versions": []}}
    reply = api.http("POST", path, empty)
    assert reply.status == 422
    fields = [c["field"] for c in reply.json()["details"]["causes"]]
    assert fields == ["spec.group", "spec.names.plural", "spec.names.kind", "spec.scope", "spec.versions"]
    current = api.http("GET", f"{path}/synctargets.workload.kcp.io").json()
    current["spec"]["group"] = "other.example.com"
    immutable = api.http("PUT", f"{path}/synctargets.workload.kcp.io", current)
    assert immutable.status == 422
    changed = crd(SYNC_TARGET_CRD)
    schema = changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["properties"]["spec"]["properties"]["syncMode"]["enum"].append("Both")
    api.install_crd(changed)
    assert api.http("POST", ST_PATH, sync_target("both", "Both")).status == 201


def test_non_resource_rules(api: FakeAPIServer) -> None:
    assert api.http("GET", "/apis", token="v").status == 200
    assert api.http("GET", "/api/v1/namespaces/default/configmaps", token="v").status == 403
    assert api.http("GET", "/api/v1/namespaces/default/pods/x/status", token="v").status == 403


def test_subresource_wildcard_rule(api: FakeAPIServer) -> None:
    from kcp_tmc.testing.auth import Attributes, Authorizer, User

    authorizer = Authorizer([{"verbs": ["get"], "apiGroups": [""], "resources": ["*/status"]}])
    user = User("u", ("system:authenticated",))
    assert authorizer.allowed(Attributes(user, "get", "", "pods", "status"))[0]
    assert not authorizer.allowed(Attributes(user, "get", "", "pods"))[0]
    assert not authorizer.allowed(Attributes(user, "post", path="/metrics"))[0]
    assert Authorizer(None).allowed(Attributes(user, "delete", "", "nodes"))[0]


@pytest.mark.parametrize(
    ("request_bytes", "says"),
    [
        (b"GARBAGE\r\n\r\n", b"Invalid method"),
        (b"GET / HTTP/1.1\r\nbroken header\r\n\r\n", b"Invalid header token"),
    ],
)
def test_malformed_http_is_answered_with_400_and_closed(
    api: FakeAPIServer, request_bytes: bytes, says: bytes
) -> None:
    # kube-apiserver (Go net/http) answers a plain-text 400 and closes; so does the fake.
    context = ssl.create_default_context(cadata=api.ca_pem.decode())
    with (
        socket.create_connection((api.host, api.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request_bytes)
        answer = b""
        while chunk := tls.recv(4096):  # ends: the server closed the connection
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0]
    assert status_line.split(b" ", 1)[1] == b"400 Bad Request"
    assert b"content-type: text/plain; charset=utf-8" in head.lower()
    assert says in body


def test_keep_alive_serves_several_requests_on_one_connection(api: FakeAPIServer) -> None:
    import http.client

    context = ssl.create_default_context(cadata=api.ca_pem.decode())
    connection = http.client.HTTPSConnection(api.host, api.port, context=context, timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.read() == b"ok"
    finally:
        connection.close()


def test_stop_is_idempotent_and_start_twice_is_harmless() -> None:
    server = FakeAPIServer(tls=False, admission=False)
    assert server.start() is server.start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="the server is not running"):
        server.faults.down_for(1)
