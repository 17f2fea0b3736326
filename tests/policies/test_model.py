"""Wire-model helpers: tolerant accessors, Cluster defaults and cluster-scoped quota detection."""

from __future__ import annotations

from typing import Any

import pytest

from kcp_tmc.policies import model
from kcp_tmc.policies.model import (
    ACCEPTED,
    CLUSTER_SCOPED_QUOTA_ANNOTATION,
    INCOMPATIBLE,
    PENDING,
    RESOURCE_STATES,
    SYNC_MODES,
    Cluster,
    FederatedQuota,
    Location,
    ResourceQuota,
    SyncTarget,
    annotations_of,
    cluster_defaults,
    is_cluster_scoped_quota,
    labels_of,
    meta_of,
    name_of,
    namespace_of,
    parse_bool,
    spec_of,
    status_of,
    uid_of,
)


def test_constants() -> None:
    assert (PENDING, ACCEPTED, INCOMPATIBLE) == ("Pending", "Accepted", "Incompatible")
    assert RESOURCE_STATES == ("Pending", "Accepted", "Incompatible")
    assert SYNC_MODES == ("Push", "Pull")
    assert CLUSTER_SCOPED_QUOTA_ANNOTATION == "experimental.quota.kcp.io/cluster-scoped"
    for name in model.__all__:
        assert hasattr(model, name), name


SYNC_TARGET: SyncTarget = {
    "apiVersion": "workload.kcp.io/v1alpha1",
    "kind": "SyncTarget",
    "metadata": {
        "name": "us-west1",
        "uid": "u-1",
        "labels": {"region": "us-west1"},
        "annotations": {"kcp.io/cluster": "root:org:ws"},
    },
    "spec": {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]},
    "status": {
        "allocatable": {"cpu": "4"},
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2023-02-22T17:38:27Z"}],
        "syncedResources": [
            {"resource": "deployments", "group": "apps", "versions": ["v1"], "state": "Accepted"}
        ],
        "virtualWorkspaces": [{"syncerURL": "https://a", "upsyncerURL": "https://b"}],
    },
}


def test_accessors_on_a_full_object() -> None:
    assert meta_of(SYNC_TARGET)["name"] == "us-west1"
    assert name_of(SYNC_TARGET) == "us-west1"
    assert uid_of(SYNC_TARGET) == "u-1"
    assert namespace_of(SYNC_TARGET) == ""
    assert labels_of(SYNC_TARGET) == {"region": "us-west1"}
    assert annotations_of(SYNC_TARGET) == {"kcp.io/cluster": "root:org:ws"}
    assert spec_of(SYNC_TARGET)["supportedAPIExports"] == [{"export": "kubernetes"}]
    assert status_of(SYNC_TARGET)["allocatable"] == {"cpu": "4"}


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {},
        {"metadata": None, "spec": None, "status": None},
        {"metadata": "x", "spec": [], "status": 3},
        {"metadata": {"labels": None, "annotations": None, "name": None, "namespace": 5, "uid": []}},
        {"metadata": {"labels": ["a"], "annotations": "a=b"}},
    ],
)
def test_accessors_tolerate_missing_and_null(obj: dict[str, Any] | None) -> None:
    assert meta_of(obj) == {} or isinstance(meta_of(obj), dict)
    assert labels_of(obj) == {}
    assert annotations_of(obj) == {}
    assert name_of(obj) == ""
    assert namespace_of(obj) == ""
    assert uid_of(obj) == ""
    assert spec_of(obj) == {}
    assert status_of(obj) == {}


def test_cluster_defaults_apply_every_default() -> None:
    cluster: Cluster = {
        "metadata": {"name": "kind-east"},
        "spec": {"kubeconfigSecretRef": {"namespace": "tmc", "name": "east"}},
    }
    assert cluster_defaults(cluster) == {
        "kubeconfigSecretRef": {"namespace": "tmc", "name": "east", "key": "kubeconfig"},
        "syncMode": "Push",
        "syncTargetName": "kind-east",
        "unschedulable": False,
        "evictAfter": None,
        "syncerImage": None,
    }


