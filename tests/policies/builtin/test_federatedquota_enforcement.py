"""Tests of quota-enforcement and of the reservation arithmetic: every message, word for word."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import pytest

from kcp_tmc.policies import REGISTRY, PolicyRequest, PolicyType, StaticLookup
from kcp_tmc.policies.builtin.quotaenforcement import quota_enforcement
from kcp_tmc.policies.engine import Engine
from kcp_tmc.policies.keys import state_label, sync_target_key
from kcp_tmc.policies.kinds import FEDERATED_QUOTA, RESOURCE_QUOTA, ResourceType
from kcp_tmc.policies.policy import Reservation
from kcp_tmc.policies.quantities import Quantity, parse_quantity
from kcp_tmc.policies.quota import QUOTA_EXCEEDED, apply_reservation, binding_quotas
from kcp_tmc.policies.registry import Registry
from tests.policies.builtin.helpers import build_request, messages

CLUSTER = "root:org:ws"
FIX = "lower the request or raise spec.overall of FederatedQuota default/team-a"
GROUPS = {"pods": "", "deployments": "apps", "replicasets": "apps", "statefulsets": "apps", "jobs": "batch"}
KINDS = {"pods": "Pod", "deployments": "Deployment", "configmaps": "ConfigMap", "jobs": "Job"}


def fq(
    overall: dict[str, str],
    used: dict[str, str] | None,
    *,
    name: str = "team-a",
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    static: list[dict[str, Any]] | None = None,
    aggregated: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "resourceVersion": "7"}
    meta["annotations"] = {"kcp.io/cluster": CLUSTER, **(annotations or {})}
    obj: dict[str, Any] = {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "FederatedQuota",
        "metadata": meta,
        "spec": {"overall": overall},
    }
    if static is not None:
        obj["spec"]["staticAssignments"] = static
    if used is not None:
        obj["status"] = {"overall": overall, "overallUsed": used}
        if aggregated is not None:
            obj["status"]["aggregatedStatus"] = aggregated
    return obj


def container(name: str = "app", cpu: str | None = "2", memory: str | None = None) -> dict[str, Any]:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"name": name, "image": "nginx", "resources": {"requests": requests}}


def pod(
    *containers: dict[str, Any], labels: dict[str, str] | None = None, name: str = "web"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
        "spec": {"containers": list(containers) or [container()]},
    }


def deployment(replicas: int, cpu: str = "1", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels or {}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [container(cpu=cpu)]}}},
    }


def request(
    plural: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    objects: Sequence[dict[str, Any]] = (),
    *,
    namespace: str = "default",
    sub_resource: str = "",
    kind: tuple[str, str] | None = None,
) -> PolicyRequest:
    rtype = ResourceType(GROUPS.get(plural, ""), "v1", KINDS.get(plural, "Pod"), plural, namespaced=True)
    return build_request(
        rtype,
        obj,
        old,
        sub_resource=sub_resource,
        cluster=CLUSTER,
        lookup_objects=objects,
        name=(obj or old or {}).get("metadata", {}).get("name", ""),
        namespace=namespace,
        kind=kind,
    )


def q(text: str) -> Quantity:
    return parse_quantity(text)


def test_registered() -> None:
    policy = REGISTRY.get("quota-enforcement")
    assert policy is not None
    assert policy.type is PolicyType.VALIDATING
    assert policy.side_effects
    assert {t.kind for t in policy.kinds} == {
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "Job",
        "Scale",
        "ConfigMap",
        "Workspace",
    }
    assert policy.subresources == {"", "scale"}


def test_no_quota_no_opinion() -> None:
    assert quota_enforcement(request("pods", pod())) is None


def test_pod_over_the_overall_limit_is_denied_in_kubernetes_words() -> None:
    verdict = quota_enforcement(request("pods", pod(), objects=[fq({"cpu": "8"}, {"cpu": "7"})]))
    assert verdict is not None
    assert verdict.reason == QUOTA_EXCEEDED
    assert messages(verdict) == [
        f"spec.containers: exceeded quota: team-a, requested: cpu=2, used: cpu=7, limited: cpu=8; {FIX}"
    ]


def test_several_resources_are_sorted_and_comma_joined() -> None:
    quota = fq(
        {"requests.memory": "1Gi", "cpu": "2", "pods": "10"},
        {"requests.memory": "1Gi", "cpu": "1", "pods": "0"},
    )
    verdict = quota_enforcement(request("pods", pod(container(memory="1Mi")), objects=[quota]))
    assert messages(verdict) == [
        "spec.containers: exceeded quota: team-a, requested: cpu=2,requests.memory=1Mi, "
        f"used: cpu=1,requests.memory=1Gi, limited: cpu=2,requests.memory=1Gi; {FIX}"
    ]


def test_a_fitting_pod_is_allowed_with_a_reservation() -> None:
    verdict = quota_enforcement(
        request("pods", pod(), objects=[fq({"cpu": "8", "pods": "3"}, {"cpu": "6", "pods": "0"})])
    )
    assert verdict is not None and verdict.allowed
    assert verdict.reservations == (
        Reservation(
            policy="quota-enforcement",
            quota=FEDERATED_QUOTA,
            namespace="default",
            name="team-a",
            overall={"cpu": q("2"), "pods": q("1")},
            per_target={},
            path="spec.containers",
        ),
    )


def test_a_container_without_a_cpu_request_is_denied_once_cpu_is_constrained() -> None:
    spec = pod(container("app", cpu=None), container("side", cpu=None, memory="1Mi"), container("ok"))
    spec["spec"]["initContainers"] = [container("init", cpu=None)]
    quota = fq({"requests.cpu": "8", "limits.memory": "1Gi"}, {"requests.cpu": "0", "limits.memory": "0"})
    assert messages(quota_enforcement(request("pods", spec, objects=[quota]))) == [
        "spec.containers: failed quota: team-a: must specify limits.memory for: app,init,ok,side; "
        "requests.cpu for: app,init,side; set resources.requests and resources.limits on every container"
    ]


def test_a_limit_stands_for_the_request_it_defaults() -> None:
    spec = pod({"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Mi"}}})
    quota = fq({"cpu": "8", "limits.memory": "1Gi"}, {"cpu": "0", "limits.memory": "0"})
    verdict = quota_enforcement(request("pods", spec, objects=[quota]))
    assert verdict is not None and verdict.allowed


def test_deployment_scale_up_costs_the_difference() -> None:
    quota = fq({"cpu": "4"}, {"cpu": "3"})
    verdict = quota_enforcement(request("deployments", deployment(3), deployment(2), [quota]))
    assert verdict is not None and [r.overall for r in verdict.reservations] == [{"cpu": q("1")}]
    denied = quota_enforcement(request("deployments", deployment(5), deployment(2), [quota]))
    assert messages(denied) == [
        f"spec.replicas: exceeded quota: team-a, requested: cpu=3, used: cpu=3, limited: cpu=4; {FIX}"
    ]


def test_template_change_names_the_containers() -> None:
    quota = fq({"cpu": "4"}, {"cpu": "3"})
    denied = quota_enforcement(request("deployments", deployment(2, cpu="2"), deployment(2), [quota]))
    assert messages(denied) == [
        "spec.template.spec.containers: exceeded quota: team-a, requested: cpu=2, used: cpu=3, "
        f"limited: cpu=4; {FIX}"
    ]


def test_relabel_and_scale_down_cost_nothing_even_above_a_lowered_limit() -> None:
    quota = fq({"cpu": "1"}, {"cpu": "9"})
    assert (
        quota_enforcement(request("deployments", deployment(3, labels={"a": "b"}), deployment(3), [quota]))
        is None
    )
    assert quota_enforcement(request("deployments", deployment(1), deployment(3), [quota])) is None


def test_job_parallelism_is_the_multiplier() -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "batch", "namespace": "default"},
        "spec": {"parallelism": 3, "template": {"spec": {"containers": [container(cpu="1")]}}},
    }
    older = copy.deepcopy(job)
    older["spec"]["parallelism"] = 1
    denied = quota_enforcement(request("jobs", job, older, [fq({"cpu": "2"}, {"cpu": "1"})]))
    assert messages(denied) == [
        f"spec.parallelism: exceeded quota: team-a, requested: cpu=2, used: cpu=1, limited: cpu=2; {FIX}"
    ]


def scale(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas},
    }


def test_scale_subresource_reads_the_workload_through_the_lookup() -> None:
    objects = [fq({"cpu": "4"}, {"cpu": "2"}), deployment(2)]
    kind = ("autoscaling", "Scale")
    denied = quota_enforcement(
        request("deployments", scale(5), scale(2), objects, sub_resource="scale", kind=kind)
    )
    assert messages(denied) == [
        f"spec.replicas: exceeded quota: team-a, requested: cpu=3, used: cpu=2, limited: cpu=4; {FIX}"
    ]
    allowed = quota_enforcement(
        request("deployments", scale(3), scale(2), objects, sub_resource="scale", kind=kind)
    )
    assert allowed is not None and [r.overall for r in allowed.reservations] == [{"cpu": q("1")}]
    gone = [fq({"cpu": "4"}, {"cpu": "2"})]
    assert (
        quota_enforcement(request("deployments", scale(9), scale(2), gone, sub_resource="scale", kind=kind))
        is None
    )
    assert (
        quota_enforcement(request("pods", scale(9), scale(2), objects, sub_resource="scale", kind=kind))
        is None
    )


def test_other_subresources_and_unknown_resources_are_ignored() -> None:
    quota = [fq({"cpu": "1"}, {"cpu": "1"})]
    assert quota_enforcement(request("pods", pod(), pod(), quota, sub_resource="status")) is None
    assert quota_enforcement(request("widgets", pod(), None, quota)) is None


def test_static_assignment_of_the_target_the_pod_is_placed_on() -> None:
    east = sync_target_key(CLUSTER, "east")
    quota = fq(
        {"cpu": "10"},
        {"cpu": "3"},
        static=[{"syncTarget": "east", "hard": {"cpu": "4"}}, {"syncTarget": "west", "hard": {"cpu": "6"}}],
        aggregated=[{"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"cpu": "3"}}],
    )
    placed = pod(labels={state_label(east): "Sync"})
    assert messages(quota_enforcement(request("pods", placed, objects=[quota]))) == [
        "spec.containers: exceeded quota: team-a (static assignment of SyncTarget east), requested: cpu=2, "
        "used: cpu=3, limited: cpu=4; lower the request or raise "
        "spec.staticAssignments[syncTarget=east].hard of FederatedQuota default/team-a"
    ]
    west = sync_target_key(CLUSTER, "west")
    verdict = quota_enforcement(request("pods", pod(labels={state_label(west): "Sync"}), objects=[quota]))
    assert verdict is not None
    assert [dict(r.per_target) for r in verdict.reservations] == [{"west": {"cpu": q("2")}}]


def test_a_reservation_on_an_assigned_target_carries_the_overall_resources_its_entry_shows() -> None:
    east = sync_target_key(CLUSTER, "east")
    quota = fq(
        {"cpu": "10", "count/deployments.apps": "5"},
        {"cpu": "1", "count/deployments.apps": "1"},
        static=[{"syncTarget": "east", "hard": {"cpu": "4"}}],
        aggregated=[
            {"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"count/deployments.apps": "1", "cpu": "1"}}
        ],
    )
    placed = deployment(2, labels={state_label(east): "Sync"})
    verdict = quota_enforcement(request("deployments", placed, objects=[quota]))
    assert verdict is not None and not verdict.errors
    [reserved] = verdict.reservations
    assert dict(reserved.per_target) == {"east": {"cpu": q("2"), "count/deployments.apps": q("1")}}
    status, denial = apply_reservation(quota, reserved, CLUSTER)
    assert denial is None and status is not None
    assert status["aggregatedStatus"] == [
        {"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"count/deployments.apps": "2", "cpu": "3"}}
    ]


def test_a_deployment_one_too_many_names_the_object_not_its_replicas() -> None:
    quota = fq({"count/deployments.apps": "1", "cpu": "10"}, {"count/deployments.apps": "1", "cpu": "1"})
    assert messages(quota_enforcement(request("deployments", deployment(2), objects=[quota]))) == [
        "metadata.name: exceeded quota: team-a, requested: count/deployments.apps=1, "
        f"used: count/deployments.apps=1, limited: count/deployments.apps=1; {FIX}"
    ]
    # With cpu over too, the replicas are what the user can change.
    crowded = fq({"count/deployments.apps": "1", "cpu": "2"}, {"count/deployments.apps": "1", "cpu": "1"})
    assert messages(quota_enforcement(request("deployments", deployment(2), objects=[crowded]))) == [
        "spec.replicas: exceeded quota: team-a, requested: count/deployments.apps=1,cpu=2, "
        f"used: count/deployments.apps=1,cpu=1, limited: count/deployments.apps=1,cpu=2; {FIX}"
    ]


def test_a_quota_without_status_denies_until_its_use_is_known() -> None:
    assert messages(
        quota_enforcement(request("pods", pod(), objects=[fq({"cpu": "8", "pods": "2"}, None)]))
    ) == [
        "spec.containers: status unknown for quota: team-a, resources: cpu,pods; "
        "wait until the quota manager has written the quota's status, then retry"
    ]


@pytest.mark.parametrize(
    ("value", "binds"), [("1", True), ("T", True), ("True", True), ("yes", False), ("false", False)]
)
def test_cluster_scoped_federated_quota_binds_every_namespace(value: str, binds: bool) -> None:
    quota = fq(
        {"cpu": "1"},
        {"cpu": "1"},
        namespace="admin",
        annotations={"experimental.quota.kcp.io/cluster-scoped": value},
    )
    verdict = quota_enforcement(request("pods", pod(), objects=[quota], namespace="other"))
    assert (verdict is not None and not verdict.allowed) is binds


def test_quotas_never_cross_logical_clusters() -> None:
    elsewhere = fq({"cpu": "1"}, {"cpu": "1"})
    elsewhere["metadata"]["annotations"]["kcp.io/cluster"] = "root:other"
    assert quota_enforcement(request("pods", pod(), objects=[elsewhere])) is None


def test_a_quota_of_another_namespace_does_not_bind() -> None:
    assert (
        quota_enforcement(request("pods", pod(), objects=[fq({"cpu": "1"}, {"cpu": "1"}, namespace="x")]))
        is None
    )


def test_an_unreadable_quota_is_left_to_validation() -> None:
    assert quota_enforcement(request("pods", pod(), objects=[fq({"cpu": "lots"}, {"cpu": "1"})])) is None


def resource_quota(
    namespace: str, hard: dict[str, str], used: dict[str, str], annotated: str = "true"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {
            "name": "cluster-scoped-quota",
            "namespace": namespace,
            "resourceVersion": "3",
            "annotations": {"experimental.quota.kcp.io/cluster-scoped": annotated, "kcp.io/cluster": CLUSTER},
        },
        "spec": {"hard": hard},
        "status": {"hard": hard, "used": used},
    }


def configmap(name: str = "c") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}}


def test_kcp_cluster_scoped_resource_quota_counts_objects() -> None:
    rq = resource_quota("admin", {"count/configmaps": "3", "requests.cpu": "1"}, {"count/configmaps": "2"})
    allowed = quota_enforcement(request("configmaps", configmap(), objects=[rq]))
    assert allowed is not None
    assert allowed.reservations[0].quota == RESOURCE_QUOTA
    assert dict(allowed.reservations[0].overall) == {"count/configmaps": q("1")}
    full = resource_quota("admin", {"count/configmaps": "3"}, {"count/configmaps": "3"})
    assert messages(quota_enforcement(request("configmaps", configmap(), objects=[full]))) == [
        "metadata.name: exceeded quota: cluster-scoped-quota, requested: count/configmaps=1, "
        "used: count/configmaps=3, limited: count/configmaps=3; lower the request or raise spec.hard of "
        "ResourceQuota admin/cluster-scoped-quota"
    ]
    # Only counts bind (kcp runs no compute evaluators), and only the cluster-scoped quota of admin.
    assert (
        quota_enforcement(
            request("pods", pod(), objects=[resource_quota("admin", {"requests.cpu": "1"}, {})])
        )
        is None
    )
    assert (
        quota_enforcement(
            request(
                "configmaps",
                configmap(),
                objects=[resource_quota("default", {"configmaps": "0"}, {}, "false")],
            )
        )
        is None
    )


def workspace(name: str = "child") -> dict[str, Any]:
    return {"apiVersion": "tenancy.kcp.io/v1alpha1", "kind": "Workspace", "metadata": {"name": name}}


def test_kcp_cluster_scoped_resource_quota_counts_workspaces() -> None:
    """kcp's e2e: a Workspace create is counted within its workspace, and refused once the count is full."""
    ws = ResourceType("tenancy.kcp.io", "v1alpha1", "Workspace", "workspaces", namespaced=False)

    def create(used: str) -> PolicyRequest:
        rq = resource_quota(
            "admin", {"count/workspaces.tenancy.kcp.io": "2"}, {"count/workspaces.tenancy.kcp.io": used}
        )
        return build_request(
            ws, workspace(), None, cluster=CLUSTER, lookup_objects=[rq], name="child", namespace=""
        )

    allowed = quota_enforcement(create("1"))
    assert allowed is not None and allowed.errors == ()
    assert dict(allowed.reservations[0].overall) == {"count/workspaces.tenancy.kcp.io": q("1")}
    assert messages(quota_enforcement(create("2"))) == [
        "metadata.name: exceeded quota: cluster-scoped-quota, requested: count/workspaces.tenancy.kcp.io=1, "
        "used: count/workspaces.tenancy.kcp.io=2, limited: count/workspaces.tenancy.kcp.io=2; lower the "
        "request or raise spec.hard of ResourceQuota admin/cluster-scoped-quota"
    ]
    # A workspace of another group is not kcp's: left alone.
    other = ResourceType("example.com", "v1", "Workspace", "workspaces", namespaced=False)
    rq = resource_quota("admin", {"count/workspaces.tenancy.kcp.io": "0"}, {})
    assert (
        quota_enforcement(
            build_request(
                other, workspace(), None, cluster=CLUSTER, lookup_objects=[rq], name="child", namespace=""
            )
        )
        is None
    )


