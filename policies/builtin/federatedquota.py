"""Built-in policies ``federatedquota-validation`` and ``resourcequota-validation``.

``federatedquota-validation`` checks a ``tmc.kcp.io/v1alpha1`` FederatedQuota as Karmada's
FederatedResourceQuota webhook does: the name fits a label value (at most 63 characters);
every key of ``spec.overall`` and ``spec.staticAssignments[].hard`` is a valid quota resource
name and every quantity valid and non-negative (whole for counts); each static assignment names
a valid SyncTarget, once; every assigned resource is present in ``spec.overall``; per resource
the static assignments sum to at most ``spec.overall``.  Resource names compare by meaning
(``cpu`` is ``requests.cpu``).  An UPDATE that lowers a limit below the use the status reports
is allowed, with a warning that says by how much use exceeds it.  Writes of the ``status``
subresource have their resource lists checked the same way, and each
``status.aggregatedStatus[].syncTarget`` must be a valid name.

``resourcequota-validation`` checks kcp's cluster-scoped quota annotation
(``experimental.quota.kcp.io/cluster-scoped``) on core ResourceQuotas: it must read as a Go
``ParseBool`` boolean; outside namespace ``admin`` it has no effect, which earns a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from kcp_tmc.policies.kinds import FEDERATED_QUOTA, RESOURCE_QUOTA
from kcp_tmc.policies.model import (
    CLUSTER_SCOPED_QUOTA_ANNOTATION,
    CLUSTER_SCOPED_QUOTA_NAMESPACE,
    annotations_of,
    namespace_of,
    parse_bool,
    spec_of,
    status_of,
)
from kcp_tmc.policies.policy import FieldError, PolicyRequest, Verdict
from kcp_tmc.policies.quantities import Quantity, QuantityError, parse_quantity
from kcp_tmc.policies.registry import validating
from kcp_tmc.policies.usage import canonical_resource
from kcp_tmc.policies.validation import (
    as_map,
    as_objects,
    child,
    duplicate,
    invalid,
    is_dns1123_subdomain,
    is_qualified_name,
    key,
    required,
    too_long,
    type_invalid,
)

__all__ = [
    "MAX_NAME_LENGTH",
    "STANDARD_QUOTA_RESOURCES",
    "federatedquota_validation",
    "resource_name_errors",
    "resourcequota_validation",
]

#: FederatedQuota names go into label values, hence a DNS label's length.
MAX_NAME_LENGTH: Final = 63
#: Kubernetes' standard quota resource names (``IsStandardQuotaResourceName``), less hugepages.
STANDARD_QUOTA_RESOURCES: Final = frozenset(
    {
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.storage",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "persistentvolumeclaims",
        "configmaps",
        "services.nodeports",
        "services.loadbalancers",
    }
)
_HUGEPAGES_PREFIXES: Final = ("hugepages-", "requests.hugepages-", "limits.hugepages-")
#: Counted in whole objects (the other legacy counts, such as ``configmaps``, read as ``count/...``).
_COUNTED: Final = frozenset({"pods", "services.nodeports", "services.loadbalancers"})
_QUANTITY_REGEX: Final = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_NAME_HINT: Final = "use a quota resource such as requests.cpu, limits.memory, pods or count/deployments.apps"


def resource_name_errors(name: str, path: str) -> list[FieldError]:
    """Kubernetes' ``ValidateResourceQuotaResourceName``, with a hint at the fix."""
    problems = is_qualified_name(name)
    if problems:
        return [invalid(path, name, f"{msg}; {_NAME_HINT}") for msg in problems]
    if "/" not in name and name not in STANDARD_QUOTA_RESOURCES and not name.startswith(_HUGEPAGES_PREFIXES):
        return [invalid(path, name, f"must be a standard resource for quota; {_NAME_HINT}")]
    return []


def _is_integer_resource(name: str) -> bool:
    canonical = canonical_resource(name)
    return canonical.startswith("count/") or canonical in _COUNTED


