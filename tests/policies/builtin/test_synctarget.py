"""Tests of the SyncTarget policies: synctarget-validation, -deletion-protection and -defaults."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jsonpatch
import pytest

from kcp_tmc.policies import REGISTRY, SYNC_TARGET, PolicyType, Verdict
from kcp_tmc.policies.builtin import synctarget
from kcp_tmc.policies.builtin.synctarget import (
    heartbeat_skew,
    sync_target_defaults,
    sync_target_deletion_protection,
    sync_target_validation,
)
from tests.policies.builtin.helpers import build_request, messages

KEY = "6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g"  # kcp's vector for root:org:ws / us-west1
KEY_LABEL = "internal.workload.kcp.io/key"
NOW = "2024-01-02T15:04:05Z"


def sync_target(**overrides: Any) -> dict[str, Any]:
    """A valid SyncTarget as kcp v0.11 stores it; top-level keys in ``overrides`` replace the defaults."""
    obj: dict[str, Any] = {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": "us-west1", "labels": {KEY_LABEL: KEY}},
        "spec": {
            "unschedulable": False,
            "evictAfter": "2030-01-01T00:00:00Z",
            "supportedAPIExports": [
                {"export": "kubernetes"},
                {"export": "kubernetes", "path": "root:compute"},
            ],
            "cells": {"region": "us-west1", "example.com/zone": "a"},
        },
        "status": {
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": 110},
            "allocatable": {"cpu": "7500m", "memory": "30Gi"},
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T15:00:00Z"},
                {
                    "type": "HeartbeatHealthy",
                    "status": "False",
                    "severity": "Warning",
                    "reason": "ErrorHeartbeat",
                    "message": "No heartbeat yet seen",
                    "lastTransitionTime": "2024-01-02T15:00:00+01:00",
                },
            ],
            "syncedResources": [
                {
                    "group": "apps",
                    "resource": "deployments",
                    "versions": ["v1"],
                    "identityHash": "abc",
                    "state": "Accepted",
                },
                {"group": "", "resource": "services", "versions": ["v1"], "identityHash": ""},
            ],
            "virtualWorkspaces": [
                {
                    "syncerURL": "https://shard-1.example.com:6443/services/syncer/root:org:ws/us-west1/uid-1",
                    "upsyncerURL": "https://shard-1.example.com:6443/services/upsyncer/root:org:ws/us-west1",
                }
            ],
            "lastSyncerHeartbeatTime": "2024-01-02T15:04:00Z",
        },
    }
    obj.update(overrides)
    return obj


def with_spec(**fields: Any) -> dict[str, Any]:
    obj = sync_target()
    obj["spec"] = {**obj["spec"], **fields}
    return obj


def with_status(**fields: Any) -> dict[str, Any]:
    obj = sync_target()
    obj["status"] = {**obj["status"], **fields}
    return obj


def validate(obj: Any, old: Any = None, **kwargs: Any) -> list[str]:
    return messages(sync_target_validation(build_request(SYNC_TARGET, obj, old, **kwargs)))


@pytest.fixture(autouse=True)
def _clock(fixed_now: Callable[[str], None]) -> None:
    fixed_now(NOW)


# --- registration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ptype", "operations", "subresources"),
    [
        ("synctarget-validation", PolicyType.VALIDATING, {"CREATE", "UPDATE"}, {"", "status"}),
        ("synctarget-deletion-protection", PolicyType.VALIDATING, {"DELETE"}, {""}),
        ("synctarget-defaults", PolicyType.MUTATING, {"CREATE", "UPDATE"}, {""}),
    ],
)
def test_registered(name: str, ptype: PolicyType, operations: set[str], subresources: set[str]) -> None:
    policy = REGISTRY.get(name)
    assert policy is not None
    assert policy.type is ptype
    assert policy.kinds == (SYNC_TARGET,)
    assert policy.operations == operations
    assert policy.subresources == subresources
    assert policy.description


# --- synctarget-validation: valid objects ---------------------------------------------------------


def test_valid_sync_target_is_allowed() -> None:
    assert sync_target_validation(build_request(SYNC_TARGET, sync_target())) is None


def test_nothing_to_check_without_an_object() -> None:
    assert sync_target_validation(build_request(SYNC_TARGET, None)) is None


def test_minimal_sync_target_is_allowed() -> None:
    assert validate({"metadata": {"name": "us-west1"}}) == []


def test_name_of_234_characters_is_allowed() -> None:
    assert validate({"metadata": {"name": "a" * 234}}) == []


def test_update_without_changes_is_allowed() -> None:
    assert validate(sync_target(), sync_target()) == []


# --- metadata -------------------------------------------------------------------------------------


def test_name_longer_than_234_is_denied() -> None:
    assert validate({"metadata": {"name": "a" * 235}}) == [
        "metadata.name: Too long: may not be more than 234 bytes; a SyncTarget name leaves room for the "
        "10-character prefix and 9-character hash of the names derived from it; choose a shorter name"
    ]


def test_name_must_be_a_dns_subdomain() -> None:
    assert validate({"metadata": {"name": "US_West"}}) == [
        'metadata.name: Invalid value: "US_West": a lowercase RFC 1123 subdomain must consist of lower case '
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'example.com', regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    ]


def test_name_is_required() -> None:
    assert validate({}) == ["metadata.name: Required value: name the SyncTarget"]
    assert validate({"metadata": {}}) == ["metadata.name: Required value: name the SyncTarget"]
    assert validate({"metadata": {"name": ""}}) == ["metadata.name: Required value: name the SyncTarget"]


def test_wrongly_typed_metadata_and_name() -> None:
    assert validate({"metadata": "x"}) == ['metadata: Invalid value: "x": must be an object, not a string']
    assert validate({"metadata": {"name": 5}}) == [
        "metadata.name: Invalid value: 5: must be a string, not a number"
    ]


def test_object_that_is_not_a_map() -> None:
    req = replace(build_request(SYNC_TARGET, {}), object=["x"])  # type: ignore[arg-type]
    assert messages(sync_target_validation(req)) == [
        'Invalid value: ["x"]: must be a SyncTarget object, not an array'
    ]


def test_key_label_must_be_the_computed_key() -> None:
    obj = sync_target(metadata={"name": "us-west1", "labels": {KEY_LABEL: "wrong"}})
    assert validate(obj) == [
        f'metadata.labels[{KEY_LABEL}]: Invalid value: "wrong": must be "{KEY}", the key of SyncTarget '
        '"us-west1" in logical cluster "root:org:ws"; set it to that value or leave the label out and '
        "synctarget-defaults sets it"
    ]


def test_key_label_depends_on_the_logical_cluster() -> None:
    assert validate(sync_target(), cluster="root:other")[0].startswith(
        f'metadata.labels[{KEY_LABEL}]: Invalid value: "{KEY}": must be "'
    )


def test_key_label_may_be_absent_on_create() -> None:
    assert validate(sync_target(metadata={"name": "us-west1"})) == []


def test_key_label_may_not_be_removed_on_update() -> None:
    assert validate(sync_target(metadata={"name": "us-west1", "labels": {}}), sync_target()) == [
        f'metadata.labels[{KEY_LABEL}]: Forbidden: may not be removed once set; restore it to "{KEY}", '
        'the key of SyncTarget "us-west1" in logical cluster "root:org:ws"'
    ]


def test_key_label_may_not_be_changed_on_update() -> None:
    changed = sync_target(metadata={"name": "us-west1", "labels": {KEY_LABEL: "other"}})
    assert validate(changed, sync_target()) == [
        f"metadata.labels[{KEY_LABEL}]: Forbidden: may not be changed: it is the key of SyncTarget "
        f'"us-west1" in logical cluster "root:org:ws"; keep it "{KEY}"'
    ]


def test_a_wrong_stored_key_label_may_be_corrected() -> None:
    stale = sync_target(metadata={"name": "us-west1", "labels": {KEY_LABEL: "stale"}})
    assert validate(sync_target(), stale) == []


def test_wrongly_typed_labels() -> None:
    assert validate(sync_target(metadata={"name": "us-west1", "labels": ["a"]})) == [
        'metadata.labels: Invalid value: ["a"]: must be an object, not an array'
    ]
    assert validate(sync_target(metadata={"name": "us-west1", "labels": {KEY_LABEL: 1}})) == [
        f'metadata.labels[{KEY_LABEL}]: Invalid value: 1: must be "{KEY}", the key of SyncTarget '
        '"us-west1" in logical cluster "root:org:ws"; set it to that value or leave the label out and '
        "synctarget-defaults sets it"
    ]


# --- spec -----------------------------------------------------------------------------------------


def test_spec_must_be_a_map() -> None:
    assert validate(sync_target(spec="x")) == ['spec: Invalid value: "x": must be an object, not a string']


def test_unschedulable_must_be_a_boolean() -> None:
    assert validate(with_spec(unschedulable="yes")) == [
        'spec.unschedulable: Invalid value: "yes": must be a boolean (true or false), not a string'
    ]


@pytest.mark.parametrize("value", ["tomorrow", "2024-01-02", "2024-01-02 15:04:05Z", "2024-13-01T00:00:00Z"])
def test_evict_after_must_be_rfc3339(value: str) -> None:
    assert validate(with_spec(evictAfter=value)) == [
        f'spec.evictAfter: Invalid value: "{value}": must be an RFC 3339 time such as 2024-01-02T15:04:05Z'
    ]


def test_evict_after_of_the_wrong_type() -> None:
    assert validate(with_spec(evictAfter=17)) == [
        "spec.evictAfter: Invalid value: 17: must be a string, not a number"
    ]


def test_null_optional_fields_are_absent() -> None:
    assert (
        validate(with_spec(evictAfter=None, cells=None, supportedAPIExports=None, unschedulable=None)) == []
    )


def test_supported_api_exports_must_be_a_list_of_objects() -> None:
    assert validate(with_spec(supportedAPIExports={"export": "kubernetes"})) == [
        'spec.supportedAPIExports: Invalid value: {"export":"kubernetes"}: must be an array, not an object'
    ]
    assert validate(with_spec(supportedAPIExports=[None, "kubernetes"])) == [
        "spec.supportedAPIExports[0]: Invalid value: null: must be an object such as {export: kubernetes}, "
        "not a null",
        'spec.supportedAPIExports[1]: Invalid value: "kubernetes": must be an object, not a string',
    ]


def test_supported_api_export_needs_an_export() -> None:
    assert validate(with_spec(supportedAPIExports=[{"path": "root"}, {"export": ""}, {"export": 3}])) == [
        "spec.supportedAPIExports[0].export: Required value: name the APIExport, e.g. kubernetes",
        "spec.supportedAPIExports[1].export: Required value: name the APIExport, e.g. kubernetes",
        "spec.supportedAPIExports[2].export: Invalid value: 3: must be a string, not a number",
    ]


@pytest.mark.parametrize("path", ["Root:Org", "root::org", "root:", ":root", "root/org", "root:org\n"])
def test_supported_api_export_path_must_be_a_cluster_path(path: str) -> None:
    rendered = path.replace("\n", "\\n")
    assert validate(with_spec(supportedAPIExports=[{"export": "kubernetes", "path": path}])) == [
        f'spec.supportedAPIExports[0].path: Invalid value: "{rendered}": should match '
        "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$' (a logical-cluster path such "
        "as root:org:team); leave it empty for the SyncTarget's own workspace"
    ]


def test_supported_api_export_empty_path_means_own_workspace() -> None:
    assert validate(with_spec(supportedAPIExports=[{"export": "kubernetes", "path": ""}])) == []


def test_supported_api_exports_may_not_repeat_a_pair() -> None:
    exports = [
        {"export": "kubernetes"},
        {"export": "kubernetes", "path": ""},
        {"export": "kubernetes", "path": "root:compute"},
        {"export": "kubernetes", "path": "root:compute"},
        {"export": "other", "path": "root:compute"},
    ]
    assert validate(with_spec(supportedAPIExports=exports)) == [
        'spec.supportedAPIExports[1]: Duplicate value: {"export":"kubernetes"}: each (path, export) pair '
        "may be listed once; remove this entry",
        'spec.supportedAPIExports[3]: Duplicate value: {"export":"kubernetes","path":"root:compute"}: each '
        "(path, export) pair may be listed once; remove this entry",
    ]


def test_cells_must_be_label_keys_and_values() -> None:
    assert validate(with_spec(cells={"a/b/c": "x", "zone": "not ok", "rack": 4})) == [
        'spec.cells: Invalid value: "a/b/c": a valid label key must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
        "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
        "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        'spec.cells[zone]: Invalid value: "not ok": a valid label must be an empty string or consist of '
        "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character "
        "(e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
        "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        "spec.cells[rack]: Invalid value: 4: must be a string, not a number",
    ]
    assert validate(with_spec(cells=["a"])) == [
        'spec.cells: Invalid value: ["a"]: must be an object, not an array'
    ]


# --- status ---------------------------------------------------------------------------------------


def test_status_must_be_a_map() -> None:
    assert validate(sync_target(status=[])) == ["status: Invalid value: []: must be an object, not an array"]


def test_capacity_quantities() -> None:
    obj = with_status(capacity={"cpu": "four", "memory": "-1Gi", "pods": True, "a b": "1"}, allocatable={})
    assert validate(obj) == [
        'status.capacity[cpu]: Invalid value: "four": quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'; use a quantity such as 500m, 2, 1.5 or 4Gi",
        'status.capacity[memory]: Invalid value: "-1Gi": must be greater than or equal to 0',
        "status.capacity[pods]: Invalid value: true: must be a quantity such as 500m, 2, 1.5 or 4Gi, "
        "not a boolean",
        'status.capacity[a b]: Invalid value: "a b": name part must consist of alphanumeric characters, '
        "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or "
        "'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    ]


def test_allocatable_may_not_exceed_capacity() -> None:
    obj = with_status(capacity={"cpu": "4", "memory": "1Gi"}, allocatable={"cpu": "4001m", "memory": "1Gi"})
    assert validate(obj) == [
        'status.allocatable[cpu]: Invalid value: "4001m": must be less than or equal to capacity (4); '
        "lower status.allocatable[cpu] or raise status.capacity[cpu]"
    ]


def test_allocatable_without_capacity_is_not_compared() -> None:
    assert validate(with_status(capacity=None, allocatable={"cpu": "100"})) == []
    assert validate(with_status(capacity={"memory": "1Gi"}, allocatable={"cpu": "100"})) == []


def test_resource_list_of_the_wrong_type() -> None:
    assert validate(with_status(allocatable="4")) == [
        'status.allocatable: Invalid value: "4": must be an object, not a string'
    ]


def test_conditions() -> None:
    conditions = [
        None,
        {"status": "True", "lastTransitionTime": NOW},
        {"type": "Ready", "status": "Yes", "severity": "Fatal", "lastTransitionTime": "now"},
        {"type": "Ready", "status": "False", "reason": 1, "message": ["x"]},
        {"type": "Synced", "lastTransitionTime": NOW},
        "Ready",
    ]
    assert validate(with_status(conditions=conditions)) == [
        "status.conditions[0]: Invalid value: null: must be an object with type, status and "
        "lastTransitionTime, not a null",
        "status.conditions[1].type: Required value: name the condition, e.g. Ready",
        'status.conditions[2].status: Unsupported value: "Yes": supported values: "True", "False", "Unknown"',
        'status.conditions[2].severity: Unsupported value: "Fatal": supported values: "Error", "Warning", '
        '"Info", ""',
        'status.conditions[2].lastTransitionTime: Invalid value: "now": must be an RFC 3339 time such as '
        "2024-01-02T15:04:05Z",
        'status.conditions[3].type: Duplicate value: "Ready": each condition type may appear once; merge '
        "the entries",
        "status.conditions[3].lastTransitionTime: Required value: set it to the time the status last "
        "changed, e.g. 2024-01-02T15:04:05Z",
        "status.conditions[3].reason: Invalid value: 1: must be a string, not a number",
        'status.conditions[3].message: Invalid value: ["x"]: must be a string, not an array',
        "status.conditions[4].status: Required value: one of True, False or Unknown",
        'status.conditions[5]: Invalid value: "Ready": must be an object, not a string',
    ]
    assert validate(with_status(conditions={"Ready": "True"})) == [
        'status.conditions: Invalid value: {"Ready":"True"}: must be an array, not an object'
    ]
    assert validate(with_status(conditions=[{"type": 1, "status": "True", "lastTransitionTime": NOW}])) == [
        "status.conditions[0].type: Invalid value: 1: must be a string, not a number"
    ]


def test_synced_resources() -> None:
    resources = [
        None,
        {"group": "Apps", "resource": "Deployments", "versions": ["v1"]},
        {"group": "a.b", "versions": [], "state": "Ready", "identityHash": 5},
        {"group": 1, "resource": "x", "versions": "v1"},
        {"resource": "pods", "versions": ["v1", "", 2]},
        "pods",
    ]
    assert validate(with_status(syncedResources=resources)) == [
        "status.syncedResources[0]: Invalid value: null: must be an object with group, resource and "
        "versions, not a null",
        'status.syncedResources[1].group: Invalid value: "Apps": should match '
        "'^(|[a-z0-9]([-a-z0-9]*[a-z0-9](\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?)$' (an API group such as apps; "
        "empty for the core group)",
        'status.syncedResources[1].resource: Invalid value: "Deployments": should match '
        "'^[a-z][-a-z0-9]*[a-z0-9]$' (a lowercase plural such as deployments)",
        'status.syncedResources[2].group: Invalid value: "a.b": should match '
        "'^(|[a-z0-9]([-a-z0-9]*[a-z0-9](\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?)$' (an API group such as apps; "
        "empty for the core group)",
        "status.syncedResources[2].resource: Required value: name the resource in the plural, "
        "e.g. deployments",
        "status.syncedResources[2].versions: Required value: list at least one served version, e.g. [v1]",
        "status.syncedResources[2].identityHash: Invalid value: 5: must be a string, not a number",
        'status.syncedResources[2].state: Unsupported value: "Ready": supported values: "Pending", '
        '"Accepted", "Incompatible"',
        "status.syncedResources[3].group: Invalid value: 1: must be a string, not a number",
        "status.syncedResources[3].resource: Invalid value: \"x\": should match '^[a-z][-a-z0-9]*[a-z0-9]$' "
        "(a lowercase plural such as deployments)",
        'status.syncedResources[3].versions: Invalid value: "v1": must be an array, not a string',
        'status.syncedResources[4].versions[1]: Invalid value: "": must be a non-empty version name '
        "such as v1",
        "status.syncedResources[4].versions[2]: Invalid value: 2: must be a non-empty version name "
        "such as v1",
        'status.syncedResources[5]: Invalid value: "pods": must be an object, not a string',
    ]


@pytest.mark.parametrize("state", ["Pending", "Incompatible", "Accepted"])
def test_synced_resource_states(state: str) -> None:
    resources = [{"group": "", "resource": "configmaps", "versions": ["v1"], "state": state}]
    assert validate(with_status(syncedResources=resources)) == []


def test_virtual_workspaces() -> None:
    base = "https://shard.example.com"
    workspaces = [
        None,
        {},
        {"syncerURL": "shard/services/syncer/root/x", "upsyncerURL": 7},
        {"syncerURL": f"{base}/services/upsyncer/root/x", "upsyncerURL": f"{base}/services/syncer/root/x"},
        {
            "syncerURL": f"{base}/services/syncer/root//x",
            "upsyncerURL": f"{base}/services/upsyncer/root/x/u/extra",
        },
        "x",
    ]
    assert validate(with_status(virtualWorkspaces=workspaces)) == [
        "status.virtualWorkspaces[0]: Invalid value: null: must be an object with syncerURL and upsyncerURL, "
        "not a null",
        "status.virtualWorkspaces[1].syncerURL: Required value: the URL of the syncer virtual workspace of "
        "this SyncTarget",
        "status.virtualWorkspaces[1].upsyncerURL: Required value: the URL of the upsyncer virtual workspace "
        "of this SyncTarget",
        'status.virtualWorkspaces[2].syncerURL: Invalid value: "shard/services/syncer/root/x": must be an '
        "absolute URL with scheme http or https, such as https://example.com:6443/path",
        "status.virtualWorkspaces[2].upsyncerURL: Invalid value: 7: must be a string, not a number",
        'status.virtualWorkspaces[3].syncerURL: Invalid value: "https://shard.example.com/services/upsyncer/'
        'root/x": the path must end in /services/syncer/<logical cluster>/<SyncTarget name>[/<uid>], as the '
        "SyncTarget controller writes it",
        'status.virtualWorkspaces[3].upsyncerURL: Invalid value: "https://shard.example.com/services/syncer/'
        'root/x": the path must end in /services/upsyncer/<logical cluster>/<SyncTarget name>[/<uid>], as '
        "the SyncTarget controller writes it",
        'status.virtualWorkspaces[4].syncerURL: Invalid value: "https://shard.example.com/services/syncer/'
        'root//x": the path must end in /services/syncer/<logical cluster>/<SyncTarget name>[/<uid>], as the '
        "SyncTarget controller writes it",
        'status.virtualWorkspaces[4].upsyncerURL: Invalid value: "https://shard.example.com/services/upsyncer/'
        'root/x/u/extra": the path must end in /services/upsyncer/<logical cluster>/<SyncTarget name>'
        "[/<uid>], as the SyncTarget controller writes it",
        'status.virtualWorkspaces[5]: Invalid value: "x": must be an object, not a string',
    ]
    assert validate(with_status(virtualWorkspaces={})) == [
        "status.virtualWorkspaces: Invalid value: {}: must be an array, not an object"
    ]


def test_virtual_workspace_behind_a_shard_path() -> None:
    ws = {
        "syncerURL": "http://10.0.0.1:6443/prefix/services/syncer/root:org/us-west1",
        "upsyncerURL": "http://10.0.0.1:6443/prefix/services/upsyncer/root:org/us-west1/uid",
    }
    assert validate(with_status(virtualWorkspaces=[ws])) == []


def test_virtual_workspace_of_a_target_without_cluster_and_uid() -> None:
    # Go's path.Join drops the empty cluster and uid segments; the name alone remains.
    ws = {
        "syncerURL": "https://h/services/syncer/us-west1",
        "upsyncerURL": "https://h/services/upsyncer/us-west1",
    }
    assert validate(with_status(virtualWorkspaces=[ws])) == []


# --- heartbeat ------------------------------------------------------------------------------------


def test_heartbeat_within_the_skew_is_allowed() -> None:
    assert validate(with_status(lastSyncerHeartbeatTime="2024-01-02T15:05:05Z")) == []  # exactly 60 s ahead
    assert validate(with_status(lastSyncerHeartbeatTime="2020-01-01T00:00:00Z")) == []  # old is fine


def test_heartbeat_too_far_in_the_future_is_denied() -> None:
    assert validate(with_status(lastSyncerHeartbeatTime="2024-01-02T15:05:05.5Z")) == [
        'status.lastSyncerHeartbeatTime: Invalid value: "2024-01-02T15:05:05.5Z": is 1m1s in the future, '
        "more than the allowed clock skew of 1m0s; fix the syncer host's clock (NTP) or raise the "
        "heartbeatSkew setting of synctarget-validation"
    ]


@pytest.mark.parametrize("setting", ["2m", "1m30s", 120, 90.5])
def test_heartbeat_skew_setting(setting: object) -> None:
    obj = with_status(lastSyncerHeartbeatTime="2024-01-02T15:05:35Z")  # 90 s ahead
    assert validate(obj, settings={"heartbeatSkew": setting}) == []


def test_heartbeat_skew_of_zero() -> None:
    obj = with_status(lastSyncerHeartbeatTime="2024-01-02T15:04:06Z")
    assert validate(obj, settings={"heartbeatSkew": "0"}) == [
        'status.lastSyncerHeartbeatTime: Invalid value: "2024-01-02T15:04:06Z": is 1s in the future, more '
        "than the allowed clock skew of 0s; fix the syncer host's clock (NTP) or raise the heartbeatSkew "
        "setting of synctarget-validation"
    ]


def test_heartbeat_must_be_rfc3339() -> None:
    assert validate(with_status(lastSyncerHeartbeatTime="yesterday")) == [
        'status.lastSyncerHeartbeatTime: Invalid value: "yesterday": must be an RFC 3339 time such as '
        "2024-01-02T15:04:05Z"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("60", 'time: missing unit in duration "60"; use e.g. 60s or 2m'),
        ("-1s", "must not be negative, got '-1s'"),
        (-5, "must not be negative, got -5"),
        (True, "must be a duration such as 60s or a number of seconds, not bool"),
        ([1], "must be a duration such as 60s or a number of seconds, not list"),
    ],
)
def test_bad_heartbeat_skew_setting_is_a_configuration_error(setting: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        heartbeat_skew(setting)
    assert str(caught.value) == "synctarget-validation setting heartbeatSkew: " + message


def test_heartbeat_clock_defaults_to_now(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the real clock
    from datetime import UTC, datetime

    assert abs((synctarget.now() - datetime.now(UTC)).total_seconds()) < 5


# --- status subresource and ratcheting ------------------------------------------------------------


def test_status_subresource_checks_status_only() -> None:
    old = sync_target()
    obj = sync_target(spec={"evictAfter": "bad"}, metadata={"name": "x" * 300})
    obj["status"] = {**old["status"], "capacity": {"cpu": "-1"}}
    assert validate(obj, old, sub_resource="status") == [
        'status.capacity[cpu]: Invalid value: "-1": must be greater than or equal to 0'
    ]


def test_status_is_checked_on_main_resource_writes() -> None:
    assert validate(with_status(capacity={"cpu": "-1"})) == [
        'status.capacity[cpu]: Invalid value: "-1": must be greater than or equal to 0'
    ]


def test_unchanged_invalid_status_does_not_block_other_updates() -> None:
    old = with_status(conditions=[{"type": "Ready"}], lastSyncerHeartbeatTime="2099-01-01T00:00:00Z")
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"note": "x"}
    assert validate(new, old) == []


def test_only_changed_status_sections_are_checked() -> None:
    old = with_status(conditions=[{"type": "Ready"}])
    new = copy.deepcopy(old)
    new["status"]["lastSyncerHeartbeatTime"] = "not a time"
    assert validate(new, old, sub_resource="status") == [
        'status.lastSyncerHeartbeatTime: Invalid value: "not a time": must be an RFC 3339 time such as '
        "2024-01-02T15:04:05Z"
    ]


def test_lowering_capacity_below_unchanged_allocatable_is_denied() -> None:
    old = with_status(capacity={"cpu": "8"}, allocatable={"cpu": "6", "memory": "oops"})
    new = copy.deepcopy(old)
    new["status"]["capacity"] = {"cpu": "4"}
    assert validate(new, old, sub_resource="status") == [
        'status.allocatable[cpu]: Invalid value: "6": must be less than or equal to capacity (4); '
        "lower status.allocatable[cpu] or raise status.capacity[cpu]"
    ]


def test_status_over_an_old_status_of_the_wrong_type() -> None:
    old = sync_target(status="garbage")
    assert validate(with_status(capacity={"cpu": "-1"}), old) == [
        'status.capacity[cpu]: Invalid value: "-1": must be greater than or equal to 0'
    ]


# --- synctarget-deletion-protection ---------------------------------------------------------------


def protected(value: str = "true") -> dict[str, Any]:
    return sync_target(metadata={"name": "us-west1", "annotations": {"tmc.kcp.io/deletion-protected": value}})


def delete(old: Any, **kwargs: Any) -> Verdict | None:
    kwargs.setdefault("name", "us-west1")
    return sync_target_deletion_protection(
        build_request(SYNC_TARGET, None, old, operation="DELETE", **kwargs)
    )


def test_delete_of_a_protected_sync_target_is_denied() -> None:
    assert messages(delete(protected())) == [
        'metadata.annotations[tmc.kcp.io/deletion-protected]: Forbidden: SyncTarget "us-west1" is '
        "protected from deletion; to delete it, first remove the protection: kubectl annotate synctarget "
        "us-west1 tmc.kcp.io/deletion-protected-"
    ]


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "1", "t"])
def test_protection_accepts_go_true_values(value: str) -> None:
    assert delete(protected(value)) is not None


@pytest.mark.parametrize("value", ["false", "", "yes", "no"])
def test_protection_lifted(value: str) -> None:
    assert delete(protected(value)) is None


def test_delete_of_an_unprotected_sync_target_is_allowed() -> None:
    assert delete(sync_target()) is None
    assert delete(sync_target(metadata={"name": "us-west1", "annotations": "x"})) is None
    assert delete(sync_target(metadata="x")) is None


def test_delete_without_old_object_asks_the_lookup() -> None:
    assert delete(None, lookup_objects=[protected()]) is not None
    assert delete(None, lookup_objects=[sync_target()]) is None
    assert delete(None) is None
    assert delete(None, name="", lookup_objects=[protected()]) is None


def test_delete_message_without_a_name() -> None:
    assert messages(delete(protected(), name=""))[0].endswith(
        "kubectl annotate synctarget us-west1 tmc.kcp.io/deletion-protected-"
    )


# --- synctarget-defaults --------------------------------------------------------------------------


def defaults(obj: Any, old: Any = None, **kwargs: Any) -> Verdict | None:
    return sync_target_defaults(build_request(SYNC_TARGET, obj, old, **kwargs))


def apply(obj: dict[str, Any], verdict: Verdict | None) -> dict[str, Any]:
    assert verdict is not None
    patched: dict[str, Any] = jsonpatch.apply_patch(obj, list(verdict.patch))
    return patched


def test_defaults_on_an_object_without_spec() -> None:
    obj = {"metadata": {"name": "us-west1"}}
    verdict = defaults(obj)
    assert verdict is not None
    assert list(verdict.patch) == [
        {
            "op": "add",
            "path": "/spec",
            "value": {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]},
        },
        {"op": "add", "path": "/metadata/labels", "value": {KEY_LABEL: KEY}},
    ]
    assert verdict.warnings == []
    assert validate(apply(obj, verdict)) == []


def test_defaults_fill_absent_and_null_fields() -> None:
    obj = {"metadata": {"name": "us-west1", "labels": {"a": "b"}}, "spec": {"unschedulable": None}}
    verdict = defaults(obj)
    assert verdict is not None
    assert list(verdict.patch) == [
        {"op": "add", "path": "/spec/unschedulable", "value": False},
        {"op": "add", "path": "/spec/supportedAPIExports", "value": [{"export": "kubernetes"}]},
        {"op": "add", "path": "/metadata/labels/internal.workload.kcp.io~1key", "value": KEY},
    ]
    assert apply(obj, verdict)["metadata"]["labels"] == {"a": "b", KEY_LABEL: KEY}


def test_defaults_never_override_explicit_values() -> None:
    obj = {
        "metadata": {"name": "us-west1", "labels": {KEY_LABEL: KEY}},
        "spec": {"unschedulable": True, "supportedAPIExports": []},
    }
    assert defaults(obj) is None
    assert defaults(obj, copy.deepcopy(obj)) is None


def test_defaults_on_update_fill_a_field_the_user_dropped() -> None:
    old = sync_target()
    new = copy.deepcopy(old)
    del new["spec"]["unschedulable"]
    verdict = defaults(new, old)
    assert verdict is not None
    assert list(verdict.patch) == [{"op": "add", "path": "/spec/unschedulable", "value": False}]


def test_defaults_are_fresh_objects_per_request() -> None:
    first, second = defaults({"metadata": {"name": "a"}}), defaults({"metadata": {"name": "a"}})
    assert first is not None and second is not None
    assert first.patch[0]["value"] is not second.patch[0]["value"]


def test_defaults_replace_a_wrong_key_label_with_a_warning() -> None:
    obj = sync_target(metadata={"name": "us-west1", "labels": {KEY_LABEL: "wrong"}})
    verdict = defaults(obj)
    assert verdict is not None
    assert list(verdict.patch) == [
        {"op": "add", "path": "/metadata/labels/internal.workload.kcp.io~1key", "value": KEY}
    ]
    assert verdict.warnings == [
        f'metadata.labels[{KEY_LABEL}]: replaced "wrong" with "{KEY}", the key of SyncTarget "us-west1" in '
        'logical cluster "root:org:ws"'
    ]


def test_defaults_use_the_request_cluster() -> None:
    verdict = defaults({"metadata": {"name": "us-west1"}, "spec": {}}, cluster="")
    assert verdict is not None
    label_op = verdict.patch[-1]
    assert label_op["path"] == "/metadata/labels"
    assert label_op["value"][KEY_LABEL] != KEY


@pytest.mark.parametrize(
    "obj",
    [
        ["not", "an", "object"],
        {"metadata": "x", "spec": "y"},
        {"metadata": {"name": 5}, "spec": []},
        {"metadata": {"name": ""}, "spec": {"unschedulable": False, "supportedAPIExports": []}},
        {
            "metadata": {"name": "us-west1", "labels": "x"},
            "spec": {"unschedulable": 0, "supportedAPIExports": 1},
        },
    ],
)
def test_defaults_leave_wrongly_typed_input_to_validation(obj: Any) -> None:
    assert defaults(obj) is None
