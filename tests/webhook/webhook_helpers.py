"""Helpers of the webhook tests: reviews, patches, certificates and a real ``tmc-webhook`` process."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
import jsonpatch
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "reviews"
SERVICE, NAMESPACE = "tmc-webhook", "tmc-system"
SERVER_NAME = f"{SERVICE}.{NAMESPACE}.svc"


def example(name: str) -> dict[str, Any]:
    """A fresh copy of ``examples/reviews/<name>``."""
    review: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return review


def sync_target(name: str = "eu-central-1a", **spec: Any) -> dict[str, Any]:
    """A small valid SyncTarget."""
    return {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": name, "labels": {"region": "eu"}},
        "spec": dict(spec) or {"cells": {"zone": "a"}},
    }


def apply_patch(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """``obj`` after the base64 JSON Patch of ``response`` (a deep copy; ``obj`` is untouched)."""
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    return patched


def post(client: FlaskClient, path: str, review: Any, **kwargs: Any) -> Any:
    """POST a review (a dict, or raw bytes) as JSON and return the response object."""
    data = review if isinstance(review, bytes | str) else json.dumps(review)
    kwargs.setdefault("content_type", "application/json")
    return client.post(path, data=data, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_context(ca_file: Path) -> ssl.SSLContext:
    """A client context that trusts only our CA and checks the name (as the apiserver does)."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Server:
    """A ``tmc-webhook`` subprocess on 127.0.0.1."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, certs: Path, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.certs = certs
        self.log = log

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        return client_context(self.certs / "ca.crt")

    def connect(self, timeout: float = 5.0) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.context().wrap_socket(raw, server_hostname=SERVER_NAME)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(tmp: Path, certs: Path, *args: str, ready_timeout: float = 20.0) -> Server:
    """Start ``tmc-webhook`` and wait until /healthz answers (bounded).

    The port is chosen before the process binds it, so another process can take it in between (an
    outgoing connection's ephemeral port, or another test's listener): then it starts again on a new port.
    """
    for _ in range(3):
        server = _start_on_free_port(tmp, certs, args, ready_timeout)
        if server is not None:
            return server
    raise AssertionError("tmc-webhook found its port taken three times in a row")


def _start_on_free_port(tmp: Path, certs: Path, args: tuple[str, ...], ready_timeout: float) -> Server | None:
    """The healthy server, or None when its port was taken before it could bind it."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    env = dict(os.environ)
    cmd = [
        sys.executable,
        *_coverage_prefix(env),
        "-m",
        "kcp_tmc.webhook.cli",
        "--bind",
        f"127.0.0.1:{port}",
        "--cert-file",
        str(certs / "tls.crt"),
        "--key-file",
        str(certs / "tls.key"),
        *args,
    ]
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp))
    server = Server(proc, port, certs, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if "Connection in use" in server.logs():
            # gunicorn retries the bind for seconds; another listener holds the port, take a new one.
            stop_server(server)
            return None
        if proc.poll() is not None:
            raise AssertionError(f"tmc-webhook exited with {proc.returncode}:\n{server.logs()}")
        with contextlib.suppress(OSError), server.connect(timeout=1.0) as conn:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            if conn.recv(100).startswith(b"HTTP/1.1 200"):
                return server
        time.sleep(0.1)
    stop_server(server)
    raise AssertionError(f"tmc-webhook did not become healthy in {ready_timeout}s:\n{server.logs()}")


def _coverage_prefix(env: dict[str, str]) -> list[str]:
    """``-m coverage run --parallel-mode`` when this test run measures coverage (server and workers count)."""
    try:
        import coverage
    except ImportError:  # pragma: no cover
        return []
    current = coverage.Coverage.current()
    if current is None:
        return []
    env["COVERAGE_FILE"] = str(Path(current.config.data_file).resolve())
    return ["-m", "coverage", "run", "--parallel-mode", f"--rcfile={ROOT / 'pyproject.toml'}"]


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(5)


def ticking(seconds: float, work: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``work`` in a greenlet while another greenlet ticks every 10 ms: its result and the ticks."""
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        while True:
            gevent.sleep(0.01)
            ticks += 1

    ticker = gevent.spawn(tick)
    worker = gevent.spawn(work)
    try:
        worker.join(seconds * 4)
    finally:
        ticker.kill()
    assert worker.ready(), "the work did not end"
    return worker.get(), ticks
