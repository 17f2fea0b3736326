"""Exemptions: globs on namespaces, users and groups, and the reason they give."""

from __future__ import annotations

import pytest

from kcp_tmc.policies.admission import AdmissionRequest
from kcp_tmc.policies.exemptions import Exemptions


def _request(namespace: str = "", user: str = "alice", groups: list[str] | None = None) -> AdmissionRequest:
    request: AdmissionRequest = {"uid": "1", "userInfo": {"username": user, "groups": groups or []}}
    if namespace:
        request["namespace"] = namespace
    return request


EXEMPTIONS = Exemptions(
    namespaces=["kube-*", "tmc-system"],
    users=["system:serviceaccount:kube-system:*"],
    groups=["system:masters", "ops-?"],
)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (_request("kube-system"), "namespace kube-system matches kube-*"),
        (_request("tmc-system"), "namespace tmc-system matches tmc-system"),
        (
            _request("default", "system:serviceaccount:kube-system:replicaset-controller"),
            "user system:serviceaccount:kube-system:replicaset-controller matches "
            "system:serviceaccount:kube-system:*",
        ),
        (
            _request("default", "bob", ["dev", "system:masters"]),
            "group system:masters matches system:masters",
        ),
        (_request("", "bob", ["ops-a"]), "group ops-a matches ops-?"),
        # the namespace is checked first
        (
            _request("kube-public", "system:serviceaccount:kube-system:x"),
            "namespace kube-public matches kube-*",
        ),
    ],
)
def test_exempt_reasons(request_: AdmissionRequest, reason: str) -> None:
    assert EXEMPTIONS.exempt(request_) == reason


@pytest.mark.parametrize(
    "request_",
    [
        _request("default"),
        _request("Kube-system"),  # case-sensitive, as Kubernetes names are
        _request("kube"),
        _request("default", "system:serviceaccount:default:x"),
        _request("default", "bob", ["ops-ab", "system:authenticated"]),
        {"uid": "1"},
        {"uid": "1", "userInfo": {}},
    ],
)
def test_not_exempt(request_: AdmissionRequest) -> None:
    assert EXEMPTIONS.exempt(request_) is None


def test_cluster_scoped_objects_are_never_exempted_by_namespace() -> None:
    everything = Exemptions(namespaces=["*"])
    assert everything.exempt(_request("")) is None
    assert everything.exempt(_request("default")) == "namespace default matches *"


def test_glob_is_whole_match_not_prefix() -> None:
    exemptions = Exemptions(users=["ci"])
    assert exemptions.exempt(_request(user="ci-bot")) is None
    assert exemptions.exempt(_request(user="ci")) == "user ci matches ci"


def test_glob_brackets_and_special_characters() -> None:
    exemptions = Exemptions(namespaces=["team-[ab]", "a.b"])
    assert exemptions.exempt(_request("team-a")) == "namespace team-a matches team-[ab]"
    assert exemptions.exempt(_request("team-c")) is None
    assert exemptions.exempt(_request("axb")) is None  # "." is literal


def test_non_string_groups_are_ignored() -> None:
    request: AdmissionRequest = {"uid": "1", "userInfo": {"username": "", "groups": [3, "ops-b"]}}  # type: ignore[list-item]
    assert EXEMPTIONS.exempt(request) == "group ops-b matches ops-?"


def test_empty_exemptions() -> None:
    assert not Exemptions()
    assert Exemptions(groups=["x"])
    assert Exemptions().exempt(_request("kube-system", "admin", ["system:masters"])) is None


def test_lists_become_tuples_and_compare_equal() -> None:
    assert Exemptions(namespaces=["a"]) == Exemptions(namespaces=("a",))
    assert Exemptions(namespaces=["a"]).namespaces == ("a",)


def test_a_lone_string_is_refused() -> None:
    with pytest.raises(TypeError) as info:
        Exemptions(users="bob")
    assert str(info.value) == "Exemptions.users must be a list of globs, not a string"
