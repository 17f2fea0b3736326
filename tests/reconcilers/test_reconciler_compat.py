"""Structural schema compatibility, as kcp's schemacompat decides it (upstream existing, downstream new)."""

import copy
import os

import pytest

from kcp_tmc.reconcilers.compat import incompatibilities, is_compatible
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.imports import discover, structural_schema


def obj(**props):
    return {"type": "object", "properties": props}


S = {"type": "string"}
I = {"type": "integer"}  # noqa: E741 (a schema, named like its type)
IOS = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def forbidden(construct, type_name):
    return (
        f'Forbidden: The "{construct}" JSON Schema construct is not supported by the Schema negotiation '
        f'for type "{type_name}"'
    )


def changed(field, value, path=""):
    """kcp's "<field> value has been changed in an incompatible way" message."""
    return f"{path}{field}: Invalid value: {value}: {field} value has been changed in an incompatible way"


@pytest.mark.parametrize(
    ("upstream", "downstream", "messages"),
    [
        pytest.param(S, S, [], id="same string"),
        pytest.param(
            I,
            S,
            ['type: Invalid value: "string": The type changed (was "integer", now "string")'],
            id="type changed",
        ),
        pytest.param(I, {"type": "number"}, [], id="integer fits number"),
        pytest.param(
            {"type": "number"},
            I,
            ['type: Invalid value: "integer": The type changed (was "number", now "integer")'],
            id="number does not fit integer",
        ),
        pytest.param({"type": "boolean"}, {"type": "boolean"}, [], id="same boolean"),
        pytest.param(
            obj(a=S, b=I),
            obj(a=S),
            ['properties: Invalid value: []string{"b"}: properties have been removed in an incompatible way'],
            id="a property removed downstream",
        ),
        pytest.param(obj(a=S), obj(a=S, c={"type": "boolean"}), [], id="a property added downstream"),
        pytest.param(
            obj(spec=obj(replicas=I)),
            obj(spec=obj(replicas=S)),
            [
                'properties[spec].properties[replicas].type: Invalid value: "string": '
                'The type changed (was "integer", now "string")'
            ],
            id="nested type changed",
        ),
        pytest.param(IOS, IOS, [], id="same int-or-string"),
        pytest.param(
            IOS,
            S,
            [
                'type: Invalid value: "string": The type changed (was "", now "string")',
                "x-kubernetes-int-or-string: Invalid value: false: x-kubernetes-int-or-string value has been "
                "changed in an incompatible way",
                'anyOf: Invalid value: "null": anyOf value has been changed in an incompatible way',
            ],
            id="int-or-string became string",
        ),
        pytest.param(
            S,
            IOS,
            ['type: Invalid value: "": The type changed (was "string", now "")'],
            id="string became int-or-string",
        ),
        pytest.param(
            IOS,
            {"x-kubernetes-int-or-string": True},
            ['anyOf: Invalid value: "null": anyOf value has been changed in an incompatible way'],
            id="int-or-string lost its anyOf",
        ),
        pytest.param(
            {"type": "string", "format": "date-time"},
            {"type": "string", "format": "byte"},
            ['format: Invalid value: "byte": format value has been changed in an incompatible way'],
            id="format changed",
        ),
        pytest.param(
            {"type": "string", "format": "date-time"},
            S,
            ['format: Invalid value: "": format value has been changed in an incompatible way'],
            id="format dropped",
        ),
        pytest.param(
            {"type": "string", "enum": ["a", "b"]},
            {"type": "string", "enum": ["a", "b", "c"]},
            [],
            id="enum widened",
        ),
        pytest.param(
            {"type": "string", "enum": ["a", "b"]},
            {"type": "string", "enum": ["a", "z"]},
            [changed("enum", '[]string{"z"}')],
            id="enum narrowed",
        ),
        pytest.param(
            {"type": "string", "enum": ["a"]},
            S,
            [changed("enum", "[]string{}")],
            id="enum dropped downstream is incompatible, as kcp (it compares the sets, not what they allow)",
        ),
        pytest.param(
            S, {"type": "string", "enum": ["a"]}, [], id="enum added downstream is accepted, as kcp"
        ),
        pytest.param(
            {"type": "string", "enum": ["a", 1]},
            {"type": "string", "enum": ["a", 1]},
            [
                "enum: Invalid value: [\"a\",1]: enum value should be a 'string' for Json type 'string'",
                "enum: Invalid value: [\"a\",1]: enum value should be a 'string' for Json type 'string'",
            ],
            id="non-string enum values",
        ),
        pytest.param(
            PRESERVE,
            obj(a=S),
            [
                "x-kubernetes-preserve-unknown-fields: Invalid value: false: "
                "x-kubernetes-preserve-unknown-fields value changed (was true, now false)"
            ],
            id="preserve-unknown-fields dropped downstream",
        ),
        pytest.param(
            obj(a=S),
            {**obj(a=S), "x-kubernetes-preserve-unknown-fields": True},
            [
                "x-kubernetes-preserve-unknown-fields: Invalid value: true: "
                "x-kubernetes-preserve-unknown-fields value changed (was false, now true)"
            ],
            id="preserve-unknown-fields added downstream",
        ),
        pytest.param(PRESERVE, PRESERVE, [], id="both preserve unknown fields"),
        pytest.param(
            {"x-kubernetes-preserve-unknown-fields": True},
            {"x-kubernetes-preserve-unknown-fields": True},
            [],
            id="untyped preserve-unknown-fields",
        ),
        pytest.param({}, S, ['type: Invalid value: "": Invalid type'], id="untyped upstream node"),
        pytest.param(
            obj(a=S), None, ['Invalid value: "null": new schema doesn\'t allow anything'], id="no downstream"
        ),
        pytest.param(
            {"type": "array", "items": S},
            {"type": "array", "items": I},
            ['Items.type: Invalid value: "integer": The type changed (was "string", now "integer")'],
            id="items changed",
        ),
        pytest.param(
            {"type": "array", "items": S},
            {"type": "array"},
            ['Items: Invalid value: "null": new schema doesn\'t allow anything'],
            id="items dropped downstream",
        ),
        pytest.param(
            {"type": "array", "items": S},
            {"type": "array", "items": S, "uniqueItems": True},
            ["uniqueItems: Invalid value: true: uniqueItems value has been changed in an incompatible way"],
            id="uniqueItems added",
        ),
        pytest.param(
            {"type": "array", "items": S, "uniqueItems": True},
            {"type": "array", "items": S},
            [],
            id="uniqueItems dropped",
        ),
        pytest.param(
            {"type": "array", "items": S, "x-kubernetes-list-type": "set"},
            {"type": "array", "items": S, "x-kubernetes-list-type": "atomic"},
            [changed("x-kubernetes-list-type", '"atomic"')],
            id="list type changed",
        ),
        pytest.param(
            {
                "type": "array",
                "items": obj(k=S),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
            },
            {
                "type": "array",
                "items": obj(k=S),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["j"],
            },
            [changed("x-kubernetes-list-map-keys", '"map"')],
            id="list map keys changed",
        ),
        pytest.param(
            {"type": "object", "x-kubernetes-map-type": "atomic"},
            {"type": "object"},
            [changed("x-kubernetes-map-type", '"null"')],
            id="map type changed",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": S},
            {"type": "object", "additionalProperties": S},
            [],
            id="same additionalProperties",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": S},
            {"type": "object", "additionalProperties": I},
            [
                'additionalProperties.type: Invalid value: "integer": The type changed (was "string", now '
                '"integer")'
            ],
            id="additionalProperties changed",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": S},
            {"type": "object", "additionalProperties": True},
            [],
            id="downstream takes any additional property",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": S},
            {"type": "object"},
            [changed("additionalProperties", "false")],
            id="additionalProperties dropped",
        ),
        pytest.param(
            {"type": "object", "additionalProperties": True},
            {"type": "object"},
            [changed("additionalProperties", "false")],
            id="additionalProperties true dropped",
        ),
        pytest.param(
            obj(a=S, b=S),
            {"type": "object", "additionalProperties": S},
            [],
            id="properties checked against a downstream additionalProperties schema",
        ),
        pytest.param(
            obj(a=S, b=I),
            {"type": "object", "additionalProperties": S},
            ['properties[b].type: Invalid value: "string": The type changed (was "integer", now "string")'],
            id="a property that does not fit the downstream additionalProperties",
        ),
        pytest.param(
            obj(a=S),
            {"type": "object", "additionalProperties": True},
            [],
            id="downstream allows any property",
        ),
        pytest.param(
            obj(a=S, b=S),
            {"type": "object"},
            [
                'properties: Invalid value: []string{"a", "b"}: properties value has been completely cleared '
                "in an incompatible way"
            ],
            id="properties cleared",
        ),
        pytest.param(
            {"type": "integer", "minimum": 0},
            {"type": "integer", "minimum": 1},
            [forbidden("minimum", "integer")],
            id="minimum changed",
        ),
        pytest.param(
            {"type": "integer", "maximum": 5}, {"type": "integer", "maximum": 5}, [], id="same maximum"
        ),
        pytest.param(
            {"type": "number", "multipleOf": 2},
            {"type": "number"},
            [forbidden("multipleOf", "numbers")],
            id="multipleOf dropped",
        ),
        pytest.param(
            {"type": "integer", "enum": [1, 2]},
            {"type": "integer", "enum": [1, 2]},
            [forbidden("enum", "integer")],
            id="enum on integers is not supported",
        ),
        pytest.param(
            {"type": "string", "maxLength": 10},
            {"type": "string", "maxLength": 20},
            [forbidden("maxLength", "string")],
            id="maxLength changed",
        ),
        pytest.param(
            {"type": "string", "pattern": "^a"},
            {"type": "string", "pattern": "^b"},
            [forbidden("pattern", "string")],
            id="pattern changed",
        ),
        pytest.param(
            {"type": "boolean", "enum": [True]},
            {"type": "boolean"},
            [forbidden("enum", "boolean")],
            id="enum on booleans is not supported",
        ),
        pytest.param(
            {"type": "object", "allOf": [{"required": ["a"]}]},
            {"type": "object", "allOf": [{"required": ["a"]}]},
            [
                forbidden("allOf", "object"),
                forbidden("anyOf", "object"),
                forbidden("oneOf", "object"),
            ],
            id="allOf on objects is reported under three names, as kcp",
        ),
        pytest.param(
            {"type": "object", "anyOf": [{"required": ["a"]}]},
            {"type": "object"},
            [],
            id="anyOf on objects is not looked at, as kcp",
        ),
        pytest.param(
            {"type": "array", "items": S, "maxItems": 3},
            {"type": "array", "items": S},
            [],
            id="a changed maxItems alone is not seen, as kcp",
        ),
        pytest.param(
            {"type": "object", "required": ["a"], "nullable": True, "description": "x", "default": {}},
            {"type": "object"},
            [],
            id="required, nullable, description and default are not compared",
        ),
        pytest.param(None, S, [], id="no upstream schema"),
    ],
)
def test_compatibility(upstream, downstream, messages):
    assert incompatibilities(upstream, downstream) == messages
    assert is_compatible(upstream, downstream) is (not messages)


