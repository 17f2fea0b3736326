"""Lists: label and field selectors, pagination, resourceVersion."""

from __future__ import annotations

import urllib.parse

import pytest
from conformance_kit import Backend, configmap, unique

LABELS = {
    "a": {"tier": "web", "env": "prod"},
    "b": {"tier": "web", "env": "dev"},
    "c": {"tier": "db", "env": "prod", "legacy": "yes"},
    "d": {"env": "dev"},
}


@pytest.fixture
def populated(backend: Backend, namespace: str) -> str:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, labels in LABELS.items():
        assert backend.http("POST", path, configmap(name, namespace, labels)).status == 201
    return path


def names(backend: Backend, path: str, **params: str) -> list[str]:
    response = backend.http("GET", f"{path}?{urllib.parse.urlencode(params)}")
    assert response.status == 200, response.body
    return [item["metadata"]["name"] for item in response.body["items"]]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("env in (prod,staging)", ["a", "c"]),
        ("env notin (prod)", ["b", "d"]),
        ("legacy", ["c"]),
        ("!tier", ["d"]),
        ("tier=web,env=prod", ["a"]),
        ("tier in (web,db),!legacy", ["a", "b"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
def test_label_selectors(backend: Backend, populated: str, selector: str, expected: list[str]) -> None:
    assert names(backend, populated, labelSelector=selector) == expected


def test_bad_label_selector(backend: Backend, populated: str) -> None:
    response = backend.http("GET", f"{populated}?labelSelector=" + urllib.parse.quote("tier web"))
    assert response.status == 400
    assert response.body["reason"] == "BadRequest"
    assert response.body["message"].endswith(
        "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"
    )


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=b", ["b"]),
        ("metadata.name==b", ["b"]),
        ("metadata.name!=b", ["a", "c", "d"]),
        ("metadata.name!=b,metadata.name!=c", ["a", "d"]),
    ],
)
def test_field_selectors(backend: Backend, populated: str, selector: str, expected: list[str]) -> None:
    assert names(backend, populated, fieldSelector=selector) == expected


def test_field_selector_on_namespace(backend: Backend, populated: str, namespace: str) -> None:
    everywhere = names(backend, "/api/v1/configmaps", fieldSelector=f"metadata.namespace={namespace}")
    assert sorted(everywhere) == ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        # ConfigMaps have no field-label conversion of their own: the scheme's default answers.
        (
            "configmaps",
            '"spec.color" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        # Secrets (like pods, nodes, namespaces, services, events) have their own.
        ("secrets", "field label not supported: spec.color"),
        ("pods", "field label not supported: spec.color"),
        ("events", "field label not supported: spec.color"),
    ],
)
def test_unsupported_field_selector(backend: Backend, namespace: str, resource: str, message: str) -> None:
    response = backend.http(
        "GET", f"/api/v1/namespaces/{namespace}/{resource}?fieldSelector=spec.color%3Dred"
    )
    assert response.status == 400
    assert response.body["reason"] == "BadRequest"
    assert response.body["message"] == message


