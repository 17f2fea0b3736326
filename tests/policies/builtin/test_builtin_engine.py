"""The built-in policies through the Engine: registration on import, mutation then validation, settings."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest

from kcp_tmc.policies import REGISTRY, SYNC_TARGET, AdmissionRequest, StaticLookup
from kcp_tmc.policies.config import EngineConfig, PolicyConfig
from kcp_tmc.policies.engine import Engine
from kcp_tmc.policies.kinds import CLUSTER, LOCATION, ResourceType
from tests.policies.builtin.helpers import BUILTIN_POLICIES

KEY = "6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g"  # root:org:ws / us-west1


def review(
    rtype: ResourceType,
    operation: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    sub_resource: str = "",
    name: str = "",
) -> AdmissionRequest:
    request: dict[str, Any] = {
        "uid": "u-1",
        "kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "resource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
        "operation": operation,
        "name": name or ((obj or old or {}).get("metadata") or {}).get("name", ""),
        "object": obj,
        "oldObject": old,
        "userInfo": {"username": "alice"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return request  # type: ignore[return-value]


def in_ws(obj: dict[str, Any]) -> dict[str, Any]:
    obj.setdefault("metadata", {}).setdefault("annotations", {})["kcp.io/cluster"] = "root:org:ws"
    return obj


@pytest.fixture
def engine() -> Any:
    with Engine(REGISTRY, isolation="inline") as eng:
        yield eng


def test_importing_the_package_registers_every_builtin_policy() -> None:
    module = importlib.import_module("kcp_tmc.policies.builtin")
    importlib.reload(module)  # registering the same functions again is a no-op, not a conflict
    assert BUILTIN_POLICIES - {p.name for p in REGISTRY} == set()


def test_create_sync_target_is_defaulted_then_validated(engine: Engine) -> None:
    obj = in_ws(
        {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "us-west1"}}
    )
    outcome = engine.evaluate(review(SYNC_TARGET, "CREATE", obj), want_patched=True)
    assert outcome.allowed, outcome.message
    assert outcome.patched is not None
    assert outcome.patched["spec"] == {
        "unschedulable": False,
        "supportedAPIExports": [{"export": "kubernetes"}],
    }
    assert outcome.patched["metadata"]["labels"] == {"internal.workload.kcp.io/key": KEY}
    assert jsonpatch.apply_patch(obj, list(outcome.patch)) == outcome.patched


def test_denial_lines_name_the_policy_and_field(engine: Engine) -> None:
    obj = in_ws({"metadata": {"name": "us-west1"}, "spec": {"evictAfter": "later"}})
    outcome = engine.evaluate(review(SYNC_TARGET, "CREATE", obj))
    assert not outcome.allowed
    assert outcome.code == 403
    assert outcome.message == (
        '[synctarget-validation] spec.evictAfter: Invalid value: "later": must be an RFC 3339 time such '
        "as 2024-01-02T15:04:05Z"
    )


def test_mutation_repairs_a_tampered_key_label_on_update(engine: Engine) -> None:
    old = in_ws(
        {"metadata": {"name": "us-west1", "labels": {"internal.workload.kcp.io/key": KEY}}, "spec": {}}
    )
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["internal.workload.kcp.io/key"] = "mine"
    outcome = engine.evaluate(review(SYNC_TARGET, "UPDATE", new, old), want_patched=True)
    assert outcome.allowed, outcome.message
    assert outcome.patched is not None
    assert outcome.patched["metadata"]["labels"]["internal.workload.kcp.io/key"] == KEY
    assert any('replaced "mine"' in w for w in outcome.warnings)


def test_validate_phase_alone_denies_a_tampered_key_label(engine: Engine) -> None:
    old = in_ws(
        {"metadata": {"name": "us-west1", "labels": {"internal.workload.kcp.io/key": KEY}}, "spec": {}}
    )
    new = copy.deepcopy(old)
    del new["metadata"]["labels"]["internal.workload.kcp.io/key"]
    outcome = engine.evaluate(review(SYNC_TARGET, "UPDATE", new, old), phase="validate")
    assert outcome.message == (
        "[synctarget-validation] metadata.labels[internal.workload.kcp.io/key]: Forbidden: may not be "
        f'removed once set; restore it to "{KEY}", the key of SyncTarget "us-west1" in logical cluster '
        '"root:org:ws"'
    )


def test_status_subresource_runs_validation_only(engine: Engine) -> None:
    old = in_ws({"metadata": {"name": "us-west1"}, "spec": {}, "status": {}})
    new = copy.deepcopy(old)
    new["status"]["capacity"] = {"cpu": "-1"}
    request = review(SYNC_TARGET, "UPDATE", new, old, sub_resource="status")
    assert {p.name for p in engine.select(request)} == {"synctarget-validation"}
    outcome = engine.evaluate(request)
    assert outcome.message == (
        '[synctarget-validation] status.capacity[cpu]: Invalid value: "-1": '
        "must be greater than or equal to 0"
    )


def test_heartbeat_skew_comes_from_the_configuration(fixed_now: Callable[[str], None]) -> None:
    fixed_now("2024-01-02T15:04:05Z")
    obj = in_ws(
        {
            "metadata": {"name": "us-west1"},
            "spec": {},
            "status": {"lastSyncerHeartbeatTime": "2024-01-02T15:06:05Z"},
        }
    )
    request = review(
        SYNC_TARGET, "UPDATE", obj, in_ws({"metadata": {"name": "us-west1"}, "spec": {}}), "status"
    )
    with Engine(REGISTRY, isolation="inline") as default_engine:
        assert not default_engine.evaluate(request).allowed
    config = EngineConfig(policies={"synctarget-validation": PolicyConfig(settings={"heartbeatSkew": "5m"})})
    with Engine(REGISTRY, config, isolation="inline") as tolerant:
        assert tolerant.evaluate(request).allowed


def test_bad_heartbeat_skew_setting_fails_the_policy(fixed_now: Callable[[str], None]) -> None:
    fixed_now("2024-01-02T15:04:05Z")
    obj = in_ws(
        {
            "metadata": {"name": "us-west1"},
            "spec": {},
            "status": {"lastSyncerHeartbeatTime": "2024-01-02T15:04:05Z"},
        }
    )
    config = EngineConfig(
        policies={"synctarget-validation": PolicyConfig(settings={"heartbeatSkew": "soon"})}
    )
    with Engine(REGISTRY, config, isolation="inline") as eng:
        outcome = eng.evaluate(review(SYNC_TARGET, "CREATE", obj))
    assert outcome.code == 500
    assert outcome.message == (
        "[synctarget-validation] policy failed: ValueError: synctarget-validation setting heartbeatSkew: "
        'time: invalid duration "soon"; use e.g. 60s or 2m'
    )


def test_protected_sync_target_delete(engine: Engine) -> None:
    old = in_ws({"metadata": {"name": "us-west1", "annotations": {"tmc.kcp.io/deletion-protected": "true"}}})
    outcome = engine.evaluate(review(SYNC_TARGET, "DELETE", None, old))
    assert outcome.message == (
        "[synctarget-deletion-protection] metadata.annotations[tmc.kcp.io/deletion-protected]: Forbidden: "
        'SyncTarget "us-west1" is protected from deletion; to delete it, first remove the protection: '
        "kubectl annotate synctarget us-west1 tmc.kcp.io/deletion-protected-"
    )
    lookup = StaticLookup([{"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", **old}])
    assert not engine.evaluate(
        review(SYNC_TARGET, "DELETE", None, None, name="us-west1"), lookup=lookup
    ).allowed


def test_cluster_create_is_defaulted_then_validated(engine: Engine) -> None:
    obj = {
        "metadata": {"name": "east"},
        "spec": {"kubeconfigSecretRef": {"namespace": "tmc", "name": "east"}},
    }
    outcome = engine.evaluate(review(CLUSTER, "CREATE", obj), want_patched=True)
    assert outcome.allowed, outcome.message
    assert outcome.patched is not None
    assert outcome.patched["spec"] == {
        "kubeconfigSecretRef": {"namespace": "tmc", "name": "east", "key": "kubeconfig"},
        "syncMode": "Push",
        "unschedulable": False,
        "syncTargetName": "east",
    }


def test_cluster_update_keeps_the_defaulted_sync_target_name(engine: Engine) -> None:
    old: dict[str, Any] = {
        "metadata": {"name": "east"},
        "spec": {"kubeconfigSecretRef": {"namespace": "tmc", "name": "east"}},
    }
    new = copy.deepcopy(old)
    new["spec"]["syncTargetName"] = "west"
    outcome = engine.evaluate(review(CLUSTER, "UPDATE", new, old))
    assert outcome.message == (
        '[cluster-validation] spec.syncTargetName: Forbidden: may not be changed from "east" to "west" after '
        "the Cluster is created; to publish the cluster under another name, delete and re-create the Cluster"
    )


def test_location_denial_lists_every_error(engine: Engine) -> None:
    obj = {
        "metadata": {"name": "l"},
        "spec": {"resource": {"group": "apps", "version": "v1alpha1", "resource": "x"}},
    }
    outcome = engine.evaluate(review(LOCATION, "CREATE", obj))
    assert outcome.message.splitlines() == [
        '[location-validation] spec.resource.group: Unsupported value: "apps": '
        'supported values: "workload.kcp.io"',
        '[location-validation] spec.resource.resource: Unsupported value: "x": '
        'supported values: "synctargets"',
    ]
