"""Authentication by bearer token, TokenReview, SubjectAccessReview, and RBAC-style refusals."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conformance_kit import ALICE, ALICE_RULES, Backend, configmap, failure, unique


@pytest.fixture(scope="module")
def alice_rbac(backend: Backend) -> Iterator[None]:
    """Grants alice :data:`ALICE_RULES`: the fake has them built in; the real server needs RBAC objects."""
    if backend.kind == "fake":
        yield
        return
    name = unique("alice")
    rule = ALICE_RULES[0]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": [{"verbs": rule["verbs"], "apiGroups": rule["apiGroups"], "resources": rule["resources"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}],
    }
    assert backend.http("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", role).status == 201
    assert (
        backend.http("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding).status == 201
    )
    # The RBAC authorizer reads through informers: wait until the binding is seen.
    backend.wait_for(lambda: sar(backend, "alice", "list", "configmaps").get("allowed"), what="RBAC binding")
    yield
    backend.http("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}")
    backend.http("DELETE", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}")


def token_review(backend: Backend, token: str) -> dict[str, Any]:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
    response = backend.http("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)
    assert response.status == 201, response.body
    assert (
        response.body["kind"] == "TokenReview" and response.body["apiVersion"] == "authentication.k8s.io/v1"
    )
    status: dict[str, Any] = response.body["status"]
    return status


def test_token_review_of_a_known_token(backend: Backend) -> None:
    status = token_review(backend, ALICE)
    assert status["authenticated"] is True
    assert status["user"] == {
        "username": "alice",
        "uid": "alice-uid",
        "groups": ["dev", "system:authenticated"],
    }


def test_token_review_of_an_unknown_token(backend: Backend) -> None:
    status = token_review(backend, "nobody-has-this-token")
    assert not status.get("authenticated")
    assert not status.get("user", {}).get("username")


def sar(
    backend: Backend,
    user: str,
    verb: str,
    resource: str,
    namespace: str = "",
    groups: list[str] | None = None,
) -> dict[str, Any]:
    attributes = {"verb": verb, "group": "", "resource": resource}
    if namespace:
        attributes["namespace"] = namespace
    body = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": groups or [], "resourceAttributes": attributes},
    }
    response = backend.http("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
    assert response.status == 201, response.body
    assert response.body["kind"] == "SubjectAccessReview"
    status: dict[str, Any] = response.body["status"]
    return status


def test_subject_access_review(backend: Backend, namespace: str, alice_rbac: None) -> None:
    assert sar(backend, "alice", "get", "configmaps", namespace)["allowed"] is True
    assert sar(backend, "alice", "list", "configmaps")["allowed"] is True
    assert not sar(backend, "alice", "delete", "configmaps", namespace).get("allowed")
    assert not sar(backend, "alice", "get", "secrets", namespace).get("allowed")
    assert not sar(backend, "bob", "get", "configmaps", namespace).get("allowed")
    assert sar(backend, "root", "delete", "secrets", namespace, groups=["system:masters"])["allowed"] is True


def test_requests_run_as_the_token_user(backend: Backend, namespace: str, alice_rbac: None) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    backend.http("POST", path, configmap("cm", namespace))
    assert backend.http("GET", f"{path}/cm", token=ALICE).status == 200
    response = backend.http("DELETE", f"{path}/cm", token=ALICE)
    assert response.status == 403
    assert response.body == failure(
        403,
        "Forbidden",
        'configmaps "cm" is forbidden: User "alice" cannot delete resource "configmaps" in API group "" '
        f'in the namespace "{namespace}"',
        {"name": "cm", "kind": "configmaps"},
    )
    listing = backend.http("GET", "/api/v1/secrets", token=ALICE)
    assert listing.body == failure(
        403,
        "Forbidden",
        'secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" '
        "at the cluster scope",
        {"kind": "secrets"},
    )


def test_unknown_token_is_401(backend: Backend) -> None:
    response = backend.http("GET", "/api/v1/namespaces", token="not-a-token")
    assert response.status == 401
    assert response.body == failure(401, "Unauthorized", "Unauthorized")
