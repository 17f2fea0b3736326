"""Built-in policies for ``workload.kcp.io/v1alpha1`` SyncTarget.

* ``synctarget-validation``: kcp's CRD schema rules (name length, patterns, enums, required
  fields) plus the project's: the key label, status consistency and the heartbeat clock skew.
* ``synctarget-deletion-protection``: refuses DELETE while ``tmc.kcp.io/deletion-protected`` is true.
* ``synctarget-defaults``: kcp v0.11's CRD defaults and the key label the SyncTarget controller sets.

Settings of ``synctarget-validation``: ``heartbeatSkew`` (a Go duration such as ``60s`` or a
number of seconds; default 60 s), how far in the future ``status.lastSyncerHeartbeatTime`` may be.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from kcp_tmc.policies import patches
from kcp_tmc.policies.admission import JsonPatchOperation
from kcp_tmc.policies.builtin.status import changed, validate_status_section, validate_time
from kcp_tmc.policies.clusters import CLUSTER_PATH_PATTERN, is_valid_cluster_path
from kcp_tmc.policies.keys import ANNOTATION_DELETION_PROTECTED, LABEL_SYNC_TARGET_KEY, sync_target_key
from kcp_tmc.policies.kinds import SYNC_TARGET
from kcp_tmc.policies.model import PARSE_BOOL_TRUE
from kcp_tmc.policies.policy import FieldError, PolicyRequest, Verdict
from kcp_tmc.policies.registry import mutating, validating
from kcp_tmc.policies.timefmt import format_go_duration, parse_go_duration
from kcp_tmc.policies.validation import (
    as_bool,
    as_map,
    as_objects,
    as_str,
    child,
    duplicate,
    forbidden,
    invalid,
    is_dns1123_subdomain,
    is_http_url,
    key,
    required,
    too_long,
    type_invalid,
    validate_labels,
)

__all__ = [
    "DEFAULT_HEARTBEAT_SKEW",
    "SYNC_TARGET_NAME_MAX_LENGTH",
    "heartbeat_skew",
    "now",
    "sync_target_defaults",
    "sync_target_deletion_protection",
    "sync_target_name_errors",
    "sync_target_validation",
]

#: kcp's CRD limit on SyncTarget names: 253 - 10 (prefix) - 9 (hash).
SYNC_TARGET_NAME_MAX_LENGTH: Final = 234
DEFAULT_HEARTBEAT_SKEW: Final = timedelta(seconds=60)
_KEY_PATH: Final = key("metadata.labels", LABEL_SYNC_TARGET_KEY)
_PROTECTION_PATH: Final = key("metadata.annotations", ANNOTATION_DELETION_PROTECTED)
_SETTING: Final = "synctarget-validation setting heartbeatSkew"


# Computed on every write by two policies; SyncTargets are few, so remember their keys.
_sync_target_key = functools.lru_cache(maxsize=4096)(sync_target_key)


def now() -> datetime:
    """The current time in UTC; tests replace this module attribute to fix the clock."""
    return datetime.now(UTC)


def sync_target_name_errors(name: str, path: str) -> list[FieldError]:
    """Errors of ``name`` as a SyncTarget name: a DNS-1123 subdomain of at most 234 characters."""
    errs: list[FieldError] = []
    if len(name) > SYNC_TARGET_NAME_MAX_LENGTH:
        errs.append(
            too_long(
                path,
                SYNC_TARGET_NAME_MAX_LENGTH,
                "a SyncTarget name leaves room for the 10-character prefix and 9-character hash "
                "of the names derived from it; choose a shorter name",
            )
        )
    errs.extend(
        # The length rule above is stricter than the subdomain's own limit of 253.
        invalid(path, name, msg)
        for msg in is_dns1123_subdomain(name)
        if not msg.startswith("must be no more")
    )
    return errs


# --- synctarget-validation ------------------------------------------------------------------------


@validating(
    "synctarget-validation",
    kinds=[SYNC_TARGET],
    operations=["CREATE", "UPDATE"],
    subresources=["", "status"],
    isolate=False,
)
def sync_target_validation(req: PolicyRequest) -> Verdict | None:
    """Validate a SyncTarget's name, key label, spec and status."""
    obj = req.object
    if obj is None:
        return None
    errs: list[FieldError] = []
    if not isinstance(obj, Mapping):
        return Verdict(errors=[type_invalid("", obj, "a SyncTarget object")])
    old = req.old_object if req.operation == "UPDATE" and isinstance(req.old_object, Mapping) else None
    if req.sub_resource == "":
        # A status write cannot change metadata or spec (the apiserver resets them), so only
        # main-resource writes are held to these rules.
        _validate_metadata(req, obj, old, errs)
        spec = as_map(obj.get("spec"), "spec", errs)
        if spec is not None:
            _validate_spec(spec, errs)
    _validate_status(obj, old, req.settings, errs)
    return Verdict(errors=errs) if errs else None


