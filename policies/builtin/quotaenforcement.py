"""Built-in policy ``quota-enforcement``: workloads may not use more than their quotas allow.

On CREATE and UPDATE of Pods, Deployments, ReplicaSets, StatefulSets and Jobs (and writes of the
``scale`` subresource), the change in use is the new object's use minus the old one's
(:func:`kcp_tmc.policies.usage.change`): a relabel costs nothing, a scale-up the difference.  The
request is denied (403, reason ``QuotaExceeded``) when the change would take a quota's use above
its limit: a FederatedQuota's ``spec.overall``, the static assignment of a SyncTarget the
workload is placed on, or a count of kcp's cluster-scoped ResourceQuota.  ConfigMaps and kcp
Workspaces are checked for the counts only (``count/configmaps``,
``count/workspaces.tenancy.kcp.io``).  As in Kubernetes, once a quota constrains ``cpu`` or
``memory`` (requests or limits), every container must state them.  A denial for an object count
alone names ``metadata.name``: the object itself is one too many.

The policy reads quotas through the request's :class:`~kcp_tmc.policies.policy.Lookup` and does
no I/O: an admitted change comes back as :class:`~kcp_tmc.policies.policy.Reservation` s that
the webhook writes to the quotas' status (not on dry runs), re-checking against the fresh status;
hence ``side_effects=True`` and the registration's ``sideEffects: NoneOnDryRun``.  A lookup that
raises makes the policy fail, and its failure mode decides (``fail`` by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.policies.kinds import (
    DEPLOYMENT,
    JOB,
    POD,
    REPLICA_SET,
    SCALE,
    STATEFUL_SET,
    WORKSPACE,
    ResourceType,
)
from kcp_tmc.policies.model import spec_of
from kcp_tmc.policies.policy import FieldError, PolicyRequest, Reservation, Verdict
from kcp_tmc.policies.quantities import Quantity
from kcp_tmc.policies.quota import QUOTA_EXCEEDED, QuotaView, binding_quotas, check
from kcp_tmc.policies.registry import validating
from kcp_tmc.policies.usage import canonical_resource, change, usage_of

__all__ = ["CONFIG_MAP", "POLICY", "quota_enforcement"]

POLICY: Final = "quota-enforcement"
CONFIG_MAP: Final = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)
#: The resources of which Kubernetes' quota insists that every container states its amount.
_MUST_SPECIFY: Final = frozenset(
    {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
)
#: Kinds quota only counts (kcp's e2e counts configmaps and workspaces): no compute use, no scale.
_COUNTED: Final = (CONFIG_MAP, WORKSPACE)
_BY_PLURAL: Final = {t.plural: t for t in (POD, DEPLOYMENT, REPLICA_SET, STATEFUL_SET, JOB, *_COUNTED)}
_GROUP_OF: Final = {t.plural: t.group for t in _BY_PLURAL.values()}


@validating(
    POLICY,
    kinds=[POD, DEPLOYMENT, REPLICA_SET, STATEFUL_SET, JOB, SCALE, *_COUNTED],
    operations=["CREATE", "UPDATE"],
    subresources=["", "scale"],
    side_effects=True,
)
def quota_enforcement(req: PolicyRequest) -> Verdict | None:
    """Deny workloads that would use more than their FederatedQuotas or kcp ResourceQuotas allow."""
    resource: Mapping[str, str] = req.request.get("resource") or {}  # type: ignore[assignment]
    plural = str(resource.get("resource", ""))
    rtype = _BY_PLURAL.get(plural)
    if rtype is None or rtype.group != resource.get("group", ""):
        return None
    new, old = req.object, req.old_object
    if req.sub_resource == "scale":
        if rtype == POD or rtype in _COUNTED:
            return None
        new, old = _scaled_pair(req, rtype)
        if new is None:
            return None  # the workload is gone: the apiserver answers 404 itself
    elif req.sub_resource:
        return None
    if not isinstance(new, Mapping):
        return None
    quotas = binding_quotas(req.lookup, req.namespace, req.cluster, req.cluster)
    if not quotas:
        return None
    overall, per_key = change(
        usage_of(new, rtype.group, rtype.kind, rtype.plural),
        usage_of(old if isinstance(old, Mapping) else None, rtype.group, rtype.kind, rtype.plural),
    )
    path = _path(rtype, new, old, req.sub_resource)
    errors: list[FieldError] = []
    reservations: list[Reservation] = []
    for view in quotas:
        if overall and rtype not in _COUNTED:
            missing = _missing_requests(view, rtype, new)
            if missing is not None:
                errors.append(missing)
                continue
        by_name = _by_target_name(view, per_key)
        denial, reservation = check(view, overall, by_name, policy=POLICY, path=path)
        if denial is not None:
            errors.append(denial)
        elif reservation is not None:
            reservations.append(reservation)
    if errors:
        return Verdict(errors=errors, reason=QUOTA_EXCEEDED)
    return Verdict(reservations=tuple(reservations)) if reservations else None


def _scaled_pair(
    req: PolicyRequest, rtype: ResourceType
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The workload with the new and with the old ``Scale.spec.replicas`` (``None`` when it is gone)."""
    workload = req.lookup.get(rtype, req.request.get("name", ""), req.namespace)
    if workload is None:
        return None, None

    def with_replicas(scale: object) -> dict[str, Any]:
        replicas = spec_of(scale if isinstance(scale, Mapping) else None).get("replicas")
        return {**workload, "spec": {**spec_of(workload), "replicas": replicas}}

    old = with_replicas(req.old_object) if req.old_object is not None else dict(workload)
    return with_replicas(req.object), old


