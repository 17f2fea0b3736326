"""Unit tests of the fake server's parts: schema validation, patches, error wording."""

from __future__ import annotations

import copy

import pytest

from kcp_tmc.testing import errors, patching, schema
from kcp_tmc.testing.discovery import version_priority
from kcp_tmc.testing.errors import FieldError, StatusError, go_value
from kcp_tmc.testing.resources import ResourceTable, infos_from_crd
from kcp_tmc.testing.rest import selector_string

SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["mode"],
            "properties": {
                "mode": {"type": "string", "enum": ["Push", "Pull"]},
                "count": {"type": "integer", "minimum": 1, "maximum": 3, "default": 2},
                "ratio": {"type": "number", "exclusiveMinimum": True, "minimum": 0, "multipleOf": 0.5},
                "name": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
                "tags": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "uniqueItems": True,
                    "items": {"type": "string"},
                },
                "port": {"x-kubernetes-int-or-string": True},
                "when": {"type": "string", "format": "date-time"},
                "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
                "nested": {"type": "object", "properties": {"deep": {"type": "string", "default": "d"}}},
                "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "maybe": {"type": "string", "nullable": True},
                "items": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                },
            },
        }
    },
}


def _errors(spec: dict) -> list[str]:
    return [str(e) for e in schema.validate({"spec": spec}, SCHEMA)]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ["spec.mode: Required value"]),
        (
            {"mode": "Sideways"},
            ['spec.mode: Unsupported value: "Sideways": supported values: "Push", "Pull"'],
        ),
        (
            {"mode": "Push", "count": "two"},
            ['spec.count: Invalid value: "string": spec.count in body must be of type integer: "string"'],
        ),
        (
            {"mode": "Push", "count": 0},
            ["spec.count: Invalid value: 0: spec.count in body should be greater than or equal to 1"],
        ),
        (
            {"mode": "Push", "count": 4},
            ["spec.count: Invalid value: 4: spec.count in body should be less than or equal to 3"],
        ),
        (
            {"mode": "Push", "ratio": 0},
            ["spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0"],
        ),
        (
            {"mode": "Push", "ratio": 0.7},
            ["spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5"],
        ),
        ({"mode": "Push", "name": "abcdef"}, ["spec.name: Too long: may not be more than 4 bytes"]),
        (
            {"mode": "Push", "name": "a"},
            ['spec.name: Invalid value: "a": spec.name in body should be at least 2 chars long'],
        ),
        (
            {"mode": "Push", "name": "AB"},
            ["spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"],
        ),
        (
            {"mode": "Push", "tags": []},
            ["spec.tags: Invalid value: 0: spec.tags in body should have at least 1 items"],
        ),
        ({"mode": "Push", "tags": ["a", "b", "c"]}, ["spec.tags: Too many: 3: must have at most 2 items"]),
        (
            {"mode": "Push", "tags": ["a", "a"]},
            ['spec.tags: Invalid value: ["a","a"]: spec.tags in body shouldn\'t contain duplicates'],
        ),
        (
            {"mode": "Push", "port": 1.5},
            [
                'spec.port: Invalid value: "number": '
                'spec.port in body must be of type integer,string: "number"'
            ],
        ),
        (
            {"mode": "Push", "when": "yesterday"},
            [
                'spec.when: Invalid value: "yesterday": '
                'spec.when in body must be of type date-time: "yesterday"'
            ],
        ),
        (
            {"mode": "Push", "labels": {"a": "1", "b": "2"}},
            ["spec.labels: Too many: 2: must have at most 1 item"],
        ),
        (
            {"mode": "Push", "items": [{"k": 1}]},
            [
                'spec.items[0].k: Invalid value: "integer": '
                'spec.items[0].k in body must be of type string: "integer"'
            ],
        ),
        ({"mode": "Push", "port": "http", "when": "2024-01-02T03:04:05Z", "maybe": None, "ratio": 1.5}, []),
    ],
)
def test_schema_validation_messages(spec: dict, expected: list[str]) -> None:
    assert _errors(spec) == expected


def test_prune_default_and_nulls() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "X",
        "metadata": {"name": "n"},
        "spec": {
            "mode": "Push",
            "junk": 1,
            "nested": {},
            "open": {"anything": [1]},
            "maybe": None,
            "name": None,
        },
        "status": {"dropped": True},
    }
    pruned = schema.prune(obj, SCHEMA)
    assert pruned == ["spec.junk", "status"]
    schema.apply_defaults(obj, SCHEMA)
    assert obj["spec"] == {
        "mode": "Push",
        "nested": {"deep": "d"},
        "open": {"anything": [1]},
        "maybe": None,
        "count": 2,
    }
    assert obj["metadata"] == {"name": "n"}
    assert schema.unknown_field_messages(pruned) == ['unknown field "spec.junk"', 'unknown field "status"']