def _validate_metadata(
    req: PolicyRequest, obj: Mapping[str, Any], old: Mapping[str, Any] | None, errs: list[FieldError]
) -> None:
    raw_meta = obj.get("metadata")
    meta = as_map(raw_meta, "metadata", errs) if raw_meta is not None else {}
    if meta is None:
        return
    name = as_str(meta.get("name"), "metadata.name", errs)
    if not name:
        if name == "" or meta.get("name") is None:
            errs.append(required("metadata.name", "name the SyncTarget"))
        return
    errs.extend(sync_target_name_errors(name, "metadata.name"))
    labels = as_map(meta.get("labels"), "metadata.labels", errs)
    if labels is None:
        labels = {}
    value = labels.get(LABEL_SYNC_TARGET_KEY)
    old_value = _labels(old).get(LABEL_SYNC_TARGET_KEY)
    computed = _sync_target_key(req.cluster, name)
    if value is None:
        if old_value is not None:
            errs.append(
                forbidden(
                    _KEY_PATH,
                    f'may not be removed once set; restore it to "{computed}", the key of SyncTarget '
                    f'"{name}" in logical cluster "{req.cluster}"',
                )
            )
        return
    if value == computed:
        return
    if old_value == computed:
        errs.append(
            forbidden(
                _KEY_PATH,
                f'may not be changed: it is the key of SyncTarget "{name}" in logical cluster '
                f'"{req.cluster}"; keep it "{computed}"',
            )
        )
        return
    errs.append(
        invalid(
            _KEY_PATH,
            value,
            f'must be "{computed}", the key of SyncTarget "{name}" in logical cluster "{req.cluster}"; '
            "set it to that value or leave the label out and synctarget-defaults sets it",
        )
    )


