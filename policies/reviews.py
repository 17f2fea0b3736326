"""AdmissionReviews in and out: build them from plain objects, read the apiserver's, answer them.

The webhook and the CLI both read reviews with :func:`parse_review` and answer with
:func:`review_response`; tests and the CLI build them with :func:`make_request` and
:func:`make_review`.  :func:`parse_review` checks what the engine relies on and refuses the
rest with a :class:`ReviewError` whose message names the field and the fault.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from kcp_tmc.policies import kinds
from kcp_tmc.policies.admission import (
    ADMISSION_V1,
    OPERATIONS,
    REVIEW_VERSIONS,
    AdmissionRequest,
    AdmissionResponse,
    AdmissionReview,
    GroupVersionKind,
    GroupVersionResource,
    Operation,
)
from kcp_tmc.policies.documents import describe
from kcp_tmc.policies.kinds import KNOWN_TYPES, ResourceType
from kcp_tmc.policies.policy import Object

__all__ = ["ReviewError", "make_request", "make_review", "parse_review", "plural_of", "review_response"]

_OPTIONS_KIND = {"CREATE": "CreateOptions", "UPDATE": "UpdateOptions", "DELETE": "DeleteOptions"}


class ReviewError(ValueError):
    """An AdmissionReview that cannot be evaluated.

    ``uid`` is the request's uid when it could be read (so that an answer can still echo it),
    else ``None``.
    """

    def __init__(self, message: str, uid: str | None = None) -> None:
        super().__init__(message)
        self.uid = uid


def plural_of(group: str, kind: str) -> str:
    """The resource (plural) of a kind: from :mod:`kcp_tmc.policies.kinds`, else ``kind.lower() + "s"``."""
    for rtype in _TYPES:
        if rtype.group == group and rtype.kind == kind:
            return rtype.plural
    return kind.lower() + "s"


def _types() -> tuple[ResourceType, ...]:
    found = {id(t): t for t in KNOWN_TYPES}
    for value in vars(kinds).values():
        if isinstance(value, ResourceType):
            found.setdefault(id(value), value)
    return tuple(found.values())


_TYPES = _types()


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


def make_request(
    obj: Object | None,
    *,
    operation: Operation = "CREATE",
    old: Object | None = None,
    user: str = "alice",
    groups: Iterable[str] = (),
    dry_run: bool = False,
    sub_resource: str = "",
    uid: str | None = None,
    namespace: str | None = None,
) -> AdmissionRequest:
    """An ``AdmissionRequest`` for ``obj`` as the apiserver would send it.

    ``kind``, ``resource`` and their ``request*`` twins come from the object's ``apiVersion``
    and ``kind`` (``old`` on DELETE, where ``obj`` is ``None``).  ``namespace`` defaults to the
    object's; ``uid`` to a fresh UUID.  Raises :class:`ValueError` when neither object says
    what it is.
    """
    source = obj if obj is not None else old
    if source is None:
        raise ValueError("make_request needs an object (or, for DELETE, the old object)")
    api_version = source.get("apiVersion")
    kind_name = source.get("kind")
    if not isinstance(api_version, str) or not api_version or not isinstance(kind_name, str) or not kind_name:
        raise ValueError(
            "the object must have a string apiVersion and kind, e.g. apiVersion: v1, kind: Secret"
        )
    group, version = _split_api_version(api_version)
    meta = source.get("metadata") or {}
    gvk: GroupVersionKind = {"group": group, "version": version, "kind": kind_name}
    gvr: GroupVersionResource = {"group": group, "version": version, "resource": plural_of(group, kind_name)}
    request: AdmissionRequest = {
        "uid": uid if uid is not None else str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": dict(gvk),  # type: ignore[typeddict-item]
        "requestResource": dict(gvr),  # type: ignore[typeddict-item]
        "operation": operation,
        "userInfo": {"username": user, "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": (
            {"apiVersion": "meta.k8s.io/v1", "kind": _OPTIONS_KIND[operation]}
            if operation in _OPTIONS_KIND
            else None
        ),
    }
    # The apiserver omits empty names and namespaces (omitempty), so do we.
    name = str(meta.get("name") or "")
    if name:
        request["name"] = name
    ns = namespace if namespace is not None else str(meta.get("namespace") or "")
    if ns:
        request["namespace"] = ns
    if sub_resource:
        request["subResource"] = sub_resource
        request["requestSubResource"] = sub_resource
    return request


def make_review(
    obj: Object | None,
    *,
    api_version: str = ADMISSION_V1,
    operation: Operation = "CREATE",
    old: Object | None = None,
    user: str = "alice",
    groups: Iterable[str] = (),
    dry_run: bool = False,
    sub_resource: str = "",
    uid: str | None = None,
    namespace: str | None = None,
) -> AdmissionReview:
    """An ``AdmissionReview`` envelope around :func:`make_request` (same arguments)."""
    request = make_request(
        obj,
        operation=operation,
        old=old,
        user=user,
        groups=groups,
        dry_run=dry_run,
        sub_resource=sub_resource,
        uid=uid,
        namespace=namespace,
    )
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def _what(value: object) -> str:
    # The protocol is JSON, so a mapping is "an object" here; the rest reads as in file errors.
    return "an object" if isinstance(value, Mapping) else describe(value)


def parse_review(data: object) -> tuple[str, AdmissionRequest]:
    """Check an AdmissionReview and return its ``apiVersion`` and ``request``.

    ``data`` is the decoded JSON, or the raw ``bytes``/``str`` body.  The request is returned as
    it came (no copy).  Raises :class:`ReviewError` for: a body that is not JSON or not a JSON
    object; ``kind`` other than ``AdmissionReview``; ``apiVersion`` other than
    ``admission.k8s.io/v1`` or ``admission.k8s.io/v1beta1``; a missing ``request``; a missing or
    empty ``request.uid``; and ill-typed fields the engine reads (``kind``, ``operation``,
    ``subResource``, ``namespace``, ``name``, ``userInfo``, ``object``, ``oldObject``, ``dryRun``).
    """
    if isinstance(data, bytes | bytearray | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise ReviewError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ReviewError(f"an AdmissionReview must be a JSON object, got {_what(data)}")
    kind = data.get("kind")
    if kind != "AdmissionReview":
        got = "it is missing" if kind is None else f"got {kind!r}"
        raise ReviewError(f"kind must be AdmissionReview, {got}")
    version = data.get("apiVersion")
    if version not in REVIEW_VERSIONS:
        got = "it is missing" if version is None else f"got {version!r}"
        raise ReviewError(f"apiVersion must be {' or '.join(REVIEW_VERSIONS)}, {got}")
    request = data.get("request")
    if request is None:
        raise ReviewError("request is missing: an AdmissionReview from the apiserver carries one")
    if not isinstance(request, dict):
        raise ReviewError(f"request must be a JSON object, got {_what(request)}")
    uid = request.get("uid")
    if uid is None:
        raise ReviewError("request.uid is missing")
    if not isinstance(uid, str) or not uid:
        raise ReviewError(
            f"request.uid must be a non-empty string, got {_what(uid) if uid != '' else 'an empty one'}"
        )
    _check_request(request, uid)
    return str(version), request  # type: ignore[return-value]


def _check_request(request: dict[str, Any], uid: str) -> None:
    gvk = request.get("kind")
    if not isinstance(gvk, dict):
        got = "it is missing" if gvk is None else f"got {_what(gvk)}"
        raise ReviewError(f"request.kind must be an object with group, version and kind, {got}", uid)
    for key in ("group", "version", "kind"):
        if not isinstance(gvk.get(key, ""), str):
            raise ReviewError(f"request.kind.{key} must be a string, got {_what(gvk[key])}", uid)
    if not gvk.get("kind"):
        raise ReviewError("request.kind.kind is missing", uid)
    operation = request.get("operation")
    if operation not in OPERATIONS:
        got = "it is missing" if operation is None else f"got {operation!r}"
        raise ReviewError(f"request.operation must be one of {', '.join(OPERATIONS)}, {got}", uid)
    for key in ("subResource", "namespace", "name"):
        value = request.get(key)
        if value is not None and not isinstance(value, str):
            raise ReviewError(f"request.{key} must be a string, got {_what(value)}", uid)
    for key in ("object", "oldObject"):
        value = request.get(key)
        if value is not None and not isinstance(value, dict):
            raise ReviewError(f"request.{key} must be an object or null, got {_what(value)}", uid)
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise ReviewError(f"request.dryRun must be true or false, got {_what(dry_run)}", uid)
    user = request.get("userInfo")
    if user is None:
        return
    if not isinstance(user, dict):
        raise ReviewError(f"request.userInfo must be an object, got {_what(user)}", uid)
    username = user.get("username")
    if username is not None and not isinstance(username, str):
        raise ReviewError(f"request.userInfo.username must be a string, got {_what(username)}", uid)
    groups = user.get("groups")
    if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
        raise ReviewError("request.userInfo.groups must be a list of strings", uid)


def review_response(version: str, response: AdmissionResponse) -> AdmissionReview:
    """The AdmissionReview that answers a review of ``version`` (the apiserver wants its own version back)."""
    return {"apiVersion": version, "kind": "AdmissionReview", "response": response}