@pytest.mark.parametrize(
    ("upstream", "downstream", "ok"),
    [
        # kcp's own unit vectors of the compatibility reconciler.
        ({"type": "string"}, {"type": "string"}, True),
        ({"type": "integer"}, {"type": "string"}, False),
    ],
)
def test_kcp_vectors(upstream, downstream, ok):
    assert is_compatible(upstream, downstream) is ok


def test_messages_name_every_problem_with_its_full_path():
    up = obj(
        spec=obj(
            replicas=I,
            ports={"type": "array", "items": obj(port=I, name=S)},
            mode={"type": "string", "enum": ["a", "b"]},
        )
    )
    down = obj(
        spec=obj(
            replicas=S,
            ports={"type": "array", "items": obj(port={"type": "boolean"})},
            mode={"type": "string", "enum": ["a"]},
        )
    )
    root = "apps/v1, Resource=deployments.properties[spec].properties"
    assert incompatibilities(up, down, "apps/v1, Resource=deployments") == [
        changed("enum", "[]string{}", f"{root}[mode]."),
        f'{root}[ports].Items.properties: Invalid value: []string{{"name"}}: properties have been removed '
        "in an incompatible way",
        f'{root}[ports].Items.properties[port].type: Invalid value: "boolean": The type changed '
        '(was "integer", now "boolean")',
        f'{root}[replicas].type: Invalid value: "string": The type changed (was "integer", now "string")',
    ]


