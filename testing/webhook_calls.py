"""One HTTPS POST of an AdmissionReview to a webhook, failing the way kube-apiserver reports it.

kube-apiserver calls webhooks with Go's HTTP client through client-go's REST
client, and the text of a failed call ends up in the user's error message
(``failed calling webhook "x": failed to call webhook: <this>``).  This module
does the call with the standard library and renders failures in Go's words for
the cases tests meet: connection refused, timeout, untrusted or mismatched
certificate, non-2xx answers (a ``Status`` body's message, or client-go's
generic text), and bodies that are not JSON.  Rarer transport errors keep
Python's description after the same ``Post "<url>": `` prefix.
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.client
import ipaddress
import json
import math
import select
import socket
import ssl
import threading
import time
import urllib.parse
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

__all__ = ["CallError", "Connections", "Endpoint", "WebhookCallFailed", "post_review", "resolve_endpoint"]


class WebhookCallFailed(Exception):
    """The webhook could not be called; ``str()`` is the apiserver's reason text."""


class CallError(WebhookCallFailed):
    """A failure that the apiserver prefixes with ``failed to call webhook: ``."""


@dataclass(frozen=True)
class Endpoint:
    """Where to send a review: the URL shown in messages, the address dialled, the TLS name checked."""

    url: str
    host: str
    port: int
    server_name: str
    path: str
    ca_pem: bytes | None
    #: Set when a Service reference has no address: the call fails at dial time.
    missing_service: str | None = None


def resolve_endpoint(client_config: Mapping[str, Any], services: Mapping[tuple[str, str], str]) -> Endpoint:
    """Turns ``clientConfig`` into an :class:`Endpoint`.

    ``url`` is dialled as written.  A ``service`` reference is dialled at the
    address ``services[(namespace, name)]`` gives (``"host:port"``) with TLS
    server name ``<name>.<namespace>.svc`` as the apiserver uses; without an
    entry there it fails like an apiserver whose service has no endpoints.
    """
    ca_pem = _ca_bundle(client_config.get("caBundle"))
    url = client_config.get("url")
    service = client_config.get("service")
    if url:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https":
            raise WebhookCallFailed(
                f"could not get REST client: webhook URL {url!r} must use the https scheme"
            )
        host = parsed.hostname or ""
        return Endpoint(url, host, parsed.port or 443, host, parsed.path or "/", ca_pem)
    if service:
        name, namespace = service.get("name", ""), service.get("namespace", "")
        port = int(service.get("port") or 443)
        path = service.get("path") or "/"
        server_name = f"{name}.{namespace}.svc"
        shown = f"https://{server_name}:{port}{path}"
        address = services.get((namespace, name))
        if address is None:
            return Endpoint(shown, "", 0, server_name, path, ca_pem, missing_service=name)
        host, _, dial_port = address.rpartition(":")
        return Endpoint(shown, host, int(dial_port), server_name, path, ca_pem)
    raise WebhookCallFailed("webhook configuration must have either service or URL")


_BAD_PEM = (
    "could not get REST client: unable to load root certificates: " + "unable to parse bytes as PEM block"
)


def _ca_bundle(value: Any) -> bytes | None:
    # caBundle is []byte in Go, so it arrives base64-encoded in JSON.
    if not value:
        return None
    try:
        pem = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise WebhookCallFailed("could not get REST client: caBundle is not valid base64") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise WebhookCallFailed(_BAD_PEM)
    return pem


def _timeout_param(seconds: float) -> str:
    # The apiserver rounds the remaining budget up to whole seconds (Go duration syntax).
    return f"{max(1, math.ceil(seconds))}s"


