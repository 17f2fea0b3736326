"""The HTTPS transport of the webhook dispatcher: Go-worded failures for the cases tests meet."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from kcp_tmc.certs.generate import issue_for_names, new_ca, new_key
from kcp_tmc.testing.stub_webhook import RawReply, StubWebhook, allow, deny
from kcp_tmc.testing.webhook_calls import (
    CallError,
    Connections,
    Endpoint,
    WebhookCallFailed,
    _dns_match,
    _generic_message,
    _hostname_error,
    post_review,
    resolve_endpoint,
)

REVIEW = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u-1"}}


@pytest.fixture(scope="module")
def stub() -> Iterator[StubWebhook]:
    with StubWebhook(service="svc", namespace="ns") as hook:
        yield hook


def endpoint(hook: StubWebhook, path: str = "/") -> Endpoint:
    return resolve_endpoint(hook.client_config(path), {})


def test_url_endpoint(stub: StubWebhook) -> None:
    ep = endpoint(stub, "/x")
    assert (ep.url, ep.host, ep.port, ep.server_name, ep.path) == (
        stub.url("/x"),
        "127.0.0.1",
        stub.port,
        "127.0.0.1",
        "/x",
    )
    assert ep.ca_pem == stub.ca_pem
    default_port = resolve_endpoint({"url": "https://example.com"}, {})
    assert (default_port.port, default_port.path, default_port.ca_pem) == (443, "/", None)


def test_service_endpoint_defaults() -> None:
    ep = resolve_endpoint({"service": {"name": "svc", "namespace": "ns"}}, {("ns", "svc"): "127.0.0.1:9443"})
    assert (ep.url, ep.host, ep.port, ep.server_name, ep.path) == (
        "https://svc.ns.svc:443/",
        "127.0.0.1",
        9443,
        "svc.ns.svc",
        "/",
    )


def test_ca_bundle_that_is_not_base64() -> None:
    with pytest.raises(WebhookCallFailed) as caught:
        resolve_endpoint({"url": "https://x", "caBundle": "%%%"}, {})
    assert str(caught.value) == "could not get REST client: caBundle is not valid base64"


def test_ca_bundle_with_a_broken_certificate(stub: StubWebhook) -> None:
    broken = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    ep = Endpoint(stub.url("/"), "127.0.0.1", stub.port, "127.0.0.1", "/", broken)
    with pytest.raises(WebhookCallFailed) as caught:
        post_review(ep, REVIEW, 2)
    assert str(caught.value) == (
        "could not get REST client: unable to load root certificates: unable to parse bytes as PEM block"
    )


def test_query_already_in_url_keeps_it(stub: StubWebhook) -> None:
    stub.clear_calls()
    ep = resolve_endpoint({"url": stub.url("/q") + "?team=a", "caBundle": stub.ca_bundle}, {})
    post_review(ep, REVIEW, 2.5)
    assert stub.calls_to("/q")[-1].query == {"team": "a", "timeout": "3s"}


def test_answers_are_decoded(stub: StubWebhook) -> None:
    stub.on("/ok", lambda review: allow(review, warnings=["w"]))
    answer = post_review(endpoint(stub, "/ok"), REVIEW, 2)
    assert answer["response"] == {"uid": "u-1", "allowed": True, "warnings": ["w"]}
    stub.on("/list", lambda review: RawReply(200, [1, 2]))
    with pytest.raises(CallError, match="json parse error: expected an object"):
        post_review(endpoint(stub, "/list"), REVIEW, 2)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (RawReply(503, "busy", "text/plain"), "the server is currently unable to handle the request"),
        (RawReply(403, "go away", "text/plain"), "go away"),
        (
            RawReply(406, "", "text/plain"),
            "the server was unable to respond with a content type that the client supports",
        ),
        (RawReply(406, "only yaml", "text/plain"), "only yaml"),
        (
            RawReply(502, b"\x00", "application/octet-stream"),
            'an error on the server ("unknown") has prevented the request from succeeding',
        ),
        (
            RawReply(500, "not json", "application/json"),
            'an error on the server ("unknown") has prevented the request from succeeding',
        ),
        (
            RawReply(500, {"kind": "Status", "status": "Success"}, "application/json"),
            'an error on the server ("unknown") has prevented the request from succeeding',
        ),
        (
            RawReply(302, "", ""),
            "the server responded with the status code 302 but did not return more information",
        ),
    ],
)
def test_non_2xx_answers(stub: StubWebhook, reply: RawReply, message: str) -> None:
    stub.on("/e", lambda review: reply)
    with pytest.raises(CallError) as caught:
        post_review(endpoint(stub, "/e"), REVIEW, 2)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (409, "the server reported a conflict"),
        (401, "the server has asked for the client to provide credentials"),
        (405, "the server does not allow this method on the requested resource"),
        (422, "the server rejected our request due to an error in our request"),
        (429, "the server has received too many requests and has asked us to try again later"),
        (
            504,
            "the server was unable to return a response in the time allotted, "
            "but may still be processing the request",
        ),
        (415, "text"),
    ],
)
def test_generic_messages(code: int, message: str) -> None:
    assert _generic_message(code, "text") == message


def test_dns_matching() -> None:
    assert _dns_match("*.ns.svc", "svc.ns.svc")
    assert not _dns_match("*.ns.svc", "ns.svc")
    assert _dns_match("Svc.NS.svc.", "svc.ns.svc")
    assert not _dns_match("a.b", "a.c")


def _cert(dns: list[str], ips: list[str], cn: str = "x") -> bytes:
    key = new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1))
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_hostname_errors_in_go_words() -> None:
    assert _hostname_error(_cert(["a.example"], []), "a.example") is None
    assert _hostname_error(_cert(["a.example", "b.example"], []), "c.example") == (
        "x509: certificate is valid for a.example, b.example, not c.example"
    )
    assert _hostname_error(_cert(["a.example"], []), "10.0.0.1") == (
        "x509: cannot validate certificate for 10.0.0.1 because it doesn't contain any IP SANs"
    )
    assert (
        _hostname_error(_cert([], ["10.0.0.2"]), "10.0.0.1")
        == "x509: certificate is valid for 10.0.0.2, not 10.0.0.1"
    )
    assert _hostname_error(_cert([], ["10.0.0.1"]), "10.0.0.1") is None
    assert _hostname_error(_cert([], []), "a.example") == (
        "x509: certificate relies on legacy Common Name field, use SANs instead"
    )
    assert _hostname_error(_cert([], ["10.0.0.2"]), "a.example") == (
        "x509: certificate is not valid for any names, but wanted to match a.example"
    )


def test_expired_certificate(tmp_path: Any) -> None:
    ca = new_ca("old")
    past = datetime.now(UTC) - timedelta(days=30)
    pair = issue_for_names(ca, common_name="x", dns=["localhost"], ips=["127.0.0.1"], days=1, now=past)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "c").write_bytes(pair.cert_pem)
    (tmp_path / "k").write_bytes(pair.key_pem)
    context.load_cert_chain(tmp_path / "c", tmp_path / "k")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        ep = Endpoint(f"https://127.0.0.1:{port}/", "127.0.0.1", port, "127.0.0.1", "/", ca.cert_pem)
        with pytest.raises(CallError) as caught:
            post_review(ep, REVIEW, 2)
        thread.join(5)
    assert str(caught.value) == (
        f'Post "https://127.0.0.1:{port}/?timeout=2s": tls: failed to verify certificate: '
        "x509: certificate has expired or is not yet valid"
    )


def test_server_that_closes_the_connection(stub: StubWebhook) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        ep = Endpoint(f"https://127.0.0.1:{port}/", "127.0.0.1", port, "127.0.0.1", "/", stub.ca_pem)
        with pytest.raises(CallError) as caught:
            post_review(ep, REVIEW, 2)
        thread.join(5)
    assert str(caught.value).startswith(f'Post "https://127.0.0.1:{port}/?timeout=2s": ')


def test_stub_helpers(stub: StubWebhook) -> None:
    stub.on("/d", deny)
    answer = post_review(endpoint(stub, "/d"), REVIEW, 2)
    assert answer["response"] == {"uid": "u-1", "allowed": False, "status": {"code": 403}}
    stub.on("/a", lambda review: allow(review, audit_annotations={"k": "v"}))
    assert post_review(endpoint(stub, "/a"), REVIEW, 2)["response"]["auditAnnotations"] == {"k": "v"}
    stub.on("/bytes", lambda review: RawReply(200, json.dumps(allow(review))))
    assert post_review(endpoint(stub, "/bytes"), REVIEW, 2)["response"]["allowed"] is True
    stub.clear_calls()
    ep = endpoint(stub, "/raw")
    post_review(ep, {"not": "a review"}, 2)
    assert stub.calls_to("/raw")[0].review == {"not": "a review"}
    assert base64.b64decode(stub.ca_bundle) == stub.ca_pem


def test_stub_port_before_start() -> None:
    with pytest.raises(RuntimeError, match="never started"):
        _ = StubWebhook().port


# --- keep-alive connections, as kube-apiserver keeps them -------------------------------------------


def test_a_pool_reuses_one_connection_until_it_is_closed(stub: StubWebhook) -> None:
    ep, pool = endpoint(stub, "/pooled"), Connections()
    key = pool.key(ep)
    assert post_review(ep, REVIEW, 2, pool)["response"]["uid"] == "u-1"
    first = pool.take(key)
    assert first is not None
    pool.give(key, first)
    assert post_review(ep, REVIEW, 2, pool)["response"]["uid"] == "u-1"
    again = pool.take(key)
    assert again is first  # the second call went over the first call's connection
    pool.give(key, again)
    pool.close()
    assert again.fileno() == -1
    assert pool.take(key) is None
    # A closed pool still calls, on a connection of the call's own that it then closes.
    assert post_review(ep, REVIEW, 2, pool)["response"]["uid"] == "u-1"
    assert pool.take(key) is None


def test_a_connection_the_webhook_closed_while_idle_is_not_reused(stub: StubWebhook) -> None:
    ep, pool = endpoint(stub, "/idle-closed"), Connections()
    key = pool.key(ep)
    post_review(ep, REVIEW, 2, pool)
    kept = pool.take(key)
    assert kept is not None
    pool.give(key, kept)
    # The stub ends idle connections after 5 s; here the end is forced on the client's socket.
    kept.shutdown(socket.SHUT_RDWR)
    assert pool.take(key) is None
    assert kept.fileno() == -1
    pool.close()


def test_a_kept_connection_closed_before_the_answer_is_retried_once_on_a_new_one(tmp_path: Any) -> None:
    """The first connection answers one review, then closes on the next without a byte of answer;
    the call goes out again on a new connection, as Go's transport retries a reused connection."""
    ca = new_ca("keep")
    pair = issue_for_names(ca, common_name="x", dns=["localhost"], ips=["127.0.0.1"], days=1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    (tmp_path / "c").write_bytes(pair.cert_pem)
    (tmp_path / "k").write_bytes(pair.key_pem)
    context.load_cert_chain(tmp_path / "c", tmp_path / "k")
    answer = json.dumps({**REVIEW, "response": {"uid": "u-1", "allowed": True}}).encode()
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(answer),
        answer,
    )
    accepted: list[int] = []

    def read_request(tls: ssl.SSLSocket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
        )
        while len(body) < length:
            body += tls.recv(65536)
        return True

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def serve() -> None:
            for number in range(2):
                conn, _ = listener.accept()
                accepted.append(number)
                with context.wrap_socket(conn, server_side=True) as tls:
                    read_request(tls)
                    tls.sendall(reply)
                    if number == 0:
                        read_request(tls)  # the second review, on the kept connection: no answer
                    else:
                        tls.recv(1)  # until the client closes

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        ep = Endpoint(f"https://127.0.0.1:{port}/", "127.0.0.1", port, "127.0.0.1", "/", ca.cert_pem)
        pool = Connections()
        assert post_review(ep, REVIEW, 5, pool)["response"]["allowed"] is True
        assert post_review(ep, REVIEW, 5, pool)["response"]["allowed"] is True
        pool.close()
        thread.join(5)
    assert accepted == [0, 1]