def _labels(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = obj.get("metadata") if obj is not None else None
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def _validate_spec(spec: Mapping[str, Any], errs: list[FieldError]) -> None:
    as_bool(spec.get("unschedulable"), "spec.unschedulable", errs)
    validate_time(spec.get("evictAfter"), "spec.evictAfter", errs)
    seen: set[tuple[str, str]] = set()
    expected = "an object such as {export: kubernetes}"
    for at, ref in as_objects(spec.get("supportedAPIExports"), "spec.supportedAPIExports", errs, expected):
        raw_export = ref.get("export")
        export = None
        if raw_export is None or raw_export == "":
            errs.append(required(child(at, "export"), "name the APIExport, e.g. kubernetes"))
        else:
            export = as_str(raw_export, child(at, "export"), errs)
        path = as_str(ref.get("path"), child(at, "path"), errs)
        if path and not is_valid_cluster_path(path):
            errs.append(
                invalid(
                    child(at, "path"),
                    path,
                    f"should match '{CLUSTER_PATH_PATTERN}' (a logical-cluster path such as root:org:team); "
                    "leave it empty for the SyncTarget's own workspace",
                )
            )
        if export is not None:
            pair = (path or "", export)
            if pair in seen:
                shown = {"export": export, "path": path} if path else {"export": export}
                errs.append(
                    duplicate(at, shown, "each (path, export) pair may be listed once; remove this entry")
                )
            seen.add(pair)
    if "cells" in spec:
        errs.extend(validate_labels(spec["cells"], "spec.cells"))


def _validate_status(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, settings: Mapping[str, Any], errs: list[FieldError]
) -> None:
    section = validate_status_section(obj, old, errs)
    if section is None:
        return
    status, old_status = section
    if changed(status, old_status, "virtualWorkspaces"):
        _validate_virtual_workspaces(status.get("virtualWorkspaces"), errs)
    if changed(status, old_status, "lastSyncerHeartbeatTime"):
        beat = validate_time(status.get("lastSyncerHeartbeatTime"), "status.lastSyncerHeartbeatTime", errs)
        if beat is not None:
            skew = heartbeat_skew(settings.get("heartbeatSkew"))
            ahead = beat - now()
            if ahead > skew:
                ahead = timedelta(seconds=math.ceil(ahead.total_seconds()))  # whole seconds read better
                errs.append(
                    invalid(
                        "status.lastSyncerHeartbeatTime",
                        status["lastSyncerHeartbeatTime"],
                        f"is {format_go_duration(ahead)} in the future, more than the allowed clock skew "
                        f"of {format_go_duration(skew)}; fix the syncer host's clock (NTP) or raise the "
                        "heartbeatSkew setting of synctarget-validation",
                    )
                )


def _validate_virtual_workspaces(value: object, errs: list[FieldError]) -> None:
    expected = "an object with syncerURL and upsyncerURL"
    for at, entry in as_objects(value, "status.virtualWorkspaces", errs, expected):
        for field, service in (("syncerURL", "syncer"), ("upsyncerURL", "upsyncer")):
            path = child(at, field)
            raw = entry.get(field)
            if raw is None or raw == "":
                errs.append(required(path, f"the URL of the {service} virtual workspace of this SyncTarget"))
                continue
            url = as_str(raw, path, errs)
            if url is None:
                continue
            problems = is_http_url(url)
            if problems:
                errs.extend(invalid(path, url, msg) for msg in problems)
            elif not _is_service_path(urlsplit(url).path, service):
                errs.append(
                    invalid(
                        path,
                        url,
                        f"the path must end in /services/{service}/<logical cluster>/<SyncTarget name>"
                        f"[/<uid>], as the SyncTarget controller writes it",
                    )
                )


def _is_service_path(path: str, service: str) -> bool:
    marker = f"/services/{service}/"
    at = path.rfind(marker)
    if at < 0:
        return False
    segments = path[at + len(marker) :].split("/")
    return len(segments) <= 3 and all(segments)


@functools.lru_cache(maxsize=32)
def _parse_skew(raw: str | int | float) -> timedelta:
    if isinstance(raw, str):
        try:
            skew = parse_go_duration(raw)
        except ValueError as exc:
            raise ValueError(f"{_SETTING}: {exc}; use e.g. 60s or 2m") from None
    else:
        skew = timedelta(seconds=raw)
    if skew < timedelta(0):
        raise ValueError(f"{_SETTING}: must not be negative, got {raw!r}")
    return skew


def heartbeat_skew(raw: object) -> timedelta:
    """The ``heartbeatSkew`` setting as a duration: default 60 s, a Go duration string, or seconds.

    Raises :class:`ValueError` naming the setting for any other value (a configuration error).
    """
    if raw is None:
        return DEFAULT_HEARTBEAT_SKEW
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise ValueError(
            f"{_SETTING}: must be a duration such as 60s or a number of seconds, not {type(raw).__name__}"
        )
    return _parse_skew(raw)


# --- synctarget-deletion-protection ---------------------------------------------------------------


@validating("synctarget-deletion-protection", kinds=[SYNC_TARGET], operations=["DELETE"])
def sync_target_deletion_protection(req: PolicyRequest) -> Verdict | None:
    """Refuse to delete a SyncTarget annotated ``tmc.kcp.io/deletion-protected: "true"``."""
    old = req.old_object
    if old is None and req.name:
        # apiservers before 1.15 send no oldObject on DELETE; ask the caller's view instead.
        old = req.lookup.get(SYNC_TARGET, req.name)
    meta = old.get("metadata") if isinstance(old, Mapping) else None
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    value = annotations.get(ANNOTATION_DELETION_PROTECTED) if isinstance(annotations, Mapping) else None
    # Go's ParseBool spellings of true, as kcp reads its boolean annotations.
    if not isinstance(value, str) or value not in PARSE_BOOL_TRUE:
        return None
    name = req.name or "<name>"
    return Verdict.deny(
        _PROTECTION_PATH,
        f'Forbidden: SyncTarget "{name}" is protected from deletion; to delete it, first remove the '
        f"protection: kubectl annotate synctarget {name} {ANNOTATION_DELETION_PROTECTED}-",
    )


# --- synctarget-defaults --------------------------------------------------------------------------


def _default_exports() -> list[dict[str, str]]:
    # A fresh list per patch: the engine may apply it in place, so it must not be shared.
    return [{"export": "kubernetes"}]


@mutating("synctarget-defaults", kinds=[SYNC_TARGET], operations=["CREATE", "UPDATE"], isolate=False)
def sync_target_defaults(req: PolicyRequest) -> Verdict | None:
    """Default ``spec.unschedulable`` and ``spec.supportedAPIExports``; set the key label."""
    obj = req.object
    if not isinstance(obj, dict):
        return None
    ops: list[JsonPatchOperation] = []
    warnings: list[str] = []
    spec = obj.get("spec")
    if spec is None:
        ops.append(patches.add("/spec", {"unschedulable": False, "supportedAPIExports": _default_exports()}))
    elif isinstance(spec, dict):
        # Only absent (or null) fields are defaulted: a value the user wrote, even [] or false, stays.
        if spec.get("unschedulable") is None:
            ops.append(patches.add("/spec/unschedulable", False))
        if spec.get("supportedAPIExports") is None:
            ops.append(patches.add("/spec/supportedAPIExports", _default_exports()))
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(meta, dict) and isinstance(name, str) and name:
        labels = meta.get("labels")
        if labels is None or isinstance(labels, dict):
            computed = _sync_target_key(req.cluster, name)
            current = labels.get(LABEL_SYNC_TARGET_KEY) if labels else None
            if current is not None and current != computed:
                warnings.append(
                    f'{_KEY_PATH}: replaced "{current}" with "{computed}", the key of SyncTarget "{name}" '
                    f'in logical cluster "{req.cluster}"'
                )
            ops.extend(patches.set_map_entry(obj, ("metadata", "labels"), LABEL_SYNC_TARGET_KEY, computed))
    if not ops:
        return None
    return Verdict(patch=ops, warnings=warnings)
