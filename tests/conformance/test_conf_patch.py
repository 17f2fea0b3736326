"""The three patch types, their content types, and what each does to lists and nulls."""

from __future__ import annotations

import json

from conformance_kit import Backend, configmap, deployment, failure, synctarget, unique

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


def test_json_patch(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace, a="1", b="2"))
    ops = [
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
    ]
    response = backend.http("PATCH", f"{path}/cm", ops, content_type=JSON_PATCH)
    assert response.status == 200
    assert response.body["data"] == {"a": "10"}
    assert response.body["metadata"]["labels"] == {"x": "y"}


def test_json_patch_test_operation_failure(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace, a="1"))
    ops = [
        {"op": "test", "path": "/data/a", "value": "2"},
        {"op": "replace", "path": "/data/a", "value": "3"},
    ]
    response = backend.http("PATCH", f"{path}/cm", ops, content_type=JSON_PATCH)
    assert response.status == 422
    assert response.body == failure(
        422, "Invalid", "the server rejected our request due to an error in our request", {}
    )
    assert backend.http("GET", f"{path}/cm").body["data"] == {"a": "1"}


def test_json_patch_that_is_not_a_list(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace))
    response = backend.http("PATCH", f"{path}/cm", {"op": "add"}, content_type=JSON_PATCH)
    assert response.status == 400
    assert response.body["reason"] == "BadRequest"


def test_merge_patch_null_deletes(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace, a="1", b="2"))
    patch = {"data": {"a": None, "c": "3"}, "metadata": {"annotations": {"note": "hi"}}}
    response = backend.http("PATCH", f"{path}/cm", patch, content_type=MERGE_PATCH)
    assert response.status == 200
    assert response.body["data"] == {"b": "2", "c": "3"}
    assert response.body["metadata"]["annotations"] == {"note": "hi"}


def test_merge_patch_replaces_lists(backend: Backend, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    backend.http("POST", path, deployment("web", namespace))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.com/app:2"}]}}}}
    response = backend.http("PATCH", f"{path}/web", patch, content_type=MERGE_PATCH)
    assert response.status == 200
    containers = response.body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("app", "example.com/app:2")]
    assert response.body["metadata"]["generation"] == 2


def test_strategic_merge_patch_merges_lists_by_key(backend: Backend, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    backend.http("POST", path, deployment("web", namespace))
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "example.com/app:2"}]}}}}
    response = backend.http("PATCH", f"{path}/web", patch, content_type=STRATEGIC)
    assert response.status == 200
    containers = response.body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("app", "example.com/app:2"),
        ("sidecar", "example.com/sidecar:1"),
    ]
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    response = backend.http("PATCH", f"{path}/web", delete, content_type=STRATEGIC)
    assert [c["name"] for c in response.body["spec"]["template"]["spec"]["containers"]] == ["app"]


def test_strategic_merge_patch_on_labels_and_finalizers(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = configmap("cm", namespace, {"a": "1"})
    body["metadata"]["finalizers"] = ["example.com/one"]
    backend.http("POST", path, body)
    patch = {"metadata": {"labels": {"b": "2"}, "finalizers": ["example.com/two", "example.com/three"]}}
    response = backend.http("PATCH", f"{path}/cm", patch, content_type=STRATEGIC)
    assert response.body["metadata"]["labels"] == {"a": "1", "b": "2"}
    # finalizers carry patchStrategy "merge": the lists are unioned, the patch's entries first,
    # then those only the server had.
    assert response.body["metadata"]["finalizers"] == [
        "example.com/two",
        "example.com/three",
        "example.com/one",
    ]
    # An entry the server had keeps its place among the server's; a new one follows it.
    patch = {"metadata": {"finalizers": ["example.com/one", "example.com/four"]}}
    response = backend.http("PATCH", f"{path}/cm", patch, content_type=STRATEGIC)
    assert response.body["metadata"]["finalizers"] == [
        "example.com/two",
        "example.com/three",
        "example.com/one",
        "example.com/four",
    ]
    everything = ["example.com/one", "example.com/two", "example.com/three", "example.com/four"]
    cleanup = {"metadata": {"$deleteFromPrimitiveList/finalizers": everything}}
    response = backend.http("PATCH", f"{path}/cm", cleanup, content_type=STRATEGIC)
    assert "finalizers" not in response.body["metadata"]


def test_strategic_merge_patch_is_refused_for_custom_resources(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    backend.http("POST", synctargets, synctarget(name))
    response = backend.http(
        "PATCH", f"{synctargets}/{name}", {"spec": {"unschedulable": True}}, content_type=STRATEGIC
    )
    assert response.status == 415
    assert response.body == failure(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )
    merged = backend.http(
        "PATCH", f"{synctargets}/{name}", {"spec": {"unschedulable": True}}, content_type=MERGE_PATCH
    )
    assert merged.status == 200 and merged.body["spec"]["unschedulable"] is True


def test_patch_of_a_missing_object(backend: Backend, namespace: str) -> None:
    response = backend.http(
        "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/nope", {"data": {}}, content_type=MERGE_PATCH
    )
    assert response.body == failure(
        404, "NotFound", 'configmaps "nope" not found', {"name": "nope", "kind": "configmaps"}
    )


def test_patch_with_a_stale_resource_version(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = backend.http("POST", path, configmap("cm", namespace)).body
    backend.http("PATCH", f"{path}/cm", {"data": {"a": "1"}}, content_type=MERGE_PATCH)
    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"a": "2"}}
    response = backend.http("PATCH", f"{path}/cm", stale, content_type=MERGE_PATCH)
    assert response.status == 409
    assert response.body["reason"] == "Conflict"
    assert response.body["message"] == (
        'Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_unknown_patch_content_type(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace))
    # Built-in kinds answer with the bare HTTP reason and empty details (custom resources list
    # what they accept: test_strategic_merge_patch_is_refused_for_custom_resources).
    for content_type in ("application/json", "text/plain"):
        response = backend.http("PATCH", f"{path}/cm", {"data": {}}, content_type=content_type)
        assert response.status == 415
        assert response.headers["Content-Type"] == "application/json"
        assert json.loads(response.raw) == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "415: Unsupported Media Type",
            "reason": "UnsupportedMediaType",
            "details": {},
            "code": 415,
        }
