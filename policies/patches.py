"""Building RFC 6902 JSON Patch operations without diffing whole objects.

Policies emit operations directly; the review path never compares a
before and after copy of an object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kcp_tmc.policies.admission import JsonPatchOperation


def escape(segment: str) -> str:
    """Escape one reference token for a JSON pointer (RFC 6901: ``~`` then ``/``)."""
    return segment.replace("~", "~0").replace("/", "~1")


def pointer(*segments: str | int) -> str:
    """A JSON pointer from raw segments: ``pointer("metadata", "labels", "a/b")``."""
    return "".join("/" + escape(str(s)) for s in segments)


def add(path: str, value: Any) -> JsonPatchOperation:
    """An ``add`` operation (creates or replaces a member)."""
    return {"op": "add", "path": path, "value": value}


def replace(path: str, value: Any) -> JsonPatchOperation:
    """A ``replace`` operation (the member must exist)."""
    return {"op": "replace", "path": path, "value": value}


def remove(path: str) -> JsonPatchOperation:
    """A ``remove`` operation (the member must exist)."""
    return {"op": "remove", "path": path}


def set_map_entry(
    obj: dict[str, Any], parents: Sequence[str], key: str, value: Any
) -> list[JsonPatchOperation]:
    """Operations that set ``obj[parents...][key] = value``, creating missing parent maps.

    ``parents`` are raw (unescaped) segments, for example ``("metadata", "labels")``.
    Returns no operation when the value is already there.
    """
    ops: list[JsonPatchOperation] = []
    node: Any = obj
    path: list[str] = []
    for i, seg in enumerate(parents):
        path.append(seg)
        child = node.get(seg) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            # Create the rest of the chain in one add: nothing below exists.
            rest = parents[i + 1 :]
            value_tree: Any = {key: value}
            for name in reversed(rest):
                value_tree = {name: value_tree}
            ops.append(add(pointer(*path), value_tree))
            return ops
        node = child
    if node.get(key, _MISSING) == value:
        return ops
    ops.append(add(pointer(*path, key), value))
    return ops


_MISSING = object()