@functools.lru_cache(maxsize=64)
def _tls_context(ca_pem: bytes | None) -> ssl.SSLContext:
    context = ssl.create_default_context() if ca_pem is None else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_pem is not None:
        try:
            context.load_verify_locations(cadata=ca_pem.decode("ascii", "replace"))
        except ssl.SSLError:
            raise WebhookCallFailed(_BAD_PEM) from None
    # Go checks the name itself and words the error its own way; we do the same after the handshake.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _hostname_error(der: bytes, host: str) -> str | None:
    """Go's ``x509.HostnameError`` text when the certificate does not cover ``host``, else ``None``."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns_names = sans.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        return "x509: certificate relies on legacy Common Name field, use SANs instead"
    try:
        wanted_ip = ipaddress.ip_address(host)
    except ValueError:
        if any(_dns_match(pattern, host) for pattern in dns_names):
            return None
        valid = ", ".join(dns_names)
    else:
        if any(ipaddress.ip_address(ip) == wanted_ip for ip in ips):
            return None
        if not ips:
            return f"x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"
        valid = ", ".join(ips)
    if not valid:
        return f"x509: certificate is not valid for any names, but wanted to match {host}"
    return f"x509: certificate is valid for {valid}, not {host}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _dns_match(pattern: str, host: str) -> bool:
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


def _verify_error_text(err: ssl.SSLCertVerificationError) -> str:
    code = err.verify_code
    if code in (9, 10):  # not yet valid, expired
        return "x509: certificate has expired or is not yet valid"
    return "x509: certificate signed by unknown authority"


#: Idle connections kept per webhook address, as kube-apiserver's transport keeps them.
MAX_IDLE_PER_HOST = 25
#: An idle connection older than this is closed instead of reused (Go's ``IdleConnTimeout``).
IDLE_TIMEOUT = 90.0

_PoolKey = tuple[str, int, str, bytes | None]


class Connections:
    """Keep-alive TLS connections to webhooks, reused across calls as kube-apiserver reuses them.

    A pool per (address, TLS name, CA bundle): a changed ``caBundle`` dials anew, as the
    apiserver's client cache is keyed by the whole client configuration.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_PoolKey, list[tuple[float, ssl.SSLSocket]]] = {}
        self._closed = False
        # A dispatcher dropped without close() still closes its connections when collected.
        weakref.finalize(self, _close_idle, self._lock, self._idle)

    @staticmethod
    def key(endpoint: Endpoint) -> _PoolKey:
        return (endpoint.host, endpoint.port, endpoint.server_name, endpoint.ca_pem)

    def take(self, key: _PoolKey) -> ssl.SSLSocket | None:
        """An idle connection still open, or None."""
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                since, tls = idle.pop()
            # Readable while idle means the server closed it (or sent junk): never reuse that.
            if now - since < IDLE_TIMEOUT and not select.select([tls], [], [], 0)[0]:
                return tls
            tls.close()

    def give(self, key: _PoolKey, tls: ssl.SSLSocket) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < MAX_IDLE_PER_HOST:
                idle.append((time.monotonic(), tls))
                return
        tls.close()

    def close(self) -> None:
        """Closes every idle connection; later calls dial and close their own."""
        with self._lock:
            self._closed = True
        _close_idle(self._lock, self._idle)


def _close_idle(lock: threading.Lock, idle: dict[_PoolKey, list[tuple[float, ssl.SSLSocket]]]) -> None:
    with lock:
        entries = [tls for kept in idle.values() for _, tls in kept]
        idle.clear()
    for tls in entries:
        tls.close()


def post_review(
    endpoint: Endpoint, review: Mapping[str, Any], timeout: float, pool: Connections | None = None
) -> dict[str, Any]:
    """POSTs ``review`` and returns the decoded JSON answer; raises :class:`WebhookCallFailed`.

    ``timeout`` bounds the whole call (connect, TLS, request, response), like the
    context deadline the apiserver puts on each webhook call.  With ``pool``, a kept
    connection is used when there is one; one the server closed before answering is
    retried once on a new connection, as Go's transport does for a reused connection;
    the retry shares the call's deadline.
    """
    deadline = time.monotonic() + timeout
    if pool is not None:
        kept = pool.take(pool.key(endpoint))
        if kept is not None:
            try:
                return _post(endpoint, review, timeout, deadline, pool, kept)
            except _StaleConnection:
                pass
    return _post(endpoint, review, timeout, deadline, pool, None)


class _StaleConnection(Exception):
    """A reused connection closed by the server before any byte of the answer."""


