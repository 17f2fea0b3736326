"""The ``Status`` failures the virtual workspaces answer with, worded as kube-apiserver words them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "StatusError",
    "bad_request",
    "forbidden",
    "group_resource",
    "internal_error",
    "method_not_allowed",
    "not_found",
    "not_found_path",
    "not_started",
    "status",
    "unauthorized",
    "unavailable",
    "unsupported_media_type",
]

Obj = dict[str, Any]

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status(code: int, message: str, reason: str = "", details: Mapping[str, Any] | None = None) -> Obj:
    """A ``Failure`` Status; empty detail fields are left out, as Go's ``omitempty`` does."""
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure"}
    if message:
        body["message"] = message
    body["reason"] = reason or _REASONS.get(code, "")
    if details is not None:
        body["details"] = {k: v for k, v in details.items() if v not in ("", None, [])}
    body["code"] = code
    return body


class StatusError(Exception):
    """A refused request: ``body`` is the Status sent with HTTP ``code``."""

    def __init__(self, body: Obj) -> None:
        super().__init__(str(body.get("message", "")))
        self.body = body

    @property
    def code(self) -> int:
        """The HTTP status."""
        return int(self.body["code"])


def group_resource(group: str, resource: str) -> str:
    """``plural.group``, or ``plural`` for the core group, as apimachinery names a resource."""
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> StatusError:
    """404 ``configmaps "x" not found``."""
    message = f"{group_resource(group, resource)} {json.dumps(name)} not found"
    return StatusError(status(404, message, details={"name": name, "group": group, "kind": resource}))


def not_found_path() -> StatusError:
    """404 for a resource or path this workspace does not serve."""
    return StatusError(status(404, "the server could not find the requested resource", details={}))


def method_not_allowed() -> StatusError:
    """405 for a verb the resource does not have (no route is registered for it)."""
    return StatusError(
        status(405, "the server does not allow this method on the requested resource", details={})
    )


def unauthorized() -> StatusError:
    """401, as the apiserver answers a missing or unknown token."""
    return StatusError(status(401, "Unauthorized"))


def forbidden(
    user: str, verb: str, group: str, resource: str, subresource: str, name: str, namespace: str
) -> StatusError:
    """403 ``<gr> "x" is forbidden: User "u" cannot <verb> resource "<res>" in API group "<g>" ...``."""
    full = f"{resource}/{subresource}" if subresource else resource
    where = f"in the namespace {json.dumps(namespace)}" if namespace else "at the cluster scope"
    why = (
        f"User {json.dumps(user)} cannot {verb} resource {json.dumps(full)} "
        f"in API group {json.dumps(group)} {where}"
    )
    if not resource:
        message = f"forbidden: {why}"
    elif name:
        message = f"{group_resource(group, resource)} {json.dumps(name)} is forbidden: {why}"
    else:
        message = f"{group_resource(group, resource)} is forbidden: {why}"
    return StatusError(status(403, message, details={"name": name, "group": group, "kind": resource}))


def bad_request(message: str) -> StatusError:
    """400 ``BadRequest``."""
    return StatusError(status(400, message))


def internal_error(why: str) -> StatusError:
    """500 ``Internal error occurred: <why>``."""
    return StatusError(status(500, f"Internal error occurred: {why}", details={"causes": [{"message": why}]}))


def not_started() -> StatusError:
    """503 until the first SyncTarget list has been read."""
    return StatusError(status(503, "syncer virtual workspace controllers are not started"))


def unavailable(why: str) -> StatusError:
    """503 when the backing apiserver cannot be reached."""
    return StatusError(status(503, f"the backing apiserver is unavailable: {why}"))


def unsupported_media_type(accepted: list[str]) -> StatusError:
    """415 for a patch type the resource does not take."""
    return StatusError(
        status(
            415,
            "the body of the request was in an unknown format - accepted media types include: "
            + ", ".join(accepted),
        )
    )
