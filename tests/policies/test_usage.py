"""Tests of the quota usage model."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kcp_tmc.policies.quantities import Quantity, format_list, parse_quantity
from kcp_tmc.policies.usage import (
    Usage,
    canonical_resource,
    change,
    pod_usage,
    sync_targets_of,
    total,
    usage_of,
)


def c(
    name: str, requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if requests:
        res["requests"] = requests
    if limits:
        res["limits"] = limits
    return {"name": name, "resources": res, **kw}


def pod(spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", **meta}, "spec": spec}


def shown(use: dict[str, Quantity]) -> dict[str, str]:
    return format_list(use)


def test_app_containers_sum_and_request_defaults_to_limit() -> None:
    spec = {"containers": [c("a", {"cpu": "100m"}, {"cpu": "1"}), c("b", None, {"memory": "1Gi"})]}
    assert shown(pod_usage(pod(spec))) == {
        "limits.cpu": "1",
        "limits.memory": "1Gi",
        "pods": "1",
        "requests.cpu": "100m",
        "requests.memory": "1Gi",
    }


def test_init_container_larger_than_apps_wins() -> None:
    spec = {"containers": [c("a", {"cpu": "200m"})], "initContainers": [c("i", {"cpu": "500m"})]}
    assert shown(pod_usage(pod(spec)))["requests.cpu"] == "500m"


def test_sidecar_init_container_is_added_to_the_app_side() -> None:
    spec = {
        "containers": [c("a", {"cpu": "200m"})],
        "initContainers": [c("side", {"cpu": "100m"}, restartPolicy="Always"), c("i", {"cpu": "250m"})],
    }
    # apps 200m + sidecar 100m = 300m; the later init container runs beside the sidecar: 350m.
    assert shown(pod_usage(pod(spec)))["requests.cpu"] == "350m"


def test_overhead_adds_to_requests_and_to_set_limits_only() -> None:
    spec = {
        "containers": [c("a", {"cpu": "1", "memory": "1Gi"}, {"cpu": "2"})],
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }
    use = shown(pod_usage(pod(spec)))
    assert use["requests.cpu"] == "1250m"
    assert use["requests.memory"] == "1144Mi"
    assert use["limits.cpu"] == "2250m"
    assert "limits.memory" not in use


def test_terminal_pods_use_nothing() -> None:
    for phase in ("Succeeded", "Failed"):
        obj = pod({"containers": [c("a", {"cpu": "1"})]})
        obj["status"] = {"phase": phase}
        assert pod_usage(obj) == {}


def deployment(replicas: Any = 3, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": labels},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [c("a", {"cpu": "500m"})]}}},
    }


def test_templates_times_replicas_and_counts() -> None:
    use = usage_of(deployment(3), "apps", "Deployment", "deployments")
    assert shown(use.overall()) == {"count/deployments.apps": "1", "pods": "3", "requests.cpu": "1500m"}
    assert shown(usage_of(deployment(None), "apps", "Deployment", "deployments").overall())["pods"] == "1"
    job = {
        "kind": "Job",
        "spec": {"parallelism": 4, "template": {"spec": {"containers": [c("a", {"cpu": "1"})]}}},
    }
    assert shown(usage_of(job, "batch", "Job", "jobs").overall())["requests.cpu"] == "4"
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert shown(usage_of(job, "batch", "Job", "jobs").overall()) == {"count/jobs.batch": "1"}


def test_statefulset_claims_count_storage_per_replica() -> None:
    sts = {
        "spec": {
            "replicas": 2,
            "template": {"spec": {"containers": [c("a", {"cpu": "1"})]}},
            "volumeClaimTemplates": [{"spec": {"resources": {"requests": {"storage": "10Gi"}}}}],
        }
    }
    assert shown(usage_of(sts, "apps", "StatefulSet", "statefulsets").overall())["requests.storage"] == "20Gi"


def test_owned_objects_count_only_as_objects() -> None:
    rs = deployment(2)
    rs["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "controller": True}]
    assert shown(usage_of(rs, "apps", "ReplicaSet", "replicasets").overall()) == {
        "count/replicasets.apps": "1"
    }
    cm = {"metadata": {"name": "x"}}
    assert shown(usage_of(cm, "", "ConfigMap", "configmaps").overall()) == {"count/configmaps": "1"}
    assert usage_of(None, "", "Pod", "pods") == Usage()


def test_sync_targets_and_multiplicity() -> None:
    labels = {
        "state.workload.kcp.io/k1": "Sync",
        "state.workload.kcp.io/k2": "Sync",
        "state.workload.kcp.io/k3": "",
    }
    obj = deployment(1, **labels)
    assert sync_targets_of(obj) == {"k1", "k2"}
    use = usage_of(obj, "apps", "Deployment", "deployments")
    assert shown(use.overall())["requests.cpu"] == "1"
    assert shown(use.on("k1")) == {"count/deployments.apps": "1", "pods": "1", "requests.cpu": "500m"}
    assert use.on("k3") == {}


def test_relabel_costs_nothing_and_scale_up_the_difference() -> None:
    old = usage_of(deployment(2, **{"state.workload.kcp.io/a": "Sync"}), "apps", "Deployment", "deployments")
    moved = usage_of(
        deployment(2, **{"state.workload.kcp.io/b": "Sync"}), "apps", "Deployment", "deployments"
    )
    overall, per_target = change(moved, old)
    assert overall == {}
    assert shown(per_target["b"])["requests.cpu"] == "1"
    assert shown(per_target["a"])["requests.cpu"] == "-1"
    scaled = usage_of(
        deployment(5, **{"state.workload.kcp.io/a": "Sync"}), "apps", "Deployment", "deployments"
    )
    assert shown(change(scaled, old)[0]) == {"pods": "3", "requests.cpu": "1500m"}


def test_canonical_names() -> None:
    assert canonical_resource("cpu") == "requests.cpu"
    assert canonical_resource("limits.cpu") == "limits.cpu"
    assert canonical_resource("services") == "count/services"
    assert canonical_resource("requests.nvidia.com/gpu") == "requests.nvidia.com/gpu"


millis = st.integers(min_value=0, max_value=10**6)


def dep(cpu: int, replicas: int, targets: frozenset[str]) -> Usage:
    obj = deployment(replicas, **{f"state.workload.kcp.io/{t}": "Sync" for t in targets})
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = f"{cpu}m"
    return usage_of(obj, "apps", "Deployment", "deployments")


targets = st.frozensets(st.sampled_from(["a", "b", "c"]))


@given(millis, st.integers(0, 20), targets, millis, st.integers(0, 20), targets)
def test_change_is_antisymmetric(
    c1: int, r1: int, t1: frozenset[str], c2: int, r2: int, t2: frozenset[str]
) -> None:
    a, b = dep(c1, r1, t1), dep(c2, r2, t2)
    forward, forward_t = change(a, b)
    backward, backward_t = change(b, a)
    assert forward == {k: -v for k, v in backward.items()}
    assert forward_t == {t: {k: -v for k, v in d.items()} for t, d in backward_t.items()}


@given(st.lists(st.tuples(millis, st.integers(0, 20), targets), max_size=8))
def test_aggregation_equals_sum_of_parts_and_never_goes_negative(
    items: list[tuple[int, int, frozenset[str]]],
) -> None:
    uses = [dep(*item) for item in items]
    used: dict[str, Quantity] = {}
    for use in uses:  # reserve one by one, as admission does
        used = total([used, change(use, Usage())[0]])
        assert all(v >= Quantity(0) for v in used.values())
    assert {k: v for k, v in used.items() if v} == {
        k: v for k, v in total(u.overall() for u in uses).items() if v
    }
    for use in uses:  # release them all: back to zero, never below
        used = total([used, change(Usage(), use)[0]])
        assert all(v >= parse_quantity("0") for v in used.values())
    assert not any(used.values())
