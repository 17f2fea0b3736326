"""``metav1.Status`` failures, worded exactly as kube-apiserver words them.

Every refusal of the fake server is a :class:`StatusError`; its ``body`` is the
JSON the real apiserver sends for the same failure (reason, message, details),
so that a test asserting on a message holds against both servers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]


class _Omit:
    """Marks a field error printed without its value (``Too many`` with an unknown count)."""

    def __repr__(self) -> str:
        return "<omitted>"


OMIT = _Omit()


def go_value(value: Any) -> str:
    """Print a value the way ``field.Error.ErrorBody`` does (Go's ``%v``, ``%q`` or JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def go_float(value: float) -> str:
    """Go's ``%v`` for a float64: ``1`` not ``1.0``, exponent form for huge values."""
    if math.isfinite(value) and value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else "+"
        return f"{mantissa}e{sign}{exponent.lstrip('+-').zfill(2)}"
    return text


#: ``field.ErrorType`` values and the text each prints as.
FIELD_ERROR_TEXT = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueTooFew": "Too few",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueTooShort": "Too short",
}
_NO_VALUE_TYPES = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "FieldValueTooShort"}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One ``field.Error``: its type (``FieldValueRequired``...), path, bad value and detail."""

    type: str
    field: str
    value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        """``ErrorBody()``: the message without the field path."""
        text = FIELD_ERROR_TEXT[self.type]
        if self.type not in _NO_VALUE_TYPES and self.value is not OMIT:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"

    # Constructors named after apimachinery's ``field`` package.
    @classmethod
    def required(cls, path: str, detail: str = "") -> FieldError:
        """``field.Required``."""
        return cls("FieldValueRequired", path, "", detail)

    @classmethod
    def invalid(cls, path: str, value: Any, detail: str = "") -> FieldError:
        """``field.Invalid``."""
        return cls("FieldValueInvalid", path, value, detail)

    @classmethod
    def type_invalid(cls, path: str, value: Any, detail: str = "") -> FieldError:
        """``field.TypeInvalid``."""
        return cls("FieldValueTypeInvalid", path, value, detail)

    @classmethod
    def not_supported(cls, path: str, value: Any, valid: list[str]) -> FieldError:
        """``field.NotSupported``: ``Unsupported value: "X": supported values: "A", "B"``."""
        detail = "supported values: " + ", ".join(json.dumps(v) for v in valid) if valid else ""
        return cls("FieldValueNotSupported", path, value, detail)

    @classmethod
    def too_long(cls, path: str, max_length: int) -> FieldError:
        """``field.TooLong``: ``Too long: may not be more than N bytes``."""
        unit = "byte" if max_length == 1 else "bytes"
        detail = f"may not be more than {max_length} {unit}" if max_length >= 0 else "value is too long"
        return cls("FieldValueTooLong", path, "", detail)

    @classmethod
    def too_many(cls, path: str, actual: int, maximum: int) -> FieldError:
        """``field.TooMany``: ``Too many: 3: must have at most 2 items``."""
        unit = "item" if maximum == 1 else "items"
        detail = f"must have at most {maximum} {unit}" if maximum >= 0 else "has too many items"
        return cls("FieldValueTooMany", path, actual if actual >= 0 else OMIT, detail)

    @classmethod
    def forbidden(cls, path: str, detail: str) -> FieldError:
        """``field.Forbidden``."""
        return cls("FieldValueForbidden", path, "", detail)


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
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
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