def _post(
    endpoint: Endpoint,
    review: Mapping[str, Any],
    timeout: float,
    deadline: float,
    pool: Connections | None,
    kept: ssl.SSLSocket | None,
) -> dict[str, Any]:
    query = "timeout=" + _timeout_param(timeout)
    base = urllib.parse.urlsplit(endpoint.url)
    shown_url = urllib.parse.urlunsplit(
        (base.scheme, base.netloc, base.path, f"{base.query}&{query}" if base.query else query, "")
    )
    request_path = endpoint.path + "?" + (f"{base.query}&{query}" if base.query else query)
    prefix = f'Post "{shown_url}": '
    context = _tls_context(endpoint.ca_pem)
    if endpoint.missing_service is not None:
        raise CallError(f'{prefix}service "{endpoint.missing_service}" not found')
    body = json.dumps(review).encode()

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    conn = http.client.HTTPConnection(endpoint.host, endpoint.port, timeout=timeout)
    keep = False
    try:
        tls = kept if kept is not None else _dial(endpoint, context, prefix, remaining())
        conn.sock = tls
        tls.settimeout(remaining())
        try:
            conn.putrequest("POST", request_path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", base.netloc)
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Accept", "application/json, */*")
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            tls.settimeout(remaining())
            response = conn.getresponse()
        except (ConnectionError, ssl.SSLEOFError, ssl.SSLZeroReturnError, http.client.BadStatusLine):
            if kept is None:
                raise
            raise _StaleConnection from None
        tls.settimeout(remaining())
        data = response.read()
        keep = pool is not None and not response.will_close
    except TimeoutError:
        raise CallError(prefix + "context deadline exceeded") from None
    except ConnectionRefusedError:
        raise CallError(
            prefix + f"dial tcp {endpoint.host}:{endpoint.port}: connect: connection refused"
        ) from None
    except ssl.SSLError as err:
        raise CallError(prefix + f"remote error: tls: {err.reason or err}") from None
    except (OSError, http.client.HTTPException) as err:
        raise CallError(prefix + (str(err) or type(err).__name__)) from None
    finally:
        if keep and pool is not None:
            conn.sock = None  # the connection stays open for the next call
            pool.give(pool.key(endpoint), tls)
        conn.close()
    return _decode(response, data)


def _dial(endpoint: Endpoint, context: ssl.SSLContext, prefix: str, timeout: float) -> ssl.SSLSocket:
    """A new TLS connection to ``endpoint``, its certificate checked for the name the apiserver uses."""
    raw = socket.create_connection((endpoint.host, endpoint.port), timeout=timeout)
    try:
        # SNI and verification use the name the apiserver would check, not the dialled address.
        sni = None if _is_ip(endpoint.server_name) else endpoint.server_name
        tls = context.wrap_socket(raw, server_hostname=sni)
    except ssl.SSLCertVerificationError as err:
        raw.close()
        raise CallError(prefix + "tls: failed to verify certificate: " + _verify_error_text(err)) from None
    except BaseException:
        raw.close()
        raise
    der = tls.getpeercert(binary_form=True) or b""
    if (mismatch := _hostname_error(der, endpoint.server_name)) is not None:
        tls.close()
        raise CallError(prefix + "tls: failed to verify certificate: " + mismatch)
    return tls


def _decode(response: http.client.HTTPResponse, data: bytes) -> dict[str, Any]:
    content_type = response.getheader("Content-Type", "")
    status = response.status
    if 200 <= status <= 206:
        try:
            decoded = json.loads(data)
        except ValueError as err:
            raise CallError(f"couldn't get version/kind; json parse error: {err}") from None
        if not isinstance(decoded, dict):
            raise CallError("couldn't get version/kind; json parse error: expected an object")
        return decoded
    # client-go: a Status body supplies the message; anything else gets its generic text.
    if "json" in content_type:
        try:
            decoded = json.loads(data)
        except ValueError:
            decoded = None
        if (
            isinstance(decoded, dict)
            and decoded.get("kind") == "Status"
            and decoded.get("status") != "Success"
        ):
            raise CallError(str(decoded.get("message", "")))
    text = data[:2048].decode("utf-8", "replace").strip() if _is_text(content_type) else "unknown"
    raise CallError(_generic_message(status, text))


def _is_text(content_type: str) -> bool:
    return not content_type or content_type.split(";", maxsplit=1)[0].strip().startswith("text/")


_GENERIC_MESSAGES = {
    409: "the server reported a conflict",
    404: "the server could not find the requested resource",
    400: "the server rejected our request for an unknown reason",
    401: "the server has asked for the client to provide credentials",
    405: "the server does not allow this method on the requested resource",
    422: "the server rejected our request due to an error in our request",
    503: "the server is currently unable to handle the request",
    504: (
        "the server was unable to return a response in the time allotted, "
        "but may still be processing the request"
    ),
    429: "the server has received too many requests and has asked us to try again later",
}


def _generic_message(code: int, server_message: str) -> str:
    """``apierrors.NewGenericServerResponse``'s message for a bare non-2xx answer."""
    if code in _GENERIC_MESSAGES:
        return _GENERIC_MESSAGES[code]
    if code in (403, 415) or (code == 406 and server_message not in ("", "unknown")):
        return server_message
    if code == 406:
        return "the server was unable to respond with a content type that the client supports"
    if code >= 500:
        return (
            f"an error on the server ({json.dumps(server_message)}) has prevented the request from succeeding"
        )
    return f"the server responded with the status code {code} but did not return more information"
