"""What the syncer and upsyncer virtual workspaces do to objects between the backing apiserver and a syncer.

Pure functions over plain dicts; the server does the HTTP.  They follow kcp v0.11's syncer transformer:

- **read** (:func:`to_syncer`, for get, list items and each watch event): the syncer sees the upstream
  object without finalizers, deletion timestamp and the per-target override annotations; a per-target
  JSON Patch may rewrite its ``spec``; summarized fields (``status`` by default) show the target's own
  overrides, and a promotable field the target has not written is hidden; the target's syncer finalizer
  and its per-target deletion request are shown as the real ones.
- **write** (:func:`plan_writes`, :func:`from_syncer`, for update and update-status from the syncer):
  only summarized fields are taken from what the syncer sent.  With a single target they are promoted
  into the upstream object (the override says ``##promoted##``); with several they are kept as per-target
  overrides.  Everything else the syncer changed is discarded: the object written is the stored one plus
  those changes.  A syncer that drops its finalizer from an object being removed from its target
  unassigns the object from the target.
- **upsyncer write** (:func:`upsyncer_from_client`): the object is written as sent, after applying the
  JSON Patch of its ``internal.workload.kcp.io/upsyncdiff<key>`` annotation.

Every failure is a :class:`TransformError` carrying the Kubernetes ``Status`` the server answers with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonpatch

from kcp_tmc.policies.keys import (
    ANNOTATION_CLUSTER,
    ANNOTATION_SUMMARIZING,
    PREFIX_SPEC_DIFF_ANNOTATION,
    PREFIX_STATE_LABEL,
    PREFIX_SYNCER_DIFF_ANNOTATION,
    PREFIX_SYNCER_FINALIZER,
    SYNC,
    deletion_annotation,
    go_json,
    soft_finalizers_annotation,
    spec_diff_annotation,
    state_label,
    syncer_diff_annotation,
    syncer_finalizer,
    upsync_diff_annotation,
)
from kcp_tmc.policies.kinds import group_resource_of
from kcp_tmc.policies.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "DEFAULT_RULES",
    "PROMOTED",
    "SummaryField",
    "TransformError",
    "Write",
    "from_syncer",
    "plan_writes",
    "summarizing_rules",
    "to_syncer",
    "upsyncer_from_client",
]

#: The override value meaning "this target's value is the upstream object's own".
PROMOTED = "##promoted##"

Obj = dict[str, Any]


def _clone(value: Any) -> Any:
    # A copy of a JSON tree (dicts, lists, scalars): what copy.deepcopy does, a few times faster.
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _clone_object(obj: Mapping[str, Any]) -> Obj:
    return {k: _clone(v) for k, v in obj.items()}


class TransformError(Exception):
    """A refused read or write: ``code`` and ``message`` are those of the Kubernetes ``Status``."""

    def __init__(self, code: int, message: str, reason: str = "", details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.details = details or {}

    def status(self) -> Obj:
        """The ``Status`` body to answer with (empty fields left out, as Go's ``omitempty`` does)."""
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
        body["message"] = self.message
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _internal(message: str) -> TransformError:
    # apimachinery's NewInternalError: the cause is repeated in details.causes.
    return TransformError(
        500, f"Internal error occurred: {message}", "InternalError", {"causes": [{"message": message}]}
    )


def _about(group: str, resource: str, name: str) -> Obj:
    return {k: v for k, v in (("name", name), ("group", group), ("kind", resource)) if v}


# --- summarizing rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryField:
    """One summarized field: a dot path (``status``, ``spec.field``) and whether it may be promoted."""

    path: str
    promote: bool = False

    @property
    def elements(self) -> list[str]:
        return self.path.split(".")

    @property
    def is_status(self) -> bool:
        """True for the whole ``status``: the field a ``/status`` write (and only that) carries."""
        return self.path == "status"

    def get(self, obj: Mapping[str, Any]) -> tuple[Any, bool]:
        """``(value, present)``; a non-object on the way is an error, as in apimachinery."""
        current: Any = obj
        for i, element in enumerate(self.elements):
            if not isinstance(current, Mapping):
                raise ValueError(f"{'.'.join(self.elements[:i])} is not an object")
            if element not in current:
                return None, False
            current = current[element]
        return current, True

    def set(self, obj: Obj, value: Any) -> None:
        current = obj
        for i, element in enumerate(self.elements[:-1]):
            child = current.setdefault(element, {})
            if not isinstance(child, dict):
                raise ValueError(f"{'.'.join(self.elements[: i + 1])} is not an object")
            current = child
        current[self.elements[-1]] = _clone(value)

    def delete(self, obj: Obj) -> None:
        current: Any = obj
        for element in self.elements[:-1]:
            current = current.get(element) if isinstance(current, dict) else None
        if isinstance(current, dict):
            current.pop(self.elements[-1], None)


#: Without a summarizing annotation: the whole status, promotable.
DEFAULT_RULES: tuple[SummaryField, ...] = (SummaryField("status", promote=True),)


def _go_field(item: Any) -> SummaryField:
    # Go's encoding/json matches struct fields case-insensitively; a later duplicate key wins.
    if item is None:
        return SummaryField("")
    if not isinstance(item, Mapping):
        raise ValueError("each rule must be an object with fieldPath and promoteToUpstream")
    path: Any = ""
    promote: Any = False
    for name, value in item.items():
        if name.lower() == "fieldpath":
            path = "" if value is None else value
        elif name.lower() == "promotetoupstream":
            promote = False if value is None else value
    if not isinstance(path, str):
        raise ValueError("fieldPath must be a string")
    if not isinstance(promote, bool):
        raise ValueError("promoteToUpstream must be a boolean")
    return SummaryField(path, promote)


def summarizing_rules(obj: Mapping[str, Any]) -> tuple[SummaryField, ...]:
    """The fields summarized for ``obj``: its ``experimental.summarizing.workload.kcp.io`` or the default."""
    encoded = _annotations(obj).get(ANNOTATION_SUMMARIZING) or ""
    if not encoded:
        return DEFAULT_RULES
    decoded = json.loads(encoded)
    if decoded is None:
        return ()
    if not isinstance(decoded, list):
        raise ValueError("the annotation must hold a JSON array")
    return tuple(_go_field(item) for item in decoded)


# --- small accessors ------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _meta(obj).get("annotations") or {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return _meta(obj).get("labels") or {}


def _finalizers(obj: Mapping[str, Any]) -> list[str]:
    return list(_meta(obj).get("finalizers") or [])


def _described(obj: Mapping[str, Any]) -> str:
    # How kcp names an upstream object in its messages: <cluster>|<namespace>/<name>.
    meta = _meta(obj)
    cluster = _annotations(obj).get(ANNOTATION_CLUSTER, "")
    return f"{cluster}|{meta.get('namespace', '')}/{meta.get('name', '')}"


@dataclass(frozen=True)
class _Intent:
    state: str
    deletion: str | None
    soft_finalizers: str


def _sync_intents(obj: Mapping[str, Any]) -> dict[str, _Intent]:
    """Per SyncTarget key holding a state label: its state, removal request and soft finalizers."""
    annotations = _annotations(obj)
    intents: dict[str, _Intent] = {}
    for label, value in _labels(obj).items():
        if not label.startswith(PREFIX_STATE_LABEL):
            continue
        key = label[len(PREFIX_STATE_LABEL) :]
        deletion = annotations.get(deletion_annotation(key))
        if deletion is not None:
            try:
                deletion = format_rfc3339(parse_rfc3339(str(deletion)))
            except ValueError as exc:
                raise _internal(
                    f'parsing of the deletion annotation for sync target "{key}" failed: {exc}'
                ) from None
        intents[key] = _Intent(
            str(value), deletion, str(annotations.get(soft_finalizers_annotation(key), ""))
        )
    return intents


def _overrides(obj: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """The target's ``diff.syncer.internal.kcp.io/<key>`` overrides; None when it has none."""
    encoded = _annotations(obj).get(syncer_diff_annotation(key))
    if encoded is None:
        return None
    try:
        decoded = json.loads(encoded)
    except ValueError as exc:
        raise _internal(
            f"unable to get syncer view fields from upstream resource {_described(obj)} "
            f"for SyncTarget {key}: {exc}"
        ) from None
    if decoded is None:
        return {}
    if not isinstance(decoded, dict):
        raise _internal(
            f"unable to get syncer view fields from upstream resource {_described(obj)} "
            f"for SyncTarget {key}: the annotation must hold a JSON object"
        )
    return decoded


def _set_overrides(obj: Obj, key: str, overrides: Mapping[str, Any]) -> None:
    obj.setdefault("metadata", {}).setdefault("annotations", {})[syncer_diff_annotation(key)] = go_json(
        overrides, sort_keys=True
    )


def _rules(obj: Mapping[str, Any], key: str, rules: Sequence[SummaryField] | None) -> Sequence[SummaryField]:
    if rules is not None:
        return rules
    try:
        return summarizing_rules(obj)
    except ValueError as exc:
        raise _internal(
            f"unable to get summarizing rules from object upstream resource {_described(obj)} "
            f"for SyncTarget {key}: {exc}"
        ) from None


def _field_error(action: str, field: SummaryField, obj: Mapping[str, Any], exc: Exception) -> TransformError:
    return _internal(f"unable to {action} field {field.path} on resource {_described(obj)}: {exc}")


# --- read path ------------------------------------------------------------------------------------


def _apply_spec_diff(view: Obj, key: str) -> None:
    patch_text = _annotations(view).get(spec_diff_annotation(key)) or ""
    if not patch_text or "spec" not in view:
        return
    try:
        patch = jsonpatch.JsonPatch(json.loads(patch_text))
        spec = patch.apply(_clone(view["spec"]))
    except (ValueError, TypeError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        # Upstream returns the patch library's own error: a 500 without a reason.
        raise TransformError(
            500, f"unable to apply the {spec_diff_annotation(key)} patch to the spec: {exc}"
        ) from None
    if not isinstance(spec, dict):
        raise TransformError(500, f"the {spec_diff_annotation(key)} patch must leave the spec an object")
    view["spec"] = spec


def to_syncer(obj: Mapping[str, Any], key: str, *, rules: Sequence[SummaryField] | None = None) -> Obj:
    """The syncer's view of the upstream object ``obj`` for the SyncTarget ``key``.

    ``rules`` overrides the summarizing rules otherwise read from the object (tests, other callers).
    """
    intents = _sync_intents(obj)
    overrides = _overrides(obj, key) or {}
    view: Obj = _clone_object(obj)
    meta = view.setdefault("metadata", {})
    meta.pop("finalizers", None)
    meta.pop("deletionTimestamp", None)
    if "annotations" in meta and meta["annotations"] is not None:
        meta["annotations"] = {
            name: value
            for name, value in meta["annotations"].items()
            if not name.startswith(PREFIX_SYNCER_DIFF_ANNOTATION)
        }
    _apply_spec_diff(view, key)
    for field in _rules(obj, key, rules):
        present = field.path in overrides
        value = overrides.get(field.path)
        if field.promote:
            if not present:
                # The target has not written it: the syncer never sees upstream values it did not set.
                field.delete(view)
                continue
            if value == PROMOTED:
                try:
                    value, present = field.get(obj)
                except ValueError as exc:
                    raise _field_error("get promoted syncer view", field, obj, exc) from None
                if not present:
                    field.delete(view)
                    continue
        elif not present:
            continue
        try:
            field.set(view, value)
        except ValueError as exc:
            raise _field_error("override", field, obj, exc) from None
    if syncer_finalizer(key) in _finalizers(obj):
        meta["finalizers"] = sorted({*_finalizers(view), syncer_finalizer(key)})
    intent = intents.get(key)
    if intent is not None and intent.deletion is not None and intent.soft_finalizers == "":
        meta["deletionTimestamp"] = intent.deletion
    return view


# --- write path -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    """One write to the backing apiserver: ``body`` to PUT, on ``/status`` when ``subresource`` says so.

    A later write of the same plan carries the resourceVersion of the one before it: the caller sets
    ``metadata.resourceVersion`` from the previous answer.
    """

    subresource: str | None
    body: Obj


def _promote_remaining(
    upstream: Obj, remaining: str, fields: Sequence[SummaryField], intent: _Intent
) -> bool:
    """Promote the last remaining target's overrides into ``upstream``; True when status was promoted."""
    if intent.state != SYNC or syncer_finalizer(remaining) not in _finalizers(upstream):
        return False
    overrides = _overrides(upstream, remaining)
    if overrides is None:
        return False
    promoted = status_promoted = False
    for field in fields:
        if not field.promote or overrides.get(field.path) == PROMOTED:
            continue
        try:
            # An override the target never wrote is promoted as null, as upstream does.
            field.set(upstream, overrides.get(field.path))
        except ValueError as exc:
            raise _field_error("set promoted syncer view", field, upstream, exc) from None
        overrides[field.path] = PROMOTED
        promoted = True
        status_promoted = status_promoted or field.is_status
    if promoted:
        _set_overrides(upstream, remaining, overrides)
    return status_promoted


def _unassign(upstream: Obj, key: str) -> None:
    meta = upstream.setdefault("metadata", {})
    if meta.get("labels") is not None:
        meta["labels"].pop(state_label(key), None)
    finalizers = _finalizers(upstream)
    if syncer_finalizer(key) in finalizers:
        meta["finalizers"] = sorted(set(finalizers) - {syncer_finalizer(key)})
    if meta.get("annotations") is not None:
        for name in (syncer_diff_annotation(key), deletion_annotation(key), PREFIX_SPEC_DIFF_ANNOTATION):
            # kcp removes the bare spec-diff prefix, not the target's keyed annotation; kept as is.
            meta["annotations"].pop(name, None)


def _unpromote(upstream: Obj, owner: str, fields: Sequence[SummaryField]) -> None:
    """A second target joins: the single owner's promoted fields become its own overrides again."""
    overrides = _overrides(upstream, owner)
    if overrides is None:
        return
    changed = False
    for field in fields:
        if not field.promote or overrides.get(field.path) != PROMOTED:
            continue
        try:
            value, present = field.get(upstream)
        except ValueError as exc:
            raise _field_error("get promoted syncer view", field, upstream, exc) from None
        if present:
            overrides[field.path] = _clone(value)
            changed = True
    if changed:
        _set_overrides(upstream, owner, overrides)


def plan_writes(
    stored: Mapping[str, Any] | None,
    incoming: Mapping[str, Any],
    key: str,
    subresource: str | None = None,
    *,
    resource: str = "",
    group: str = "",
    rules: Sequence[SummaryField] | None = None,
) -> list[Write]:
    """The writes that carry the syncer's ``incoming`` update of the upstream object ``stored``.

    ``stored`` is the current upstream object (None: missing); ``resource`` and ``group`` name the API
    in messages.  Usually one write; two when removing the object from this target promotes the status
    of the one target left (its ``/status`` first, then the object).
    """
    in_meta = _meta(incoming)
    name = str(in_meta.get("name", ""))
    if stored is None:
        raise TransformError(
            404,
            f'{group_resource_of(resource, group)} "{name}" not found',
            "NotFound",
            _about(group, resource, name),
        )
    upstream: Obj = _clone_object(stored)
    if str(_meta(upstream).get("resourceVersion", "")) != str(in_meta.get("resourceVersion", "")):
        raise TransformError(
            409,
            f'Operation cannot be fulfilled on {group_resource_of(resource, group)} "{name}": '
            "the resource has been modified in the meantime",
            "Conflict",
            _about(group, resource, name),
        )
    fields = _rules(upstream, key, rules)
    view_has_finalizer = syncer_finalizer(key) in _finalizers(incoming)
    intents = _sync_intents(upstream)

    if in_meta.get("deletionTimestamp") and not view_has_finalizer and subresource is None:
        writes: list[Write] = []
        others = {k: v for k, v in intents.items() if k != key}
        if len(others) == 1:
            [(remaining, intent)] = others.items()
            if _promote_remaining(upstream, remaining, fields, intent):
                writes.append(Write("status", _clone(upstream)))
        _unassign(upstream, key)
        writes.append(Write(None, upstream))
        return writes

    target = "/".join([resource, subresource] if subresource else [resource])
    where = f"{target}({_meta(upstream).get('namespace', '')}/{_meta(upstream).get('name', '')})"
    if key not in intents or intents[key].state != SYNC:
        raise _internal(
            f"tried to write resource {where} though it is not assigned to the current SyncTarget"
        )
    if not view_has_finalizer:
        raise _internal(
            f"tried to write resource {where} though it is not owning it (syncer finalizer doesn't exist)"
        )
    owners = sorted(f for f in _finalizers(upstream) if f.startswith(PREFIX_SYNCER_FINALIZER))
    if len(intents) > 1 and len(owners) == 1:
        _unpromote(upstream, owners[0][len(PREFIX_SYNCER_FINALIZER) :], fields)

    previous = _overrides(upstream, key) or {}
    overrides: dict[str, Any] = {}
    status_write = subresource == "status"
    for field in fields:
        if field.is_status != status_write:
            # This call does not carry the field: the target's earlier value stands.
            if field.path in previous:
                overrides[field.path] = previous[field.path]
            continue
        try:
            value, present = field.get(incoming)
        except ValueError as exc:
            raise _field_error("get syncer view", field, incoming, exc) from None
        if not present:
            continue
        if field.promote and len(intents) == 1:
            try:
                field.set(upstream, value)
            except ValueError as exc:
                raise _field_error("promote syncer view", field, upstream, exc) from None
            value = PROMOTED
        overrides[field.path] = _clone(value)
    _set_overrides(upstream, key, overrides)
    if syncer_finalizer(key) not in owners:
        upstream["metadata"]["finalizers"] = sorted({*_finalizers(upstream), syncer_finalizer(key)})
    return [Write(subresource, upstream)]


def from_syncer(
    stored: Mapping[str, Any] | None,
    incoming: Mapping[str, Any],
    key: str,
    subresource: str | None = None,
    *,
    resource: str = "",
    group: str = "",
    rules: Sequence[SummaryField] | None = None,
) -> Obj:
    """The object to write upstream for the syncer's update (the last write of :func:`plan_writes`).

    A caller that must also promote a remaining target's status on removal uses :func:`plan_writes`.
    """
    return plan_writes(stored, incoming, key, subresource, resource=resource, group=group, rules=rules)[
        -1
    ].body


# --- upsyncer -------------------------------------------------------------------------------------

UPSYNC_PATCH_REFUSED = "metadata, apiversion or kind cannot be modified by a transformation"


def upsyncer_from_client(incoming: Mapping[str, Any], key: str) -> Obj:
    """The object the upsyncer writes upstream: ``incoming`` with its upsync-diff patch applied."""
    annotation = upsync_diff_annotation(key)
    patch_text = _annotations(incoming).get(annotation) or ""
    if not patch_text:
        return _clone_object(incoming)
    lowered = str(patch_text).lower()
    # As kcp: any mention of these paths anywhere in the patch text refuses it.
    if "/metadata" in lowered or "/apiversion" in lowered or "/kind" in lowered:
        raise TransformError(500, UPSYNC_PATCH_REFUSED)
    try:
        patch = jsonpatch.JsonPatch(json.loads(patch_text))
        patched = patch.apply(_clone_object(incoming))
    except (ValueError, TypeError, jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise TransformError(500, f"unable to apply the {annotation} patch: {exc}") from None
    if not isinstance(patched, dict):
        raise TransformError(500, f"the {annotation} patch must leave the object an object")
    annotations = (patched.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(annotation, None)
    return patched
