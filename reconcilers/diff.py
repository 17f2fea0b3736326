"""The smallest JSON merge patch (RFC 7386) that turns the current object into the desired one.

Writes are split the way kcp's committer splits them: the main resource gets ``metadata`` and ``spec``
changes, ``/status`` gets ``status`` changes, and an object whose desired state equals its current state
gets no request at all.  Lists are replaced whole (merge-patch semantics), so a patch carries
``metadata.resourceVersion``: the apiserver then refuses it with 409 when the object changed since it was
read, and the engine re-reads and recomputes instead of overwriting someone else's list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["merge_patch", "split_patches"]


def merge_patch(current: Any, desired: Any) -> Any:
    """RFC 7386 patch from ``current`` to ``desired``; ``{}`` when they are equal (for mappings)."""
    if not isinstance(current, Mapping) or not isinstance(desired, Mapping):
        return desired
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
        elif current[key] != value:
            if isinstance(value, Mapping) and isinstance(current[key], Mapping):
                sub = merge_patch(current[key], value)
                if sub:
                    patch[key] = sub
            else:
                patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


def split_patches(
    current: Mapping[str, Any], desired: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(main patch, status patch)`` for the fields the reconciler owns; None where nothing changed.

    Only ``metadata.labels``, ``metadata.annotations``, ``metadata.finalizers``, ``spec`` and ``status``
    are compared: the server owns the rest of ``metadata``.  Each patch carries the current
    ``resourceVersion`` as a precondition.
    """
    rv = (current.get("metadata") or {}).get("resourceVersion")
    main: dict[str, Any] = {}
    cur_meta = current.get("metadata") or {}
    want_meta = desired.get("metadata") or {}
    meta_patch: dict[str, Any] = {}
    for field in ("labels", "annotations"):
        if field in want_meta:
            sub = merge_patch(cur_meta.get(field) or {}, want_meta[field] or {})
            if sub:
                meta_patch[field] = sub
    if "finalizers" in want_meta and list(cur_meta.get("finalizers") or []) != list(
        want_meta["finalizers"] or []
    ):
        meta_patch["finalizers"] = list(want_meta["finalizers"] or []) or None
    if meta_patch:
        main["metadata"] = meta_patch
    if "spec" in desired:
        spec_patch = merge_patch(current.get("spec") or {}, desired["spec"] or {})
        if spec_patch:
            main["spec"] = spec_patch
    status_patch: dict[str, Any] = {}
    if "status" in desired:
        sub = merge_patch(current.get("status") or {}, desired["status"] or {})
        if sub:
            status_patch["status"] = sub
    main_out = _with_rv(main, rv) if main else None
    status_out = _with_rv(status_patch, rv) if status_patch else None
    return main_out, status_out


def _with_rv(patch: dict[str, Any], rv: str | None) -> dict[str, Any]:
    if rv:
        patch.setdefault("metadata", {})["resourceVersion"] = rv
    return patch
