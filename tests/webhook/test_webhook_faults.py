"""Faults under steady review load on a real ``tmc-webhook``: a worker killed, certificates rotated.

1. A gunicorn worker SIGKILLed: only the requests on its connections fail (each client at most
   once, and only on a connection opened before the kill); gunicorn starts a replacement, which
   serves within 1 s.
2. The serving certificate and the CA rotated with ``tmc-certs`` (the three-step CA roll, the
   clients' bundle updated after each step as ``tmc-certs inject`` would): no request fails, no
   handshake fails.

The quick versions run in ``make test``; the ``chaos`` ones repeat them (20 kills, 10 rotations).
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from kcp_tmc.certs.generate import generate_dir
from tests.procstats import children
from tests.webhook.load import Load, Shot, read_response, request
from tests.webhook.webhook_helpers import (
    NAMESPACE,
    SERVER_NAME,
    SERVICE,
    Server,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    servers: list[Server] = []

    def start(workers: int, certs: Path | None = None) -> Server:
        if certs is None:
            certs = tmp_path / f"certs-{len(servers)}"
            generate_dir(certs, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"])
        server = start_server(tmp_path, certs, "--workers", str(workers), "--log-level", "warning")
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)


def workers_of(server: Server, count: int, timeout: float = 20.0) -> list[int]:
    """The worker pids once ``count`` of them have booted and serve (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = children(server.proc.pid)
        if len(pids) == count:
            return pids
        time.sleep(0.02)
    raise AssertionError(f"expected {count} workers, have {children(server.proc.pid)}")


def serves(server: Server) -> bool:
    try:
        with server.connect(timeout=2) as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return read_response(tls, timeout=2)[0] == 200
    except (OSError, ssl.SSLError):
        return False


def kill_one_worker(server: Server, load: Load, workers: int) -> tuple[float, float, list[Shot]]:
    """SIGKILL a worker under ``load``; returns the kill time, how long until a replacement served, failures.

    The replacement is known to serve when a new pid is in the master's children and, with one
    worker, when a request succeeds again (nothing else could have answered it).
    """
    before = workers_of(server, workers)
    victim = before[0]
    failed_before = len(load.failures())
    killed = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    deadline = killed + 10
    while time.monotonic() < deadline:
        pids = children(server.proc.pid)
        if victim not in pids and len(pids) == workers and serves(server):
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"no replacement for worker {victim}: {children(server.proc.pid)}")
    replaced = time.monotonic() - killed
    if workers == 1:
        # Only the new worker can have answered: the first success after the kill dates its start.
        after = [s.ended for s in load.successes() if s.started > killed]
        if after:
            replaced = min(replaced, min(after) - killed)
    return killed, replaced, load.failures()[failed_before:]


def check_only_in_flight_failed(killed: float, failures: list[Shot], threads: int) -> None:
    # Each client loses at most the request on its connection to the killed worker; a connection
    # opened after the kill goes to a live worker or waits in the listen backlog, and never fails.
    assert len({f.thread for f in failures}) == len(failures), failures
    assert len(failures) <= threads
    late = [f for f in failures if f.opened > killed]
    assert late == [], late


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_worker_fails_only_its_in_flight_requests(make_server: object, workers: int) -> None:
    server = make_server(workers)  # type: ignore[operator]
    threads = 4
    with Load(server.port, server.context, threads=threads, duration=30, reconnect_every=20) as load:
        time.sleep(1.0)
        killed, replaced, failures = kill_one_worker(server, load, workers)
        time.sleep(1.0)
    print(
        f"\n[faults] {workers} worker(s): replacement served {replaced * 1000:.0f} ms after SIGKILL; "
        f"{len(failures)} of {len(load.shots)} requests failed"
    )
    check_only_in_flight_failed(killed, failures, threads)
    assert replaced < 1.0
    assert len([s for s in load.successes() if s.started > killed + replaced]) > 10


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_twenty_worker_kills_under_load(make_server: object) -> None:
    server = make_server(2)  # type: ignore[operator]
    threads = 6
    replaced: list[float] = []
    with Load(server.port, server.context, threads=threads, duration=300, reconnect_every=10) as load:
        for _ in range(20):
            time.sleep(1.0)
            killed, took, failures = kill_one_worker(server, load, 2)
            replaced.append(took)
            check_only_in_flight_failed(killed, failures, threads)
    print(
        f"\n[faults] 20 kills: replacement served in max {max(replaced) * 1000:.0f} ms; "
        f"{len(load.failures())} of {len(load.shots)} requests failed"
    )
    assert max(replaced) < 1.0


# --- certificate rotation -----------------------------------------------------------------------