def _resource_list(value: object, path: str, errs: list[FieldError]) -> dict[str, Quantity]:
    """The valid entries of a resource list; errors for the bad names and quantities."""
    mapping = as_map(value, path, errs)
    parsed: dict[str, Quantity] = {}
    for name, raw in (mapping or {}).items():
        at = key(path, str(name))
        bad_name = resource_name_errors(str(name), at)
        errs.extend(bad_name)
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            errs.append(type_invalid(at, raw, "a quantity such as 500m, 2 or 4Gi"))
            continue
        try:
            quantity = parse_quantity(raw)
        except (QuantityError, TypeError, ValueError):
            errs.append(invalid(at, raw, f"quantities must match the regular expression '{_QUANTITY_REGEX}'"))
            continue
        if quantity.sign < 0:
            errs.append(
                invalid(at, str(raw), "must be greater than or equal to 0; quota limits are never negative")
            )
            continue
        if _is_integer_resource(str(name)) and quantity.milli_value() % 1000:
            errs.append(invalid(at, str(raw), "must be an integer; it counts objects"))
            continue
        if not bad_name:
            parsed[str(name)] = quantity
    return parsed


def _by_meaning(values: Mapping[str, Quantity]) -> dict[str, tuple[str, Quantity]]:
    return {canonical_resource(k): (k, v) for k, v in values.items()}


def _status_errors(value: object) -> list[FieldError]:
    """The errors of a FederatedQuota's status: its resource lists, and each target's name."""
    errs: list[FieldError] = []
    status = as_map(value, "status", errs) or {}
    for field in ("overall", "overallUsed"):
        _resource_list(status.get(field), f"status.{field}", errs)
    path = "status.aggregatedStatus"
    for at, entry in as_objects(status.get("aggregatedStatus"), path, errs, "an object with syncTarget"):
        target, target_path = entry.get("syncTarget"), child(at, "syncTarget")
        if not isinstance(target, str) or not target:
            errs.append(required(target_path, "name the SyncTarget the entry is for"))
        else:
            errs.extend(invalid(target_path, target, msg) for msg in is_dns1123_subdomain(target))
        for field in ("hard", "used"):
            _resource_list(entry.get(field), child(at, field), errs)
    return errs


@validating(
    "federatedquota-validation",
    kinds=[FEDERATED_QUOTA],
    operations=["CREATE", "UPDATE"],
    subresources=["", "status"],
    isolate=False,
)
def federatedquota_validation(req: PolicyRequest) -> Verdict | None:
    """Validate a FederatedQuota's name, limits and static assignments as Karmada does."""
    obj = req.object
    if not isinstance(obj, Mapping):
        return None
    if req.sub_resource == "status":
        status_errs = _status_errors(obj.get("status"))
        return Verdict(errors=status_errs) if status_errs else None
    errs: list[FieldError] = []
    name = req.name
    if len(name) > MAX_NAME_LENGTH:
        errs.append(
            too_long(
                "metadata.name", MAX_NAME_LENGTH, "the name goes into label values; choose a shorter one"
            )
        )
    spec = as_map(obj.get("spec"), "spec", errs) or {}
    raw_overall = spec.get("overall")
    overall = _resource_list(raw_overall, "spec.overall", errs)
    overall_by_meaning = _by_meaning(overall)
    # Only a readable spec.overall can be compared with: its own errors already say what is wrong.
    comparable = raw_overall is None or isinstance(raw_overall, Mapping)
    listed = {canonical_resource(str(k)) for k in raw_overall} if isinstance(raw_overall, Mapping) else set()
    sums: dict[str, Quantity] = {}
    seen: set[str] = set()
    path = "spec.staticAssignments"
    for at, entry in as_objects(
        spec.get("staticAssignments"), path, errs, "an object with syncTarget and hard"
    ):
        target = entry.get("syncTarget")
        target_path = child(at, "syncTarget")
        if target is None or target == "":
            errs.append(required(target_path, "name the SyncTarget this share is for"))
        elif not isinstance(target, str):
            errs.append(type_invalid(target_path, target, "a string"))
        else:
            errs.extend(invalid(target_path, target, msg) for msg in is_dns1123_subdomain(target))
            if target in seen:
                errs.append(
                    duplicate(
                        target_path, target, "each SyncTarget may have one static assignment; merge them"
                    )
                )
            seen.add(target)
        hard_path = child(at, "hard")
        for resource, quantity in _resource_list(entry.get("hard"), hard_path, errs).items():
            meaning = canonical_resource(resource)
            if not comparable or (meaning in listed and meaning not in overall_by_meaning):
                continue
            if meaning not in overall_by_meaning:
                errs.append(
                    invalid(
                        key(hard_path, resource),
                        resource,
                        f"must be present in spec.overall; add {resource} to spec.overall or remove it here",
                    )
                )
                continue
            sums[meaning] = sums[meaning] + quantity if meaning in sums else quantity
    for meaning, total in sorted(sums.items()):
        written, limit = overall_by_meaning[meaning]
        if total > limit:
            errs.append(
                invalid(
                    key("spec.overall", written),
                    str(limit),
                    f"must be at least the sum of the static assignments ({total}); "
                    "raise it or lower the assignments",
                )
            )
    if errs:
        return Verdict(errors=errs)
    warnings = _lowered_below_use(overall, req.old_object) if req.operation == "UPDATE" else []
    return Verdict(warnings=warnings) if warnings else None


