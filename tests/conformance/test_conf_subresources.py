"""The status and scale subresources."""

from __future__ import annotations

from conformance_kit import Backend, deployment, failure, synctarget, unique

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def test_main_resource_ignores_status(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    body = synctarget(name, unschedulable=False)
    body["status"] = {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}
    created = backend.http("POST", synctargets, body).body
    assert "status" not in created
    created["status"] = {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}
    created["spec"]["unschedulable"] = True
    updated = backend.http("PUT", f"{synctargets}/{name}", created).body
    assert "status" not in updated
    assert updated["spec"]["unschedulable"] is True
    assert updated["metadata"]["generation"] == 2


def test_status_subresource_ignores_everything_else(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name, unschedulable=False)).body
    created["spec"]["unschedulable"] = True
    created["metadata"]["labels"] = {"sneaky": "yes"}
    created["status"] = {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}
    response = backend.http("PUT", f"{synctargets}/{name}/status", created)
    assert response.status == 200
    body = response.body
    assert body["status"] == {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}
    assert body["spec"]["unschedulable"] is False
    assert "labels" not in body["metadata"]
    # Status writes never bump the generation.
    assert body["metadata"]["generation"] == 1
    assert int(body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    got = backend.http("GET", f"{synctargets}/{name}/status").body
    assert got["status"] == body["status"] and got["kind"] == "SyncTarget"


def test_status_json_patch_as_the_syncer_sends_it(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    uid = backend.http("POST", synctargets, synctarget(name)).body["metadata"]["uid"]
    ops = [
        {"op": "test", "path": "/metadata/uid", "value": uid},
        {"op": "add", "path": "/status", "value": {"lastSyncerHeartbeatTime": "2024-05-01T10:00:00Z"}},
    ]
    response = backend.http("PATCH", f"{synctargets}/{name}/status", ops, content_type=JSON_PATCH)
    assert response.status == 200
    assert response.body["status"]["lastSyncerHeartbeatTime"] == "2024-05-01T10:00:00Z"
    wrong = [{"op": "test", "path": "/metadata/uid", "value": "other"}]
    assert backend.http("PATCH", f"{synctargets}/{name}/status", wrong, content_type=JSON_PATCH).status == 422


def test_status_of_a_missing_object(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    response = backend.http("PATCH", f"{synctargets}/{name}/status", {"status": {}}, content_type=MERGE_PATCH)
    assert response.body == failure(
        404,
        "NotFound",
        f'synctargets.workload.kcp.io "{name}" not found',
        {"name": name, "group": "workload.kcp.io", "kind": "synctargets"},
    )


def test_deployment_status(backend: Backend, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    backend.http("POST", path, deployment("web", namespace))
    patch = {"status": {"replicas": 1, "readyReplicas": 1}, "spec": {"replicas": 5}}
    response = backend.http("PATCH", f"{path}/web/status", patch, content_type=MERGE_PATCH)
    assert response.status == 200
    assert response.body["status"]["readyReplicas"] == 1
    assert response.body["spec"]["replicas"] == 1


def test_deployment_scale(backend: Backend, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    created = backend.http("POST", path, deployment("web", namespace, replicas=2)).body
    scale = backend.http("GET", f"{path}/web/scale")
    assert scale.status == 200
    body = scale.body
    assert body["kind"] == "Scale" and body["apiVersion"] == "autoscaling/v1"
    assert body["metadata"]["name"] == "web" and body["metadata"]["namespace"] == namespace
    assert body["metadata"]["uid"] == created["metadata"]["uid"]
    assert body["spec"] == {"replicas": 2}
    assert body["status"]["selector"] == "app=web"
    body["spec"]["replicas"] = 4
    updated = backend.http("PUT", f"{path}/web/scale", body)
    assert updated.status == 200 and updated.body["spec"] == {"replicas": 4}
    after = backend.http("GET", f"{path}/web").body
    assert after["spec"]["replicas"] == 4
    assert after["metadata"]["generation"] == 2
    patched = backend.http("PATCH", f"{path}/web/scale", {"spec": {"replicas": 1}}, content_type=MERGE_PATCH)
    assert patched.status == 200
    assert backend.http("GET", f"{path}/web").body["spec"]["replicas"] == 1


def test_scale_of_a_missing_deployment(backend: Backend, namespace: str) -> None:
    response = backend.http("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/nope/scale")
    assert response.body == failure(
        404,
        "NotFound",
        'deployments.apps "nope" not found',
        {"name": "nope", "group": "apps", "kind": "deployments"},
    )


def test_custom_resource_scale(backend: Backend, widgets: str) -> None:
    body = {
        "apiVersion": "conformance.kcp.io/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": "small", "replicas": 3},
    }
    assert backend.http("POST", widgets, body).status == 201
    scale = backend.http("GET", f"{widgets}/w/scale").body
    assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 3}
    scale["spec"]["replicas"] = 5
    assert backend.http("PUT", f"{widgets}/w/scale", scale).status == 200
    assert backend.http("GET", f"{widgets}/w").body["spec"]["replicas"] == 5
