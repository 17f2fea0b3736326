"""A real ``tmc-webhook`` process over TLS: chain, reviews, workers, connections, rotation."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.webhook.webhook_helpers import SERVER_NAME, Server, example

pytestmark = pytest.mark.slow

REVIEW = json.dumps(example("synctarget-create.json")).encode()
HEADERS = {"Content-Type": "application/json"}


def https(server: Server, timeout: float = 5.0) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", server.port, context=server.context(), timeout=timeout)


def review_once(conn: http.client.HTTPSConnection, path: str = "/validate?timeout=10s") -> dict[str, Any]:
    conn.request("POST", path, body=REVIEW, headers=HEADERS)
    resp = conn.getresponse()
    body = resp.read()
    assert resp.status == 200, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def peer_certificate(tls: ssl.SSLSocket) -> x509.Certificate:
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_chain_verifies_with_the_ca_and_the_service_name(server: Server) -> None:
    with server.connect() as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.compression() is None
        cert = peer_certificate(tls)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert SERVER_NAME in names.get_values_for_type(x509.DNSName)
    # A client that trusts another CA refuses the server.
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(raw, server_hostname=SERVER_NAME)


def test_tls_below_1_2_is_refused(server: Server) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLError) as err,
    ):
        ctx.wrap_socket(raw)
    # The server's alert, not the client's refusal to offer the version.
    assert err.value.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"), err.value


def test_reviews_over_keep_alive_and_metrics_of_both_workers(server: Server) -> None:
    before = _count(server)
    conn = https(server)
    try:
        for _ in range(20):
            assert review_once(conn)["response"] == {
                "uid": "5b3c6ee6-1f0a-4d2b-9d59-5f6c3a9a0001",
                "allowed": True,
            }
        out = review_once(conn, "/mutate")
        assert out["response"]["patchType"] == "JSONPatch"
    finally:
        conn.close()
    for _ in range(20):  # new connections land on either worker
        c = https(server)
        review_once(c)
        c.close()
    assert _count(server) - before == 41


def _count(server: Server) -> float:
    conn = https(server)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tmc_admission_requests_total{")
    )


def _review_log_lines(server: Server) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "kcp_tmc.webhook.reviews"]


def test_readyz_and_log_lines(server: Server) -> None:
    conn = https(server)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["status"] == "ok"
        # Review once here: under xdist this test may be the first of the module on its worker.
        review_once(conn)
    finally:
        conn.close()
    deadline = time.monotonic() + 5
    while not (reviews := _review_log_lines(server)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert reviews
    assert {
        "uid",
        "kind",
        "namespace",
        "name",
        "operation",
        "user",
        "dryRun",
        "decision",
        "durationMs",
    } <= set(reviews[-1])
    assert "object" not in reviews[-1]


def test_malformed_http_gets_400_json(server: Server) -> None:
    with server.connect() as tls:
        tls.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = _read_all(tls)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert json.loads(body)["message"].startswith("malformed HTTP request: ")


def test_oversized_body_is_refused_before_it_is_sent(server: Server) -> None:
    with server.connect() as tls:
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{"
        )
        started = time.monotonic()
        data = _read_all(tls)
        assert time.monotonic() - started < 2
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["message"] == "the body is 100000000 bytes, over the limit of 4194304 bytes"


def test_oversized_body_sent_whole_still_reads_the_413(server: Server) -> None:
    """A client that writes its whole 40 MiB body before reading (http.client) gets the 413, not a reset."""
    size = 40 * 1024 * 1024
    for _ in range(2):  # twice: the lingering connection must not leave the worker unable to serve
        conn = https(server, timeout=10.0)
        try:
            conn.request("POST", "/validate", body=b" " * size, headers=HEADERS)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == 413
        assert resp.getheader("Connection") == "close"
        assert json.loads(body)["message"] == f"the body is {size} bytes, over the limit of 4194304 bytes"
        health = https(server)
        try:
            health.request("GET", "/healthz")
            assert health.getresponse().status == 200
        finally:
            health.close()


def test_a_refused_body_that_never_ends_is_cut_off(server: Server) -> None:
    """Lingering after a 413 is bounded: a client that trickles its body forever is closed on."""
    with server.connect() as tls:
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = tls.recv(65536)
            assert chunk, "the server closed before answering"
            head += chunk
        assert head.startswith(b"HTTP/1.1 413 ")
        # Keep sending under the idle bound (slower than the byte bound) until the server hangs up;
        # the loop's own bound (10 s) is far above the server's, so ending here means it was cut off.
        closed = False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                tls.sendall(b" " * 65536)
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        assert closed, "the server still read the refused body after 10 s"


def _read_all(tls: ssl.SSLSocket) -> bytes:
    """Read until the server closes (bounded by the socket timeout)."""
    chunks = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = tls.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_idle_slow_and_half_open_connections_do_not_delay_reviews(server: Server) -> None:
    idle: list[ssl.SSLSocket] = []
    loris: list[ssl.SSLSocket] = []
    half_open: list[socket.socket] = []
    try:
        for _ in range(200):
            idle.append(server.connect())
        for _ in range(50):
            slow = server.connect()
            slow.sendall(b"POST /validate HTTP/1.1\r\n")
            loris.append(slow)
        for _ in range(20):
            half_open.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        latencies = []
        conn = https(server)
        try:
            for i in range(150):
                if i % 10 == 0:  # the slow-loris clients trickle a header byte now and then
                    for s in loris:
                        with contextlib.suppress(OSError):
                            s.send(b"X")
                started = time.monotonic()
                review_once(conn)
                latencies.append(time.monotonic() - started)
            # A new connection is accepted and answered promptly too.
            started = time.monotonic()
            fresh = https(server)
            review_once(fresh)
            fresh.close()
            assert time.monotonic() - started < 1.0
        finally:
            conn.close()
        latencies.sort()
        assert latencies[-1] < 1.0, latencies[-5:]
        assert latencies[len(latencies) // 2] < 0.1
        # The header timeout (1 s) has closed the slow-loris connections by now.
        time.sleep(1.2)
        closed = 0
        for sock in loris:
            sock.settimeout(2)
            try:
                data = sock.recv(100)
            except (OSError, ssl.SSLError):
                data = b""
            closed += data == b""
        assert closed == len(loris)
        # Idle keep-alive connections are still usable (keep-alive is 120 s).
        idle[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle[0].recv(100).startswith(b"HTTP/1.1 200")
    finally:
        for each in [*idle, *loris, *half_open]:
            each.close()


def test_certificate_rotation_under_load_fails_no_request(server: Server) -> None:
    old_serial = _served_serial(server)
    stop = time.monotonic() + 4.0

    def load(worker: int) -> tuple[int, list[str]]:
        done, errors = 0, []
        conn = https(server)
        try:
            for i in range(2000):  # bounded by count and time
                if time.monotonic() > stop:
                    break
                try:
                    if i % 5 == 0:  # a new connection now and then: a new handshake
                        conn.close()
                        conn = https(server)
                    review_once(conn)
                    done += 1
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
        return done, errors

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(load, n) for n in range(4)]
        time.sleep(1.0)
        rotated = subprocess.run(
            [str(Path(sys.executable).parent / "tmc-certs"), "rotate", str(server.certs), "--force"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        results = [f.result(timeout=30) for f in futures]
    assert rotated.returncode == 0, rotated.stderr
    total = sum(done for done, _ in results)
    errors = [e for _, errs in results for e in errs]
    assert errors == []
    assert total > 20
    new_serial = x509.load_pem_x509_certificate((server.certs / "tls.crt").read_bytes()).serial_number
    assert new_serial != old_serial
    time.sleep(1.1)  # the reload check interval
    assert _served_serial(server) == new_serial


def _served_serial(server: Server) -> int:
    with server.connect() as tls:
        return peer_certificate(tls).serial_number


def test_cli_refuses_bad_input_before_serving(tmp_path: Path, cert_dir: Path) -> None:
    bad = tmp_path / "engine.yaml"
    bad.write_text("policies: [1]\n")
    base = [sys.executable, "-m", "kcp_tmc.webhook.cli", "--bind", "127.0.0.1:1"]
    run = subprocess.run(
        [
            *base,
            "--cert-file",
            str(cert_dir / "tls.crt"),
            "--key-file",
            str(cert_dir / "tls.key"),
            "--config",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip().startswith(f"tmc-webhook: error: {bad}:1: policies must be a mapping")
    run = subprocess.run(
        [*base, "--cert-file", str(cert_dir / "tls.crt"), "--key-file", str(tmp_path / "none.key")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 2
    assert "tmc-webhook: error: cannot use " in run.stderr
    assert "No such file or directory" in run.stderr