def _lowered_below_use(overall: Mapping[str, Quantity], old: object) -> list[str]:
    """Warnings for limits the update lowered below the use the status reports."""
    if not isinstance(old, Mapping):
        return []
    used_raw = status_of(old).get("overallUsed")
    if not isinstance(used_raw, Mapping):
        return []
    old_errs: list[FieldError] = []
    old_overall = _resource_list(spec_of(old).get("overall"), "spec.overall", old_errs)
    warnings = []
    for name, limit in sorted(overall.items()):
        try:
            used = parse_quantity(used_raw[name]) if name in used_raw else None
        except (QuantityError, TypeError, ValueError):
            used = None
        before = old_overall.get(name)
        if used is None or not used > limit or (before is not None and not limit < before):
            continue
        warnings.append(
            f"spec.overall[{name}]: the new limit {limit} is below current use {used} by {used - limit}; "
            "the update is accepted, but no new use is admitted until use falls below the limit"
        )
    return warnings


@validating(
    "resourcequota-validation",
    kinds=[RESOURCE_QUOTA],
    operations=["CREATE", "UPDATE"],
    isolate=False,
)
def resourcequota_validation(req: PolicyRequest) -> Verdict | None:
    """Check kcp's cluster-scoped quota annotation on a ResourceQuota."""
    obj = req.object
    if not isinstance(obj, Mapping):
        return None
    annotations = annotations_of(obj)
    if CLUSTER_SCOPED_QUOTA_ANNOTATION not in annotations:
        return None
    value = annotations[CLUSTER_SCOPED_QUOTA_ANNOTATION]
    path = key("metadata.annotations", CLUSTER_SCOPED_QUOTA_ANNOTATION)
    if not isinstance(value, str) or parse_bool(value) is None:
        return Verdict.deny(
            path,
            FieldError.invalid(
                "",
                value,
                'must be a boolean as Go reads it: "true" or "false" '
                "(also 1, t, T, TRUE, True, 0, f, F, FALSE, False)",
            ).message,
        )
    namespace = namespace_of(obj) or req.namespace
    if parse_bool(value) and namespace != CLUSTER_SCOPED_QUOTA_NAMESPACE:
        return Verdict.allow(
            f'{path}: has no effect in namespace "{namespace}": only a ResourceQuota in namespace '
            f'"{CLUSTER_SCOPED_QUOTA_NAMESPACE}" counts across the whole logical cluster; move it there '
            "or remove the annotation"
        )
    return None
