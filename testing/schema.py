"""Structural schemas of CustomResourceDefinitions: pruning, defaulting and validation.

What the apiextensions-apiserver does to a custom resource before it stores it,
in the same order: drop ``null`` values of non-nullable fields, prune fields the
schema does not declare (unless ``x-kubernetes-preserve-unknown-fields``), apply
``default`` values, then validate.  Validation errors are the
``field.Error`` values kube-openapi's validator produces, converted the way
``apiextensions-apiserver`` converts them, so the 422 messages read the same.

Supported keywords: ``type``, ``properties``, ``additionalProperties``,
``items``, ``required``, ``enum``, ``maxLength``, ``minLength``, ``pattern``,
``minimum``/``maximum`` (and ``exclusive*``), ``multipleOf``, ``minItems``,
``maxItems``, ``uniqueItems``, ``minProperties``, ``maxProperties``, ``nullable``,
``format`` (``date-time``, ``date``, ``uuid``, ``byte``), ``default``,
``x-kubernetes-int-or-string``, ``x-kubernetes-preserve-unknown-fields``,
``x-kubernetes-embedded-resource``.  Not supported: CEL
(``x-kubernetes-validations``), ``allOf``/``anyOf``/``oneOf``/``not`` beyond
int-or-string, list-type uniqueness (``x-kubernetes-list-type``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import json
import re
from typing import Any

from kcp_tmc.testing.errors import FieldError, go_float

Object = dict[str, Any]
Schema = dict[str, Any]

_ROOT_KEPT = ("apiVersion", "kind", "metadata")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value == int(value) else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- pruning and defaulting ------------------------------------------------------------------------


def prune(obj: Object, schema: Schema | None) -> list[str]:
    """Removes undeclared fields from ``obj`` in place; returns their paths (``spec.foo``)."""
    if not schema:
        return []
    pruned: list[str] = []
    _prune(obj, schema, "", pruned, root=True)
    return pruned


def _prune(value: Any, schema: Schema, path: str, pruned: list[str], root: bool = False) -> None:
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            child = value[key]
            if (root or embedded) and key in _ROOT_KEPT:
                continue
            sub: Schema | None = properties.get(key)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                if preserve or additional is True:
                    continue
                del value[key]
                pruned.append(_join(path, key))
                continue
            if child is None and not sub.get("nullable"):
                # The apiserver drops nulls of non-nullable fields (a default may fill them again).
                del value[key]
                continue
            _prune(child, sub, _join(path, key), pruned)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for index, item in enumerate(value):
                _prune(item, items, f"{path}[{index}]", pruned)


def apply_defaults(obj: Object, schema: Schema | None) -> None:
    """Fills in ``default`` values of absent fields, recursively, in place."""
    if schema:
        _default(obj, schema)


def _default(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties") or {}
        for key, declared in properties.items():
            if key not in value and "default" in declared:
                value[key] = copy.deepcopy(declared["default"])
        for key, child in value.items():
            sub: Schema | None = properties.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub is not None:
                _default(child, sub)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            for item in value:
                _default(item, items)


# --- validation -------------------------------------------------------------------------------------


def validate(obj: Object, schema: Schema | None) -> list[FieldError]:
    """Validates ``obj`` against the schema; ``metadata``, ``apiVersion`` and ``kind`` are not checked."""
    if not schema:
        return []
    errors: list[FieldError] = []
    body = {k: v for k, v in obj.items() if k not in _ROOT_KEPT}
    root = dict(schema)
    root["required"] = [r for r in schema.get("required") or [] if r not in _ROOT_KEPT]
    root["properties"] = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _ROOT_KEPT}
    _validate(body, root, "", errors)
    return errors


def _type_error(path: str, expected: str, actual: str, value: Any) -> FieldError:
    return FieldError.type_invalid(
        path, actual, f"{path} in body must be of type {expected}: {json.dumps(actual)}"
    )


def _validate(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> None:
    int_or_string = bool(schema.get("x-kubernetes-int-or-string"))
    expected = schema.get("type")
    actual = _json_type(value)
    if value is None:
        if expected and not schema.get("nullable"):
            errors.append(_type_error(path, expected, "null", value))
        return
    if int_or_string:
        if actual not in ("integer", "string"):
            errors.append(_type_error(path, "integer,string", actual, value))
            return
    elif expected:
        matches = actual == expected or (expected == "number" and actual == "integer")
        if not matches:
            errors.append(_type_error(path, expected, actual, value))
            return
    if isinstance(value, str):
        _validate_string(value, schema, path, errors)
    if isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)
    if isinstance(value, list):
        _validate_list(value, schema, path, errors)
    if "enum" in schema and value not in schema["enum"]:
        allowed = [v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for v in schema["enum"]]
        errors.append(FieldError.not_supported(path, value, allowed))
    if isinstance(value, dict):
        _validate_object(value, schema, path, errors)


_FORMATS = {
    "date-time": re.compile(
        r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
    ),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"),
}


def _format_ok(fmt: str, value: str) -> bool:
    if fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    pattern = _FORMATS.get(fmt)
    if pattern is None:
        return True
    if not pattern.match(value):
        return False
    if fmt in ("date", "date-time"):
        try:
            datetime.date.fromisoformat(value[:10])
        except ValueError:
            return False
    return True


def _validate_string(value: str, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(FieldError.too_long(path, int(schema["maxLength"])))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            FieldError.invalid(
                path, value, f"{path} in body should be at least {schema['minLength']} chars long"
            )
        )
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(FieldError.invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt and not _format_ok(fmt, value):
        errors.append(
            FieldError.type_invalid(path, value, f"{path} in body must be of type {fmt}: {json.dumps(value)}")
        )


def _num(value: float) -> str:
    return go_float(float(value))


def _validate_number(value: float, schema: Schema, path: str, errors: list[FieldError]) -> None:
    # A float stays a float even when whole (Go decodes 1000000.0 as a float64 and prints 1e+06).
    if schema.get("multipleOf"):
        factor = schema["multipleOf"]
        if (value / factor) != int(value / factor):
            errors.append(
                FieldError.invalid(path, value, f"{path} in body should be a multiple of {_num(factor)}")
            )
    if "maximum" in schema:
        maximum = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= maximum:
            errors.append(
                FieldError.invalid(path, value, f"{path} in body should be less than {_num(maximum)}")
            )
        elif value > maximum:
            errors.append(
                FieldError.invalid(
                    path, value, f"{path} in body should be less than or equal to {_num(maximum)}"
                )
            )
    if "minimum" in schema:
        minimum = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= minimum:
            errors.append(
                FieldError.invalid(path, value, f"{path} in body should be greater than {_num(minimum)}")
            )
        elif value < minimum:
            errors.append(
                FieldError.invalid(
                    path, value, f"{path} in body should be greater than or equal to {_num(minimum)}"
                )
            )


def _validate_list(value: list[Any], schema: Schema, path: str, errors: list[FieldError]) -> None:
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            _validate(item, items, f"{path}[{index}]", errors)
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            FieldError.invalid(
                path, len(value), f"{path} in body should have at least {schema['minItems']} items"
            )
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(FieldError.too_many(path, len(value), int(schema["maxItems"])))
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                errors.append(FieldError.invalid(path, value, f"{path} in body shouldn't contain duplicates"))
                break
            seen.append(item)


def _validate_object(value: Object, schema: Schema, path: str, errors: list[FieldError]) -> None:
    count = len(value)
    if "minProperties" in schema and count < schema["minProperties"]:
        errors.append(
            FieldError.invalid(
                path, count, f"{path} in body should have at least {schema['minProperties']} properties"
            )
        )
    if "maxProperties" in schema and count > schema["maxProperties"]:
        errors.append(FieldError.too_many(path, count, int(schema["maxProperties"])))
    properties: dict[str, Schema] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key in sorted(value):
        sub = properties.get(key)
        if sub is None and isinstance(additional, dict):
            sub = additional
        if sub is not None:
            _validate(value[key], sub, _join(path, key), errors)
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(FieldError.required(_join(path, key)))


# --- CRD-level helpers -----------------------------------------------------------------------------


def unknown_field_messages(paths: list[str]) -> list[str]:
    """``unknown field "spec.foo"`` for each pruned path, as strict field validation reports them."""
    return [f"unknown field {json.dumps(p)}" for p in paths]


def describe_number(value: float) -> str:
    """Go's ``%v`` of a JSON number (exported for the OpenAPI writer)."""
    return _num(value)
