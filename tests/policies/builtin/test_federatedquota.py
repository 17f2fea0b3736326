"""Tests of federatedquota-validation and resourcequota-validation: every message, word for word."""

from __future__ import annotations

from typing import Any

import pytest

from kcp_tmc.policies import FEDERATED_QUOTA, REGISTRY, RESOURCE_QUOTA, PolicyType
from kcp_tmc.policies.builtin.federatedquota import (
    federatedquota_validation,
    resource_name_errors,
    resourcequota_validation,
)
from tests.policies.builtin.helpers import build_request, messages
from tests.policies.messages import QNAME_REGEX, SUBDOMAIN_REGEX

HINT = "use a quota resource such as requests.cpu, limits.memory, pods or count/deployments.apps"
QUANTITY = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def quota(name: str = "team-a", **spec: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "FederatedQuota",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "overall": {"cpu": "8", "limits.memory": "16Gi", "pods": "20", "count/deployments.apps": "5"},
            "staticAssignments": [
                {"syncTarget": "east", "hard": {"requests.cpu": "4"}},
                {"syncTarget": "west", "hard": {"cpu": "4", "pods": "10"}},
            ],
        },
    }
    obj["spec"].update(spec)
    return obj


def validate(obj: Any, old: Any = None) -> list[str]:
    return messages(federatedquota_validation(build_request(FEDERATED_QUOTA, obj, old)))


def test_registered() -> None:
    policy = REGISTRY.get("federatedquota-validation")
    assert policy is not None
    assert policy.type is PolicyType.VALIDATING
    assert policy.kinds == (FEDERATED_QUOTA,)
    assert policy.operations == {"CREATE", "UPDATE"}
    assert policy.subresources == {"", "status"}


def test_valid_quota_is_allowed() -> None:
    assert federatedquota_validation(build_request(FEDERATED_QUOTA, quota())) is None
    assert validate(quota(), quota()) == []
    assert validate(quota(overall={"requests.nvidia.com/gpu": 2}, staticAssignments=None)) == []
    assert (
        federatedquota_validation(build_request(FEDERATED_QUOTA, None, quota(), operation="DELETE")) is None
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            quota("q" * 64),
            [
                "metadata.name: Too long: may not be more than 63 bytes; "
                "the name goes into label values; choose a shorter one"
            ],
        ),
        (quota(overall=[]), ["spec.overall: Invalid value: []: must be an object, not an array"]),
        (
            quota(overall={"bogus": "1"}, staticAssignments=[]),
            [f'spec.overall[bogus]: Invalid value: "bogus": must be a standard resource for quota; {HINT}'],
        ),
        (
            quota(overall={"a/b/c": "1"}, staticAssignments=[]),
            [
                'spec.overall[a/b/c]: Invalid value: "a/b/c": a valid label key '
                + QNAME_REGEX
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName'); "
                + HINT
            ],
        ),
        (
            quota(overall={"cpu": "lots"}, staticAssignments=[]),
            [f'spec.overall[cpu]: Invalid value: "lots": {QUANTITY}'],
        ),
        (
            quota(overall={"cpu": True}, staticAssignments=[]),
            [
                "spec.overall[cpu]: Invalid value: true: must be a quantity such as 500m, 2 or 4Gi, "
                "not a boolean"
            ],
        ),
        (
            quota(overall={"cpu": "-1"}, staticAssignments=[]),
            [
                'spec.overall[cpu]: Invalid value: "-1": must be greater than or equal to 0; '
                "quota limits are never negative"
            ],
        ),
        (
            quota(overall={"pods": "1500m", "count/jobs.batch": "0.5"}, staticAssignments=[]),
            [
                'spec.overall[pods]: Invalid value: "1500m": must be an integer; it counts objects',
                'spec.overall[count/jobs.batch]: Invalid value: "0.5": must be an integer; it counts objects',
            ],
        ),
        (
            quota(staticAssignments=[{"hard": {"cpu": "1"}}]),
            ["spec.staticAssignments[0].syncTarget: Required value: name the SyncTarget this share is for"],
        ),
        (
            quota(staticAssignments=[{"syncTarget": 7}]),
            ["spec.staticAssignments[0].syncTarget: Invalid value: 7: must be a string, not a number"],
        ),
        (
            quota(staticAssignments=[{"syncTarget": "East_1"}]),
            [f'spec.staticAssignments[0].syncTarget: Invalid value: "East_1": {SUBDOMAIN_REGEX}'],
        ),
        (
            quota(staticAssignments=[{"syncTarget": "east"}, {"syncTarget": "east"}]),
            [
                'spec.staticAssignments[1].syncTarget: Duplicate value: "east": '
                "each SyncTarget may have one static assignment; merge them"
            ],
        ),
        (
            quota(staticAssignments=[{"syncTarget": "east", "hard": {"limits.cpu": "1"}}]),
            [
                'spec.staticAssignments[0].hard[limits.cpu]: Invalid value: "limits.cpu": must be present '
                "in spec.overall; add limits.cpu to spec.overall or remove it here"
            ],
        ),
        (
            quota(
                staticAssignments=[
                    {"syncTarget": "east", "hard": {"requests.cpu": "5"}},
                    {"syncTarget": "west", "hard": {"cpu": "4"}},
                ]
            ),
            [
                'spec.overall[cpu]: Invalid value: "8": must be at least the sum of the static '
                "assignments (9); raise it or lower the assignments"
            ],
        ),
        (
            quota(staticAssignments=[None]),
            [
                "spec.staticAssignments[0]: Invalid value: null: "
                "must be an object with syncTarget and hard, not a null"
            ],
        ),
    ],
)
def test_denials(obj: dict[str, Any], expected: list[str]) -> None:
    assert validate(obj) == expected


