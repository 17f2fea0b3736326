"""HTTP/1.1 on the wire, byte for byte from a raw TLS socket: what both servers make of it."""

from __future__ import annotations

import json
import socket
import ssl
from urllib.parse import urlsplit

import pytest
from conformance_kit import Backend


def _exchange(backend: Backend, data: bytes) -> bytes:
    """Sends ``data`` over TLS and reads until the server closes the connection."""
    address = urlsplit(backend.url)
    context = ssl.create_default_context(cadata=backend.server.ca_pem.decode())
    context.check_hostname = False  # the real server's certificate names its own host names
    answer = b""
    with (
        socket.create_connection((address.hostname, address.port), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        tls.sendall(data)
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nbroken header\r\n\r\n"],
    ids=["bad-request-line", "bad-header"],
)
def test_malformed_requests_get_a_plain_400_and_a_close(backend: Backend, request_bytes: bytes) -> None:
    answer = _exchange(backend, request_bytes)  # returns only once the server has closed
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0].split(b" ", 1)[1] == b"400 Bad Request"
    assert b"content-type: text/plain; charset=utf-8" in [line.lower() for line in head]


def test_a_chunked_body_after_100_continue_is_read(backend: Backend, namespace: str) -> None:
    obj = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chunked"}}).encode()
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (obj[:10], obj[10:]))
    authorization = backend._headers(None)["Authorization"]
    request = (
        (
            f"POST /api/v1/namespaces/{namespace}/configmaps?dryRun=All HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {authorization}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    answer = _exchange(backend, request)
    continued = b"HTTP/1.1 100 Continue\r\n\r\n"
    assert answer.startswith(continued)
    head, _, body = answer[len(continued) :].partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 201 Created"
    assert json.loads(body)["metadata"]["name"] == "chunked"
