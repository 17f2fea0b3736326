"""One source of truth: the policy model (``kcp_tmc.policies.model``) and the CRD schemas agree.

For each TMC kind, every field of the TypedDict wire model is a property of the CRD's schema and
every property is a field, at every level where both are typed, and scalars have the same JSON
type.  (Required fields may differ: a mutating webhook sees objects before the schema is applied,
so the model keeps fields optional that the CRD requires.)  The kinds of ``kcp_tmc.policies.kinds`` name
the CRDs' group, version, plural and scope.  A field added on one side only fails here.
"""

from __future__ import annotations

import typing
from typing import Any

import pytest

from kcp_tmc.policies import model
from kcp_tmc.policies.kinds import CLUSTER, FEDERATED_QUOTA, LOCATION, SYNC_TARGET, ResourceType
from tests.reconcilers.reconciler_processes import crds


class _Spec(typing.TypedDict):
    name: str
    extra: typing.NotRequired[int]


class _Obj(typing.TypedDict, total=False):
    spec: _Spec


KINDS = (SYNC_TARGET, LOCATION, CLUSTER, FEDERATED_QUOTA)
JSON_TYPES = {str: "string", int: "integer", bool: "boolean", float: "number"}


def _crd(kind: str) -> dict[str, Any]:
    (found,) = [c for c in crds() if c["spec"]["names"]["kind"] == kind]
    return found


def _unwrap(hint: Any) -> Any:
    """The type inside NotRequired/Required."""
    if typing.get_origin(hint) in (typing.NotRequired, typing.Required):
        return typing.get_args(hint)[0]
    return hint


def _is_typeddict(hint: Any) -> bool:
    return isinstance(hint, type) and typing.is_typeddict(hint)


def differences(typed: Any, schema: dict[str, Any], path: str, ignore: tuple[str, ...] = ()) -> list[str]:
    """Where ``typed`` (a TypedDict) and ``schema`` (an object schema) disagree, one line each."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return []  # the CRD keeps this object open on purpose; the model may type it
    hints = {k: v for k, v in typing.get_type_hints(typed, include_extras=True).items() if k not in ignore}
    props = {k: v for k, v in schema.get("properties", {}).items() if k not in ignore}
    found = [f"{path}.{name}: in the model, not in the CRD" for name in sorted(set(hints) - set(props))]
    found += [f"{path}.{name}: in the CRD, not in the model" for name in sorted(set(props) - set(hints))]
    for name in sorted(set(hints) & set(props)):
        found += _compare(_unwrap(hints[name]), props[name], f"{path}.{name}")
    return found


def _compare(hint: Any, schema: dict[str, Any], path: str) -> list[str]:
    origin = typing.get_origin(hint)
    if _is_typeddict(hint):
        return differences(hint, schema, path)
    if origin is list and "items" in schema:
        return _compare(typing.get_args(hint)[0], schema["items"], f"{path}[]")
    if origin is dict and isinstance(schema.get("additionalProperties"), dict):
        return _compare(typing.get_args(hint)[1], schema["additionalProperties"], f"{path}{{}}")
    int_or_string = schema.get("x-kubernetes-int-or-string")
    if hint in JSON_TYPES and "type" in schema and not int_or_string and schema["type"] != JSON_TYPES[hint]:
        return [f"{path}: {JSON_TYPES[hint]} in the model, {schema['type']} in the CRD"]
    return []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_the_kind_names_the_crd(kind: ResourceType) -> None:
    crd = _crd(kind.kind)
    assert crd["spec"]["group"] == kind.group
    assert crd["spec"]["names"]["plural"] == kind.plural
    assert crd["spec"]["scope"] == ("Namespaced" if kind.namespaced else "Cluster")
    assert [v["name"] for v in crd["spec"]["versions"] if v["storage"]] == [kind.version]
    assert crd["metadata"]["name"] == f"{kind.plural}.{kind.group}"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_the_model_and_the_crd_schema_have_the_same_fields(kind: ResourceType) -> None:
    typed = getattr(model, kind.kind)
    (version,) = [v for v in _crd(kind.kind)["spec"]["versions"] if v["name"] == kind.version]
    # metadata is the apiserver's ObjectMeta, not ours to type in the CRD.
    assert differences(typed, version["schema"]["openAPIV3Schema"], kind.kind, ignore=("metadata",)) == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_crd_keeps_status_a_subresource(kind: ResourceType) -> None:
    (version,) = [v for v in _crd(kind.kind)["spec"]["versions"] if v["name"] == kind.version]
    assert version["subresources"]["status"] == {}


def test_a_difference_is_reported_with_its_path() -> None:
    schema = {"properties": {"spec": {"type": "object",
              "properties": {"name": {"type": "integer"}, "other": {"type": "string"},
                             "extra": {"type": "integer"}}}}}  # fmt: skip
    assert differences(_Obj, schema, "Obj") == [
        "Obj.spec.other: in the CRD, not in the model",
        "Obj.spec.name: string in the model, integer in the CRD",
    ]
    assert differences(_Obj, {"properties": {}}, "Obj") == ["Obj.spec: in the model, not in the CRD"]
