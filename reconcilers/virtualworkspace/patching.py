"""Applying a client's PATCH body to the object it sees, before the write transformation runs."""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

from kcp_tmc.reconcilers.virtualworkspace.errors import (
    StatusError,
    bad_request,
    status,
    unsupported_media_type,
)

__all__ = ["JSON_PATCH", "MERGE_PATCH", "STRATEGIC_MERGE_PATCH", "apply_merge_patch", "apply_patch"]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def apply_patch(obj: dict[str, Any], body: bytes, content_type: str, *, builtin: bool) -> dict[str, Any]:
    """``obj`` with the patch applied; a Status error for a bad body or a patch type not taken.

    A strategic merge patch is taken for the built-in kinds and applied as a merge patch: the kinds this
    workspace serves (namespaces, configmaps, secrets, service accounts, pods, persistent volumes) are
    patched by syncers in their metadata and status maps, where both patch types agree.
    """
    accepted = [JSON_PATCH, MERGE_PATCH] + ([STRATEGIC_MERGE_PATCH] if builtin else []) + [APPLY_PATCH]
    if content_type not in (JSON_PATCH, MERGE_PATCH) and not (
        builtin and content_type == STRATEGIC_MERGE_PATCH
    ):
        raise unsupported_media_type(accepted)
    try:
        patch = json.loads(body)
    except ValueError as exc:
        raise bad_request(f"error decoding patch: {exc}") from None
    if content_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            patched: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
            raise StatusError(status(422, str(exc))) from None
        return patched
    if not isinstance(patch, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    merged: dict[str, Any] = apply_merge_patch(obj, patch)
    return merged
