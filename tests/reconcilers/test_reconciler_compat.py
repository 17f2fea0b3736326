"""Structural schema compatibility: a type mismatch at any shared property path is incompatible."""

import pytest

from kcp_tmc.reconcilers.compat import incompatibilities, is_compatible


def obj(**props):
    return {"type": "object", "properties": props}


@pytest.mark.parametrize(
    ("upstream", "downstream", "ok"),
    [
        ({"type": "string"}, {"type": "string"}, True),
        ({"type": "integer"}, {"type": "string"}, False),
        ({"type": "integer"}, {"type": "number"}, True),
        ({"type": "number"}, {"type": "integer"}, False),
        ({"x-kubernetes-int-or-string": True}, {"type": "integer"}, True),
        ({"type": "string"}, {"x-kubernetes-int-or-string": True}, True),
        ({"x-kubernetes-int-or-string": True}, {"type": "boolean"}, False),
        ({}, {"type": "string"}, True),
        ({"type": "object", "x-kubernetes-preserve-unknown-fields": True}, obj(a={"type": "string"}), True),
        (
            obj(a={"type": "string"}, b={"type": "integer"}),
            obj(a={"type": "string"}, c={"type": "boolean"}),
            True,
        ),
        (obj(spec=obj(replicas={"type": "integer"})), obj(spec=obj(replicas={"type": "string"})), False),
        (
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": {"type": "integer"}},
            False,
        ),
        (
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": "string"}},
            True,
        ),
        (None, {"type": "string"}, True),
    ],
)
def test_compatibility(upstream, downstream, ok):
    assert is_compatible(upstream, downstream) is ok


def test_messages_name_every_mismatching_path():
    up = obj(
        spec=obj(
            replicas={"type": "integer"}, ports={"type": "array", "items": obj(port={"type": "integer"})}
        )
    )
    down = obj(
        spec=obj(replicas={"type": "string"}, ports={"type": "array", "items": obj(port={"type": "boolean"})})
    )
    assert incompatibilities(up, down) == [
        '.spec.ports[*].port: upstream type "integer", downstream type "boolean"',
        '.spec.replicas: upstream type "integer", downstream type "string"',
    ]
    assert incompatibilities({"type": "integer"}, {"type": "string"}) == [
        '.: upstream type "integer", downstream type "string"'
    ]