def test_binding_quotas_in_admin_itself_are_listed_once() -> None:
    lookup = StaticLookup(
        [
            fq(
                {"cpu": "1"},
                {},
                namespace="admin",
                annotations={"experimental.quota.kcp.io/cluster-scoped": "1"},
            )
        ]
    )
    assert [v.name for v in binding_quotas(lookup, "admin", CLUSTER, CLUSTER)] == ["team-a"]


# --- reservations ---------------------------------------------------------------------------------


def reservation(**overall: str) -> Reservation:
    return Reservation(
        policy="quota-enforcement",
        quota=FEDERATED_QUOTA,
        namespace="default",
        name="team-a",
        overall={k.replace("_", "."): q(v) for k, v in overall.items()},
        path="spec.containers",
    )


def test_apply_reservation_adds_to_the_fresh_status() -> None:
    quota = fq({"cpu": "8", "pods": "5"}, {"cpu": "6", "pods": "1"})
    status, denial = apply_reservation(quota, reservation(cpu="2", pods="1"))
    assert denial is None
    assert status == {"overall": {"cpu": "8", "pods": "5"}, "overallUsed": {"cpu": "8", "pods": "2"}}


def test_apply_reservation_refuses_what_concurrent_requests_used_up() -> None:
    status, denial = apply_reservation(fq({"cpu": "8"}, {"cpu": "7"}), reservation(cpu="2"))
    assert status is None
    assert denial is not None
    assert (
        str(denial)
        == f"spec.containers: exceeded quota: team-a, requested: cpu=2, used: cpu=7, limited: cpu=8; {FIX}"
    )


