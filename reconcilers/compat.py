"""Structural schema compatibility between an upstream (kcp) schema and a downstream (physical) one.

kcp accepts a resource for a SyncTarget when the schema the physical cluster serves can hold what the
upstream schema describes (``EnsureStructuralSchemaCompatibility``).  This module implements the rule
the project needs and documents: the two OpenAPI v3 schemas are walked together through ``properties``,
``items`` and ``additionalProperties``; at every property path present in both, the types must agree.
A property present on one side only is not a conflict (the syncer passes unknown fields through).

Type rules:

- no ``type`` (an untyped or ``x-kubernetes-preserve-unknown-fields`` node) agrees with anything;
- ``x-kubernetes-int-or-string`` agrees with ``integer``, ``string`` and another int-or-string;
- ``integer`` upstream fits a ``number`` downstream (every integer is a number), not the reverse;
- everything else must be equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["incompatibilities", "is_compatible"]

_INT_OR_STRING = "int-or-string"


def _type_of(schema: Mapping[str, Any]) -> str | None:
    if schema.get("x-kubernetes-int-or-string"):
        return _INT_OR_STRING
    value = schema.get("type")
    return value if isinstance(value, str) and value else None


def _types_agree(upstream: str | None, downstream: str | None) -> bool:
    if upstream is None or downstream is None or upstream == downstream:
        return True
    if _INT_OR_STRING in (upstream, downstream):
        other = downstream if upstream == _INT_OR_STRING else upstream
        return other in ("integer", "string")
    return upstream == "integer" and downstream == "number"


def incompatibilities(upstream: Any, downstream: Any, path: str = "") -> list[str]:
    """Every type mismatch at a shared path, as ``<path>: upstream "<t>", downstream "<t>"`` lines."""
    if not isinstance(upstream, Mapping) or not isinstance(downstream, Mapping):
        return []
    problems: list[str] = []
    up_type, down_type = _type_of(upstream), _type_of(downstream)
    if not _types_agree(up_type, down_type):
        return [f'{path or "."}: upstream type "{up_type}", downstream type "{down_type}"']
    up_props, down_props = upstream.get("properties"), downstream.get("properties")
    if isinstance(up_props, Mapping) and isinstance(down_props, Mapping):
        for name in sorted(up_props.keys() & down_props.keys()):
            problems += incompatibilities(up_props[name], down_props[name], f"{path}.{name}")
    problems += incompatibilities(upstream.get("items"), downstream.get("items"), f"{path}[*]")
    problems += incompatibilities(
        upstream.get("additionalProperties"), downstream.get("additionalProperties"), f"{path}[*]"
    )
    return problems


def is_compatible(upstream: Any, downstream: Any) -> bool:
    """True when no shared path has a type mismatch (see the module docstring for the rules)."""
    return not incompatibilities(upstream, downstream)
