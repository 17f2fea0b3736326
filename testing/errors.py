"""``metav1.Status`` failures, worded exactly as kube-apiserver words them.

Every refusal of the fake server is a :class:`StatusError`; its ``body`` is the
JSON the real apiserver sends for the same failure (reason, message, details),
so that a test asserting on a message holds against both servers.
"""

from __future__ import annotations

import json
from typing import Any

# One FieldError and one way of printing Go values for the policies and this server.
from kcp_tmc.policies.gofmt import go_float, go_value
from kcp_tmc.policies.policy import FieldError

__all__ = [
    "MODIFIED",
    "FieldError",
    "StatusError",
    "already_exists",
    "bad_request",
    "conflict",
    "expired",
    "forbidden",
    "go_float",
    "go_value",
    "group_resource",
    "internal_error",
    "invalid",
    "method_not_supported",
    "not_found",
    "not_found_path",
    "status",
    "success",
    "too_many_requests",
    "unauthorized",
    "unsupported_media_type",
]

Object = dict[str, Any]


class StatusError(Exception):
    """A failed request: ``body`` is the ``metav1.Status`` to send, ``code`` its HTTP status."""

    def __init__(self, body: Object, headers: dict[str, str] | None = None) -> None:
        super().__init__(body.get("message", ""))
        self.body = body
        self.headers = headers or {}

    @property
    def code(self) -> int:
        """The HTTP status code."""
        return int(self.body["code"])

    @property
    def reason(self) -> str:
        """``metav1.StatusReason`` (``NotFound``, ``Conflict``, ...)."""
        return str(self.body.get("reason", ""))

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.body.get("message", ""))


def status(code: int, reason: str, message: str, details: Object | None = None) -> Object:
    """A ``Failure`` Status body; empty detail fields are left out, as Go's ``omitempty`` does."""
    body: Object = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details is not None:
        kept = {k: v for k, v in details.items() if v not in ("", None, [], 0)}
        if kept:
            body["details"] = kept
    body["code"] = code
    return body


def success(details: Object) -> Object:
    """A ``Success`` Status, as a delete answers when the object is gone."""
    kept = {k: v for k, v in details.items() if v not in ("", None)}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": kept}


def group_resource(group: str, resource: str) -> str:
    """``schema.GroupResource.String()``: ``plural.group``, or ``plural`` for the core group."""
    return f"{resource}.{group}" if group else resource


def _object_named(group: str, resource: str, name: str) -> str:
    # How apimachinery's errors name an object: synctargets.workload.kcp.io "x".
    return f"{group_resource(group, resource)} {json.dumps(name)}"


def _about_object(code: int, reason: str, message: str, group: str, resource: str, name: str) -> StatusError:
    return StatusError(status(code, reason, message, {"name": name, "group": group, "kind": resource}))


def not_found(group: str, resource: str, name: str) -> StatusError:
    """404 ``synctargets.workload.kcp.io "x" not found``."""
    message = f"{_object_named(group, resource, name)} not found"
    return _about_object(404, "NotFound", message, group, resource, name)


def already_exists(group: str, resource: str, name: str) -> StatusError:
    """409 ``synctargets.workload.kcp.io "x" already exists``."""
    message = f"{_object_named(group, resource, name)} already exists"
    return _about_object(409, "AlreadyExists", message, group, resource, name)


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(group: str, resource: str, name: str, why: str = MODIFIED) -> StatusError:
    """409 ``Operation cannot be fulfilled on <gr> "x": <why>``."""
    message = f"Operation cannot be fulfilled on {_object_named(group, resource, name)}: {why}"
    return _about_object(409, "Conflict", message, group, resource, name)


def precondition_conflict(group: str, kind: str, name: str, why: str) -> StatusError:
    """409 for a failed delete precondition: etcd's storage layer names the kind (``Deployment.apps "x"``)."""
    qualified = f"{kind}.{group}" if group else kind
    message = f"Operation cannot be fulfilled on {qualified} {json.dumps(name)}: {why}"
    return StatusError(status(409, "Conflict", message, {"name": name, "group": group, "kind": kind}))


