"""Status rules shared by SyncTarget and Cluster: resource lists, conditions, synced resources, times.

Status is validated on the ``status`` subresource and on main-resource writes that carry it.  A
status section that an UPDATE leaves exactly as it was is not checked again ("ratcheting", as the
apiserver does for CRD schemas): a syncer's heartbeat must not be refused because of an older
section it did not write, and ``kubectl label`` must not be refused because of a status the user
cannot change through the main resource.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from kcp_tmc.policies.conditions import ERROR, FALSE, INFO, TRUE, UNKNOWN, WARNING
from kcp_tmc.policies.model import RESOURCE_STATES
from kcp_tmc.policies.policy import FieldError
from kcp_tmc.policies.quantities import Quantity, QuantityError, parse_quantity
from kcp_tmc.policies.timefmt import parse_rfc3339
from kcp_tmc.policies.validation import (
    as_list,
    as_map,
    as_objects,
    as_str,
    child,
    duplicate,
    index,
    invalid,
    is_qualified_name,
    key,
    not_supported,
    required,
    type_invalid,
)

__all__ = [
    "CONDITION_SEVERITIES",
    "CONDITION_STATUSES",
    "GROUP_PATTERN",
    "RESOURCE_PATTERN",
    "RFC3339_EXAMPLE",
    "changed",
    "validate_common_status",
    "validate_conditions",
    "validate_resource_list",
    "validate_status_section",
    "validate_synced_resources",
    "validate_time",
]

RFC3339_EXAMPLE: Final = "2024-01-02T15:04:05Z"
CONDITION_STATUSES: Final = (TRUE, FALSE, UNKNOWN)
#: Severities of kcp's conditions (``pkg/apis/third_party/conditions``); empty means none.
CONDITION_SEVERITIES: Final = (ERROR, WARNING, INFO, "")
#: CRD patterns of ``ResourceToSync`` (kcp v0.11), quirks included: ``a.b`` does not match GROUP_PATTERN.
GROUP_PATTERN: Final = r"^(|[a-z0-9]([-a-z0-9]*[a-z0-9](\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?)$"
RESOURCE_PATTERN: Final = r"^[a-z][-a-z0-9]*[a-z0-9]$"

_GROUP = re.compile(GROUP_PATTERN[1:-1])
_RESOURCE = re.compile(RESOURCE_PATTERN[1:-1])
_ZERO: Final = parse_quantity("0")
# Status values repeat from one write to the next (a heartbeat changes one field), and both
# results are immutable: parse each distinct text once.  typed=True keeps 1, 1.0 and True apart.
_parse_quantity = functools.lru_cache(maxsize=2048, typed=True)(parse_quantity)
_parse_time = functools.lru_cache(maxsize=2048)(parse_rfc3339)
_QUANTITY_HINT: Final = "use a quantity such as 500m, 2, 1.5 or 4Gi"


def changed(new: Mapping[str, Any], old: Mapping[str, Any] | None, field: str) -> bool:
    """True unless ``old`` is given and holds ``field`` exactly as ``new`` does."""
    return old is None or new.get(field) != old.get(field)


def validate_time(value: object, path: str, errs: list[FieldError]) -> datetime | None:
    """Parse an optional RFC 3339 time; a bad one adds an error and gives ``None``."""
    text = as_str(value, path, errs)
    if text is None:
        return None
    try:
        return _parse_time(text)
    except ValueError:
        errs.append(invalid(path, text, f"must be an RFC 3339 time such as {RFC3339_EXAMPLE}"))
        return None


def validate_resource_list(value: object, path: str, errs: list[FieldError]) -> dict[str, Quantity]:
    """Check a ResourceList (``status.capacity``): qualified names mapped to non-negative quantities.

    Returns the quantities that parsed, by resource name, for comparisons between lists.
    """
    parsed: dict[str, Quantity] = {}
    resources = as_map(value, path, errs)
    for name, raw in (resources or {}).items():
        entry = key(path, name)
        errs.extend(invalid(entry, name, msg) for msg in is_qualified_name(name))
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            errs.append(type_invalid(entry, raw, "a quantity such as 500m, 2, 1.5 or 4Gi"))
            continue
        try:
            quantity = _parse_quantity(raw)
        except QuantityError as exc:
            errs.append(invalid(entry, raw, f"{exc}; {_QUANTITY_HINT}"))
            continue
        if quantity < _ZERO:
            errs.append(invalid(entry, raw, "must be greater than or equal to 0"))
            continue
        parsed[name] = quantity
    return parsed


def validate_conditions(value: object, path: str, errs: list[FieldError]) -> None:
    """Check kcp conditions: a type, a status, an optional severity and an RFC 3339 transition time."""
    seen: set[str] = set()
    for at, cond in as_objects(value, path, errs, "an object with type, status and lastTransitionTime"):
        raw_type = cond.get("type")
        if raw_type is None or raw_type == "":
            errs.append(required(child(at, "type"), "name the condition, e.g. Ready"))
        elif (ctype := as_str(raw_type, child(at, "type"), errs)) is not None:
            if ctype in seen:
                detail = "each condition type may appear once; merge the entries"
                errs.append(duplicate(child(at, "type"), ctype, detail))
            seen.add(ctype)
        status = cond.get("status")
        if status is None or status == "":
            errs.append(required(child(at, "status"), "one of True, False or Unknown"))
        elif status not in CONDITION_STATUSES:
            errs.append(not_supported(child(at, "status"), status, CONDITION_STATUSES))
        severity = cond.get("severity")
        if severity is not None and severity not in CONDITION_SEVERITIES:
            errs.append(not_supported(child(at, "severity"), severity, CONDITION_SEVERITIES))
        if cond.get("lastTransitionTime") is None:
            errs.append(
                required(
                    child(at, "lastTransitionTime"),
                    f"set it to the time the status last changed, e.g. {RFC3339_EXAMPLE}",
                )
            )
        else:
            validate_time(cond["lastTransitionTime"], child(at, "lastTransitionTime"), errs)
        as_str(cond.get("reason"), child(at, "reason"), errs)
        as_str(cond.get("message"), child(at, "message"), errs)


def validate_synced_resources(value: object, path: str, errs: list[FieldError]) -> None:
    """Check ``syncedResources[]`` against the CRD schema of kcp's ``ResourceToSync``."""
    for at, res in as_objects(value, path, errs, "an object with group, resource and versions"):
        group = as_str(res.get("group"), child(at, "group"), errs)
        if group is not None and _GROUP.fullmatch(group) is None:
            errs.append(
                invalid(
                    child(at, "group"),
                    group,
                    f"should match '{GROUP_PATTERN}' (an API group such as apps; empty for the core group)",
                )
            )
        raw_resource = res.get("resource")
        if raw_resource is None or raw_resource == "":
            errs.append(required(child(at, "resource"), "name the resource in the plural, e.g. deployments"))
        elif (resource := as_str(raw_resource, child(at, "resource"), errs)) is not None and (
            _RESOURCE.fullmatch(resource) is None
        ):
            errs.append(
                invalid(
                    child(at, "resource"),
                    resource,
                    f"should match '{RESOURCE_PATTERN}' (a lowercase plural such as deployments)",
                )
            )
        versions_path = child(at, "versions")
        raw_versions = res.get("versions")
        versions = None
        if raw_versions is None or raw_versions == []:
            errs.append(required(versions_path, "list at least one served version, e.g. [v1]"))
        else:
            versions = as_list(raw_versions, versions_path, errs)
        for j, version in enumerate(versions or ()):
            if not isinstance(version, str) or not version:
                errs.append(
                    invalid(index(versions_path, j), version, "must be a non-empty version name such as v1")
                )
        as_str(res.get("identityHash"), child(at, "identityHash"), errs)
        state = res.get("state")
        if state is not None and state not in RESOURCE_STATES:
            errs.append(not_supported(child(at, "state"), state, RESOURCE_STATES))


