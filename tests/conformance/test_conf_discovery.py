"""Discovery documents: /api, /apis, resource lists of built-ins and of CRDs as soon as they exist."""

from __future__ import annotations

from typing import Any

from conformance_kit import Backend


def resource(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = [r for r in doc["resources"] if r["name"] == name]
    assert found, f"{name} not in {[r['name'] for r in doc['resources']]}"
    entry: dict[str, Any] = found[0]
    return entry


def test_core_versions(backend: Backend) -> None:
    response = backend.http("GET", "/api")
    assert response.status == 200
    assert response.body["kind"] == "APIVersions"
    assert response.body["versions"] == ["v1"]


def test_group_list_has_the_groups_we_use(backend: Backend) -> None:
    response = backend.http("GET", "/apis")
    assert response.status == 200
    assert response.body["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in response.body["groups"]}
    for name in (
        "apps",
        "batch",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "admissionregistration.k8s.io",
    ):
        assert name in groups, name
    assert groups["apps"]["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert {"groupVersion": "apps/v1", "version": "v1"} in groups["apps"]["versions"]


def test_core_resources(backend: Backend) -> None:
    doc = backend.http("GET", "/api/v1").body
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "v1"
    # kube-apiserver's core list carries no apiVersion (the group lists do).
    assert "apiVersion" not in doc
    configmaps = resource(doc, "configmaps")
    assert configmaps["namespaced"] is True
    assert configmaps["kind"] == "ConfigMap"
    assert configmaps["shortNames"] == ["cm"]
    assert sorted(configmaps["verbs"]) == [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    namespaces = resource(doc, "namespaces")
    assert namespaces["namespaced"] is False and namespaces["shortNames"] == ["ns"]
    assert sorted(namespaces["verbs"]) == ["create", "delete", "get", "list", "patch", "update", "watch"]
    assert sorted(resource(doc, "namespaces/status")["verbs"]) == ["get", "patch", "update"]
    assert resource(doc, "namespaces/finalize")["verbs"] == ["update"]
    for name, kind, namespaced in [
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("nodes", "Node", False),
        ("pods", "Pod", True),
        ("services", "Service", True),
        ("events", "Event", True),
    ]:
        entry = resource(doc, name)
        assert (entry["kind"], entry["namespaced"]) == (kind, namespaced)
    assert sorted(resource(doc, "pods/status")["verbs"]) == ["get", "patch", "update"]


def test_group_resources(backend: Backend) -> None:
    apps = backend.http("GET", "/apis/apps/v1").body
    assert apps["groupVersion"] == "apps/v1"
    assert apps["apiVersion"] == "v1"
    deployments = resource(apps, "deployments")
    assert deployments["kind"] == "Deployment" and deployments["shortNames"] == ["deploy"]
    assert deployments["categories"] == ["all"]
    scale = resource(apps, "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert sorted(scale["verbs"]) == ["get", "patch", "update"]
    for name in ("replicasets", "statefulsets"):
        assert resource(apps, name)["namespaced"] is True
    assert resource(backend.http("GET", "/apis/batch/v1").body, "jobs")["kind"] == "Job"
    leases = resource(backend.http("GET", "/apis/coordination.k8s.io/v1").body, "leases")
    assert leases["kind"] == "Lease" and leases["namespaced"] is True
    reviews = resource(backend.http("GET", "/apis/authentication.k8s.io/v1").body, "tokenreviews")
    assert (reviews["kind"], reviews["namespaced"], reviews["verbs"]) == ("TokenReview", False, ["create"])
    sar = resource(backend.http("GET", "/apis/authorization.k8s.io/v1").body, "subjectaccessreviews")
    assert (sar["kind"], sar["namespaced"], sar["verbs"]) == ("SubjectAccessReview", False, ["create"])
    admission = backend.http("GET", "/apis/admissionregistration.k8s.io/v1").body
    for name, kind in [
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration"),
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration"),
    ]:
        entry = resource(admission, name)
        assert (entry["kind"], entry["namespaced"]) == (kind, False)
    crds = resource(backend.http("GET", "/apis/apiextensions.k8s.io/v1").body, "customresourcedefinitions")
    assert crds["kind"] == "CustomResourceDefinition" and crds["shortNames"] == ["crd", "crds"]


def test_unknown_group_version_is_404(backend: Backend) -> None:
    response = backend.http("GET", "/apis/nothing.example.com/v1")
    assert response.status == 404


def test_crd_is_served_with_established_condition(backend: Backend, synctargets: str) -> None:
    crd = backend.http(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/synctargets.workload.kcp.io"
    )
    assert crd.status == 200
    conditions = {c["type"]: c for c in crd.body["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    assert crd.body["status"]["acceptedNames"]["kind"] == "SyncTarget"
    assert crd.body["status"]["storedVersions"] == ["v1alpha1"]
    doc = backend.http("GET", "/apis/workload.kcp.io/v1alpha1").body
    assert doc["groupVersion"] == "workload.kcp.io/v1alpha1"
    entry = resource(doc, "synctargets")
    assert entry["namespaced"] is False
    assert entry["kind"] == "SyncTarget" and entry["singularName"] == "synctarget"
    assert entry["categories"] == ["kcp"]
    assert sorted(entry["verbs"]) == [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    assert sorted(resource(doc, "synctargets/status")["verbs"]) == ["get", "patch", "update"]
    groups = {g["name"]: g for g in backend.http("GET", "/apis").body["groups"]}
    assert groups["workload.kcp.io"]["preferredVersion"]["groupVersion"] == "workload.kcp.io/v1alpha1"


def test_crd_short_names_and_scale(backend: Backend, widgets: str) -> None:
    doc = backend.http("GET", "/apis/conformance.kcp.io/v1").body
    entry = resource(doc, "widgets")
    assert entry["shortNames"] == ["wdg"] and entry["namespaced"] is True
    scale = resource(doc, "widgets/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_storage_version_hash_is_the_stored_versions_in_every_served_version(backend: Backend) -> None:
    from kcp_tmc.policies.kinds import storage_version_hash

    backend.install("gadget")
    hashes = {
        version: resource(
            backend.http("GET", f"/apis/versions.conformance.kcp.io/{version}").body, "gadgets"
        )["storageVersionHash"]
        for version in ("v1", "v1beta1")
    }
    assert hashes == dict.fromkeys(
        hashes, storage_version_hash("versions.conformance.kcp.io", "v1", "Gadget")
    )
    group = backend.http("GET", "/apis/versions.conformance.kcp.io").body
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