def test_spec_of_the_wrong_type() -> None:
    obj = quota()
    obj["spec"] = "x"
    assert validate(obj) == ['spec: Invalid value: "x": must be an object, not a string']


def test_lowering_a_limit_below_use_warns_by_how_much() -> None:
    old = quota()
    old["status"] = {"overallUsed": {"cpu": "7", "pods": "3"}}
    new = quota(overall={"cpu": "4500m", "pods": "20"}, staticAssignments=[])
    verdict = federatedquota_validation(build_request(FEDERATED_QUOTA, new, old))
    assert verdict is not None and verdict.allowed
    assert list(verdict.warnings) == [
        "spec.overall[cpu]: the new limit 4500m is below current use 7 by 2500m; the update is accepted, "
        "but no new use is admitted until use falls below the limit"
    ]


@pytest.mark.parametrize("metadata", [["x"], "x", 7])
def test_metadata_that_is_not_a_mapping_names_nothing(metadata: Any) -> None:
    """Found by the review-endpoint fuzz: the request's name was read from metadata unchecked."""
    obj = quota()
    obj["metadata"] = metadata
    request = build_request(FEDERATED_QUOTA, obj, obj, name="team-a")
    assert request.name == "team-a"  # the request's name, as the apiserver sent it
    assert messages(federatedquota_validation(request)) == []  # judged by its spec, which is valid


@pytest.mark.parametrize("old_spec", [["x"], "x", None])
def test_an_old_object_whose_spec_is_not_a_mapping_is_read_as_empty(old_spec: Any) -> None:
    """Found by the review-endpoint fuzz: the old object's spec was read with ``.get`` unchecked."""
    old = quota()
    old["spec"] = old_spec
    old["status"] = {"overallUsed": {"cpu": "7"}}
    new = quota(overall={"cpu": "4"}, staticAssignments=[])
    verdict = federatedquota_validation(build_request(FEDERATED_QUOTA, new, old))
    assert verdict is not None and verdict.allowed
    assert [w.split(";")[0] for w in verdict.warnings] == [
        "spec.overall[cpu]: the new limit 4 is below current use 7 by 3"
    ]


@pytest.mark.parametrize(
    ("old_status", "new_overall"),
    [
        ({"overallUsed": {"cpu": "3"}}, {"cpu": "4"}),  # lowered, still above use
        ({"overallUsed": {"cpu": "9"}}, {"cpu": "8"}),  # unchanged limit, already exceeded
        ({}, {"cpu": "1"}),  # no status yet
        ({"overallUsed": {"cpu": "x"}}, {"cpu": "1"}),  # unreadable use
        ({"overallUsed": {"cpu": "9"}}, {"cpu": "20"}),  # raised
    ],
)
def test_no_warning_unless_lowered_below_use(old_status: dict[str, Any], new_overall: dict[str, str]) -> None:
    old = quota()
    old["spec"]["overall"] = {"cpu": "8"}
    old["spec"]["staticAssignments"] = []
    old["status"] = old_status
    new = quota(overall=new_overall, staticAssignments=[])
    assert federatedquota_validation(build_request(FEDERATED_QUOTA, new, old)) is None


