"""FederatedQuota status, quota scope and kcp's cluster-scoped ResourceQuota counts (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kcp_tmc.policies.quantities import ResourceListError, parse_quantity
from kcp_tmc.policies.quotastatus import (
    QuotaScope,
    count_resource,
    exceeded_message,
    federated_quota_status,
    masked,
    quota_scope,
    resource_quota_status,
)

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


def q(values):
    return {k: parse_quantity(v) for k, v in values.items()}


def fq(overall, static=None, namespace="team", annotations=None, status=None):
    obj = {
        "metadata": {"name": "fq", "namespace": namespace, "annotations": annotations or {}},
        "spec": {"overall": overall},
    }
    if static is not None:
        obj["spec"]["staticAssignments"] = static
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("namespace", "value", "scope"),
    [
        ("team", None, QuotaScope("root:ws", "team")),
        ("team", "true", QuotaScope("root:ws", "team")),
        ("admin", None, QuotaScope("root:ws", "admin")),
        ("admin", "false", QuotaScope("root:ws", "admin")),
        ("admin", "yes", QuotaScope("root:ws", "admin")),
        *[("admin", v, QuotaScope("root:ws", None)) for v in ("1", "t", "T", "TRUE", "true", "True")],
    ],
)
def test_scope_follows_go_parse_bool_in_admin(namespace, value, scope):
    annotations = {"kcp.io/cluster": "root:ws"}
    if value is not None:
        annotations["experimental.quota.kcp.io/cluster-scoped"] = value
    assert quota_scope(fq({}, namespace=namespace, annotations=annotations)) == scope


def test_scope_covers_only_its_cluster():
    namespaced, whole = QuotaScope("a", "ns"), QuotaScope("a", None)
    assert namespaced.covers("a", "ns") and not namespaced.covers("a", "other")
    assert not namespaced.covers("b", "ns")
    assert whole.covers("a", "anything") and not whole.covers("b", "anything")


def test_masked_uses_the_quota_spelling_of_each_key():
    use = q({"requests.cpu": "2", "limits.cpu": "3", "pods": "4", "count/configmaps": "1"})
    assert {k: str(v) for k, v in masked(["cpu", "limits.cpu", "memory", "configmaps"], use).items()} == {
        "cpu": "2",
        "limits.cpu": "3",
        "memory": "0",
        "configmaps": "1",
    }


def test_status_within_quota():
    quota = fq({"cpu": "8", "memory": "16Gi"}, static=[{"syncTarget": "east", "hard": {"cpu": "4"}}])
    status = federated_quota_status(
        quota,
        q({"requests.cpu": "3", "requests.memory": "1Gi", "pods": "3"}),
        {"west": q({"requests.cpu": "2", "requests.memory": "512Mi"}), "east": q({"requests.cpu": "1"})},
        NOW,
    )
    assert status["overall"] == {"cpu": "8", "memory": "16Gi"}
    assert status["overallUsed"] == {"cpu": "3", "memory": "1Gi"}
    assert status["aggregatedStatus"] == [
        {"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"cpu": "1", "memory": "0"}},
        {"syncTarget": "west", "used": {"cpu": "2", "memory": "512Mi"}},
    ]
    assert status["conditions"] == [
        {
            "type": "Exceeded",
            "status": "False",
            "reason": "WithinQuota",
            "lastTransitionTime": "2026-12-03T12:00:00Z",
        }
    ]


def test_static_assignment_without_use_is_listed_with_zero_use():
    status = federated_quota_status(
        fq({"cpu": "2"}, static=[{"syncTarget": "idle", "hard": {"cpu": "1"}}]), {}, {}, NOW
    )
    assert status["aggregatedStatus"] == [{"syncTarget": "idle", "hard": {"cpu": "1"}, "used": {"cpu": "0"}}]
    assert status["overallUsed"] == {"cpu": "0"}


def test_exceeded_after_a_limit_was_lowered_says_where_and_by_how_much():
    quota = fq(
        {"cpu": "2", "memory": "1Gi", "pods": "10"},
        static=[{"syncTarget": "east", "hard": {"cpu": "500m"}}],
        status={
            "conditions": [
                {"type": "Exceeded", "status": "False", "lastTransitionTime": "2020-01-01T00:00:00Z"}
            ]
        },
    )
    status = federated_quota_status(
        quota,
        q({"requests.cpu": "3", "requests.memory": "1536Mi", "pods": "3"}),
        {"east": q({"requests.cpu": "1", "requests.memory": "1536Mi", "pods": "3"})},
        NOW,
    )
    (condition,) = status["conditions"]
    assert condition == {
        "type": "Exceeded",
        "status": "True",
        "reason": "QuotaExceeded",
        "message": "use exceeds the quota: overall: cpu by 1 (used 3, limited 2), memory by 512Mi "
        "(used 1536Mi, limited 1Gi); SyncTarget east: cpu by 500m (used 1, limited 500m)",
        "lastTransitionTime": "2026-12-03T12:00:00Z",
    }


def test_condition_time_kept_while_state_is_unchanged():
    quota = fq({"cpu": "2"})
    first = federated_quota_status(quota, {}, {}, NOW)
    quota["status"] = first
    again = federated_quota_status(quota, {}, {}, NOW + timedelta(hours=1))
    assert again["conditions"] == first["conditions"]


def test_exceeded_message_empty_when_nothing_is_over():
    assert exceeded_message(q({"cpu": "1"}), q({"cpu": "1"}), [("a", q({"cpu": "1"}), q({"cpu": "1"}))]) == ""


def test_bad_quantity_in_spec_raises_naming_the_key():
    with pytest.raises(ResourceListError, match="cpu"):
        federated_quota_status(fq({"cpu": "many"}), {}, {}, NOW)


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("count/configmaps", ("configmaps", "")),
        ("count/deployments.apps", ("deployments", "apps")),
        ("count/workspaces.tenancy.kcp.io", ("workspaces", "tenancy.kcp.io")),
        ("count/", None),
        ("configmaps", None),
        ("requests.cpu", None),
    ],
)
def test_count_resource(key, parsed):
    assert count_resource(key) == parsed


def test_resource_quota_status_counts_count_keys_only():
    rq = {
        "spec": {
            "hard": {"count/configmaps": "3", "count/workspaces.tenancy.kcp.io": "2", "requests.cpu": "1"}
        }
    }
    assert resource_quota_status(rq, {"count/configmaps": 2, "count/workspaces.tenancy.kcp.io": 1}) == {
        "hard": {"count/configmaps": "3", "count/workspaces.tenancy.kcp.io": "2", "requests.cpu": "1"},
        "used": {"count/configmaps": "2", "count/workspaces.tenancy.kcp.io": "1"},
    }
    assert resource_quota_status({"spec": {}}, {}) == {"hard": {}, "used": {}}
    assert resource_quota_status(rq, {})["used"] == {
        "count/configmaps": "0",
        "count/workspaces.tenancy.kcp.io": "0",
    }