def test_apply_reservation_of_an_unreadable_quota() -> None:
    status, denial = apply_reservation(fq({"cpu": "x"}, {"cpu": "1"}), reservation(cpu="2"))
    assert (
        status is None
        and str(denial)
        == "spec.containers: quota team-a cannot be read: cpu: " + str(denial).split("cpu: ", 1)[1]
    )


def test_apply_reservation_per_target() -> None:
    quota = fq(
        {"cpu": "10"},
        {"cpu": "1"},
        static=[{"syncTarget": "east", "hard": {"cpu": "4"}}],
        aggregated=[{"syncTarget": "other", "used": {"cpu": "1"}}],
    )
    grown = Reservation(
        "quota-enforcement",
        FEDERATED_QUOTA,
        "default",
        "team-a",
        {"cpu": q("2")},
        {"east": {"cpu": q("2")}, "gone": {"cpu": q("1")}},
    )
    status, denial = apply_reservation(quota, grown)
    assert denial is None and status is not None
    assert status["aggregatedStatus"] == [
        {"syncTarget": "other", "used": {"cpu": "1"}},
        {"syncTarget": "east", "hard": {"cpu": "4"}, "used": {"cpu": "2"}},
    ]
    too_much = Reservation(
        "quota-enforcement", FEDERATED_QUOTA, "default", "team-a", {"cpu": q("5")}, {"east": {"cpu": q("5")}}
    )
    _, denial = apply_reservation(quota, too_much)
    assert denial is not None and "static assignment of SyncTarget east" in denial.message


