"""Finalizers hold deletions; deleting a namespace removes what it holds."""

from __future__ import annotations

import pytest
from conformance_kit import Backend, configmap, failure, unique

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def test_finalizer_holds_deletion(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = configmap("held", namespace)
    body["metadata"]["finalizers"] = ["example.com/hold"]
    created = backend.http("POST", path, body).body
    deleted = backend.http("DELETE", f"{path}/held")
    assert deleted.status == 200
    assert deleted.body["kind"] == "ConfigMap"
    assert deleted.body["metadata"]["deletionTimestamp"]
    assert deleted.body["metadata"]["deletionGracePeriodSeconds"] == 0
    still = backend.http("GET", f"{path}/held")
    assert still.status == 200
    assert still.body["metadata"]["finalizers"] == ["example.com/hold"]
    assert int(still.body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    # A second delete changes nothing and answers the same way.
    again = backend.http("DELETE", f"{path}/held")
    assert (
        again.status == 200
        and again.body["metadata"]["deletionTimestamp"] == deleted.body["metadata"]["deletionTimestamp"]
    )
    # New finalizers may not be added once deletion started.
    adding = backend.http(
        "PATCH",
        f"{path}/held",
        {"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}},
        content_type=MERGE_PATCH,
    )
    assert adding.status == 422
    assert adding.body["details"]["causes"][0]["field"] == "metadata.finalizers"
    release = [{"op": "remove", "path": "/metadata/finalizers"}]
    released = backend.http("PATCH", f"{path}/held", release, content_type=JSON_PATCH)
    assert released.status == 200
    assert backend.http("GET", f"{path}/held").body == failure(
        404, "NotFound", 'configmaps "held" not found', {"name": "held", "kind": "configmaps"}
    )


def test_namespace_deletion(backend: Backend) -> None:
    name = unique("doomed")
    assert backend.http("POST", "/api/v1/namespaces", {"metadata": {"name": name}}).status == 201
    path = f"/api/v1/namespaces/{name}/configmaps"
    held = configmap("held", name)
    held["metadata"]["finalizers"] = ["example.com/hold"]
    backend.http("POST", path, held)
    backend.http("POST", path, configmap("plain", name))
    deleted = backend.http("DELETE", f"/api/v1/namespaces/{name}")
    assert deleted.status == 200
    assert deleted.body["kind"] == "Namespace"
    assert deleted.body["status"]["phase"] == "Terminating"
    assert deleted.body["metadata"]["deletionTimestamp"]
    assert deleted.body["spec"]["finalizers"] == ["kubernetes"]
    refused = backend.http("POST", path, configmap("late", name))
    assert refused.status == 403
    assert refused.body == failure(
        403,
        "Forbidden",
        f'configmaps "late" is forbidden: unable to create new content in namespace {name} '
        "because it is being terminated",
        {
            "name": "late",
            "kind": "configmaps",
            "causes": [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {name} is being terminated",
                    "field": "metadata.namespace",
                }
            ],
        },
    )
    if backend.kind == "real":
        # Deliberate: envtest runs no kube-controller-manager, so nothing empties the namespace.
        assert backend.http("GET", f"{path}/plain").status == 200
        return
    backend.wait_for(
        lambda: backend.http("GET", f"{path}/plain").status == 404, what="plain configmap removed"
    )
    # The namespace waits for the object whose finalizer is still pending.
    held_now = backend.http("GET", f"{path}/held").body
    assert held_now["metadata"]["deletionTimestamp"]
    assert backend.http("GET", f"/api/v1/namespaces/{name}").status == 200
    backend.http(
        "PATCH", f"{path}/held", [{"op": "remove", "path": "/metadata/finalizers"}], content_type=JSON_PATCH
    )
    backend.wait_for(
        lambda: backend.http("GET", f"/api/v1/namespaces/{name}").status == 404, what="namespace gone"
    )


@pytest.mark.parametrize("protected", ["default", "kube-system"])
def test_protected_namespaces_cannot_be_deleted(backend: Backend, protected: str) -> None:
    response = backend.http("DELETE", f"/api/v1/namespaces/{protected}?dryRun=All")
    assert response.status == 403
    assert response.body == failure(
        403,
        "Forbidden",
        f'namespaces "{protected}" is forbidden: this namespace may not be deleted',
        {"name": protected, "kind": "namespaces"},
    )
