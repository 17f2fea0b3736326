"""Read ``application/vnd.kubernetes.protobuf`` request bodies as the JSON the same object has.

client-go's typed clients (kubectl 1.35's ``create deployment``, ``create configmap``, ``auth
can-i`` ...) send built-in kinds as protobuf whenever the kubeconfig names no content type, and
client-go never retries such a request as JSON: its only 415 fallback is for CBOR.  A server that
refuses protobuf therefore breaks those commands, so the fake reads it like kube-apiserver does.

A body is the 4-byte magic ``k8s\\0`` and a ``runtime.Unknown`` message: ``typeMeta`` (apiVersion,
kind), ``raw`` (the object's own message), ``contentEncoding``, ``contentType``.  The layout of each
message comes from ``protobuf_schema.json`` (made by ``tools/gen_protobuf_schema.py`` from the Go
types of k8s.io/api and apimachinery): field number, JSON name, type, and the ``omitempty``,
``omitzero``, pointer and inline rules that decide what Go's JSON encoder would print.  The result
is what kubectl would have sent as JSON, so the rest of the server treats both routes alike.
Errors carry kube-apiserver's wording.
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from kcp_tmc.testing import errors

__all__ = [
    "MAGIC",
    "MEDIA_TYPE",
    "ProtobufError",
    "decode",
    "envelope",
    "field",
    "go_duration",
    "known_kinds",
]

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"
# kube-apiserver shows at most this many bytes of a body it cannot recognise.
_SUMMARY_BYTES = 30

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
# Types Go's omitempty can drop (structs such as Time or Quantity it never drops).
_OMITTABLE = frozenset({"string", "bytes", "bool", "int", "double", "map", "wrapper"})


class ProtobufError(ValueError):
    """A malformed protobuf message, worded like gogo-protobuf's generated Unmarshal."""


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("kcp_tmc.testing").joinpath("protobuf_schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def known_kinds() -> frozenset[str]:
    """``apiVersion/kind`` of every kind this module reads (``apps/v1/Deployment``)."""
    return frozenset(_schema()["kinds"])


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("unexpected EOF")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift >= 64:
            raise ProtobufError("proto: integer overflow")


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """``(number, wire type, value)`` of each field: an int for numbers, bytes for the rest."""
    found: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number <= 0:
            raise ProtobufError(f"proto: illegal tag {number} (wire type {wire})")
        value: Any
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            if pos + size > len(data):
                raise ProtobufError("unexpected EOF")
            value, pos = data[pos : pos + size], pos + size
        elif wire == _BYTES:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("unexpected EOF")
            value, pos = data[pos : pos + length], pos + length
        else:
            raise ProtobufError(f"proto: illegal wireType {wire}")
        found.append((number, wire, value))
    return found


def _signed(value: int) -> int:
    # Negative int32/int64 travel as 64-bit two's complement varints.
    return value - (1 << 64) if value >= 1 << 63 else value


def go_duration(nanoseconds: int) -> str:
    """``time.Duration.String()``: ``1h0m0s``, ``1.5s``, ``300ms``, ``0s``."""
    if nanoseconds == 0:
        return "0s"
    sign, n = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _decimal(n, size) + unit
    seconds, fraction = divmod(n, 1_000_000_000)
    text = _decimal(fraction + (seconds % 60) * 1_000_000_000, 1_000_000_000) + "s"
    minutes = seconds // 60
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m" + text
        if hours:
            text = f"{hours}h" + text
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{rest:0{digits}d}".rstrip("0")


def _special(name: str, data: bytes) -> Any:
    parts = {number: value for number, _, value in _fields(data)}
    if name in ("Time", "MicroTime"):
        if not data:
            return None  # the zero time travels as an empty message and prints as null
        seconds = _signed(parts.get(1, 0))
        moment = datetime.fromtimestamp(seconds, UTC)
        if name == "Time":
            return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{parts.get(2, 0) // 1000:06d}Z"
    if name == "Duration":
        return go_duration(_signed(parts.get(1, 0)))
    if name == "Quantity":
        return bytes(parts.get(1, b"")).decode()
    if name == "IntOrString":
        if parts.get(1, 0) == 1:
            return bytes(parts.get(3, b"")).decode()
        return _signed(parts.get(2, 0))
    raw = bytes(parts.get(1, b""))  # RawExtension and FieldsV1 carry JSON
    return json.loads(raw) if raw else None


def _scalar(kind: str, wire: int, value: Any) -> Any:
    if kind == "string":
        return bytes(value).decode()
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind == "bool":
        return bool(value)
    if kind == "double":
        return struct.unpack("<d", value)[0]
    return _signed(value)


def _packed(data: bytes) -> list[int]:
    values, pos = [], 0
    while pos < len(data):
        value, pos = _varint(data, pos)
        values.append(value)
    return values


def _value(shape: dict[str, Any], wire: int, value: Any) -> Any:
    kind = shape["t"]
    if kind in ("string", "bytes", "bool", "int", "double"):
        if (wire == _BYTES) != (kind in ("string", "bytes")) and kind != "double":
            raise ProtobufError(f"proto: wrong wireType = {wire} for field")
        return _scalar(kind, wire, value)
    if wire != _BYTES:
        raise ProtobufError(f"proto: wrong wireType = {wire} for field")
    if kind == "message":
        return _message(shape["r"], value)
    if kind == "wrapper":
        return [_value(shape["v"], w, v) for n, w, v in _fields(value) if n == 1]
    if kind == "map":
        entry = {number: (w, v) for number, w, v in _fields(value)}
        key = _value(shape["k"], *entry.get(1, (_BYTES, b"")))
        default = (_VARINT, 0) if shape["v"]["t"] in ("int", "bool") else (_BYTES, b"")
        return key, _value(shape["v"], *entry.get(2, default))
    return _special(kind, value)


def _zero(value: Any) -> bool:
    # None, "", 0, false, [] and {}: what Go's zero values decode to.
    return not value


def _message(name: str, data: bytes) -> dict[str, Any]:
    spec: dict[str, Any] = _schema()["messages"][name]
    out: dict[str, Any] = {}
    inline: list[dict[str, Any]] = []
    for number, wire, value in _fields(data):
        field = spec.get(str(number))
        if field is None:
            continue  # unknown fields are skipped, as generated Unmarshal code does
        key = field["n"]
        if field.get("inline"):
            inline.append(_message(field["r"], value))
        elif field["t"] == "map":
            entry_key, entry_value = _value(field, wire, value)
            out.setdefault(key, {})[entry_key] = entry_value
        elif field.get("rep"):
            items = out.setdefault(key, [])
            if wire == _BYTES and field["t"] in ("int", "bool"):
                items.extend(_scalar(field["t"], _VARINT, v) for v in _packed(value))
            else:
                items.append(_value(field, wire, value))
        else:
            out[key] = _value(field, wire, value)
    for field in spec.values():
        # Go's encoder: omitempty drops zero scalars, empty slices and maps (never structs, never
        # set pointers); omitzero drops zero values of any kind but set pointers.
        key = field["n"]
        if key not in out:
            if not (field.get("ptr") or field.get("oe") or field.get("oz") or field.get("inline")) and (
                field.get("rep") or field["t"] in ("map", "bytes")
            ):
                out[key] = None  # a nil slice or map without omitempty prints as null
            continue
        if field.get("ptr") or not _zero(out[key]):
            continue
        if field.get("oz") or (field.get("oe") and (field.get("rep") or field["t"] in _OMITTABLE)):
            del out[key]
    for part in inline:
        out.update(part)
    return out


def _summary(body: bytes) -> str:
    if not body:
        return "<empty>"
    shown = body[:_SUMMARY_BYTES]
    text = shown.decode(errors="replace") if body[:1] == b"{" else shown.hex()
    return text + (" ..." if len(body) > _SUMMARY_BYTES else "")


def _internal_package(api_version: str) -> str:
    group = api_version.rpartition("/")[0]
    return group.split(".")[0] if group else "core"


def decode(body: bytes, api_version: str, kind: str) -> dict[str, Any]:
    """The JSON object of a protobuf ``body`` sent where an ``api_version`` ``kind`` is expected.

    Raises :class:`errors.StatusError` (400) with kube-apiserver's message when the body is not a
    protobuf object, names another kind, or does not parse.
    """
    unrecognized = f"the object provided is unrecognized (must be of type {kind}): "
    if not body:
        raise errors.bad_request(unrecognized + f"empty data ({_summary(body)})")
    if not body.startswith(MAGIC):
        raise errors.bad_request(
            unrecognized + "provided data does not appear to be a protobuf message, expected prefix "
            f"[{' '.join(str(b) for b in MAGIC)}] ({_summary(body)})"
        )
    try:
        envelope = {number: value for number, _, value in _fields(body[len(MAGIC) :])}
        type_meta = {number: bytes(value).decode() for number, _, value in _fields(envelope.get(1, b""))}
    except ProtobufError as exc:
        raise errors.bad_request(unrecognized + f"{exc} ({_summary(body)})") from exc
    sent_version, sent_kind = type_meta.get(1, ""), type_meta.get(2, "")
    version = sent_version.rpartition("/")[2]
    lookup = "v1" if sent_kind == "DeleteOptions" and sent_version == "meta.k8s.io/v1" else sent_version
    message = _schema()["kinds"].get(f"{lookup}/{sent_kind}")
    if message is None:
        raise errors.bad_request(
            f'{sent_kind} in version "{version}" cannot be handled as a {kind}: no kind "{sent_kind}" '
            f'is registered for version "{sent_version}" in scheme "pkg/api/legacyscheme/scheme.go:30"'
        )
    if sent_kind != kind:
        raise errors.bad_request(
            f'{sent_kind} in version "{version}" cannot be handled as a {kind}: converting '
            f"({version}.{sent_kind}) to ({_internal_package(api_version)}.{kind}): unknown conversion"
        )
    try:
        obj = _message(message, bytes(envelope.get(2, b"")))
    except (ProtobufError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ProtobufError) else f"proto: {exc}"
        raise errors.bad_request(
            f'{sent_kind} in version "{version}" cannot be handled as a {kind}: {reason}'
        ) from exc
    return {"kind": sent_kind, "apiVersion": type_meta.get(1, ""), **obj}


def field(number: int, value: bytes | str | int) -> bytes:
    """One encoded field (bytes and text length-delimited, ints as varints), to build bodies in tests."""
    if isinstance(value, int):
        return _encode_varint(number << 3 | _VARINT) + _encode_varint(value & ((1 << 64) - 1))
    data = value.encode() if isinstance(value, str) else value
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(data)) + data


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """A protobuf request body as client-go sends it: magic, then ``runtime.Unknown``."""
    type_meta = field(1, api_version) + field(2, kind)
    return MAGIC + field(1, type_meta) + field(2, raw) + field(3, b"") + field(4, b"")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
