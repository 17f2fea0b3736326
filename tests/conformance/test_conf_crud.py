"""Create, read, update, delete: system fields, Status bodies of refusals, dry runs, CRD schema checks."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from conformance_kit import Backend, configmap, deployment, failure, synctarget, unique

CONFLICT = "the object has been modified; please apply your changes to the latest version and try again"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def test_create_fills_system_fields(backend: Backend, namespace: str) -> None:
    response = backend.http(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap("cm", namespace, a="1")
    )
    assert response.status == 201
    body = response.body
    meta = body["metadata"]
    assert body["kind"] == "ConfigMap" and body["apiVersion"] == "v1" and body["data"] == {"a": "1"}
    assert (meta["name"], meta["namespace"]) == ("cm", namespace)
    uuid.UUID(meta["uid"])
    assert TIMESTAMP.match(meta["creationTimestamp"])
    assert meta["resourceVersion"].isdigit()
    # ConfigMaps have no generation; the registry sets it only for kinds with a spec.
    assert "generation" not in meta
    if backend.kind == "fake":
        # Deliberate: the fake does not track field managers.
        assert "managedFields" not in meta
    else:
        assert meta["managedFields"][0]["operation"] == "Update"
    got = backend.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/cm")
    assert got.status == 200
    assert got.body["metadata"]["resourceVersion"] == meta["resourceVersion"]
    assert got.body["metadata"]["uid"] == meta["uid"]


def test_resource_version_grows_on_every_write(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    first = backend.http("POST", path, configmap("a", namespace)).body["metadata"]["resourceVersion"]
    second = backend.http("POST", path, configmap("b", namespace)).body["metadata"]["resourceVersion"]
    updated = backend.http("PUT", f"{path}/a", configmap("a", namespace, x="1")).body["metadata"][
        "resourceVersion"
    ]
    assert int(first) < int(second) < int(updated)


def test_generate_name(backend: Backend, namespace: str) -> None:
    body = configmap("", namespace)
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "cm-"
    response = backend.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert response.status == 201
    name = response.body["metadata"]["name"]
    assert re.fullmatch(r"cm-[a-z0-9]{5}", name), name
    assert response.body["metadata"]["generateName"] == "cm-"


def test_not_found(backend: Backend, namespace: str) -> None:
    response = backend.http("GET", f"/api/v1/namespaces/{namespace}/configmaps/missing")
    assert response.status == 404
    assert response.body == failure(
        404, "NotFound", 'configmaps "missing" not found', {"name": "missing", "kind": "configmaps"}
    )


def test_not_found_in_a_group(backend: Backend, namespace: str) -> None:
    response = backend.http("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/missing")
    assert response.body == failure(
        404,
        "NotFound",
        'deployments.apps "missing" not found',
        {"name": "missing", "group": "apps", "kind": "deployments"},
    )


def test_create_in_a_missing_namespace(backend: Backend) -> None:
    ghost = unique("ghost")
    response = backend.http("POST", f"/api/v1/namespaces/{ghost}/configmaps", configmap("cm", ghost))
    assert response.status == 404
    assert response.body == failure(
        404, "NotFound", f'namespaces "{ghost}" not found', {"name": ghost, "kind": "namespaces"}
    )


def test_already_exists(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    assert backend.http("POST", path, configmap("cm", namespace)).status == 201
    response = backend.http("POST", path, configmap("cm", namespace))
    assert response.status == 409
    assert response.body == failure(
        409, "AlreadyExists", 'configmaps "cm" already exists', {"name": "cm", "kind": "configmaps"}
    )


def test_stale_resource_version_is_a_conflict(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = backend.http("POST", path, configmap("cm", namespace)).body
    fresh = backend.http("PUT", f"{path}/cm", {**created, "data": {"v": "1"}})
    assert fresh.status == 200
    response = backend.http("PUT", f"{path}/cm", {**created, "data": {"v": "2"}})
    assert response.status == 409
    assert response.body == failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on configmaps "cm": {CONFLICT}',
        {"name": "cm", "kind": "configmaps"},
    )
    # Without a resourceVersion an update is unconditional.
    body = configmap("cm", namespace, v="3")
    assert backend.http("PUT", f"{path}/cm", body).status == 200


def test_update_of_a_missing_object_is_404(backend: Backend, namespace: str) -> None:
    response = backend.http(
        "PUT", f"/api/v1/namespaces/{namespace}/configmaps/nope", configmap("nope", namespace)
    )
    assert response.status == 404
    assert response.body["message"] == 'configmaps "nope" not found'


def test_name_mismatch_is_bad_request(backend: Backend, namespace: str) -> None:
    response = backend.http("PUT", f"/api/v1/namespaces/{namespace}/configmaps/a", configmap("b", namespace))
    assert response.status == 400
    assert response.body == failure(
        400, "BadRequest", "the name of the object (b) does not match the name on the URL (a)"
    )


def test_invalid_name(backend: Backend, namespace: str) -> None:
    response = backend.http(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap("Bad_Name", namespace)
    )
    assert response.status == 422
    detail = (
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    )
    assert response.body == failure(
        422,
        "Invalid",
        f'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": {detail}',
        {
            "name": "Bad_Name",
            "kind": "ConfigMap",
            "causes": [
                {
                    "reason": "FieldValueInvalid",
                    "message": f'Invalid value: "Bad_Name": {detail}',
                    "field": "metadata.name",
                }
            ],
        },
    )


def test_delete_returns_a_success_status(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    uid = backend.http("POST", path, configmap("cm", namespace)).body["metadata"]["uid"]
    response = backend.http("DELETE", f"{path}/cm")
    assert response.status == 200
    assert response.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": "cm", "kind": "configmaps", "uid": uid},
    }
    assert backend.http("GET", f"{path}/cm").status == 404
    assert backend.http("DELETE", f"{path}/cm").body == failure(
        404, "NotFound", 'configmaps "cm" not found', {"name": "cm", "kind": "configmaps"}
    )


def test_delete_with_a_stale_precondition(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace))
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}}
    response = backend.http("DELETE", f"{path}/cm", options)
    assert response.status == 409
    # The storage layer words this one: it names the kind, not the resource, and quotes both versions.
    record = backend.http("GET", f"{path}/cm").body["metadata"]["resourceVersion"]
    assert response.body == failure(
        409,
        "Conflict",
        'Operation cannot be fulfilled on ConfigMap "cm": the ResourceVersion in the precondition (1) '
        f"does not match the ResourceVersion in record ({record}). The object might have been modified",
        {"name": "cm", "kind": "ConfigMap"},
    )


def test_delete_with_a_stale_uid_precondition_names_the_qualified_kind(
    backend: Backend, namespace: str
) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    uid = backend.http("POST", path, deployment("web", namespace)).body["metadata"]["uid"]
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-the-uid"}}
    response = backend.http("DELETE", f"{path}/web", options)
    assert response.body == failure(
        409,
        "Conflict",
        'Operation cannot be fulfilled on Deployment.apps "web": the UID in the precondition (not-the-uid) '
        f"does not match the UID in record ({uid}). The object might have been deleted and then recreated",
        {"name": "web", "group": "apps", "kind": "Deployment"},
    )
    assert backend.http("GET", f"{path}/web").status == 200


def test_delete_collection(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, tier in [("a", "web"), ("b", "web"), ("c", "db")]:
        backend.http("POST", path, configmap(name, namespace, {"tier": tier}))
    response = backend.http("DELETE", f"{path}?labelSelector=tier%3Dweb")
    assert response.status == 200
    assert response.body["kind"] == "ConfigMapList"
    names = [i["metadata"]["name"] for i in backend.http("GET", path).body["items"]]
    assert names == ["c"]


def test_generation_counts_spec_changes_only(backend: Backend, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    created = backend.http("POST", path, deployment("web", namespace)).body
    assert created["metadata"]["generation"] == 1
    labelled = {**created, "metadata": {**created["metadata"], "labels": {"x": "y"}}}
    after_labels = backend.http("PUT", f"{path}/web", labelled).body
    assert after_labels["metadata"]["generation"] == 1
    after_labels["spec"]["replicas"] = 2
    after_spec = backend.http("PUT", f"{path}/web", after_labels).body
    assert after_spec["metadata"]["generation"] == 2


def test_dry_run_writes_nothing(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    response = backend.http("POST", f"{path}?dryRun=All", configmap("dry", namespace, a="1"))
    assert response.status == 201
    assert response.body["metadata"]["name"] == "dry"
    assert response.body["data"] == {"a": "1"}
    assert backend.http("GET", f"{path}/dry").status == 404
    created = backend.http("POST", path, configmap("real", namespace, a="1")).body
    changed = backend.http("PUT", f"{path}/real?dryRun=All", {**created, "data": {"a": "2"}})
    assert changed.status == 200 and changed.body["data"] == {"a": "2"}
    assert backend.http("GET", f"{path}/real").body["data"] == {"a": "1"}
    assert backend.http("DELETE", f"{path}/real?dryRun=All").status == 200
    assert backend.http("GET", f"{path}/real").status == 200
    bad = backend.http("POST", f"{path}?dryRun=Some", configmap("x", namespace))
    assert bad.status == 422
    assert bad.body["reason"] == "Invalid"
    assert [c["field"] for c in bad.body["details"]["causes"]] == ["dryRun"]


# --- custom resources and their schema ---


def test_custom_resource_crud(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name, unschedulable=True))
    assert created.status == 201
    meta = created.body["metadata"]
    assert meta["generation"] == 1 and "namespace" not in meta
    # Defaults from the schema are applied on create.
    assert created.body["spec"] == {"unschedulable": True, "supportedAPIExports": [{"export": "kubernetes"}]}
    got = backend.http("GET", f"{synctargets}/{name}")
    assert got.status == 200 and got.body == created.body
    missing = backend.http("GET", f"{synctargets}/{name}-x")
    assert missing.body == failure(
        404,
        "NotFound",
        f'synctargets.workload.kcp.io "{name}-x" not found',
        {"name": f"{name}-x", "group": "workload.kcp.io", "kind": "synctargets"},
    )
    again = backend.http("POST", synctargets, synctarget(name))
    assert again.body == failure(
        409,
        "AlreadyExists",
        f'synctargets.workload.kcp.io "{name}" already exists',
        {"name": name, "group": "workload.kcp.io", "kind": "synctargets"},
    )
    stale = created.body
    backend.http("PUT", f"{synctargets}/{name}", {**stale, "spec": {"unschedulable": False}})
    conflict = backend.http("PUT", f"{synctargets}/{name}", {**stale, "spec": {"cells": {"a": "b"}}})
    assert conflict.body == failure(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on synctargets.workload.kcp.io "{name}": {CONFLICT}',
        {"name": name, "group": "workload.kcp.io", "kind": "synctargets"},
    )
    deleted = backend.http("DELETE", f"{synctargets}/{name}")
    assert deleted.status == 200
    assert deleted.body == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": "workload.kcp.io", "kind": "synctargets", "uid": meta["uid"]},
    }


def invalid(
    backend: Backend,
    path: str,
    body: dict[str, Any],
    kind: str,
    name: str,
    field: str,
    reason: str,
    detail: str,
) -> None:
    response = backend.http("POST", path, body)
    assert response.status == 422, response.body
    group = "workload.kcp.io" if kind == "SyncTarget" else "conformance.kcp.io"
    assert response.body == failure(
        422,
        "Invalid",
        f'{kind}.{group} "{name}" is invalid: {field}: {detail}',
        {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [{"reason": reason, "message": detail, "field": field}],
        },
    )


def test_schema_required_field(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    body = synctarget(name, supportedAPIExports=[{"path": "root"}])
    invalid(
        backend,
        synctargets,
        body,
        "SyncTarget",
        name,
        "spec.supportedAPIExports[0].export",
        "FieldValueRequired",
        "Required value",
    )


def test_schema_type(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    detail = 'Invalid value: "string": spec.unschedulable in body must be of type boolean: "string"'
    invalid(
        backend,
        synctargets,
        synctarget(name, unschedulable="yes"),
        "SyncTarget",
        name,
        "spec.unschedulable",
        "FieldValueTypeInvalid",
        detail,
    )


def test_schema_pattern(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
    detail = f"Invalid value: \"Root\": spec.supportedAPIExports[0].path in body should match '{pattern}'"
    body = synctarget(name, supportedAPIExports=[{"export": "kubernetes", "path": "Root"}])
    invalid(
        backend,
        synctargets,
        body,
        "SyncTarget",
        name,
        "spec.supportedAPIExports[0].path",
        "FieldValueInvalid",
        detail,
    )


def test_schema_enum_on_status(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name)).body
    created["status"] = {
        "syncedResources": [
            {"resource": "deployments", "versions": ["v1"], "identityHash": "", "state": "Bogus"}
        ]
    }
    response = backend.http("PUT", f"{synctargets}/{name}/status", created)
    assert response.status == 422
    detail = 'Unsupported value: "Bogus": supported values: "Pending", "Accepted", "Incompatible"'
    assert (
        response.body["message"]
        == f'SyncTarget.workload.kcp.io "{name}" is invalid: status.syncedResources[0].state: {detail}'
    )
    assert response.body["details"]["causes"] == [
        {"reason": "FieldValueNotSupported", "message": detail, "field": "status.syncedResources[0].state"}
    ]


def test_schema_min_items_and_enum_default(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name)).body
    created["status"] = {
        "syncedResources": [{"resource": "deployments", "versions": ["v1"], "identityHash": ""}]
    }
    ok = backend.http("PUT", f"{synctargets}/{name}/status", created)
    assert ok.status == 200
    assert ok.body["status"]["syncedResources"][0]["state"] == "Pending"
    emptied = ok.body
    emptied["status"]["syncedResources"][0]["versions"] = []
    response = backend.http("PUT", f"{synctargets}/{name}/status", emptied)
    assert response.status == 422
    # The wording of minItems errors changed across Kubernetes versions; the field is what matters.
    assert [c["field"] for c in response.body["details"]["causes"]] == ["status.syncedResources[0].versions"]
    assert response.body["message"].startswith(
        f'SyncTarget.workload.kcp.io "{name}" is invalid: status.syncedResources[0].versions: '
    )


def test_schema_minimum_maximum_and_max_length(backend: Backend, widgets: str) -> None:
    cases = [
        (
            {"size": "small", "replicas": 11},
            "spec.replicas",
            "FieldValueInvalid",
            "Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        ),
        (
            {"size": "small", "color": "abcdefghij"},
            "spec.color",
            "FieldValueTooLong",
            # Older Kubernetes releases said "may not be longer than 8"; this is the current wording.
            "Too long: may not be more than 8 bytes",
        ),
        (
            {"size": "huge"},
            "spec.size",
            "FieldValueNotSupported",
            'Unsupported value: "huge": supported values: "small", "large"',
        ),
        ({}, "spec.size", "FieldValueRequired", "Required value"),
    ]
    for spec, field, reason, detail in cases:
        name = unique("w")
        body = {
            "apiVersion": "conformance.kcp.io/v1",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": spec,
        }
        invalid(backend, widgets, body, "Widget", name, field, reason, detail)


@pytest.mark.parametrize(
    ("replicas", "schema_detail", "scale_detail"),
    [
        (
            -1,
            "spec.replicas in body should be greater than or equal to 0",
            "should be a non-negative integer",
        ),
        (
            3000000000,
            "spec.replicas in body should be less than or equal to 10",
            "should be less than or equal to 2147483647",
        ),
    ],
)
def test_scale_subresource_checks_the_replicas_path_as_spelled(
    backend: Backend, widgets: str, replicas: int, schema_detail: str, scale_detail: str
) -> None:
    # The scale subresource checks specReplicasPath itself and reports it as the CRD spells it
    # (".spec.replicas", leading dot), after the schema's own error for the same field.
    name = unique("w")
    body = {
        "apiVersion": "conformance.kcp.io/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": "small", "replicas": replicas},
    }
    response = backend.http("POST", widgets, body)
    schema_message = f"Invalid value: {replicas}: {schema_detail}"
    scale_message = f"Invalid value: {replicas}: {scale_detail}"
    assert response.body == failure(
        422,
        "Invalid",
        f'Widget.conformance.kcp.io "{name}" is invalid: '
        f"[spec.replicas: {schema_message}, .spec.replicas: {scale_message}]",
        {
            "name": name,
            "group": "conformance.kcp.io",
            "kind": "Widget",
            "causes": [
                {"reason": "FieldValueInvalid", "message": schema_message, "field": "spec.replicas"},
                {"reason": "FieldValueInvalid", "message": scale_message, "field": ".spec.replicas"},
            ],
        },
    )


def test_namespace_in_body_must_match_the_url(backend: Backend, namespace: str) -> None:
    response = backend.http(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap("cm", "elsewhere")
    )
    assert response.status == 400
    assert response.body == failure(
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    )
    backend.http("POST", f"/api/v1/namespaces/{namespace}/configmaps", configmap("cm", namespace))
    moved = backend.http("PUT", f"/api/v1/namespaces/{namespace}/configmaps/cm", configmap("cm", "elsewhere"))
    # An update is refused in the same words as a create.
    assert moved.body == failure(
        400,
        "BadRequest",
        "the namespace of the provided object does not match the namespace sent on the request",
    )


def test_custom_resources_need_a_resource_version_to_update(backend: Backend, synctargets: str) -> None:
    # The registry's check names the resource (synctargets), not the kind, in the message and details.
    name = unique("st")
    backend.http("POST", synctargets, synctarget(name, unschedulable=False))
    response = backend.http("PUT", f"{synctargets}/{name}", synctarget(name, unschedulable=True))
    assert response.status == 422
    detail = "Invalid value: 0: must be specified for an update"
    assert response.body == failure(
        422,
        "Invalid",
        f'synctargets.workload.kcp.io "{name}" is invalid: metadata.resourceVersion: {detail}',
        {
            "name": name,
            "group": "workload.kcp.io",
            "kind": "synctargets",
            "causes": [
                {"reason": "FieldValueInvalid", "message": detail, "field": "metadata.resourceVersion"}
            ],
        },
    )


def test_labels_do_not_bump_the_generation_of_custom_resources(backend: Backend, synctargets: str) -> None:
    name = unique("st")
    created = backend.http("POST", synctargets, synctarget(name, unschedulable=False)).body
    created["metadata"]["labels"] = {"a": "b"}
    relabelled = backend.http("PUT", f"{synctargets}/{name}", created).body
    assert relabelled["metadata"]["generation"] == 1
    relabelled["spec"]["unschedulable"] = True
    assert backend.http("PUT", f"{synctargets}/{name}", relabelled).body["metadata"]["generation"] == 2
