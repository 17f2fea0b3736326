"""The patch types the apiserver takes: JSON patch, merge patch, strategic merge patch.

JSON patch is RFC 6902 (the ``jsonpatch`` library); merge patch is RFC 7386;
strategic merge patch covers the list-merge keys of the built-in types we use
(containers, env, volumes, ports by name or port, conditions by type,
ownerReferences by uid, finalizers as a set) and the ``$patch``,
``$deleteFromPrimitiveList/<field>``, ``$setElementOrder/<field>`` and
``$retainKeys`` directives.  Merge keys are chosen by field name wherever the
field sits, which is what the built-in Go types amount to for these fields.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from kcp_tmc.testing.errors import StatusError, bad_request, status

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

#: List fields merged by a key instead of replaced, and the key.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "secrets": "name",
    "ephemeralContainerStatuses": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
#: Lists of scalars merged as sets.
SET_LISTS = frozenset({"finalizers"})
#: ``ports`` merge by ``containerPort`` in a container and by ``port`` in a service.
_PORT_KEYS = ("containerPort", "port")


def unprocessable(
    message: str = "the server rejected our request due to an error in our request",
) -> StatusError:
    """The 422 the apiserver sends when a JSON patch does not apply."""
    body = status(422, "Invalid", message)
    body["details"] = {}
    body["code"] = body.pop("code")
    return StatusError(body)


def json_patch(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Applies an RFC 6902 patch; 400 for a malformed patch, 422 when it does not apply."""
    if not isinstance(patch, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        compiled = jsonpatch.JsonPatch(patch)
    except (jsonpatch.InvalidJsonPatch, TypeError) as exc:
        raise bad_request(str(exc)) from exc
    try:
        result = compiled.apply(copy.deepcopy(document))
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise unprocessable() from exc
    if not isinstance(result, dict):
        raise unprocessable()
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch for the fields listed in :data:`MERGE_KEYS` and :data:`SET_LISTS`."""
    if not isinstance(patch, dict):
        raise bad_request("unable to find api field in struct Unstructured for the json field")
    return _smp_map(target if isinstance(target, dict) else {}, patch)


def _smp_map(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = copy.deepcopy(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = _smp_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _smp_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        for key in _PORT_KEYS:
            if all(isinstance(i, dict) and key in i for i in items):
                return key
        return None
    return MERGE_KEYS.get(field)


def _smp_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    existing: list[Any] = copy.deepcopy(current) if isinstance(current, list) else []
    if field in SET_LISTS:
        merged = list(existing)
        for value in patch:
            if value not in merged:
                merged.append(copy.deepcopy(value))
        return _patch_order(merged, patch, existing, lambda v: v)
    key = _merge_key(field, [i for i in patch if not (isinstance(i, dict) and "$patch" in i and len(i) == 1)])
    if key is None:
        return copy.deepcopy([i for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")])
    for item in patch:
        if not isinstance(item, dict):
            continue
        if item.get("$patch") == "replace" and len(item) == 1:
            existing = []
            continue
        wanted = item.get(key)
        index = next(
            (n for n, old in enumerate(existing) if isinstance(old, dict) and old.get(key) == wanted),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                existing.pop(index)
            continue
        if index is None:
            existing.append(_smp_map({}, item))
        else:
            existing[index] = _smp_map(existing[index], item)
    server = current if isinstance(current, list) else []
    wanted_items = [i for i in patch if isinstance(i, dict) and "$patch" not in i]

    def identity(item: Any) -> Any:
        return item.get(key) if isinstance(item, dict) else item

    return _patch_order(existing, wanted_items, server, identity)


def _patch_order(merged: list[Any], patch: list[Any], server: list[Any], identity: Any) -> list[Any]:
    """Orders a merged list as the apiserver does without ``$setElementOrder``.

    The patch's items keep the patch's order; the items only the server had keep
    theirs, and each is put before the first patch item that the server listed
    after it.  So ``[one]`` patched with ``[two]`` reads ``[two, one]``, while
    ``[two, one]`` patched with ``[one, four]`` keeps ``[two, one, four]``.
    """
    patch_ids = [identity(i) for i in patch]
    server_ids = [identity(i) for i in server]

    def place(ids: list[Any], item: Any) -> int:
        ident = identity(item)
        return ids.index(ident) if ident in ids else len(ids)

    from_patch = sorted((m for m in merged if identity(m) in patch_ids), key=lambda m: place(patch_ids, m))
    server_only = sorted(
        (m for m in merged if identity(m) not in patch_ids), key=lambda m: place(server_ids, m)
    )
    ordered: list[Any] = []
    left, right = 0, 0
    while left < len(server_only) or right < len(from_patch):
        if left == len(server_only):
            ordered.append(from_patch[right])
            right += 1
        elif right == len(from_patch):
            ordered.append(server_only[left])
            left += 1
        else:
            a, b = identity(server_only[left]), identity(from_patch[right])
            if a in server_ids and b in server_ids and server_ids.index(a) < server_ids.index(b):
                ordered.append(server_only[left])
                left += 1
            else:
                ordered.append(from_patch[right])
                right += 1
    return ordered


def accepted_patch_types(custom: bool) -> list[str]:
    """The ``Content-Type`` values a PATCH may carry, as the 415 message lists them."""
    if custom:
        return [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
    return [JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH]