def invalid(group: str, kind: str, name: str, errors: list[FieldError]) -> StatusError:
    """422 ``Kind.group "x" is invalid: <errors>``, one cause per field error."""
    qualified = f"{kind}.{group}" if group else kind
    messages: list[str] = []
    for error in errors:
        text = str(error)
        if text not in messages:
            messages.append(text)
    if not messages:
        message = f"{qualified} {json.dumps(name)} is invalid"
    elif len(messages) == 1:
        message = f"{qualified} {json.dumps(name)} is invalid: {messages[0]}"
    else:
        message = f"{qualified} {json.dumps(name)} is invalid: [{', '.join(messages)}]"
    causes = [{"reason": e.type, "message": e.message, "field": e.path} for e in errors]
    body = status(422, "Invalid", message, {"name": name, "group": group, "kind": kind})
    body.setdefault("details", {})["causes"] = causes
    return StatusError(body)


def method_not_supported(group: str, resource: str, action: str) -> StatusError:
    """405 ``<action> is not supported on resources of kind "<gr>"``."""
    return StatusError(
        status(
            405,
            "MethodNotAllowed",
            f"{action} is not supported on resources of kind {json.dumps(group_resource(group, resource))}",
            {"group": group, "kind": resource},
        )
    )


def forbidden(group: str, resource: str, name: str, why: str) -> StatusError:
    """403 ``<gr> "x" is forbidden: <why>`` (without the name when there is none)."""
    if not resource:
        message = f"forbidden: {why}"
    elif not name:
        message = f"{group_resource(group, resource)} is forbidden: {why}"
    else:
        message = f"{_object_named(group, resource, name)} is forbidden: {why}"
    return _about_object(403, "Forbidden", message, group, resource, name)


def expired(message: str) -> StatusError:
    """410 ``Expired``, as a watch from a compacted resourceVersion gets."""
    return StatusError(status(410, "Expired", message))


def bad_request(message: str) -> StatusError:
    """400 ``BadRequest``."""
    return StatusError(status(400, "BadRequest", message))


def unauthorized() -> StatusError:
    """401 ``Unauthorized``."""
    return StatusError(status(401, "Unauthorized", "Unauthorized"))


def not_found_path() -> StatusError:
    """404 for a path that serves nothing (the apiserver's plain ``the server could not find...``)."""
    body = status(404, "NotFound", "the server could not find the requested resource")
    body["details"] = {}
    body["code"] = body.pop("code")
    return StatusError(body)


def unsupported_media_type(accepted: list[str]) -> StatusError:
    """415 for a body (or patch) type the resource does not take."""
    return StatusError(
        status(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )
    )


def unsupported_patch_type() -> StatusError:
    """415 for a PATCH of a built-in kind in a type it does not know: bare HTTP wording, empty details."""
    body = status(415, "UnsupportedMediaType", "415: Unsupported Media Type")
    body["details"] = {}
    body["code"] = body.pop("code")
    return StatusError(body)


def watch_list_needs_not_older_than() -> StatusError:
    """422 for ``sendInitialEvents`` without ``resourceVersionMatch=NotOlderThan``."""
    problem = FieldError.forbidden(
        "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    )
    return invalid("meta.k8s.io", "ListOptions", "", [problem])


def too_many_requests(
    retry_after: int, message: str = "Too many requests, please try again later."
) -> StatusError:
    """429 with ``Retry-After``, as the max-in-flight filter (or a warming watch cache) answers."""
    body = status(429, "TooManyRequests", message, {"retryAfterSeconds": retry_after})
    return StatusError(body, {"Retry-After": str(retry_after)})


def internal_error(why: str) -> StatusError:
    """500 ``Internal error occurred: <why>``."""
    body = status(500, "InternalError", f"Internal error occurred: {why}")
    body["details"] = {"causes": [{"message": why}]}
    return StatusError(body)


def request_entity_too_large(limit: int) -> StatusError:
    """413, as the apiserver answers a body over its size limit."""
    return StatusError(status(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}"))
