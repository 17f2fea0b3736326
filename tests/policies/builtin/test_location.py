"""Tests of location-validation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from kcp_tmc.policies import LOCATION, REGISTRY, PolicyType
from kcp_tmc.policies.builtin.location import location_validation
from tests.policies.builtin.helpers import build_request, messages
from tests.policies.messages import LABEL_VALUE_REGEX

PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9](\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?/)?"
    r"([a-zA-Z0-9][-a-zA-Z0-9_.]{0,61})?[a-zA-Z0-9]$"
)


def location(**spec: Any) -> dict[str, Any]:
    """A valid Location; keyword arguments replace spec fields."""
    obj: dict[str, Any] = {
        "apiVersion": "scheduling.kcp.io/v1alpha1",
        "kind": "Location",
        "metadata": {"name": "us-east1", "labels": {"continent": "north-america"}},
        "spec": {
            "resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
            "description": "US East",
            "availableSelectorLabels": [
                {"key": "region", "values": ["us-east1", "us-east4"], "description": "GCP region"},
                {"key": "topology.kubernetes.io/zone", "values": ["a", "b", ""]},
            ],
            "instanceSelector": {
                "matchLabels": {"region": "us-east1"},
                "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["spot"]}],
            },
        },
        "status": {"instances": 4, "availableInstances": 1},
    }
    obj["spec"].update(spec)
    return obj


def validate(obj: Any, old: Any = None) -> list[str]:
    return messages(location_validation(build_request(LOCATION, obj, old)))


def test_registered() -> None:
    policy = REGISTRY.get("location-validation")
    assert policy is not None
    assert policy.type is PolicyType.VALIDATING
    assert policy.kinds == (LOCATION,)
    assert policy.operations == {"CREATE", "UPDATE"}
    assert policy.subresources == {""}


def test_valid_location_is_allowed() -> None:
    assert location_validation(build_request(LOCATION, location())) is None
    assert validate(location(), location()) == []


def test_default_location_as_kcp_creates_it() -> None:
    obj = {
        "metadata": {"name": "default"},
        "spec": {
            "resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"},
            "instanceSelector": {},
        },
    }
    assert validate(obj) == []


def test_nothing_to_check_on_a_missing_object() -> None:
    assert location_validation(build_request(LOCATION, None)) is None


def test_object_of_the_wrong_type() -> None:
    req = replace(build_request(LOCATION, {}), object=1)  # type: ignore[arg-type]
    assert messages(location_validation(req)) == ["Invalid value: 1: must be a Location object, not a number"]


def test_resource_is_required() -> None:
    hint = "set it to {group: workload.kcp.io, version: v1alpha1, resource: synctargets}"
    assert validate({"metadata": {"name": "x"}}) == [f"spec.resource: Required value: {hint}"]
    assert validate(location(resource=None)) == [f"spec.resource: Required value: {hint}"]
    assert validate({"spec": "x"}) == ['spec: Invalid value: "x": must be an object, not a string']
    assert validate(location(resource="synctargets")) == [
        'spec.resource: Invalid value: "synctargets": must be an object, not a string'
    ]


def test_resource_must_be_sync_targets() -> None:
    assert validate(location(resource={"group": "apps", "version": "", "resource": "deployments"})) == [
        'spec.resource.group: Unsupported value: "apps": supported values: "workload.kcp.io"',
        'spec.resource.version: Required value: set it to "v1alpha1"; a Location selects SyncTargets only',
        'spec.resource.resource: Unsupported value: "deployments": supported values: "synctargets"',
    ]
    assert validate(location(resource={"group": "workload.kcp.io", "version": "v1"})) == [
        'spec.resource.version: Unsupported value: "v1": supported values: "v1alpha1"',
        'spec.resource.resource: Required value: set it to "synctargets"; '
        "a Location selects SyncTargets only",
    ]


def test_description_must_be_a_string() -> None:
    assert validate(location(description=["x"])) == [
        'spec.description: Invalid value: ["x"]: must be a string, not an array'
    ]


def test_available_selector_labels_must_be_a_list_of_objects() -> None:
    assert validate(location(availableSelectorLabels={"region": ["a"]})) == [
        'spec.availableSelectorLabels: Invalid value: {"region":["a"]}: must be an array, not an object'
    ]
    assert validate(location(availableSelectorLabels=[None, "region"])) == [
        "spec.availableSelectorLabels[0]: Invalid value: null: must be an object with key and values, "
        "not a null",
        'spec.availableSelectorLabels[1]: Invalid value: "region": must be an object, not a string',
    ]


@pytest.mark.parametrize(
    "key", ["region", "a", "example.com/zone", "Z_9", "a" * 63, "a" * 191 + "/" + "b" * 63]
)
def test_selector_label_keys_accepted(key: str) -> None:
    assert validate(location(availableSelectorLabels=[{"key": key, "values": ["x"]}])) == []


@pytest.mark.parametrize(
    "key", ["-region", "region-", "Example.com/zone", "a/b/c", "/zone", "a" * 64, "zone\n"]
)
def test_selector_label_key_pattern(key: str) -> None:
    rendered = key.replace("\n", "\\n")
    assert validate(location(availableSelectorLabels=[{"key": key, "values": ["x"]}])) == [
        f"spec.availableSelectorLabels[0].key: Invalid value: \"{rendered}\": should match '{PATTERN}' "
        "(a label key such as region or topology.kubernetes.io/zone)"
    ]


def test_selector_label_key_length() -> None:
    key = "a" * 250 + "/" + "b" * 5
    assert validate(location(availableSelectorLabels=[{"key": key, "values": ["x"]}])) == [
        "spec.availableSelectorLabels[0].key: Too long: may not be more than 255 bytes; "
        "use a shorter label key"
    ]


def test_selector_label_key_is_required() -> None:
    labels = [{"values": ["x"]}, {"key": "", "values": ["x"]}, {"key": 1, "values": ["x"]}]
    assert validate(location(availableSelectorLabels=labels)) == [
        "spec.availableSelectorLabels[0].key: Required value: name the label key, e.g. region",
        "spec.availableSelectorLabels[1].key: Required value: name the label key, e.g. region",
        "spec.availableSelectorLabels[2].key: Invalid value: 1: must be a string, not a number",
    ]


def test_selector_label_keys_are_unique() -> None:
    labels = [
        {"key": "region", "values": ["a"]},
        {"key": "zone", "values": ["a"]},
        {"key": "region", "values": ["b"]},
    ]
    assert validate(location(availableSelectorLabels=labels)) == [
        'spec.availableSelectorLabels[2].key: Duplicate value: "region": each key may be listed once; merge '
        "the values into one entry"
    ]


def test_selector_label_values() -> None:
    labels = [
        {"key": "a"},
        {"key": "b", "values": []},
        {"key": "c", "values": "us-east1"},
        {"key": "d", "values": ["x", "x", 3, "not valid", "v" * 64]},
        {"key": "e", "values": ["x"], "description": 5},
    ]
    assert validate(location(availableSelectorLabels=labels)) == [
        "spec.availableSelectorLabels[0].values: Required value: list at least one value the label may take, "
        "e.g. [us-east1]",
        "spec.availableSelectorLabels[1].values: Required value: list at least one value the label may take, "
        "e.g. [us-east1]",
        'spec.availableSelectorLabels[2].values: Invalid value: "us-east1": must be an array, not a string',
        'spec.availableSelectorLabels[3].values[1]: Duplicate value: "x": the values form a set; remove the '
        "repeated value",
        "spec.availableSelectorLabels[3].values[2]: Invalid value: 3: must be a string, not a number",
        f'spec.availableSelectorLabels[3].values[3]: Invalid value: "not valid": {LABEL_VALUE_REGEX}',
        f'spec.availableSelectorLabels[3].values[4]: Invalid value: "{"v" * 64}": '
        "must be no more than 63 bytes",
        "spec.availableSelectorLabels[4].description: Invalid value: 5: must be a string, not a number",
    ]


def test_instance_selector() -> None:
    selector = {
        "matchLabels": {"region": "us east"},
        "matchExpressions": [{"key": "tier", "operator": "In"}, {"key": "gpu", "operator": "exists"}],
    }
    assert validate(location(instanceSelector=selector)) == [
        f'spec.instanceSelector.matchLabels[region]: Invalid value: "us east": {LABEL_VALUE_REGEX}',
        "spec.instanceSelector.matchExpressions[0].values: Required value: must be specified when "
        "`operator` is 'In' or 'NotIn'",
        'spec.instanceSelector.matchExpressions[1].operator: Invalid value: "exists": not a valid selector '
        "operator; use In, NotIn, Exists or DoesNotExist",
    ]
    assert validate(location(instanceSelector="region=us-east1")) == [
        'spec.instanceSelector: Invalid value: "region=us-east1": must be an object, not a string'
    ]


def test_update_is_validated_like_create() -> None:
    assert validate(location(resource={"group": "workload.kcp.io"}), location()) == [
        'spec.resource.version: Required value: set it to "v1alpha1"; a Location selects SyncTargets only',
        'spec.resource.resource: Required value: set it to "synctargets"; '
        "a Location selects SyncTargets only",
    ]
