"""The fake API server's HTTP transport (aiohttp): what clients put on the wire reaches the API logic."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from kcp_tmc.testing import AdmissionAttributes, AdmissionResult, FakeAPIServer
from kcp_tmc.testing import server as server_module

CM_PATH = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(admission=False) as server:
        yield server


def _exchange(api: FakeAPIServer, data: bytes, *, wait_for: bytes = b"") -> bytes:
    """Sends raw bytes over TLS and reads until the server closes (or ``wait_for`` arrives)."""
    context = ssl.create_default_context(cadata=api.ca_pem.decode())
    answer = b""
    with (
        socket.create_connection((api.host, api.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(data)
        while chunk := tls.recv(65536):
            answer += chunk
            if wait_for and wait_for in answer:
                break
    return answer


def _closed_by_peer(tls: ssl.SSLSocket) -> bool:
    """Whether the server closed or aborted the connection (reads what is left; a timeout is False)."""
    tls.settimeout(2)
    try:
        while tls.recv(65536):
            pass
    except TimeoutError:
        return False
    except (ConnectionError, ssl.SSLError):
        return True
    return True


def _head_and_body(answer: bytes) -> tuple[list[bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def test_chunked_body_after_100_continue_and_a_percent_encoded_query(api: FakeAPIServer) -> None:
    obj = json.dumps({"metadata": {"name": "chunked"}, "data": {"k": "v"}}).encode()
    half = len(obj) // 2
    chunks = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (obj[:half], obj[half:]))
    request = (
        (
            f"POST {CM_PATH}?dryRun=All&fieldManager=a%2Fb HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {api.admin_token}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    answer = _exchange(api, request)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    lines, body = _head_and_body(answer[len(b"HTTP/1.1 100 Continue\r\n\r\n") :])
    assert lines[0] == b"HTTP/1.1 201 Created"
    created = json.loads(body)
    assert created["metadata"]["name"] == "chunked"
    assert created["data"] == {"k": "v"}
    # dryRun=All reached the API logic: nothing was stored.
    assert api.get("v1", "ConfigMap", "chunked", "default") is None


def test_answers_carry_the_apiservers_headers(api: FakeAPIServer) -> None:
    reply = api.http("GET", "/api/v1/namespaces/default")
    assert reply.status == 200
    assert reply.header("content-type") == "application/json"
    assert reply.header("cache-control") == "no-cache, private"
    assert len(reply.header("audit-id") or "") == 16
    assert int(reply.header("content-length") or 0) == len(reply.body)
    health = api.http("GET", "/healthz")
    assert health.header("content-type") == "text/plain; charset=utf-8"
    assert health.body == b"ok"


def test_repeated_warning_headers_are_all_sent(api: FakeAPIServer) -> None:
    def hook(attrs: AdmissionAttributes) -> AdmissionResult:
        return AdmissionResult(warnings=["first, with a comma", 'second "quoted"'])

    api.set_admission(hook)
    try:
        reply = api.http("POST", CM_PATH + "?dryRun=All", {"metadata": {"name": "warned"}})
    finally:
        api.set_admission(None)
    assert reply.status == 201, reply.body
    assert reply.header_values("warning") == ['299 - "first, with a comma"', '299 - "second \\"quoted\\""']


def test_http_1_0_without_keep_alive_is_answered_then_closed(api: FakeAPIServer) -> None:
    answer = _exchange(api, b"GET /version HTTP/1.0\r\n\r\n")
    lines, body = _head_and_body(answer)
    assert lines[0] == b"HTTP/1.0 200 OK"
    assert json.loads(body)["gitVersion"]


def test_a_long_request_line_is_read(api: FakeAPIServer) -> None:
    # Go reads request heads of up to 1 MiB; label selectors and tokens can be long.
    selector = ",".join(f"key-{i}!=value-{i}" for i in range(1500))
    assert len(selector) > 20_000
    reply = api.http("GET", f"{CM_PATH}?labelSelector={selector}")
    assert reply.status == 200, reply.body
    assert reply.json()["kind"] == "ConfigMapList"


def test_a_body_over_the_limit_gets_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_module, "MAX_BODY_BYTES", 1024)
    with FakeAPIServer(admission=False) as small:
        reply = small.http("POST", CM_PATH, b"x" * 4096)
        assert reply.status == 413
        assert reply.json()["reason"] == "RequestEntityTooLarge"
        assert reply.json()["message"] == "Request entity too large: limit is 1024"
        assert small.http("POST", CM_PATH, {"metadata": {"name": "fits"}}).status == 201


def test_stop_with_open_watches_and_idle_connections_is_quick() -> None:
    server = FakeAPIServer(admission=False).start()
    context = ssl.create_default_context(cadata=server.ca_pem.decode())
    sockets = []
    try:
        for i in range(20):
            raw = socket.create_connection((server.host, server.port), timeout=5)
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
            sockets.append(tls)
            if i % 2:
                tls.sendall(
                    f"GET {CM_PATH}?watch=true HTTP/1.1\r\nHost: h\r\n"
                    f"Authorization: Bearer {server.admin_token}\r\n\r\n".encode()
                )
                assert tls.recv(65536).startswith(b"HTTP/1.1 200 OK")
        deadline = time.monotonic() + 5
        while server.store.watcher_count() < 10:
            assert time.monotonic() < deadline, "the watches did not start"
            time.sleep(0.02)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 3
        assert server.store.watcher_count() == 0
        assert all(_closed_by_peer(tls) for tls in sockets)
    finally:
        for tls in sockets:
            tls.close()
        server.stop()


def test_a_write_whose_client_hung_up_still_happens_and_its_namespace_goes(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "abandoned"}})
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "abandoned"}})
    admitting = threading.Event()

    def slow(attrs: AdmissionAttributes) -> AdmissionResult:
        admitting.set()
        time.sleep(0.3)  # the client hangs up meanwhile, which cancels the request's handler
        return AdmissionResult()

    api.set_admission(slow)
    try:
        context = ssl.create_default_context(cadata=api.ca_pem.decode())
        with (
            socket.create_connection((api.host, api.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(
                f"DELETE /api/v1/namespaces/abandoned HTTP/1.1\r\nHost: h\r\n"
                f"Authorization: Bearer {api.admin_token}\r\n\r\n".encode()
            )
            assert admitting.wait(5)
        deadline = time.monotonic() + 5
        while api.get("v1", "Namespace", "abandoned") is not None:
            assert time.monotonic() < deadline, "the namespace controller never emptied the namespace"
            time.sleep(0.05)
    finally:
        api.set_admission(None)
    assert api.get("v1", "ConfigMap", "c", "abandoned") is None


def test_a_taken_port_fails_start_and_leaves_nothing_running() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        before = threading.active_count()
        server = FakeAPIServer(port=taken.getsockname()[1], admission=False)
        with pytest.raises(OSError, match="address already in use"):
            server.start()
        assert threading.active_count() == before
        assert server.kubeconfig_path == ""