def test_resource_names() -> None:
    for good in (
        "cpu",
        "requests.memory",
        "count/deployments.apps",
        "requests.nvidia.com/gpu",
        "hugepages-2Mi",
    ):
        assert resource_name_errors(good, "p") == []
    assert [str(e) for e in resource_name_errors("gpu", "p")] == [
        f'p: Invalid value: "gpu": must be a standard resource for quota; {HINT}'
    ]


# --- resourcequota-validation --------------------------------------------------------------------


def resource_quota(namespace: str = "admin", annotation: Any = "true") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "cluster-scoped", "namespace": namespace}
    if annotation is not None:
        meta["annotations"] = {"experimental.quota.kcp.io/cluster-scoped": annotation}
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": meta,
        "spec": {"hard": {"count/configmaps": "3"}},
    }


def rq_verdict(obj: Any) -> Any:
    return resourcequota_validation(build_request(RESOURCE_QUOTA, obj))


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True", "0", "f", "false", "False"])
def test_parse_bool_spellings_are_allowed_in_admin(value: str) -> None:
    assert rq_verdict(resource_quota(annotation=value)) is None


def test_no_annotation_is_none_of_our_business() -> None:
    assert rq_verdict(resource_quota("default", None)) is None
    assert (
        resourcequota_validation(build_request(RESOURCE_QUOTA, None, resource_quota(), operation="DELETE"))
        is None
    )


@pytest.mark.parametrize(("value", "shown"), [("yes", '"yes"'), ("", '""'), (True, "true")])
def test_annotation_must_parse_as_a_go_bool(value: Any, shown: str) -> None:
    assert messages(rq_verdict(resource_quota(annotation=value))) == [
        f"metadata.annotations[experimental.quota.kcp.io/cluster-scoped]: Invalid value: {shown}: "
        'must be a boolean as Go reads it: "true" or "false" '
        "(also 1, t, T, TRUE, True, 0, f, F, FALSE, False)"
    ]


def test_outside_admin_the_annotation_warns_it_has_no_effect() -> None:
    verdict = rq_verdict(resource_quota("default", "True"))
    assert verdict is not None and verdict.allowed
    assert list(verdict.warnings) == [
        "metadata.annotations[experimental.quota.kcp.io/cluster-scoped]: has no effect in namespace "
        '"default": only a ResourceQuota in namespace "admin" counts across the whole logical cluster; '
        "move it there or remove the annotation"
    ]
    assert rq_verdict(resource_quota("default", "false")) is None


def validate_status(status: Any) -> list[str]:
    obj = quota()
    obj["status"] = status
    return messages(
        federatedquota_validation(build_request(FEDERATED_QUOTA, obj, quota(), sub_resource="status"))
    )


def test_status_writes_check_the_status_only() -> None:
    good = {
        "overall": {"cpu": "8"},
        "overallUsed": {"cpu": "7500m"},
        "aggregatedStatus": [{"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"cpu": "1"}}],
    }
    assert validate_status(good) == []
    broken = quota("q" * 70)  # the name is not a status write's business
    broken["status"] = good
    verdict = federatedquota_validation(
        build_request(FEDERATED_QUOTA, broken, quota(), sub_resource="status")
    )
    assert verdict is None
    assert validate_status(
        {
            "overallUsed": {"cpu": "-1", "widgets": "1"},
            "aggregatedStatus": [{"used": {"pods": "0.5"}}, {"syncTarget": "East"}],
        }
    ) == [
        'status.overallUsed[cpu]: Invalid value: "-1": must be greater than or equal to 0; '
        "quota limits are never negative",
        'status.overallUsed[widgets]: Invalid value: "widgets": must be a standard resource for quota; '
        + HINT,
        "status.aggregatedStatus[0].syncTarget: Required value: name the SyncTarget the entry is for",
        'status.aggregatedStatus[0].used[pods]: Invalid value: "0.5": must be an integer; it counts objects',
        f'status.aggregatedStatus[1].syncTarget: Invalid value: "East": {SUBDOMAIN_REGEX}',
    ]
    assert validate_status("full") == ['status: Invalid value: "full": must be an object, not a string']
