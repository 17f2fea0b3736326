"""Tests of the Cluster policies: cluster-validation and cluster-defaults."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import jsonpatch
import pytest

from kcp_tmc.policies import CLUSTER, REGISTRY, PolicyType, Verdict
from kcp_tmc.policies.builtin.cluster import cluster_defaults, cluster_validation
from tests.policies.builtin.helpers import build_request, messages
from tests.policies.messages import LABEL_REGEX, SUBDOMAIN_REGEX


def cluster(**spec: Any) -> dict[str, Any]:
    """A valid Cluster named ``east``; keyword arguments replace spec fields."""
    obj: dict[str, Any] = {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": "east"},
        "spec": {
            "kubeconfigSecretRef": {
                "namespace": "tmc-system",
                "name": "east-kubeconfig",
                "key": "kubeconfig",
            },
            "syncMode": "Push",
            "unschedulable": False,
            "syncTargetName": "east",
            "evictAfter": "2030-01-01T00:00:00Z",
        },
        "status": {
            "capacity": {"cpu": "16", "memory": "64Gi"},
            "allocatable": {"cpu": "15", "memory": "60Gi"},
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T15:04:05Z"}],
            "syncedResources": [{"group": "apps", "resource": "deployments", "versions": ["v1"]}],
            "lastHeartbeatTime": "2024-01-02T15:04:05Z",
            "kubernetesVersion": "v1.30.2",
        },
    }
    obj["spec"].update(spec)
    return obj


def with_status(**fields: Any) -> dict[str, Any]:
    obj = cluster()
    obj["status"].update(fields)
    return obj


def validate(obj: Any, old: Any = None, **kwargs: Any) -> list[str]:
    return messages(cluster_validation(build_request(CLUSTER, obj, old, **kwargs)))


@pytest.mark.parametrize(
    ("name", "ptype", "subresources"),
    [
        ("cluster-validation", PolicyType.VALIDATING, {"", "status"}),
        ("cluster-defaults", PolicyType.MUTATING, {""}),
    ],
)
def test_registered(name: str, ptype: PolicyType, subresources: set[str]) -> None:
    policy = REGISTRY.get(name)
    assert policy is not None
    assert policy.type is ptype
    assert policy.kinds == (CLUSTER,)
    assert policy.operations == {"CREATE", "UPDATE"}
    assert policy.subresources == subresources


# --- cluster-validation ---------------------------------------------------------------------------


def test_valid_cluster_is_allowed() -> None:
    assert cluster_validation(build_request(CLUSTER, cluster())) is None
    assert validate(cluster(), cluster()) == []


def test_minimal_cluster_is_allowed() -> None:
    obj = {"metadata": {"name": "east"}, "spec": {"kubeconfigSecretRef": {"namespace": "ns", "name": "kc"}}}
    assert validate(obj) == []


def test_pull_mode_with_an_image_is_allowed() -> None:
    assert validate(cluster(syncMode="Pull", syncerImage="ghcr.io/kcp-dev/kcp/syncer:v0.11.0")) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a" * 64, ["must be no more than 63 characters"]),
        ("East", [LABEL_REGEX]),
        ("east.1", ["must not contain dots"]),
    ],
)
def test_name_must_be_a_dns_label(name: str, expected: list[str]) -> None:
    obj = cluster(syncTargetName=None)
    obj["metadata"]["name"] = name
    assert validate(obj) == [f'metadata.name: Invalid value: "{name}": {msg}' for msg in expected]


def test_name_is_required() -> None:
    obj = cluster()
    obj["metadata"] = {}
    assert validate(obj) == ["metadata.name: Required value: name the Cluster"]
    del obj["metadata"]
    assert validate(obj) == ["metadata.name: Required value: name the Cluster"]
    obj["metadata"] = {"name": 1}
    assert validate(obj) == ["metadata.name: Invalid value: 1: must be a string, not a number"]
    obj["metadata"] = []
    assert validate(obj) == ["metadata: Invalid value: []: must be an object, not an array"]


def test_object_of_the_wrong_type() -> None:
    assert cluster_validation(build_request(CLUSTER, None)) is None
    req = replace(build_request(CLUSTER, {}), object="x")  # type: ignore[arg-type]
    assert messages(cluster_validation(req)) == ['Invalid value: "x": must be a Cluster object, not a string']


def test_spec_is_required_for_its_secret_reference() -> None:
    expected = [
        "spec.kubeconfigSecretRef: Required value: name the Secret that holds the cluster's kubeconfig: "
        "{namespace: <namespace>, name: <secret>, key: kubeconfig}"
    ]
    assert validate({"metadata": {"name": "east"}}) == expected
    assert validate(cluster(kubeconfigSecretRef=None)) == expected
    assert validate(cluster(kubeconfigSecretRef="secret")) == [
        'spec.kubeconfigSecretRef: Invalid value: "secret": must be an object, not a string'
    ]
    assert validate({"metadata": {"name": "east"}, "spec": "x"}) == [
        'spec: Invalid value: "x": must be an object, not a string'
    ]


def test_secret_reference_fields() -> None:
    assert validate(cluster(kubeconfigSecretRef={})) == [
        "spec.kubeconfigSecretRef.namespace: Required value: set the namespace of the kubeconfig Secret",
        "spec.kubeconfigSecretRef.name: Required value: set the name of the kubeconfig Secret",
    ]
    ref = {"namespace": "Tmc.System", "name": "Kube_Config", "key": 5}
    assert validate(cluster(kubeconfigSecretRef=ref)) == [
        f'spec.kubeconfigSecretRef.namespace: Invalid value: "Tmc.System": {LABEL_REGEX}',
        f'spec.kubeconfigSecretRef.name: Invalid value: "Kube_Config": {SUBDOMAIN_REGEX}',
        "spec.kubeconfigSecretRef.key: Invalid value: 5: must be a string, not a number",
    ]
    ref = {"namespace": ["x"], "name": "", "key": "../kubeconfig"}
    assert validate(cluster(kubeconfigSecretRef=ref)) == [
        'spec.kubeconfigSecretRef.namespace: Invalid value: ["x"]: must be a string, not an array',
        "spec.kubeconfigSecretRef.name: Required value: set the name of the kubeconfig Secret",
        'spec.kubeconfigSecretRef.key: Invalid value: "../kubeconfig": a valid config key must consist of '
        "alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex "
        "used for validation is '[-._a-zA-Z0-9]+')",
        "spec.kubeconfigSecretRef.key: Invalid value: \"../kubeconfig\": must not start with '..'",
    ]


def test_sync_mode() -> None:
    assert validate(cluster(syncMode="push")) == [
        'spec.syncMode: Unsupported value: "push": supported values: "Push", "Pull"'
    ]
    assert validate(cluster(syncMode=None)) == []


def test_pull_mode_needs_a_syncer_image() -> None:
    expected = [
        "spec.syncerImage: Required value: Pull mode installs the syncer in the cluster; set the syncer's "
        "image, e.g. ghcr.io/kcp-dev/kcp/syncer:v0.11.0, or use syncMode Push"
    ]
    assert validate(cluster(syncMode="Pull")) == expected
    assert validate(cluster(syncMode="Pull", syncerImage="")) == expected
    assert validate(cluster(syncMode="Push", syncerImage="")) == []


def test_syncer_image_must_be_a_reference() -> None:
    assert validate(cluster(syncMode="Pull", syncerImage=" ghcr.io/x ")) == [
        'spec.syncerImage: Invalid value: " ghcr.io/x ": must not contain whitespace; use an image reference '
        "such as ghcr.io/kcp-dev/kcp/syncer:v0.11.0"
    ]
    assert validate(cluster(syncMode="Pull", syncerImage=3)) == [
        "spec.syncerImage: Invalid value: 3: must be a string, not a number"
    ]


def test_sync_target_name_must_be_a_sync_target_name() -> None:
    assert validate(cluster(syncTargetName="East_1")) == [
        f'spec.syncTargetName: Invalid value: "East_1": {SUBDOMAIN_REGEX}'
    ]
    assert validate(cluster(syncTargetName="a" * 235)) == [
        "spec.syncTargetName: Too long: may not be more than 234 bytes; a SyncTarget name leaves room for "
        "the 10-character prefix and 9-character hash of the names derived from it; choose a shorter name"
    ]
    assert validate(cluster(syncTargetName=["east"])) == [
        'spec.syncTargetName: Invalid value: ["east"]: must be a string, not an array'
    ]


def test_sync_target_name_is_immutable() -> None:
    assert validate(cluster(syncTargetName="west"), cluster()) == [
        'spec.syncTargetName: Forbidden: may not be changed from "east" to "west" after the Cluster is '
        "created; to publish the cluster under another name, delete and re-create the Cluster"
    ]


def test_sync_target_name_compares_with_defaults_applied() -> None:
    implicit = cluster(syncTargetName=None)
    explicit = cluster(syncTargetName="east")
    assert validate(explicit, implicit) == []
    assert validate(implicit, explicit) == []
    assert validate(cluster(syncTargetName=""), explicit) == []
    assert validate(cluster(syncTargetName="west"), implicit)[0].startswith(
        'spec.syncTargetName: Forbidden: may not be changed from "east" to "west"'
    )
    assert validate(implicit, cluster(syncTargetName="west"))[0].startswith(
        'spec.syncTargetName: Forbidden: may not be changed from "west" to "east"'
    )


def test_sync_target_name_immutability_skips_unreadable_values() -> None:
    assert validate(cluster(syncTargetName=5), cluster()) == [
        "spec.syncTargetName: Invalid value: 5: must be a string, not a number"
    ]
    old = cluster()
    old["spec"] = "garbage"
    assert validate(cluster(), old) == []


def test_evict_after_and_unschedulable() -> None:
    assert validate(cluster(evictAfter="soon", unschedulable="no")) == [
        'spec.evictAfter: Invalid value: "soon": must be an RFC 3339 time such as 2024-01-02T15:04:05Z',
        'spec.unschedulable: Invalid value: "no": must be a boolean (true or false), not a string',
    ]


# --- status ---------------------------------------------------------------------------------------


def test_status_rules() -> None:
    obj = with_status(
        capacity={"cpu": "2"},
        allocatable={"cpu": "3", "memory": "lots"},
        conditions=[{"type": "Ready", "status": "true", "lastTransitionTime": "2024-01-02T15:04:05Z"}],
        syncedResources=[{"resource": "deployments", "versions": []}],
        lastHeartbeatTime="2024-01-02",
        kubernetesVersion=1.3,
    )
    assert validate(obj) == [
        'status.allocatable[memory]: Invalid value: "lots": quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'; use a quantity such as 500m, 2, 1.5 or 4Gi",
        'status.allocatable[cpu]: Invalid value: "3": must be less than or equal to capacity (2); lower '
        "status.allocatable[cpu] or raise status.capacity[cpu]",
        'status.conditions[0].status: Unsupported value: "true": supported values: "True", "False", '
        '"Unknown"',
        "status.syncedResources[0].versions: Required value: list at least one served version, e.g. [v1]",
        'status.lastHeartbeatTime: Invalid value: "2024-01-02": must be an RFC 3339 time such as '
        "2024-01-02T15:04:05Z",
        "status.kubernetesVersion: Invalid value: 1.3: must be a string, not a number",
    ]


def test_status_subresource_checks_status_only() -> None:
    old = cluster()
    obj = cluster(syncMode="Sideways", kubeconfigSecretRef=None)
    obj["status"] = {**old["status"], "lastHeartbeatTime": "never"}
    assert validate(obj, old, sub_resource="status") == [
        'status.lastHeartbeatTime: Invalid value: "never": must be an RFC 3339 time such as '
        "2024-01-02T15:04:05Z"
    ]


def test_unchanged_status_is_not_checked_again() -> None:
    old = with_status(kubernetesVersion=130, lastHeartbeatTime="never")
    new = copy.deepcopy(old)
    new["spec"]["unschedulable"] = True
    assert validate(new, old) == []
    new["status"]["kubernetesVersion"] = "v1.30.0"
    assert validate(new, old) == []
    new["status"]["capacity"] = {"cpu": "-2"}
    assert validate(new, old) == [
        'status.capacity[cpu]: Invalid value: "-2": must be greater than or equal to 0'
    ]


def test_status_of_the_wrong_type() -> None:
    assert validate(with_status() | {"status": "ok"}) == [
        'status: Invalid value: "ok": must be an object, not a string'
    ]
    old = cluster()
    old["status"] = 5
    assert validate(with_status(lastHeartbeatTime="x"), old)[0].startswith(
        'status.lastHeartbeatTime: Invalid value: "x"'
    )


# --- cluster-defaults -----------------------------------------------------------------------------


def defaults(obj: Any, old: Any = None) -> Verdict | None:
    return cluster_defaults(build_request(CLUSTER, obj, old))


def test_defaults_without_spec() -> None:
    verdict = defaults({"metadata": {"name": "east"}})
    assert verdict is not None
    assert list(verdict.patch) == [
        {
            "op": "add",
            "path": "/spec",
            "value": {"syncMode": "Push", "unschedulable": False, "syncTargetName": "east"},
        }
    ]


def test_defaults_fill_absent_fields() -> None:
    obj = {
        "metadata": {"name": "east"},
        "spec": {"kubeconfigSecretRef": {"namespace": "ns", "name": "kc"}, "syncMode": None},
    }
    verdict = defaults(obj)
    assert verdict is not None
    assert list(verdict.patch) == [
        {"op": "add", "path": "/spec/syncMode", "value": "Push"},
        {"op": "add", "path": "/spec/unschedulable", "value": False},
        {"op": "add", "path": "/spec/syncTargetName", "value": "east"},
        {"op": "add", "path": "/spec/kubeconfigSecretRef/key", "value": "kubeconfig"},
    ]
    patched = jsonpatch.apply_patch(obj, list(verdict.patch))
    assert validate(patched) == []
    assert defaults(patched) is None


def test_defaults_never_override_explicit_values() -> None:
    obj = cluster(syncMode="Pull", unschedulable=True, syncTargetName="other")
    obj["spec"]["kubeconfigSecretRef"]["key"] = "config"
    assert defaults(obj) is None
    assert defaults(obj, copy.deepcopy(obj)) is None


def test_defaults_without_a_name_skip_the_sync_target_name() -> None:
    verdict = defaults({"metadata": {}, "spec": {}})
    assert verdict is not None
    assert [op["path"] for op in verdict.patch] == ["/spec/syncMode", "/spec/unschedulable"]


@pytest.mark.parametrize(
    "obj",
    [
        "cluster",
        {"metadata": {"name": "east"}, "spec": ["x"]},
        {
            "metadata": "x",
            "spec": {"syncMode": "Push", "unschedulable": False, "kubeconfigSecretRef": "x"},
        },
    ],
)
def test_defaults_leave_wrongly_typed_input_to_validation(obj: Any) -> None:
    assert defaults(obj) is None
