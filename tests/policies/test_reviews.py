"""Building, reading and answering AdmissionReviews; the exact message of every refusal."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest

from kcp_tmc.policies.reviews import (
    ReviewError,
    make_request,
    make_review,
    parse_review,
    plural_of,
    review_response,
)

SYNC_TARGET_OBJ = {
    "apiVersion": "workload.kcp.io/v1alpha1",
    "kind": "SyncTarget",
    "metadata": {"name": "east"},
}
SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "team-a"}}


def test_make_request_from_a_cluster_scoped_object() -> None:
    request = make_request(SYNC_TARGET_OBJ, uid="u1")
    assert request == {
        "uid": "u1",
        "kind": {"group": "workload.kcp.io", "version": "v1alpha1", "kind": "SyncTarget"},
        "resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
        "requestKind": {"group": "workload.kcp.io", "version": "v1alpha1", "kind": "SyncTarget"},
        "requestResource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
        "name": "east",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": []},
        "object": SYNC_TARGET_OBJ,
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }


def test_make_request_delete_of_a_namespaced_core_object_with_options() -> None:
    request = make_request(
        None,
        operation="DELETE",
        old=SECRET,
        user="bob",
        groups=["dev", "system:authenticated"],
        dry_run=True,
        sub_resource="status",
    )
    assert request["kind"] == {"group": "", "version": "v1", "kind": "Secret"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "secrets"}
    assert request["namespace"] == "team-a"
    assert request["name"] == "s"
    assert request["object"] is None
    assert request["oldObject"] is SECRET
    assert request["userInfo"] == {"username": "bob", "groups": ["dev", "system:authenticated"]}
    assert request["dryRun"] is True
    assert request["subResource"] == request["requestSubResource"] == "status"
    assert request["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions"}
    uuid.UUID(request["uid"])  # a fresh UUID


def test_make_request_update_connect_and_namespace_override() -> None:
    update = make_request(SECRET, operation="UPDATE", old=SECRET, namespace="other")
    assert update["namespace"] == "other"
    assert update["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
    connect = make_request(SECRET, operation="CONNECT")
    assert connect["options"] is None
    assert make_request(SECRET)["uid"] != make_request(SECRET)["uid"]


def test_make_request_unknown_kind_gets_a_guessed_plural() -> None:
    request = make_request({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}})
    assert request["resource"] == {"group": "apps", "version": "v1", "resource": "deployments"}
    assert "name" not in request
    assert "namespace" not in request


@pytest.mark.parametrize(
    ("group", "kind", "plural"),
    [
        ("workload.kcp.io", "SyncTarget", "synctargets"),
        ("tmc.kcp.io", "FederatedQuota", "federatedquotas"),
        ("apis.kcp.io", "APIResourceSchema", "apiresourceschemas"),
        ("", "Namespace", "namespaces"),
        ("", "Pod", "pods"),
        ("other.io", "SyncTarget", "synctargets"),
    ],
)
def test_plural_of(group: str, kind: str, plural: str) -> None:
    assert plural_of(group, kind) == plural


def test_make_request_refuses_objects_without_type() -> None:
    with pytest.raises(ValueError) as info:
        make_request({"metadata": {"name": "x"}})
    assert (
        str(info.value)
        == "the object must have a string apiVersion and kind, e.g. apiVersion: v1, kind: Secret"
    )
    with pytest.raises(ValueError) as info:
        make_request(None, operation="DELETE")
    assert str(info.value) == "make_request needs an object (or, for DELETE, the old object)"


def test_make_review_and_parse_round_trip() -> None:
    review = make_review(SYNC_TARGET_OBJ, operation="UPDATE", old=SYNC_TARGET_OBJ, uid="u2")
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    version, request = parse_review(review)
    assert version == "admission.k8s.io/v1"
    assert request is review["request"]
    assert request["operation"] == "UPDATE"
    # through JSON, as bytes and as text
    assert parse_review(json.dumps(review).encode()) == (version, review["request"])
    assert parse_review(json.dumps(review)) == (version, review["request"])
    beta = make_review(SECRET, api_version="admission.k8s.io/v1beta1")
    assert parse_review(beta)[0] == "admission.k8s.io/v1beta1"


def test_review_response() -> None:
    response = {"uid": "u", "allowed": True}
    assert review_response("admission.k8s.io/v1beta1", response) == {  # type: ignore[arg-type]
        "apiVersion": "admission.k8s.io/v1beta1",
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True},
    }


def _review(**request_changes: Any) -> dict[str, Any]:
    review: dict[str, Any] = copy.deepcopy(dict(make_review(SECRET, uid="u9")))
    for key, value in request_changes.items():
        if value is _DELETE:
            del review["request"][key]
        else:
            review["request"][key] = value
    return review


_DELETE = object()


@pytest.mark.parametrize(
    ("data", "message", "uid"),
    [
        (
            b"{not json",
            "the body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
            None,
        ),
        ("", "the body is not valid JSON: Expecting value: line 1 column 1 (char 0)", None),
        ([], "an AdmissionReview must be a JSON object, got a list", None),
        ("null", "an AdmissionReview must be a JSON object, got null", None),
        ('"x"', "an AdmissionReview must be a JSON object, got a string", None),
        ("3", "an AdmissionReview must be a JSON object, got a number", None),
        ("true", "an AdmissionReview must be a JSON object, got a boolean", None),
        ({"apiVersion": "admission.k8s.io/v1"}, "kind must be AdmissionReview, it is missing", None),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "Pod"},
            "kind must be AdmissionReview, got 'Pod'",
            None,
        ),
        (
            {"kind": "AdmissionReview"},
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, it is missing",
            None,
        ),
        (
            {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2"},
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got 'admission.k8s.io/v2'",
            None,
        ),
        (
            {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"},
            "request is missing: an AdmissionReview from the apiserver carries one",
            None,
        ),
        (
            {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": "x"},
            "request must be a JSON object, got a string",
            None,
        ),
        (_review(uid=_DELETE), "request.uid is missing", None),
        (_review(uid=7), "request.uid must be a non-empty string, got a number", None),
        (_review(uid=""), "request.uid must be a non-empty string, got an empty one", None),
        (
            _review(kind=_DELETE),
            "request.kind must be an object with group, version and kind, it is missing",
            "u9",
        ),
        (
            _review(kind=["x"]),
            "request.kind must be an object with group, version and kind, got a list",
            "u9",
        ),
        (
            _review(kind={"group": 1, "version": "v1", "kind": "X"}),
            "request.kind.group must be a string, got a number",
            "u9",
        ),
        (_review(kind={"group": "", "version": "v1"}), "request.kind.kind is missing", "u9"),
        (
            _review(operation=_DELETE),
            "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, it is missing",
            "u9",
        ),
        (
            _review(operation="PATCH"),
            "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got 'PATCH'",
            "u9",
        ),
        (_review(subResource=5), "request.subResource must be a string, got a number", "u9"),
        (_review(namespace={}), "request.namespace must be a string, got an object", "u9"),
        (_review(object="{}"), "request.object must be an object or null, got a string", "u9"),
        (_review(oldObject=[]), "request.oldObject must be an object or null, got a list", "u9"),
        (_review(dryRun="true"), "request.dryRun must be true or false, got a string", "u9"),
        (_review(userInfo="bob"), "request.userInfo must be an object, got a string", "u9"),
        (_review(userInfo={"username": 3}), "request.userInfo.username must be a string, got a number", "u9"),
        (_review(userInfo={"groups": "a"}), "request.userInfo.groups must be a list of strings", "u9"),
        (
            _review(userInfo={"groups": ["a", None]}),
            "request.userInfo.groups must be a list of strings",
            "u9",
        ),
    ],
)
def test_parse_review_rejections(data: object, message: str, uid: str | None) -> None:
    with pytest.raises(ReviewError) as info:
        parse_review(data)
    assert str(info.value) == message
    assert info.value.uid == uid


def test_parse_review_accepts_a_minimal_request() -> None:
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "1",
            "kind": {"group": "", "version": "v1", "kind": "Secret"},
            "operation": "DELETE",
        },
    }
    assert parse_review(review) == ("admission.k8s.io/v1", review["request"])


def test_parse_review_unusual_type_name() -> None:
    with pytest.raises(ReviewError, match=r"^an AdmissionReview must be a JSON object, got tuple$"):
        parse_review(())