# --- imported schemas: OpenAPI written as CRD schemas, and the shipped export against them -------------


def test_openapi_schemas_are_written_as_crd_schemas():
    openapi = {
        "type": "object",
        "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
        "properties": {
            "metadata": {"type": "object", "properties": {"name": S}},
            "spec": obj(
                maxSurge={"format": "int-or-string", "oneOf": [I, S]},
                divisor={"oneOf": [S, {"type": "number"}]},
                mixed={"oneOf": [S, obj()]},
                ports={
                    "type": "array",
                    "items": obj(targetPort={"type": "string", "format": "int-or-string"}),
                },
            ),
        },
    }
    int_or_string = {"x-kubernetes-int-or-string": True, "anyOf": [I, S]}
    assert structural_schema(openapi) == {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": obj(
                maxSurge=int_or_string,
                divisor=int_or_string,
                mixed={"oneOf": [S, obj()]},
                ports={"type": "array", "items": obj(targetPort=int_or_string)},
            ),
        },
    }
    assert structural_schema(None) is None
    # A node that is still not structural is refused, as kcp refuses it.
    assert incompatibilities(structural_schema(openapi), structural_schema(openapi)) == [
        'properties[spec].properties[mixed].type: Invalid value: "": Invalid type'
    ]


def test_the_shipped_export_accepts_a_cluster_serving_its_own_schemas_and_refuses_a_retyped_field():
    [deployments] = [o for o in kubernetes_export() if o["metadata"]["name"] == "v124.deployments.apps"]
    schema = deployments["spec"]["versions"][0]["schema"]
    assert is_compatible(schema, copy.deepcopy(schema))
    retyped = copy.deepcopy(schema)
    retyped["properties"]["spec"]["properties"]["replicas"] = S
    assert incompatibilities(schema, retyped) == [
        'properties[spec].properties[replicas].type: Invalid value: "string": The type changed '
        '(was "integer", now "string")'
    ]


@pytest.mark.realapi
@pytest.mark.skipif(
    not os.environ.get("KUBEBUILDER_ASSETS"),
    reason="KUBEBUILDER_ASSETS is not set: the real kube-apiserver tests are skipped",
)
def test_the_shipped_export_is_compatible_with_what_a_real_cluster_imports():
    from kcp_tmc.reconcilers.client import KubeClient
    from kcp_tmc.testing.envtest import RealAPIServer

    wanted = {
        ("", "v1"): {"services"},
        ("apps", "v1"): {"deployments"},
        ("networking.k8s.io", "v1"): {"ingresses"},
    }
    with RealAPIServer() as real, KubeClient.from_kubeconfig_file(real.kubeconfig_path) as client:
        found = discover(client, wanted)
    imported = {(i["group"], i["version"], i["plural"]): i["schema"] for i in found}
    assert sorted(imported) == [
        ("", "v1", "services"),
        ("apps", "v1", "deployments"),
        ("networking.k8s.io", "v1", "ingresses"),
    ]
    for doc in kubernetes_export()[1:]:
        spec = doc["spec"]
        key = (spec["group"], "v1", spec["names"]["plural"])
        assert incompatibilities(spec["versions"][0]["schema"], imported[key], str(key)) == []
