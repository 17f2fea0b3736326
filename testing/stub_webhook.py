"""A loopback TLS admission webhook whose answers a test scripts, recording what it receives.

Use it to test webhook configurations, failure policies and the admission path
of the fake (or a real) API server without writing a webhook::

    with StubWebhook() as hook:
        hook.on("/deny", lambda review: deny(review, "no thanks", code=403))
        config = {"clientConfig": {"url": hook.url("/deny"), "caBundle": hook.ca_bundle}, ...}
        ...
        assert hook.calls[0].review["request"]["operation"] == "CREATE"

A path without a handler answers "allowed".  Handlers get the decoded
AdmissionReview and return either an AdmissionReview dict (see :func:`allow`,
:func:`deny`) or a :class:`RawReply` to send anything at all.  The serving
certificate is issued for ``127.0.0.1``, ``localhost`` and the Service names of
``service``/``namespace`` by a fresh CA, whose PEM is in :attr:`StubWebhook.ca_pem`.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import socket
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kcp_tmc.certs.generate import issue_serving, new_ca

__all__ = ["Call", "RawReply", "StubWebhook", "allow", "deny"]


@dataclass(frozen=True)
class RawReply:
    """An arbitrary HTTP answer: status, body and content type, optionally after a delay."""

    status: int = 200
    body: bytes | str | Mapping[str, Any] | Sequence[Any] = b""
    content_type: str = "application/json"
    delay: float = 0.0

    def encoded(self) -> bytes:
        """The body as bytes (mappings and lists as JSON)."""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Call:
    """One request the stub received."""

    path: str
    query: dict[str, str]
    review: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[dict[str, Any]], "dict[str, Any] | RawReply"]


def _response(review: Mapping[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    request = review.get("request") or {}
    return {
        "apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
        "kind": "AdmissionReview",
        "response": {"uid": request.get("uid", ""), **response},
    }


def allow(
    review: Mapping[str, Any],
    *,
    patch: Sequence[Mapping[str, Any]] | None = None,
    warnings: Iterable[str] = (),
    audit_annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview answer allowing ``review``, with an optional JSON patch and warnings."""
    response: dict[str, Any] = {"allowed": True}
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(list(patch)).encode()).decode()
    if warnings := list(warnings):
        response["warnings"] = warnings
    if audit_annotations:
        response["auditAnnotations"] = dict(audit_annotations)
    return _response(review, response)


def deny(
    review: Mapping[str, Any],
    message: str = "",
    *,
    code: int = 403,
    reason: str = "",
    warnings: Iterable[str] = (),
) -> dict[str, Any]:
    """An AdmissionReview answer denying ``review`` with a ``status`` (empty fields left out)."""
    status: dict[str, Any] = {"code": code}
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    response: dict[str, Any] = {"allowed": False, "status": status}
    if warnings := list(warnings):
        response["warnings"] = warnings
    return _response(review, response)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    stub: StubWebhook

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: failed handshakes are what TLS tests provoke on purpose."""


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections give up after this long, so no handler thread lingers.
    timeout = 5

    def setup(self) -> None:
        super().setup()
        self.server.stub._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.stub._untrack(self.connection)

    def do_POST(self) -> None:
        stub = self.server.stub
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            review = json.loads(raw)
        except ValueError:
            review = {}
        query = dict(urllib.parse.parse_qsl(parsed.query))
        stub._record(Call(parsed.path, query, review, dict(self.headers.items())))
        handler = stub._handler(parsed.path)
        reply = handler(review) if handler is not None else allow(review)
        if not isinstance(reply, RawReply):
            reply = RawReply(200, reply)
        if reply.delay and stub._stopping.wait(reply.delay):
            return
        body = reply.encoded()
        try:
            self.send_response(reply.status)
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The caller gave up (a timeout test): nothing to answer to.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read :attr:`StubWebhook.calls` instead."""


class StubWebhook:
    """A scripted HTTPS admission webhook on ``127.0.0.1`` and an ephemeral port.

    ``service``/``namespace`` choose the Service names the certificate also
    covers (``<service>.<namespace>.svc`` and friends), for configurations that
    use ``clientConfig.service``.
    """

    def __init__(self, *, service: str = "stub-webhook", namespace: str = "default") -> None:
        ca = new_ca("stub-webhook-ca")
        pair = issue_serving(ca, service=service, namespace=namespace, dns=["localhost"], ips=["127.0.0.1"])
        self.ca_pem: bytes = ca.cert_pem
        self.service = service
        self.namespace = namespace
        self._cert_pem = pair.cert_pem
        self._key_pem = pair.key_pem
        self._handlers: dict[str, Handler] = {}
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._connections: set[socket.socket] = set()

    @property
    def ca_bundle(self) -> str:
        """The CA as ``clientConfig.caBundle`` wants it (base64 of the PEM)."""
        return base64.b64encode(self.ca_pem).decode()

    @property
    def port(self) -> int:
        """The port the stub listens on; it is kept after :meth:`stop`, to test a dead webhook."""
        if self._port is None:
            raise RuntimeError("the stub webhook was never started")
        return self._port

    @property
    def address(self) -> str:
        """``"127.0.0.1:<port>"``, e.g. for ``WebhookDispatcher(services=...)``."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """An ``https://`` URL of ``path`` on the stub."""
        return f"https://{host}:{self.port}{path}"

    def client_config(self, path: str = "/") -> dict[str, Any]:
        """A ``clientConfig`` with ``url`` and ``caBundle`` pointing at ``path``."""
        return {"url": self.url(path), "caBundle": self.ca_bundle}

    def on(self, path: str, handler: Handler) -> None:
        """Answers requests to ``path`` with ``handler(review)``."""
        with self._lock:
            self._handlers[path] = handler

    @property
    def calls(self) -> list[Call]:
        """The requests received so far, oldest first."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, path: str) -> list[Call]:
        """The requests received on ``path``."""
        return [call for call in self.calls if call.path == path]

    def clear_calls(self) -> None:
        """Forgets the recorded calls (handlers stay)."""
        with self._lock:
            self._calls.clear()

    def reset(self) -> None:
        """Forgets handlers and recorded calls."""
        with self._lock:
            self._handlers.clear()
            self._calls.clear()

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _handler(self, path: str) -> Handler | None:
        with self._lock:
            return self._handlers.get(path)

    def start(self) -> StubWebhook:
        """Starts serving in a background thread."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert.write_bytes(self._cert_pem)
            key.write_bytes(self._key_pem)
            context.load_cert_chain(cert, key)
        server = _Server(("127.0.0.1", 0), _RequestHandler, bind_and_activate=False)
        server.stub = self
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        try:
            server.server_bind()
            server.server_activate()
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="stub-webhook", daemon=True)
        self._thread.start()
        return self

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def stop(self) -> None:
        """Stops serving, closes open connections and releases the port; delayed answers are abandoned."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            # Wakes the handler thread blocked on a keep-alive read; it then closes the socket.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> StubWebhook:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
