"""Bearer tokens, rules, TokenReview and SubjectAccessReview on the fake API server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakeapi_support import failure
from kubernetes import client
from kubernetes.client.rest import ApiException

from kcp_tmc.testing import FakeAPIServer

TOKENS = {"alice-token": ("alice", ["dev"]), "bob-token": ("bob", [], "uid-bob")}
RULES = [
    {"user": "alice", "verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"]},
    {
        "groups": ["dev"],
        "verbs": ["*"],
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "names": ["mine"],
    },
    {"user": "bob", "verbs": ["create"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["default"]},
]


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(tokens=TOKENS, rules=RULES, admission=False) as server:
        yield server


def test_missing_or_unknown_token_is_401(api: FakeAPIServer) -> None:
    for token in ("", "nope"):
        reply = api.http("GET", "/api/v1/namespaces", token=token)
        assert reply.status == 401
        assert reply.json() == failure(401, "Unauthorized", "Unauthorized")


def test_health_and_version_are_public(api: FakeAPIServer) -> None:
    assert api.http("GET", "/healthz", token="").body == b"ok"
    assert api.http("GET", "/version", token="").json()["gitVersion"] == "v1.30.0-fake"


def test_rules_allow_and_forbid_with_the_apiserver_message(api: FakeAPIServer) -> None:
    assert api.http("GET", "/api/v1/namespaces/default/configmaps", token="alice-token").status == 200
    reply = api.http("DELETE", "/api/v1/namespaces/default/configmaps/x", token="alice-token")
    assert reply.status == 403
    assert reply.json() == failure(
        403,
        "Forbidden",
        'configmaps "x" is forbidden: User "alice" cannot delete resource "configmaps" '
        'in API group "" '
        'in the namespace "default"',
        {"name": "x", "kind": "configmaps"},
    )
    cluster = api.http("GET", "/api/v1/nodes", token="alice-token").json()
    assert cluster["message"] == (
        'nodes is forbidden: User "alice" cannot list resource "nodes" in API group "" at the cluster scope'
    )


def test_names_restrict_a_rule(api: FakeAPIServer) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    assert api.http("GET", f"{path}/mine", token="alice-token").status == 404  # allowed, just not there
    other = api.http("GET", f"{path}/theirs", token="alice-token")
    assert other.status == 403
    assert other.json()["message"] == (
        'leases.coordination.k8s.io "theirs" is forbidden: User "alice" cannot get resource "leases" '
        "in API group "
        '"coordination.k8s.io" in the namespace "default"'
    )


def test_subresources_need_their_own_rule(api: FakeAPIServer) -> None:
    reply = api.http("PUT", "/api/v1/namespaces/default/configmaps/x/status", {}, token="alice-token")
    assert reply.status == 403
    assert 'cannot update resource "configmaps/status"' in reply.json()["message"]


def test_namespaces_restrict_a_rule(api: FakeAPIServer) -> None:
    body = {"metadata": {"name": "from-bob"}}
    assert api.http("POST", "/api/v1/namespaces/default/configmaps", body, token="bob-token").status == 201
    assert (
        api.http("POST", "/api/v1/namespaces/kube-system/configmaps", body, token="bob-token").status == 403
    )


def test_admin_kubeconfig_token_is_a_superuser(api: FakeAPIServer) -> None:
    with api.api_client() as kube:
        assert client.CoreV1Api(kube).list_node().items == []


def test_token_review(api: FakeAPIServer) -> None:
    with api.api_client() as kube:
        auth = client.AuthenticationV1Api(kube)
        known = auth.create_token_review({"spec": {"token": "bob-token"}})
        assert known.status.authenticated is True
        assert known.status.user.username == "bob"
        assert known.status.user.uid == "uid-bob"
        assert known.status.user.groups == ["system:authenticated"]
        unknown = auth.create_token_review({"spec": {"token": "wrong"}})
        assert not unknown.status.authenticated


def test_subject_access_review(api: FakeAPIServer) -> None:
    with api.api_client() as kube:
        authz = client.AuthorizationV1Api(kube)

        def allowed(user: str, groups: list[str], **attrs: str) -> bool:
            review = authz.create_subject_access_review(
                {"spec": {"user": user, "groups": groups, "resourceAttributes": attrs}}
            )
            return bool(review.status.allowed)

        assert allowed("alice", [], verb="list", group="", resource="configmaps", namespace="x")
        assert not allowed("alice", [], verb="delete", group="", resource="configmaps", namespace="x")
        assert allowed(
            "carol", ["dev"], verb="update", group="coordination.k8s.io", resource="leases", name="mine"
        )
        assert not allowed(
            "carol", ["dev"], verb="update", group="coordination.k8s.io", resource="leases", name="x"
        )
        assert allowed("root", ["system:masters"], verb="delete", group="", resource="nodes")


def test_self_subject_access_review_uses_the_caller(api: FakeAPIServer) -> None:
    with api.api_client(token="alice-token") as kube:
        authz = client.AuthorizationV1Api(kube)
        with pytest.raises(ApiException) as exc:
            authz.create_self_subject_access_review(
                {"spec": {"resourceAttributes": {"verb": "list", "resource": "configmaps"}}}
            )
        # alice may not even create the review: rules are enforced on the review itself.
        assert exc.value.status == 403


def test_no_tokens_means_anyone_is_admin() -> None:
    with FakeAPIServer(tls=False, admission=False) as api:
        assert api.url.startswith("http://")
        assert api.http("GET", "/api/v1/namespaces", token="").status == 200
        review = api.http(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"spec": {"resourceAttributes": {"verb": "delete", "resource": "nodes"}}},
        ).json()
        assert review["status"]["allowed"] is True
