"""A small HTTP/1.1 reader and writer on asyncio streams (keep-alive, chunked bodies).

Enough of RFC 9112 for the kubernetes Python client (urllib3) and kubectl (Go
net/http over HTTP/1.1): request line, headers, ``Content-Length`` or chunked
request bodies, ``Expect: 100-continue``, and chunked responses for watches.
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEADER_BYTES = 1 << 20
MAX_BODY_BYTES = 64 << 20


class BadRequest(Exception):
    """The bytes on the wire are not an HTTP/1.1 request we can read."""


@dataclass
class Request:
    """One parsed request; header names are lower-case, ``query`` keeps the last value of each key."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    version: str = "HTTP/1.1"
    header_list: list[tuple[str, str]] = field(default_factory=list)

    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after the response."""
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """Reads one request, or ``None`` when the peer closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise BadRequest("connection closed inside the request head") from exc
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("request head too large") from exc
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError as exc:
        raise BadRequest(f"malformed request line {lines[0]!r}") from exc
    headers: dict[str, str] = {}
    header_list: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise BadRequest(f"malformed header line {line!r}")
        name, value = name.strip().lower(), value.strip()
        header_list.append((name, value))
        headers[name] = f"{headers[name]}, {value}" if name in headers and name != "authorization" else value
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise BadRequest("request body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    elif headers.get("content-length"):
        length = int(headers["content-length"])
        if length > MAX_BODY_BYTES:
            raise BadRequest("request body too large")
        body = await reader.readexactly(length)
    split = urlsplit(target)
    query = dict(parse_qsl(split.query, keep_blank_values=True))
    return Request(method.upper(), target, unquote(split.path), query, headers, body, version, header_list)


def _status_line(code: int) -> bytes:
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    return f"HTTP/1.1 {code} {phrase}\r\n".encode()


def response_head(code: int, headers: list[tuple[str, str]]) -> bytes:
    """Status line and headers (a ``Date`` header is added)."""
    lines = [_status_line(code)]
    lines.append(f"Date: {email.utils.formatdate(usegmt=True)}\r\n".encode())
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n".encode("latin-1", errors="replace"))
    lines.append(b"\r\n")
    return b"".join(lines)


def response(code: int, body: bytes, headers: list[tuple[str, str]], keep_alive: bool = True) -> bytes:
    """A complete response with ``Content-Length``."""
    all_headers = [*headers, ("Content-Length", str(len(body)))]
    if not keep_alive:
        all_headers.append(("Connection", "close"))
    return response_head(code, all_headers) + body


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (never the terminating one)."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"
