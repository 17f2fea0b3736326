"""The lookup's HTTP on a greenlet: urllib3 over gevent sockets, waiting on the loop, TLS kept whole.

A call made on a greenlet goes through the loop's connection pool (:mod:`kcp_tmc.webhook.loophttp`):
the loop runs while the apiserver answers, without a hand-over to a thread.  The pool keeps the
blocking manager's TLS settings (the CA checked, the client certificate presented) and the server
URL's path; behind a proxy, which it does not reproduce, the call goes through the proxy on the
loop's threadpool instead.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.webhook.lookup import ApiCallError, ApiLookup
from kcp_tmc.webhook.loophttp import LoopHTTPConnectionPool, LoopHTTPSConnectionPool, loop_connection_pool
from tests.webhook.webhook_helpers import ticking


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        yield server


def caught(call: Callable[[], Any]) -> Any:
    """``call()``'s result, or the exception it raised (so that a greenlet's failure can be looked at)."""
    try:
        return call()
    except Exception as exc:
        return exc


def timed_ticking(work: Callable[[], Any], seconds: float = 5.0) -> tuple[Any, int, float]:
    """:func:`ticking` of ``work`` (its result or exception), and the seconds it took."""
    started = time.monotonic()
    result, ticks = ticking(seconds / 4, lambda: caught(work))
    return result, ticks, time.monotonic() - started


def test_a_call_on_a_greenlet_waits_on_the_loop_through_the_loops_pool(api: FakeAPIServer) -> None:
    lookup = ApiLookup.from_kubeconfig(api.kubeconfig_path, cached=())
    api.faults.latency(0.5)
    try:
        answer, ticks, took = timed_ticking(
            lambda: lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0)
        )
    finally:
        api.faults.clear()
    assert isinstance(answer, dict) and answer["kind"] == "NamespaceList", answer
    assert took >= 0.5
    assert ticks >= 20, f"the loop ran {ticks} times in {took:.2f} s of apiserver call"
    # The greenlet's call went through this thread's loop pool, on a connection it keeps.
    pools = list(lookup.http._loop_pools.values())
    assert len(pools) == 1 and isinstance(pools[0], LoopHTTPSConnectionPool)
    assert pools[0].num_connections == 1 and pools[0].num_requests == 1
    # Off the loop (this plain thread) the blocking manager serves, and the answer is the same.
    assert lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0)["kind"] == "NamespaceList"
    assert pools[0].num_requests == 1


def test_the_loops_pool_checks_the_servers_certificate(api: FakeAPIServer, tmp_path: Path) -> None:
    # A CA that did not sign the fake's certificate: the loop's handshake refuses it, as off the loop.
    other = generate_dir(tmp_path / "other", service="x", namespace="y", ips=["127.0.0.1"])
    data = yaml.safe_load(Path(api.kubeconfig_path).read_text())
    data["clusters"][0]["cluster"].pop("certificate-authority-data")
    data["clusters"][0]["cluster"]["certificate-authority"] = str(other.ca_crt)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(data))
    lookup = ApiLookup.from_kubeconfig(str(kubeconfig), cached=())
    error, _, _ = timed_ticking(lambda: lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0))
    assert isinstance(error, ApiCallError), error
    assert "CERTIFICATE_VERIFY_FAILED" in str(error), str(error)
    assert str(error).startswith(f"GET {api.url}/api/v1/namespaces: ")
    with pytest.raises(ApiCallError, match="CERTIFICATE_VERIFY_FAILED"):
        lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0)


def test_the_loops_pool_skips_verification_only_when_told(api: FakeAPIServer) -> None:
    configuration = k8s_client.Configuration()
    configuration.host = api.url
    configuration.verify_ssl = False
    configuration.api_key = {"authorization": f"Bearer {api.admin_token}"}
    lookup = ApiLookup(configuration, cached=())
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):  # urllib3 says so, as it does off the loop
        answer, _, _ = timed_ticking(lambda: lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0))
    assert isinstance(answer, dict) and answer["kind"] == "NamespaceList", answer


class _ClientCertServer:
    """A TLS server that requires a client certificate and answers with the client's common name."""

    def __init__(self, certs: Any) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(certs.tls_crt), str(certs.tls_key))
        self.context.load_verify_locations(str(certs.ca_crt))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10.0)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        # Bounded: three connections (the loop's and the blocking one with the certificate, one
        # without), then it stops.
        for _ in range(3):
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(5.0)
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        head += chunk
                    subject = dict(item[0] for item in conn.getpeercert()["subject"])
                    path = head.split(b" ", 2)[1].decode()
                    body = json.dumps({"commonName": subject["commonName"], "path": path}).encode()
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
            except (OSError, ssl.SSLError):
                continue

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def _client_certificate(certs: Any, out: Path, common_name: str) -> tuple[Path, Path]:
    """A client certificate for ``common_name`` signed by the CA of ``certs``."""
    ca_cert = x509.load_pem_x509_certificate(Path(certs.ca_crt).read_bytes())
    ca_key: Any = serialization.load_pem_private_key(Path(certs.ca_key).read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = out / "client.crt", out / "client.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_the_loops_pool_presents_the_client_certificate_below_the_servers_path(tmp_path: Path) -> None:
    certs = generate_dir(tmp_path / "server", service="apiserver", namespace="default", ips=["127.0.0.1"])
    cert_path, key_path = _client_certificate(certs, tmp_path, "system:tmc-webhook")
    server = _ClientCertServer(certs)
    try:
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": f"https://127.0.0.1:{server.port}/clusters/root",
                        "certificate-authority": str(certs.ca_crt),
                    },
                }
            ],
            "users": [
                {"name": "u", "user": {"client-certificate": str(cert_path), "client-key": str(key_path)}}
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config_from_dict(kubeconfig, client_configuration=configuration)
        lookup = ApiLookup(configuration, cached=())
        answer, _, _ = timed_ticking(lambda: lookup.http.json("GET", "/whoami", timeout=5.0))
        # The certificate was presented, and the request went below the server URL's path.
        assert answer == {"commonName": "system:tmc-webhook", "path": "/clusters/root/whoami"}, answer
        assert lookup.http.json("GET", "/whoami", timeout=5.0) == answer  # the same off the loop
        # Without the certificate the server refuses the handshake.
        configuration.cert_file = configuration.key_file = None
        bare = ApiLookup(configuration, cached=())
        error, _, _ = timed_ticking(lambda: bare.http.json("GET", "/whoami", timeout=5.0))
        assert isinstance(error, ApiCallError), error
    finally:
        server.close()


def test_behind_a_proxy_a_call_on_a_greenlet_goes_through_the_proxy_off_the_loop(
    api: FakeAPIServer,
) -> None:
    # A "proxy" that accepts connections and never answers: the call must go to it (not straight to
    # the apiserver, which would answer) and time out there, while the loop keeps running.
    assert loop_connection_pool(urllib3.ProxyManager("http://127.0.0.1:1"), api.url) is None
    proxy = socket.create_server(("127.0.0.1", 0))
    try:
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(api.kubeconfig_path, client_configuration=configuration)
        configuration.proxy = f"http://127.0.0.1:{proxy.getsockname()[1]}"
        lookup = ApiLookup(configuration, cached=())
        error, ticks, took = timed_ticking(lambda: lookup.http.json("GET", "/api/v1/namespaces", timeout=0.5))
        assert isinstance(error, ApiCallError), error
        assert str(error).startswith(f"GET {api.url}/api/v1/namespaces: "), str(error)
        assert "timed out" in str(error), str(error)
        assert took >= 0.5
        assert ticks >= 20, f"the loop ran {ticks} times while the proxy was waited for"
        assert list(lookup.http._loop_pools.values()) == [None]
    finally:
        proxy.close()


def test_a_refused_connection_on_the_loop_is_an_api_call_error_naming_it() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    configuration = k8s_client.Configuration()
    configuration.host = f"https://127.0.0.1:{port}"
    lookup = ApiLookup(configuration, cached=())
    error, _, _ = timed_ticking(lambda: lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0))
    assert isinstance(error, ApiCallError), error
    assert str(error).startswith(f"GET https://127.0.0.1:{port}/api/v1/namespaces: ")
    assert "Failed to establish a new connection" in str(error), str(error)


def test_a_plain_http_apiserver_is_called_on_the_loop_too() -> None:
    with FakeAPIServer(tls=False) as plain:
        assert plain.url.startswith("http://")
        lookup = ApiLookup.from_kubeconfig(plain.kubeconfig_path, cached=())
        plain.faults.latency(0.3)
        try:
            answer, ticks, took = timed_ticking(
                lambda: lookup.http.json("GET", "/api/v1/namespaces", timeout=2.0)
            )
        finally:
            plain.faults.clear()
    assert isinstance(answer, dict) and answer["kind"] == "NamespaceList", answer
    assert took >= 0.3
    assert ticks >= 10, f"the loop ran {ticks} times in {took:.2f} s of apiserver call"
    pools = list(lookup.http._loop_pools.values())
    assert len(pools) == 1 and isinstance(pools[0], LoopHTTPConnectionPool)
    assert not isinstance(pools[0], LoopHTTPSConnectionPool)