def _path(rtype: ResourceType, new: Mapping[str, Any], old: object, sub_resource: str) -> str:
    """The field the change comes from: the replica count when it changed, else the containers."""
    if rtype == POD:
        return "spec.containers"
    if rtype in _COUNTED:
        return "metadata.name"
    field = "parallelism" if rtype == JOB else "replicas"
    old_spec = spec_of(old if isinstance(old, Mapping) else None)
    if sub_resource or not isinstance(old, Mapping) or spec_of(new).get(field) != old_spec.get(field):
        return f"spec.{field}"
    return "spec.template.spec.containers"


def _by_target_name(view: QuotaView, per_key: Mapping[str, Mapping[str, Quantity]]) -> dict[str, Any]:
    """The change per SyncTarget key, renamed to the names of the quota's static assignments."""
    return {
        name: per_key[key] for name in view.targets if (key := sync_target_key(view.cluster, name)) in per_key
    }


def _missing_requests(view: QuotaView, rtype: ResourceType, obj: Mapping[str, Any]) -> FieldError | None:
    """Kubernetes' rule: a constrained cpu or memory must be stated by every container."""
    required = {k for k in view.hard if k in _MUST_SPECIFY}
    if not required:
        return None
    spec = spec_of(obj)
    at = "spec"
    if rtype != POD:
        spec = (spec.get("template") or {}).get("spec") or {}
        at = "spec.template.spec"
    missing: dict[str, set[str]] = {}
    for group in ("containers", "initContainers"):
        for container in spec.get(group) or ():
            if not isinstance(container, Mapping):
                continue
            stated = _stated(container)
            for name in required - stated:
                missing.setdefault(name, set()).add(str(container.get("name", "")))
    if not missing:
        return None
    parts = "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))
    return FieldError(
        f"{at}.containers",
        f"failed quota: {view.name}: must specify {parts}; "
        "set resources.requests and resources.limits on every container",
        "FieldValueForbidden",
    )


def _stated(container: Mapping[str, Any]) -> set[str]:
    """The quota names a container's resources state (a limit stands for the request it defaults)."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    stated: set[str] = set()
    for name in ("cpu", "memory"):
        if name in requests or name in limits:
            stated.update({name, canonical_resource(name)})
        if name in limits:
            stated.add(f"limits.{name}")
    return stated
