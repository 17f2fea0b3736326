"""Benchmark of the fake API server's transport (``python -m bench.fakeapi``; not a test).

The fake server (``python -m kcp_tmc.testing.apiserver``, TLS, admin token) runs pinned to core 0;
``h2load --h1`` drives it from core 1 over keep-alive connections.  Side by side in the same run:

(a) the fake API server: ``GET`` of one ConfigMap, and ``LIST`` of a namespace holding 100;
(b) a bare aiohttp server on the same core answering a constant JSON body of the same size as (a)'s
    ``GET`` (the ceiling of the HTTP stack itself).

Points: closed loop at 1, 10 and 50 connections.  Per point: req/s, p50 and p99 (from h2load's
per-request log) and the server's CPU time per request (utime + stime from ``/proc``; the figure
that stays put when other work shares the machine).  Then watch fan-out: 50 watches of the
namespace, 200 ConfigMap writes, the time until every watch has seen every event (events delivered
per second) and the server's CPU per event delivered.  Every run is bounded.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.webhook import Point, Target, ensure_tool, free_port, log, running, tree_cpu_seconds
from kcp_tmc.testing.tls import serving_certs

ROOT = Path(__file__).resolve().parents[1]
DURATION = int(os.environ.get("BENCH_SECONDS", "5"))
CLOSED = (1, 10, 50)
LISTED = 100
WATCHES, WRITES = 50, 200
LOAD_CORE = "1"
SEED = "/api/v1/namespaces/watched/configmaps/seed"

BARE_SERVER = """
import ssl, sys
from aiohttp import web
port, cert, key, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
body = b'{"kind":"ConfigMap","data":"' + b"x" * max(0, size - 30) + b'"}'
async def answer(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/{tail:.*}", answer)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
web.run_app(app, host="127.0.0.1", port=port, ssl_context=context, print=None, access_log=None)
"""


def h2load(h2: str, url: str, token: str, conns: int, seconds: int, logfile: Path | None) -> str:
    cmd = ["taskset", "-c", LOAD_CORE, h2, "--h1", "-t", "1", "-c", str(conns), "-D", str(seconds)]
    cmd += ["-H", f"Authorization: Bearer {token}", "-H", "Accept: application/json"]
    if logfile is not None:
        cmd += ["--log-file", str(logfile), "--warm-up-time=1s"]
    cmd.append(url)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    return run.stdout + run.stderr


def measure(h2: str, url: str, token: str, conns: int, tmp: Path, pid: int) -> Point:
    h2load(h2, url, token, conns, 1, None)  # warm-up, not measured
    logfile = tmp / "h2load.log"
    with contextlib.suppress(FileNotFoundError):
        logfile.unlink()
    # CPU is counted from the end of h2load's own warm-up second, like the requests it reports;
    # CPU per request barely moves when other processes share the machine, req/s does.
    cpu_start: list[float] = []
    timer = threading.Timer(1.0, lambda: cpu_start.append(tree_cpu_seconds(pid)))
    timer.start()
    out = h2load(h2, url, token, conns, DURATION, logfile)
    timer.join()
    cpu = tree_cpu_seconds(pid) - cpu_start[0]
    point = Point()
    for line in out.splitlines():
        text = line.strip()
        if text.startswith("requests:"):
            parts = text.replace(",", "").split()
            point.ok = ok = int(parts[parts.index("succeeded") - 1])
            point.rps = ok / DURATION
            point.cpu_ms = cpu * 1000 / ok if ok else float("nan")
            point.failed = int(parts[parts.index("failed") - 1]) + int(parts[parts.index("errored") - 1])
    latencies = []
    with contextlib.suppress(FileNotFoundError), logfile.open() as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 3 and fields[1].startswith("2"):
                latencies.append(int(fields[2]) / 1000.0)  # microseconds -> ms
    if latencies:
        latencies.sort()
        point.p50 = latencies[len(latencies) // 2]
        point.p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return point


def request(
    port: int,
    token: str,
    context: ssl.SSLContext,
    method: str,
    path: str,
    body: object = None,
    content_type: str = "application/json",
) -> int:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        conn.request(method, path, body=data, headers=headers)
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def watch_fanout(port: int, token: str, context: ssl.SSLContext) -> float:
    """Seconds from the first of :data:`WRITES` writes until all :data:`WATCHES` watches saw them all."""
    path = "/api/v1/namespaces/watched/configmaps?watch=true&resourceVersion=0&timeoutSeconds=120"
    sel = selectors.DefaultSelector()
    seen: dict[ssl.SSLSocket, int] = {}
    for _ in range(WATCHES):
        sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        seen[sock] = 0
    time.sleep(1.0)
    want = WRITES + 1  # the synthetic ADDED of the seed object, then one MODIFIED per write
    start = time.monotonic()
    for i in range(WRITES):
        patch = {"data": {"n": str(i)}}
        status = request(port, token, context, "PATCH", SEED, patch, "application/merge-patch+json")
        if status != 200:
            raise RuntimeError(f"PATCH answered {status}")
        drain(sel, seen)
    deadline = time.monotonic() + 60
    while min(seen.values()) < want and time.monotonic() < deadline:
        drain(sel, seen, 0.5)
    elapsed = time.monotonic() - start
    for sock in seen:
        sock.close()
    if min(seen.values()) < want:
        raise RuntimeError(f"watches saw {min(seen.values())} of {want} events")
    return elapsed


def drain(sel: selectors.BaseSelector, seen: dict[ssl.SSLSocket, int], timeout: float = 0.0) -> None:
    for key, _ in sel.select(timeout):
        sock = key.fileobj
        assert isinstance(sock, ssl.SSLSocket)  # only SSL sockets are registered
        with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
            while data := sock.recv(1 << 16):
                seen[sock] += data.count(b'"type":')


def main() -> int:
    h2 = ensure_tool("h2load", ["nghttp2-client"])
    if h2 is None:
        print("h2load is missing (Debian package nghttp2-client); not measured", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bench-fakeapi-") as name:
        tmp = Path(name)
        fake_port, bare_port = free_port(), free_port()
        kubeconfig = tmp / "kubeconfig"
        cmd = [sys.executable, "-m", "kcp_tmc.testing.apiserver", "--port", str(fake_port)]
        cmd += ["--kubeconfig", str(kubeconfig)]
        fake_target = Target("a", "fake API server", f"https://127.0.0.1:{fake_port}/", cmd)
        with running(fake_target, tmp) as proc:
            deadline = time.monotonic() + 30
            while not (tmp / "server-a.log").read_bytes().strip():  # the announcement: kubeconfig written
                if time.monotonic() > deadline:
                    raise RuntimeError("the fake API server did not announce itself")
                time.sleep(0.1)
            config = yaml.safe_load(kubeconfig.read_text())
            token = config["users"][0]["user"]["token"]
            ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
            context = ssl.create_default_context(cadata=ca)
            for ns in ("bench", "watched"):
                request(fake_port, token, context, "POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            one = {"metadata": {"name": "one"}, "data": {"key": "value"}}
            request(fake_port, token, context, "POST", "/api/v1/namespaces/bench/configmaps", one)
            for i in range(LISTED - 1):
                item = {
                    "metadata": {"name": f"cm-{i:03d}", "labels": {"n": str(i)}},
                    "data": {"k": "v" * 100},
                }
                request(fake_port, token, context, "POST", "/api/v1/namespaces/bench/configmaps", item)
            seed = {"metadata": {"name": "seed"}, "data": {"n": "-"}}
            request(fake_port, token, context, "POST", "/api/v1/namespaces/watched/configmaps", seed)
            base = f"https://127.0.0.1:{fake_port}"
            get_url = f"{base}/api/v1/namespaces/bench/configmaps/one"
            size = len(_get(fake_port, token, context, "/api/v1/namespaces/bench/configmaps/one"))
            fake = {f"get c={c}": measure(h2, get_url, token, c, tmp, proc.pid) for c in CLOSED}
            list_url = f"{base}/api/v1/namespaces/bench/configmaps"
            fake.update({f"list c={c}": measure(h2, list_url, token, c, tmp, proc.pid) for c in CLOSED})
            cpu_before = tree_cpu_seconds(proc.pid)
            fanout = watch_fanout(fake_port, token, context)
            fanout_cpu = tree_cpu_seconds(proc.pid) - cpu_before
        cert, key = tmp / "tls.crt", tmp / "tls.key"
        certs = serving_certs()
        cert.write_bytes(certs.cert_pem)
        key.write_bytes(certs.key_pem)
        bare_cmd = [sys.executable, "-c", BARE_SERVER, str(bare_port), str(cert), str(key), str(size)]
        bare_target = Target("b", "bare aiohttp", f"https://127.0.0.1:{bare_port}/", bare_cmd)
        with running(bare_target, tmp) as bare_proc:
            bare_url = f"https://127.0.0.1:{bare_port}/"
            bare = {f"get c={c}": measure(h2, bare_url, "x", c, tmp, bare_proc.pid) for c in CLOSED}
    print(f"\nfake API server over TLS, {DURATION}s per point; (b) bare aiohttp, constant {size}-byte JSON")
    print(
        f"{'point':<12} {'(a) req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms':>7} {'fail':>5} "
        f"{'(b) req/s':>10} {'p50 ms':>8} {'CPU ms':>7} {'CPU a/b':>8}"
    )
    for label, point in fake.items():
        row = f"{label:<12} {point.rps:10.0f} {point.p50:8.2f} {point.p99:8.2f} "
        row += f"{point.cpu_ms:7.3f} {point.failed:5d}"
        other = bare.get(label)
        if other is not None:
            row += (
                f" {other.rps:10.0f} {other.p50:8.2f} {other.cpu_ms:7.3f} {point.cpu_ms / other.cpu_ms:8.2f}"
            )
        print(row)
    events = WATCHES * (WRITES + 1)
    print(
        f"\nwatch fan-out: {WATCHES} watches x {WRITES} writes: {fanout:.2f} s, "
        f"{events / fanout:.0f} events/s, server CPU {fanout_cpu * 1e6 / events:.0f} us per event delivered"
    )
    log("done")
    return 0


def _get(port: int, token: str, context: ssl.SSLContext, path: str) -> bytes:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        return conn.getresponse().read()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
