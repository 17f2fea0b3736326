"""A review waiting on the apiserver never holds up its worker's other connections.

One ``tmc-webhook`` worker (``--workers 1``) in front of a fake API server that answers every
request late.  While a review on one connection waits for its quota reservation (or for a live
read), a review on a second connection that needs no apiserver call is answered at once: the
reservation waits on the loop's gevent sockets and a live read on a policy thread, neither holds
the loop.  Were either to block the loop, the second review would wait the whole round trip.
"""

from __future__ import annotations

import _thread
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import pytest

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.policies.kinds import FEDERATED_QUOTA
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.crds import crd
from kcp_tmc.webhook.lookup import ApiCallError, ApiLookup
from kcp_tmc.webhook.worker import cooperative_waiter
from tests.webhook.test_webhook_quota import (
    create_web_deployment,
    fq,
    pod_review,
    reservation,
    used_of,
    with_status,
)
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, Server, start_server, stop_server, ticking

#: How late the apiserver answers while the probes run.
LATENCY = 1.5
#: The answer a review that needs no apiserver call must get within (the loop free).
PROMPT = 0.5


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        server.install_crd(crd("federatedquotas.tmc.kcp.io"))
        server.create(fq(limit="100"))
        with_status(server, "0")
        yield server


@pytest.fixture(scope="module")
def webhook(api: FakeAPIServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("offload")
    certs = tmp / "certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, ips=["127.0.0.1"])
    server = start_server(tmp, certs, "--workers", "1", "--kubeconfig", str(api.kubeconfig_path))
    try:
        yield server
    finally:
        stop_server(server)


def watching(api: FakeAPIServer) -> bool:
    """The worker's quota cache has listed and watches: its reads need no apiserver call."""
    return api.counters.requests(verb="watch", resource="federatedquotas") > 0


def send(server: Server, body: dict[str, Any], path: str = "/validate/quota-enforcement") -> dict[str, Any]:
    """One review on a connection of its own; the ``response`` of the answer."""
    data = json.dumps(body).encode()
    with server.connect(timeout=10.0) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        raw = b""
        while chunk := conn.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    answer: dict[str, Any] = json.loads(payload)["response"]
    return answer


def probe_while(server: Server, slow: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``slow`` on a thread; once it waits on the apiserver, time a dry-run review beside it.

    The probe must be answered within ``PROMPT`` and while ``slow`` still waits; ``slow``'s answer.
    """
    result: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        result.update(slow())
        finished.set()

    thread = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    thread.start()
    time.sleep(0.3)  # the slow review's apiserver call is under way (it takes LATENCY)
    probe_started = time.monotonic()
    answer = send(server, pod_review("probe", "1", dry_run=True))
    took = time.monotonic() - probe_started
    still_waiting = not finished.is_set()
    thread.join(LATENCY * 4)
    assert answer["allowed"] is True, answer
    assert took < PROMPT, f"the probe waited {took:.2f} s behind the review waiting on the apiserver"
    assert still_waiting, "the slow review ended before the probe: nothing was measured"
    assert time.monotonic() - started >= LATENCY  # the slow one really waited on the apiserver
    return result


def test_a_review_beside_a_waiting_reservation_is_answered_at_once(
    api: FakeAPIServer, webhook: Server
) -> None:
    deadline = time.monotonic() + 20
    while not watching(api):
        assert time.monotonic() < deadline, "the worker's quota cache never started watching"
        time.sleep(0.05)
    api.faults.latency(LATENCY)
    try:
        answer = probe_while(webhook, lambda: send(webhook, pod_review("slow", "2")))
    finally:
        api.faults.clear()
    # The reservation itself kept its meaning: admitted, and its use written once.
    assert answer["allowed"] is True, answer
    assert used_of(api) == "2"


def scale_review(replicas: int) -> dict[str, Any]:
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"scale-{replicas}",
            "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "subResource": "scale",
            "operation": "UPDATE",
            "namespace": "default",
            "name": "web",
            "object": scale,
            "oldObject": {**scale, "spec": {"replicas": 1}},
            "dryRun": True,
            "userInfo": {"username": "alice"},
        },
    }


def test_a_review_beside_a_waiting_live_read_is_answered_at_once(api: FakeAPIServer, webhook: Server) -> None:
    # A scale write reads its Deployment live (no cache holds workloads): a round trip per review.
    create_web_deployment(api)
    api.faults.latency(LATENCY)
    try:
        answer = probe_while(webhook, lambda: send(webhook, scale_review(3)))
    finally:
        api.faults.clear()
    assert answer["allowed"] is True, answer


# --- the pieces, in this process ------------------------------------------------------------------


@pytest.fixture
def fresh() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        server.install_crd(crd("federatedquotas.tmc.kcp.io"))
        server.create(fq(limit="10"))
        with_status(server, "0")
        yield server


def test_a_reservation_on_a_greenlet_lets_the_loop_run(fresh: FakeAPIServer) -> None:
    cache = ApiLookup.from_kubeconfig(fresh.kubeconfig_path).start(wait=10)
    try:
        fresh.faults.latency(0.5)
        denial, ticks = ticking(0.5, lambda: cache.reserve(reservation("3"), deadline=time.monotonic() + 5))
        fresh.faults.clear()
        assert denial is None
        assert used_of(fresh) == "3"
        assert ticks >= 20, f"the loop ran {ticks} times in 0.5 s of reservation"
        # An error of a call made on a greenlet comes back to it as raised.
        fresh.faults.error_rate(1.0, code=500)
        with pytest.raises(ApiCallError, match="500"):
            gevent.spawn(cache.http.json, "GET", "/api/v1/namespaces", timeout=2.0).get()
        cold = ApiLookup.from_kubeconfig(fresh.kubeconfig_path)  # reads live
        with pytest.raises(ApiCallError, match="500"):
            gevent.spawn(cold.list, FEDERATED_QUOTA, "default").get()
        fresh.faults.clear()
        listed, ticks = ticking(0.5, lambda: [q["metadata"]["name"] for q in cold.list(FEDERATED_QUOTA)])
        assert listed == ["team-a"]
    finally:
        cache.close()


def test_the_cache_lists_in_pages_and_starts_over_when_the_pages_expire(fresh: FakeAPIServer) -> None:
    for index in range(4):
        quota = fq()
        quota["metadata"] = {"name": f"q{index}", "namespace": "default"}
        fresh.create(quota)
    lists_before = fresh.counters.requests(verb="list", resource="federatedquotas")
    cache = ApiLookup.from_kubeconfig(fresh.kubeconfig_path, cached=[FEDERATED_QUOTA], list_page=2)
    original = cache.http.json
    expired: list[str] = []

    def expiring_once(method: str, path: str, **kwargs: Any) -> Any:
        if "continue" in (kwargs.get("query") or {}) and not expired:
            expired.append(path)
            raise ApiCallError(f"GET {path}: 410 The provided continue parameter is too old", 410)
        return original(method, path, **kwargs)

    cache.http.json = expiring_once  # type: ignore[method-assign]
    try:
        cache.start(wait=10)
        names = sorted(q["metadata"]["name"] for q in cache.list(FEDERATED_QUOTA))
        assert names == ["q0", "q1", "q2", "q3", "team-a"]
        assert expired, "no page was expired"
        # One first page given up, then three pages of two: 5 objects.
        assert fresh.counters.requests(verb="list", resource="federatedquotas") - lists_before == 4
    finally:
        cache.close()


def test_the_cooperative_waiter_keeps_the_loop_running() -> None:
    wait = cooperative_waiter(2)

    def released_after(seconds: float) -> Any:
        done = _thread.allocate_lock()
        done.acquire()
        threading.Timer(seconds, done.release).start()
        return done

    quick = released_after(0)
    time.sleep(0.01)
    assert wait(quick, 1.0) is True  # already done: no hand-over
    finished, ticks = ticking(0.3, lambda: wait(released_after(0.3), 2.0))
    assert finished is True
    assert ticks >= 10, f"the loop ran {ticks} times while a policy thread was waited for"
    started = time.monotonic()
    gave_up, _ = ticking(0.2, lambda: wait(released_after(1.0), 0.2))
    assert gave_up is False
    assert 0.19 <= time.monotonic() - started < 0.9
    # Off the loop (a plain thread) it blocks, as the engine's own wait does.
    assert wait(released_after(0.05), 1.0) is True
    assert wait(released_after(1.0), 0.05) is False
