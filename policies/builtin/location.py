"""Built-in policy ``location-validation`` for ``scheduling.kcp.io/v1alpha1`` Location.

The rules are kcp v0.11's CRD schema (``config/crds/scheduling.kcp.io_locations.yaml``): a Location
selects SyncTargets and nothing else; ``availableSelectorLabels`` is a list-map keyed by ``key``
whose ``values`` form a non-empty set of label values; ``instanceSelector`` is a LabelSelector.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from kcp_tmc.policies.kinds import LOCATION
from kcp_tmc.policies.policy import FieldError, PolicyRequest, Verdict
from kcp_tmc.policies.registry import validating
from kcp_tmc.policies.validation import (
    as_list,
    as_map,
    as_objects,
    as_str,
    child,
    duplicate,
    index,
    invalid,
    is_valid_label_selector,
    is_valid_label_value,
    not_supported,
    required,
    too_long,
    type_invalid,
)

__all__ = [
    "LOCATION_RESOURCE",
    "SELECTOR_LABEL_KEY_MAX_LENGTH",
    "SELECTOR_LABEL_KEY_PATTERN",
    "location_validation",
]

#: The only resource a Location may select: SyncTargets.
LOCATION_RESOURCE: Final = {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"}
SELECTOR_LABEL_KEY_MAX_LENGTH: Final = 255
SELECTOR_LABEL_KEY_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9](\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?/)?"
    r"([a-zA-Z0-9][-a-zA-Z0-9_.]{0,61})?[a-zA-Z0-9]$"
)
_SELECTOR_LABEL_KEY = re.compile(SELECTOR_LABEL_KEY_PATTERN[1:-1])
_LABELS: Final = "spec.availableSelectorLabels"


@validating("location-validation", kinds=[LOCATION], operations=["CREATE", "UPDATE"], isolate=False)
def location_validation(req: PolicyRequest) -> Verdict | None:
    """Validate a Location's resource, available selector labels and instance selector."""
    obj = req.object
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        return Verdict(errors=[type_invalid("", obj, "a Location object")])
    errs: list[FieldError] = []
    spec = as_map(obj.get("spec"), "spec", errs)
    if spec is None:
        if obj.get("spec") is None:
            errs.append(required("spec.resource", _resource_hint()))
        return Verdict(errors=errs)
    _validate_resource(spec.get("resource"), errs)
    as_str(spec.get("description"), "spec.description", errs)
    _validate_selector_labels(spec.get("availableSelectorLabels"), errs)
    errs.extend(is_valid_label_selector(spec.get("instanceSelector"), "spec.instanceSelector"))
    return Verdict(errors=errs) if errs else None


def _resource_hint() -> str:
    return "set it to {group: workload.kcp.io, version: v1alpha1, resource: synctargets}"


def _validate_resource(value: object, errs: list[FieldError]) -> None:
    if value is None:
        errs.append(required("spec.resource", _resource_hint()))
        return
    resource = as_map(value, "spec.resource", errs)
    if resource is None:
        return
    for field, expected in LOCATION_RESOURCE.items():
        path = child("spec.resource", field)
        got = resource.get(field)
        if got is None or got == "":
            errs.append(required(path, f'set it to "{expected}"; a Location selects SyncTargets only'))
        elif got != expected:
            errs.append(not_supported(path, got, (expected,)))


def _validate_selector_labels(value: object, errs: list[FieldError]) -> None:
    keys: set[str] = set()
    for at, entry in as_objects(value, _LABELS, errs, "an object with key and values"):
        label_key = _validate_key(entry.get("key"), child(at, "key"), errs)
        if label_key is not None:
            if label_key in keys:
                detail = "each key may be listed once; merge the values into one entry"
                errs.append(duplicate(child(at, "key"), label_key, detail))
            keys.add(label_key)
        _validate_values(entry.get("values"), child(at, "values"), errs)
        as_str(entry.get("description"), child(at, "description"), errs)


def _validate_key(raw: object, path: str, errs: list[FieldError]) -> str | None:
    if raw is None or raw == "":
        errs.append(required(path, "name the label key, e.g. region"))
        return None
    label_key = as_str(raw, path, errs)
    if label_key is None:
        return None
    if len(label_key) > SELECTOR_LABEL_KEY_MAX_LENGTH:
        errs.append(too_long(path, SELECTOR_LABEL_KEY_MAX_LENGTH, "use a shorter label key"))
    elif _SELECTOR_LABEL_KEY.fullmatch(label_key) is None:
        errs.append(
            invalid(
                path,
                label_key,
                f"should match '{SELECTOR_LABEL_KEY_PATTERN}' "
                "(a label key such as region or topology.kubernetes.io/zone)",
            )
        )
    return label_key


def _validate_values(raw: object, path: str, errs: list[FieldError]) -> None:
    if raw is None or raw == []:
        errs.append(required(path, "list at least one value the label may take, e.g. [us-east1]"))
        return
    values: list[Any] | None = as_list(raw, path, errs)
    seen: set[str] = set()
    for j, value in enumerate(values or ()):
        at = index(path, j)
        if not isinstance(value, str):
            errs.append(type_invalid(at, value, "a string"))
            continue
        errs.extend(invalid(at, value, msg) for msg in is_valid_label_value(value))
        if value in seen:
            errs.append(duplicate(at, value, "the values form a set; remove the repeated value"))
        seen.add(value)