def validate_common_status(
    status: Mapping[str, Any], old: Mapping[str, Any] | None, path: str, errs: list[FieldError]
) -> None:
    """Rules common to SyncTarget and Cluster status; sections unchanged from ``old`` are skipped.

    ``capacity`` and ``allocatable`` must be valid non-negative quantities, and for each resource
    in both, allocatable may not exceed capacity.
    """
    capacity_changed = changed(status, old, "capacity")
    allocatable_changed = changed(status, old, "allocatable")
    if capacity_changed or allocatable_changed:
        capacity_path, allocatable_path = child(path, "capacity"), child(path, "allocatable")
        # A list that did not change still has to parse for the comparison, without repeating its errors.
        scratch: list[FieldError] = []
        capacity = validate_resource_list(
            status.get("capacity"), capacity_path, errs if capacity_changed else scratch
        )
        allocatable = validate_resource_list(
            status.get("allocatable"), allocatable_path, errs if allocatable_changed else scratch
        )
        for name, amount in allocatable.items():
            limit = capacity.get(name)
            if limit is not None and amount > limit:
                errs.append(
                    invalid(
                        key(allocatable_path, name),
                        status["allocatable"][name],
                        f"must be less than or equal to capacity ({limit}); lower "
                        f"{key(allocatable_path, name)} or raise {key(capacity_path, name)}",
                    )
                )
    if changed(status, old, "conditions"):
        validate_conditions(status.get("conditions"), child(path, "conditions"), errs)
    if changed(status, old, "syncedResources"):
        validate_synced_resources(status.get("syncedResources"), child(path, "syncedResources"), errs)


def validate_status_section(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, errs: list[FieldError]
) -> tuple[Mapping[str, Any], Mapping[str, Any] | None] | None:
    """Check the common rules on ``obj``'s ``status``; return it and the old status to ratchet against.

    ``old`` is the old object on UPDATE, else ``None``.  Returns ``None`` when there is nothing
    more to check: no status, a status the UPDATE left as it was, or one that is not an object
    (which adds a type error).  The old status is ``None`` on CREATE (every section is new) and
    ``{}`` when the old object had none or an unusable one.
    """
    raw = obj.get("status")
    old_raw = old.get("status") if old is not None else None
    if raw is None or (old is not None and raw == old_raw):
        return None
    status = as_map(raw, "status", errs)
    if status is None:
        return None
    old_status = old_raw if isinstance(old_raw, Mapping) else None if old is None else {}
    validate_common_status(status, old_status, "status", errs)
    return status, old_status