class Trust:
    """The CA bundle the clients trust, as the apiserver holds the injected ``caBundle``."""

    def __init__(self, certs: Path) -> None:
        self.certs = certs
        self._lock = threading.Lock()
        self._ctx: ssl.SSLContext | None = None
        self.inject()

    def inject(self) -> str:
        """Take the bundle ``tmc-certs ca-bundle`` prints now; new connections trust only it."""
        run = tmc_certs("ca-bundle", str(self.certs))
        pem = base64.b64decode(run.stdout.strip())
        ctx = ssl.create_default_context(cadata=pem.decode())
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        with self._lock:
            self._ctx = ctx
        return pem.decode()

    def context(self) -> ssl.SSLContext:
        with self._lock:
            assert self._ctx is not None
            return self._ctx


def tmc_certs(*args: str) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [str(Path(sys.executable).parent / "tmc-certs"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run


def served_issuer(server: Server) -> str:
    with server.connect() as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).issuer.rfc4514_string()


def wait_served_issuer(server: Server, issuer: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while served_issuer(server) != issuer:
        assert time.monotonic() < deadline, f"still serving a certificate of {served_issuer(server)}"
        time.sleep(0.1)


def subjects(pem_bundle: str) -> list[str]:
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(pem_bundle.encode())]


def roll_ca_under_load(server: Server, trust: Trust, certs: Path) -> None:
    """The three-step CA roll of ``tmc-certs`` with a bundle injection after each step."""
    old_ca = subjects(trust.inject())[0]
    first = tmc_certs("rotate", str(certs)).stdout
    assert "rolled CA" in first and "renewed serving certificate (due)" in first, first
    bundle = subjects(trust.inject())
    assert len(bundle) == 2 and bundle[1] == old_ca  # new first, then the old one
    time.sleep(1.5)  # the server's reload check runs every second
    assert served_issuer(server) == old_ca  # renewed, still by the CA the cluster already trusted
    second = tmc_certs("rotate", str(certs), "--force").stdout
    assert "renewed serving certificate (forced)" in second, second
    wait_served_issuer(server, bundle[0])
    third = tmc_certs("rotate", str(certs)).stdout
    assert "dropped CA" in third, third
    assert subjects(trust.inject()) == [bundle[0]]


def ca_due_certs(tmp_path: Path) -> Path:
    """A directory whose CA has a sixth of its life left: the next rotate rolls it."""
    certs = tmp_path / "rolling-certs"
    generate_dir(
        certs,
        service=SERVICE,
        namespace=NAMESPACE,
        dns=["localhost"],
        ips=["127.0.0.1"],
        ca_days=6,
        now=datetime.now(UTC) - timedelta(days=5),
    )
    return certs


def rotate_under_load(
    make_server: object, tmp_path: Path, name: str, *, threads: int, reconnect_every: int, renewals: int
) -> Load:
    """A CA roll, then ``renewals`` forced renewals, under a load that trusts the injected bundle."""
    certs = ca_due_certs(tmp_path)
    server = make_server(2, certs)  # type: ignore[operator]
    trust = Trust(certs)
    with Load(
        server.port, trust.context, threads=threads, duration=300, reconnect_every=reconnect_every
    ) as load:
        time.sleep(1.0)
        roll_ca_under_load(server, trust, certs)
        for _ in range(renewals):
            tmc_certs("rotate", str(certs), "--force")
            time.sleep(1.2)
        time.sleep(1.5)
    failures = load.failures()
    handshakes = len({(s.thread, s.opened) for s in load.shots})
    print(f"\n[faults] {name}: {len(load.shots)} requests, {handshakes} handshakes, {len(failures)} failed")
    return load


def test_serving_certificate_and_ca_rotated_under_load(make_server: object, tmp_path: Path) -> None:
    # A new connection (a new handshake) every 5 requests, each trusting the bundle of that moment.
    load = rotate_under_load(
        make_server, tmp_path, "CA roll under load", threads=4, reconnect_every=5, renewals=0
    )
    assert load.failures() == [], load.failures()[:5]
    assert len(load.shots) > 100


@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_ten_serving_rotations_and_a_ca_roll_under_heavy_load(make_server: object, tmp_path: Path) -> None:
    load = rotate_under_load(
        make_server, tmp_path, "CA roll and 10 renewals", threads=8, reconnect_every=2, renewals=10
    )
    assert load.failures() == [], load.failures()[:5]


def test_a_bundle_of_only_the_new_ca_too_early_is_refused(make_server: object, tmp_path: Path) -> None:
    """The other side: the order matters, so a bundle cut over too early shows up as handshake errors."""
    certs = ca_due_certs(tmp_path)
    server = make_server(1, certs)  # type: ignore[operator]
    tmc_certs("rotate", str(certs))  # rolls the CA; the served certificate is still from the old one
    time.sleep(1.5)
    new_ca = x509.load_pem_x509_certificates((certs / "ca.crt").read_bytes())[0]
    too_early = ssl.create_default_context(cadata=new_ca.public_bytes(Encoding.PEM).decode())
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        too_early.wrap_socket(raw, server_hostname=SERVER_NAME)
    # Trusting the whole bundle works: that is why rotate keeps the old CA in it for a while.
    with server.connect() as tls:
        tls.sendall(request("/validate", b"{}"))
        assert read_response(tls)[0] == 400
