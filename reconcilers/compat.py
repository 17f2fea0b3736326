"""Structural schema compatibility of an upstream (kcp) schema with a downstream (physical cluster) one.

kcp accepts a resource for a SyncTarget when every document the upstream schema allows is also allowed
by the schema the physical cluster serves (``EnsureStructuralSchemaCompatibility`` without narrowing:
upstream is the "existing" schema, downstream the "new" one).  The rules, node by node:

- ``x-kubernetes-preserve-unknown-fields`` must be the same on both sides;
- the type must be the same, except that an ``integer`` fits a downstream ``number``;
- ``x-kubernetes-int-or-string`` must stay int-or-string, with the same ``anyOf``;
- objects: no upstream property may be missing downstream (unless downstream takes any property, by an
  ``additionalProperties`` schema each property is then checked against, or ``true``); upstream
  ``additionalProperties`` must be kept; ``x-kubernetes-map-type`` must be the same;
- arrays: the items are compared; ``uniqueItems`` may not be added; ``x-kubernetes-list-type`` and
  ``x-kubernetes-list-map-keys`` must be the same;
- strings: the enum may grow but not lose a value; ``format``, ``pattern``, ``maxLength`` and
  ``minLength`` must be the same;
- numbers: ``maximum``, ``minimum`` (with their exclusive flags) and ``multipleOf`` must be the same;
- constructs the comparison does not support (``enum`` on numbers, booleans, arrays and objects;
  ``allOf``, ``anyOf``, ``oneOf``, ``not``) are incompatible wherever either side uses them;
- an upstream node without a type that is neither int-or-string nor preserve-unknown-fields is invalid.

kcp checks a few constructs by the wrong field, and so does this module, so that the same schemas are
accepted: for strings, booleans, arrays and objects only ``allOf`` is looked at (reported three times,
as ``allOf``, ``anyOf`` and ``oneOf``); a changed ``maxItems``/``minItems`` is reported only where the
array schema also carries ``maxLength``/``minLength``; the enum message lists the values downstream
added; the map-type and list-map-keys messages print the list type.  Where kcp would dereference a
missing ``additionalProperties`` downstream, it counts here as ``false``.

Messages are those of kcp (apimachinery field errors), one per problem, with the path from the root
given to :func:`incompatibilities`: ``properties[spec].properties[replicas].type: Invalid value:
"string": The type changed (was "integer", now "string")``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kcp_tmc.policies.gofmt import go_quote

__all__ = ["incompatibilities", "is_compatible"]

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_INT_OR_STRING = "x-kubernetes-int-or-string"

Schema = Mapping[str, Any]


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _key(path: str, key: str) -> str:
    return f"{path}[{key}]"


def _go(value: Any) -> str:
    # How apimachinery prints a bad value: strings quoted, scalars plain, string lists as Go literals.
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "[]string{" + ", ".join(go_quote(v) for v in value) + "}"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _at(path: str, body: str) -> str:
    return f"{path}: {body}" if path else body


def _invalid(path: str, value: Any, detail: str) -> str:
    return _at(path, f"Invalid value: {_go(value)}: {detail}")


def _forbidden(path: str, construct: str, type_name: str) -> str:
    return _at(
        path,
        f'Forbidden: The "{construct}" JSON Schema construct is not supported by the Schema '
        f'negotiation for type "{type_name}"',
    )


def _set(schema: Schema, name: str) -> bool:
    """Whether ``name`` has a non-zero value (Go's ``IsZero`` on the converted field)."""
    value = schema.get(name)
    return value is not None and value is not False and value != ""


def _unsupported(
    path: str, existing: Schema, new: Schema, name: str, type_name: str, field: str = ""
) -> list[str]:
    field = field or name
    return [_forbidden(path, name, type_name)] if _set(existing, field) or _set(new, field) else []


def _type(schema: Schema) -> str:
    value = schema.get("type")
    return value if isinstance(value, str) else ""


def _same_type(path: str, existing: Schema, new: Schema) -> list[str]:
    was, now = _type(existing), _type(new)
    if was != now:
        return [
            _invalid(
                _child(path, "type"), now, f"The type changed (was {go_quote(was)}, now {go_quote(now)})"
            )
        ]
    return []


def _numeric(path: str, existing: Schema, new: Schema, type_name: str) -> list[str]:
    errors: list[str] = []
    for construct in ("not", "allOf", "anyOf", "oneOf", "enum"):
        errors += _unsupported(path, existing, new, construct, type_name)
    if any(existing.get(k) != new.get(k) for k in ("maximum", "minimum")) or any(
        bool(existing.get(k)) != bool(new.get(k)) for k in ("exclusiveMaximum", "exclusiveMinimum")
    ):
        errors += _unsupported(path, existing, new, "maximum", type_name)
        errors += _unsupported(path, existing, new, "minimum", type_name)
    if existing.get("multipleOf") != new.get("multipleOf"):
        errors += _unsupported(path, existing, new, "multipleOf", type_name)
    return errors


def _all_of_thrice(
    path: str, existing: Schema, new: Schema, type_name: str, names: tuple[str, str, str]
) -> list[str]:
    # kcp looks at allOf under all three names for these types.
    errors: list[str] = []
    for name in names:
        errors += _unsupported(path, existing, new, name, type_name, field="allOf")
    return errors


def _string_validation(path: str, existing: Schema, new: Schema) -> list[str]:
    errors = _all_of_thrice(path, existing, new, "string", ("allOf", "anytOf", "oneOf"))
    if existing.get("maxLength") != new.get("maxLength") or existing.get("minLength") != new.get("minLength"):
        errors += _unsupported(path, existing, new, "maxLength", "string")
        errors += _unsupported(path, existing, new, "minLength", "string")
    if (existing.get("pattern") or "") != (new.get("pattern") or ""):
        errors += _unsupported(path, existing, new, "pattern", "string")

    def values(schema: Schema) -> set[str]:
        enum = schema.get("enum") or []
        out: set[str] = set()
        for value in enum:
            if isinstance(value, str):
                out.add(value)
            else:
                errors.append(
                    _invalid(
                        _child(path, "enum"), enum, "enum value should be a 'string' for Json type 'string'"
                    )
                )
        return out

    was, now = values(existing), values(new)
    if not now >= was:
        errors.append(
            _invalid(
                _child(path, "enum"), sorted(now - was), "enum value has been changed in an incompatible way"
            )
        )
    if (existing.get("format") or "") != (new.get("format") or ""):
        errors.append(
            _invalid(
                _child(path, "format"),
                new.get("format") or "",
                "format value has been changed in an incompatible way",
            )
        )
    return errors


def _array(path: str, existing: Schema, new: Schema) -> list[str]:
    errors = _same_type(path, existing, new)
    errors += _all_of_thrice(path, existing, new, "array", ("allOf", "anytOf", "oneOf"))
    errors += _unsupported(path, existing, new, "enum", "array")
    if existing.get("maxItems") != new.get("maxItems") or existing.get("minItems") != new.get("minItems"):
        errors += _unsupported(path, existing, new, "maxItems", "array", field="maxLength")
        errors += _unsupported(path, existing, new, "minItems", "array", field="minLength")
    if not existing.get("uniqueItems") and new.get("uniqueItems"):
        errors.append(
            _invalid(
                _child(path, "uniqueItems"), True, "uniqueItems value has been changed in an incompatible way"
            )
        )
    errors += _check(_child(path, "Items"), existing.get("items"), new.get("items"))
    list_type = new.get("x-kubernetes-list-type")
    if existing.get("x-kubernetes-list-type") != list_type:
        errors.append(
            _invalid(
                _child(path, "x-kubernetes-list-type"),
                list_type,
                "x-kubernetes-list-type value has been changed in an incompatible way",
            )
        )
    if set(existing.get("x-kubernetes-list-map-keys") or []) != set(
        new.get("x-kubernetes-list-map-keys") or []
    ):
        errors.append(
            _invalid(
                _child(path, "x-kubernetes-list-map-keys"),
                list_type,
                "x-kubernetes-list-map-keys value has been changed in an incompatible way",
            )
        )
    return errors


def _additional(schema: Schema) -> tuple[bool, Schema | None]:
    """``(allows, schema)`` of ``additionalProperties``: a schema allows, ``true`` allows, absent does not."""
    value = schema.get("additionalProperties")
    if isinstance(value, Mapping):
        return True, value
    return value is True, None


def _object(path: str, existing: Schema, new: Schema) -> list[str]:
    errors = _same_type(path, existing, new)
    if existing.get("x-kubernetes-map-type") != new.get("x-kubernetes-map-type"):
        errors.append(
            _invalid(
                _child(path, "x-kubernetes-map-type"),
                new.get("x-kubernetes-list-type"),
                "x-kubernetes-map-type value has been changed in an incompatible way",
            )
        )
    was_props: Mapping[str, Any] = existing.get("properties") or {}
    now_props: Mapping[str, Any] = new.get("properties") or {}
    now_allows, now_schema = _additional(new)
    props_path = _child(path, "properties")
    if was_props:
        if now_props:
            removed = sorted(set(was_props) - set(now_props))
            if removed:
                errors.append(
                    _invalid(props_path, removed, "properties have been removed in an incompatible way")
                )
            for name in sorted(set(was_props) & set(now_props)):
                errors += _check(_key(props_path, name), was_props[name], now_props[name])
        elif now_schema is not None:
            for name in sorted(was_props):
                errors += _check(_key(props_path, name), was_props[name], now_schema)
        elif not now_allows:
            errors.append(
                _invalid(
                    props_path,
                    sorted(was_props),
                    "properties value has been completely cleared in an incompatible way",
                )
            )
    elif "additionalProperties" in existing and existing["additionalProperties"] is not None:
        was_allows, was_schema = _additional(existing)
        extra_path = _child(path, "additionalProperties")
        if was_schema is not None:
            if now_schema is not None:
                errors += _check(extra_path, was_schema, now_schema)
            elif not now_allows:
                errors.append(
                    _invalid(
                        extra_path,
                        False,
                        "additionalProperties value has been changed in an incompatible way",
                    )
                )
        elif was_allows and not now_allows:
            errors.append(
                _invalid(
                    extra_path, False, "additionalProperties value has been changed in an incompatible way"
                )
            )
    errors += _all_of_thrice(path, existing, new, "object", ("allOf", "anyOf", "oneOf"))
    errors += _unsupported(path, existing, new, "enum", "object")
    return errors


def _int_or_string(path: str, existing: Schema, new: Schema) -> list[str]:
    errors = _same_type(path, existing, new)
    if not new.get(_INT_OR_STRING):
        errors.append(
            _invalid(
                _child(path, _INT_OR_STRING),
                False,
                "x-kubernetes-int-or-string value has been changed in an incompatible way",
            )
        )
    if existing.get("anyOf") != new.get("anyOf"):
        errors.append(
            _invalid(
                _child(path, "anyOf"), new.get("anyOf"), "anyOf value has been changed in an incompatible way"
            )
        )
    # anyOf is expected on int-or-string: the string and integer checks below leave it out.
    was = {k: v for k, v in existing.items() if k != "anyOf"}
    now = {k: v for k, v in new.items() if k != "anyOf"}
    return errors + _string_validation(path, was, now) + _numeric(path, was, now, "integer")


# Problems of an upstream node compared with an equal downstream one, by (id, path).  Downstream imports
# mostly repeat the upstream schema, and one upstream schema is compared with the import of every
# SyncTarget: an equal subtree is judged once (~35 ms for a Deployment schema, then ~1 ms per import).
# The node is kept referenced so that its id stays its own; schemas are never modified in place.
_SELF_CHECKED: dict[tuple[int, str], tuple[Any, list[str]]] = {}
_SELF_CHECKED_MAX = 20_000


def _check(path: str, existing: Any, new: Any) -> list[str]:
    if not isinstance(existing, Mapping):
        # Nothing upstream to keep (kcp never gets here: its schemas are structural).
        return []
    if not isinstance(new, Mapping):
        return [_invalid(path, None, "new schema doesn't allow anything")]
    if existing is new or existing == new:
        memo = _SELF_CHECKED.get((id(existing), path))
        if memo is not None and memo[0] is existing:
            return list(memo[1])
        problems = _compare(path, existing, existing)
        if len(_SELF_CHECKED) >= _SELF_CHECKED_MAX:
            _SELF_CHECKED.clear()
        _SELF_CHECKED[(id(existing), path)] = (existing, problems)
        return list(problems)
    return _compare(path, existing, new)


def _compare(path: str, existing: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    was, now = bool(existing.get(_PRESERVE)), bool(new.get(_PRESERVE))
    if was != now:
        return [
            _invalid(
                _child(path, _PRESERVE),
                now,
                f"x-kubernetes-preserve-unknown-fields value changed (was {_go(was)}, now {_go(now)})",
            )
        ]
    kind = _type(existing)
    if kind == "number":
        if _type(new) == "integer":
            return _same_type(path, existing, new)
        return _same_type(path, existing, new) or _numeric(path, existing, new, "numbers")
    if kind == "integer":
        errors = [] if _type(new) == "number" else _same_type(path, existing, new)
        return errors or _numeric(path, existing, new, "integer")
    if kind == "string":
        return _same_type(path, existing, new) + _string_validation(path, existing, new)
    if kind == "boolean":
        errors = _same_type(path, existing, new)
        errors += _all_of_thrice(path, existing, new, "boolean", ("allOf", "anytOf", "oneOf"))
        return errors + _unsupported(path, existing, new, "enum", "boolean")
    if kind == "array":
        return _array(path, existing, new)
    if kind == "object":
        return _object(path, existing, new)
    if kind == "" and existing.get(_INT_OR_STRING):
        return _int_or_string(path, existing, new)
    if kind == "" and existing.get(_PRESERVE):
        return _same_type(path, existing, new)
    return [_invalid(_child(path, "type"), kind, "Invalid type")]


def incompatibilities(upstream: Any, downstream: Any, path: str = "") -> list[str]:
    """Every reason the downstream schema cannot hold what the upstream one allows (empty: compatible)."""
    if upstream is None:
        return []
    return _check(path, upstream, downstream)


def is_compatible(upstream: Any, downstream: Any) -> bool:
    """True when the downstream schema accepts every document the upstream one does."""
    return not incompatibilities(upstream, downstream)