def test_invalid_aggregates_like_apimachinery() -> None:
    one = errors.invalid("g.io", "K", "n", [FieldError.required("spec.a")])
    assert one.message == 'K.g.io "n" is invalid: spec.a: Required value'
    two = errors.invalid(
        "", "ConfigMap", "n", [FieldError.required("a"), FieldError.required("b"), FieldError.required("a")]
    )
    assert two.message == 'ConfigMap "n" is invalid: [a: Required value, b: Required value]'
    assert len(two.body["details"]["causes"]) == 3
    assert errors.invalid("g", "K", "n", []).message == 'K.g "n" is invalid'


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (True, "true"),
        ("s", '"s"'),
        (3, "3"),
        (1.0, "1"),
        (2.5, "2.5"),
        (1e21, "1e+21"),
        ([1, "a"], '[1,"a"]'),
        ({"a": 1}, '{"a":1}'),
    ],
)
def test_go_value_printing(value: object, printed: str) -> None:
    assert go_value(value) == printed


def test_field_error_helpers() -> None:
    assert str(FieldError.too_long("f", 1)) == "f: Too long: may not be more than 1 byte"
    assert str(FieldError.too_long("f", -1)) == "f: Too long: value is too long"
    assert str(FieldError.too_many("f", -1, 1)) == "f: Too many: must have at most 1 item"
    assert str(FieldError.too_many("f", 2, -1)) == "f: Too many: 2: has too many items"
    assert str(FieldError.not_supported("f", "x", [])) == 'f: Unsupported value: "x"'


def test_status_error_properties() -> None:
    error = errors.method_not_supported("apps", "deployments", "watch")
    assert isinstance(error, StatusError)
    assert (error.code, error.reason) == (405, "MethodNotAllowed")
    assert error.message == 'watch is not supported on resources of kind "deployments.apps"'
    assert errors.forbidden("", "", "", "why").message == "forbidden: why"
    assert errors.expired("gone").body["code"] == 410


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert patching.merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert patching.merge_patch(target, ["x"]) == ["x"]
    assert target == {"a": "b", "c": {"d": "e", "f": "g"}}


def test_strategic_merge_patch_directives() -> None:
    target = {
        "spec": {
            "ports": [{"containerPort": 80, "name": "http"}],
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}],
            "finalizers": ["a", "b"],
            "tolerations": [{"key": "x"}],
            "owner": {"keep": 1, "drop": 2},
            "replace": {"old": 1},
        }
    }
    patch = {
        "spec": {
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "$patch": "delete"}],
            "$deleteFromPrimitiveList/finalizers": ["a"],
            "$setElementOrder/conditions": [{"type": "Ready"}],
            "tolerations": [{"key": "y"}],
            "owner": {"$retainKeys": ["keep"], "keep": 3},
            "replace": {"$patch": "replace", "new": 2},
        }
    }
    result = patching.strategic_merge_patch(copy.deepcopy(target), patch)
    assert result["spec"] == {
        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}, {"containerPort": 443}],
        "conditions": [{"type": "Ready", "status": "True"}],
        "finalizers": ["b"],
        "tolerations": [{"key": "y"}],
        "owner": {"keep": 3},
        "replace": {"new": 2},
    }
    assert patching.strategic_merge_patch({"a": 1}, {"$patch": "delete"}) == {}
    assert patching.strategic_merge_patch({}, {"containers": [{"$patch": "replace"}, {"name": "n"}]}) == {
        "containers": [{"name": "n"}]
    }


def test_json_patch_errors() -> None:
    with pytest.raises(StatusError) as bad:
        patching.json_patch({}, {"op": "add"})
    assert bad.value.code == 400
    with pytest.raises(StatusError) as invalid:
        patching.json_patch({}, [{"op": "frobnicate", "path": "/a"}])
    assert invalid.value.code == 400
    with pytest.raises(StatusError) as unapplied:
        patching.json_patch({}, [{"op": "test", "path": "/a", "value": 1}])
    assert unapplied.value.code == 422


def test_selector_string_matches_kubectl_output() -> None:
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "c", "operator": "In", "values": ["y", "x"]},
            {"key": "d", "operator": "NotIn", "values": ["z"]},
            {"key": "e", "operator": "Exists"},
            {"key": "f", "operator": "DoesNotExist"},
        ],
    }
    assert selector_string(selector) == "!f,a=1,b=2,c in (x,y),d notin (z),e"
    assert selector_string(None) == ""


def test_version_priority_orders_like_kubernetes() -> None:
    versions = ["v1alpha1", "v2beta1", "v1", "foo", "v1beta2", "v2"]
    assert sorted(versions, key=version_priority) == ["v2", "v1", "v2beta1", "v1beta2", "v1alpha1", "foo"]


def test_resource_table_lookups() -> None:
    table = ResourceTable()
    assert table.find("apps/v1", "deploy") is not None
    assert table.find("apps/v1", "Deployment") is not None
    assert table.find("apps/v1", "nothing") is None
    crd = {
        "metadata": {"name": "things.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "things", "kind": "Thing"},
            "scope": "Cluster",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "selectableFields": [{"jsonPath": ".spec.color"}],
                },
                {"name": "v0", "served": False},
            ],
        },
    }
    infos = infos_from_crd(crd)
    assert [(i.version, i.namespaced, i.field_selectors) for i in infos] == [("v1", False, ("spec.color",))]
    table.set_crd("things.example.com", infos)
    assert table.any_version("example.com", "things") is not None
    table.set_crd("things.example.com", [])
    assert table.lookup("example.com", "v1", "things") is None