def test_cluster_defaults_keep_explicit_values() -> None:
    cluster: Cluster = {
        "metadata": {"name": "kind-east"},
        "spec": {
            "kubeconfigSecretRef": {"namespace": "tmc", "name": "east", "key": "config"},
            "syncMode": "Pull",
            "syncTargetName": "east",
            "unschedulable": True,
            "evictAfter": "2023-02-22T17:38:27Z",
            "syncerImage": "ghcr.io/kcp-dev/kcp/syncer:v0.11.0",
        },
    }
    assert cluster_defaults(cluster) == {
        "kubeconfigSecretRef": {"namespace": "tmc", "name": "east", "key": "config"},
        "syncMode": "Pull",
        "syncTargetName": "east",
        "unschedulable": True,
        "evictAfter": "2023-02-22T17:38:27Z",
        "syncerImage": "ghcr.io/kcp-dev/kcp/syncer:v0.11.0",
    }


def test_cluster_defaults_treat_wrong_types_as_unset() -> None:
    effective = cluster_defaults(
        {
            "metadata": {"name": "c"},
            "spec": {
                "kubeconfigSecretRef": "secret",
                "syncMode": 1,
                "unschedulable": "yes",
                "syncTargetName": "",
            },
        }
    )
    assert effective["kubeconfigSecretRef"] is None
    assert effective["syncMode"] == "Push"
    assert effective["unschedulable"] is False
    assert effective["syncTargetName"] == "c"
    assert cluster_defaults(None)["syncTargetName"] == ""
    ref = cluster_defaults({"spec": {"kubeconfigSecretRef": {"name": 3}}})["kubeconfigSecretRef"]
    assert ref == {"namespace": "", "name": "", "key": "kubeconfig"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("t", True),
        ("T", True),
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("0", False),
        ("f", False),
        ("F", False),
        ("FALSE", False),
        ("false", False),
        ("False", False),
        ("yes", None),
        ("tRue", None),
        ("", None),
        (" true", None),
    ],
)
def test_parse_bool(value: str, expected: bool | None) -> None:
    assert parse_bool(value) is expected


def _quota(namespace: str, value: Any) -> ResourceQuota:
    quota: ResourceQuota = {
        "metadata": {"name": "q", "namespace": namespace},
        "spec": {"hard": {"count/configmaps": "3"}},
    }
    if value is not None:
        quota["metadata"]["annotations"] = {CLUSTER_SCOPED_QUOTA_ANNOTATION: value}
    return quota


@pytest.mark.parametrize("value", ["1", "t", "T", "TRUE", "true", "True"])
def test_cluster_scoped_quota_true_values(value: str) -> None:
    assert is_cluster_scoped_quota(_quota("admin", value))


@pytest.mark.parametrize("value", ["0", "false", "yes", "", "on", None, True])
def test_cluster_scoped_quota_other_values(value: Any) -> None:
    assert not is_cluster_scoped_quota(_quota("admin", value))


def test_cluster_scoped_quota_needs_the_admin_namespace() -> None:
    assert not is_cluster_scoped_quota(_quota("default", "true"))
    assert not is_cluster_scoped_quota(_quota("", "true"))
    assert not is_cluster_scoped_quota(None)
    # the old .dev key does not count
    old: ResourceQuota = {
        "metadata": {
            "name": "q",
            "namespace": "admin",
            "annotations": {"experimental.quota.kcp.dev/cluster-scoped": "true"},
        }
    }
    assert not is_cluster_scoped_quota(old)


def test_typed_dicts_describe_the_wire_shape() -> None:
    location: Location = {
        "metadata": {"name": "us-east1", "labels": {"continent": "north-america"}},
        "spec": {
            "resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
            "instanceSelector": {"matchLabels": {"region": "us-east1"}},
            "availableSelectorLabels": [{"key": "region", "values": ["us-east1"]}],
        },
        "status": {"instances": 4, "availableInstances": 1},
    }
    quota: FederatedQuota = {
        "metadata": {"name": "fq", "namespace": "default"},
        "spec": {
            "overall": {"cpu": "10"},
            "staticAssignments": [{"syncTarget": "east", "hard": {"cpu": "4"}}],
        },
        "status": {"aggregatedStatus": [{"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"cpu": "1"}}]},
    }
    assert name_of(location) == "us-east1"
    assert spec_of(quota)["overall"] == {"cpu": "10"}