def test_resource_quota_reservation_writes_status_used() -> None:
    rq = resource_quota("admin", {"count/configmaps": "3"}, {"count/configmaps": "1"})
    grown = Reservation(
        "quota-enforcement", RESOURCE_QUOTA, "admin", "cluster-scoped-quota", {"count/configmaps": q("1")}
    )
    status, denial = apply_reservation(rq, grown)
    assert denial is None and status == {"hard": {"count/configmaps": "3"}, "used": {"count/configmaps": "2"}}


# --- through the engine ---------------------------------------------------------------------------


def in_cluster(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"]["annotations"] = {"kcp.io/cluster": CLUSTER}
    return obj


def engine() -> Engine:
    registry = Registry()
    policy = REGISTRY.get("quota-enforcement")
    assert policy is not None
    registry.register(policy)
    return Engine(registry)


def test_engine_answers_403_quota_exceeded_and_carries_reservations() -> None:
    with engine() as eng:
        denied_request = request("pods", in_cluster(pod()), objects=[fq({"cpu": "8"}, {"cpu": "7"})])
        outcome = eng.evaluate(denied_request.request, lookup=denied_request.lookup)
        assert (outcome.allowed, outcome.code, outcome.reason) == (False, 403, "QuotaExceeded")
        assert outcome.message == (
            "[quota-enforcement] spec.containers: exceeded quota: team-a, requested: cpu=2, used: cpu=7, "
            f"limited: cpu=8; {FIX}"
        )
        assert outcome.reservations == ()
        fits = request("pods", in_cluster(pod()), objects=[fq({"cpu": "8"}, {"cpu": "1"})])
        outcome = eng.evaluate(fits.request, lookup=fits.lookup)
        assert outcome.allowed and [r.name for r in outcome.reservations] == ["team-a"]


def test_status_spellings_are_read_by_meaning_and_written_as_the_spec_spells_them() -> None:
    quota = fq(
        {"cpu": "8", "pods": "5"},
        {"requests.cpu": "7", "pods": "1", "count/configmaps": "2"},
        static=[{"syncTarget": "east", "hard": {"cpu": "4"}}],
        aggregated=[{"syncTarget": "east", "used": {"requests.cpu": "1"}}],
    )
    assert messages(quota_enforcement(request("pods", pod(), objects=[quota]))) == [
        f"spec.containers: exceeded quota: team-a, requested: cpu=2, used: cpu=7, limited: cpu=8; {FIX}"
    ]
    grown = Reservation(
        "quota-enforcement", FEDERATED_QUOTA, "default", "team-a", {"cpu": q("1")}, {"east": {"cpu": q("1")}}
    )
    status, denial = apply_reservation(quota, grown)
    assert denial is None and status is not None
    assert status["overallUsed"] == {"count/configmaps": "2", "cpu": "8", "pods": "1"}
    assert status["aggregatedStatus"] == [{"syncTarget": "east", "used": {"cpu": "2"}}]