@pytest.mark.parametrize(
    ("path", "selector", "message"),
    [
        # Deployments, like configmaps, fall back to the scheme default.
        (
            "/apis/apps/v1/deployments",
            "spec.paused=true",
            '"spec.paused" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
        # Jobs have a conversion of their own, worded its own way.
        (
            "/apis/batch/v1/jobs",
            "spec.suspend=true",
            'field label "spec.suspend" not supported for Job',
        ),
        # Cluster-scoped kinds with their own conversion refuse metadata.namespace.
        ("/api/v1/nodes", "metadata.namespace=x", "field label not supported: metadata.namespace"),
        ("/api/v1/namespaces", "metadata.namespace=x", "field label not supported: metadata.namespace"),
        # The first refused field is the one reported.
        (
            "/api/v1/secrets",
            "type=Opaque,spec.a=1,spec.b=2",
            "field label not supported: spec.a",
        ),
    ],
)
def test_field_label_conversions(backend: Backend, path: str, selector: str, message: str) -> None:
    response = backend.http("GET", f"{path}?{urllib.parse.urlencode({'fieldSelector': selector})}")
    assert response.status == 400
    assert response.body["reason"] == "BadRequest"
    assert response.body["message"] == message


def test_custom_resources_refuse_unknown_field_selectors(
    backend: Backend, synctargets: str, widgets: str
) -> None:
    # The CRD converter words its refusal like the kinds with a conversion of their own, and a
    # cluster-scoped custom resource has no metadata.namespace to select on.
    for path, selector in [
        (widgets, "spec.color=red"),
        (synctargets, "spec.unschedulable=true"),
        (synctargets, "metadata.namespace=x"),
    ]:
        response = backend.http("GET", f"{path}?{urllib.parse.urlencode({'fieldSelector': selector})}")
        assert response.status == 400
        assert response.body["reason"] == "BadRequest"
        assert response.body["message"] == f"field label not supported: {selector.split('=')[0]}"
    assert backend.http("GET", f"{widgets}?fieldSelector=metadata.namespace%3Dx").body["items"] == []


def test_kind_specific_field_selector(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    for name, kind in [("a", "Opaque"), ("b", "example.com/token")]:
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": kind}
        assert backend.http("POST", path, body).status == 201
    assert names(backend, path, fieldSelector="type=Opaque") == ["a"]


def test_pagination(backend: Backend, populated: str) -> None:
    first = backend.http("GET", f"{populated}?limit=3").body
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b", "c"]
    token = first["metadata"]["continue"]
    assert token
    assert first["metadata"]["remainingItemCount"] == 1
    second = backend.http("GET", f"{populated}?limit=3&continue={urllib.parse.quote(token)}").body
    assert [i["metadata"]["name"] for i in second["items"]] == ["d"]
    assert not second["metadata"].get("continue")
    # A page is a snapshot: every page carries the resourceVersion of the first.
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_pagination_with_selector(backend: Backend, populated: str) -> None:
    first = backend.http("GET", f"{populated}?limit=1&labelSelector=env%3Dprod").body
    assert [i["metadata"]["name"] for i in first["items"]] == ["a"]
    second = backend.http(
        "GET",
        f"{populated}?limit=1&labelSelector=env%3Dprod&continue={urllib.parse.quote(first['metadata']['continue'])}",
    ).body
    assert [i["metadata"]["name"] for i in second["items"]] == ["c"]


def test_bad_continue_token(backend: Backend, populated: str) -> None:
    response = backend.http("GET", f"{populated}?limit=1&continue=garbage")
    assert response.status == 400
    assert response.body["reason"] == "BadRequest"


def test_list_kind_and_resource_version(backend: Backend, populated: str) -> None:
    listed = backend.http("GET", populated).body
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    rv = int(listed["metadata"]["resourceVersion"])
    assert rv >= max(int(i["metadata"]["resourceVersion"]) for i in listed["items"])
    # Items of a list carry no kind of their own over JSON.
    assert "kind" not in listed["items"][0]
    cached = backend.http("GET", f"{populated}?resourceVersion=0").body
    assert sorted(i["metadata"]["name"] for i in cached["items"]) == ["a", "b", "c", "d"]


def test_prefixed_label_keys(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    key = "internal.workload.kcp.io/key"
    backend.http("POST", path, configmap("keyed", namespace, {key: "R2DPbwTUto2c2O2rBBEW57W11oOL5ALodAyMo"}))
    backend.http("POST", path, configmap("other", namespace, {key: "x"}))
    backend.http("POST", path, configmap("none", namespace))
    assert names(backend, path, labelSelector=f"{key}=R2DPbwTUto2c2O2rBBEW57W11oOL5ALodAyMo") == ["keyed"]
    assert names(backend, path, labelSelector=key) == ["keyed", "other"]
    assert names(backend, path, labelSelector=f"!{key}") == ["none"]


def test_field_set_values_of_kinds_with_their_own_conversion(backend: Backend, namespace: str) -> None:
    # A node that leaves spec.unschedulable out is selected by "false", as Go prints the zero bool.
    nodes = {unique("node"): {}, unique("node"): {"unschedulable": True}}
    plain, cordoned = nodes
    for name, spec in nodes.items():
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}
        assert backend.http("POST", "/api/v1/nodes", body).status == 201
    try:
        free = set(names(backend, "/api/v1/nodes", fieldSelector="spec.unschedulable=false"))
        assert plain in free and cordoned not in free
        held = set(names(backend, "/api/v1/nodes", fieldSelector="spec.unschedulable=true"))
        assert cordoned in held and plain not in held
    finally:
        for name in nodes:
            backend.http("DELETE", f"/api/v1/nodes/{name}")

    # A Job nobody ran has status.successful 0 though its status says nothing.
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
            }
        },
    }
    jobs = f"/apis/batch/v1/namespaces/{namespace}/jobs"
    assert backend.http("POST", jobs, job).status == 201
    assert names(backend, jobs, fieldSelector="status.successful=0") == ["once"]
    assert names(backend, jobs, fieldSelector="status.successful=1") == []

    events = f"/api/v1/namespaces/{namespace}/events"
    for name, component in [("from-kubelet", "kubelet"), ("from-scheduler", "scheduler")]:
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name},
            "involvedObject": {"kind": "ConfigMap", "name": "cm", "namespace": namespace},
            "reason": "Tested",
            "message": "m",
            "type": "Normal",
            "source": {"component": component},
        }
        assert backend.http("POST", events, event).status == 201
    assert names(backend, events, fieldSelector="source=kubelet") == ["from-kubelet"]
    assert names(backend, events, fieldSelector="involvedObject.kind=ConfigMap,reason=Tested") == [
        "from-kubelet",
        "from-scheduler",
    ]
