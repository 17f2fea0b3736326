"""A bounded review load on a real ``tmc-webhook``: threads sending reviews and recording each one.

Used by the fault, soak and abuse tests.  Every request is recorded with the time its connection
was opened, so that a test can tell which requests a fault could have touched.  Loops end by
themselves: at ``duration`` seconds or ``max_requests`` per thread, whichever comes first.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.webhook.webhook_helpers import SERVER_NAME, example

HEADERS = "Content-Type: application/json\r\n"


def request(path: str, body: bytes, headers: str = HEADERS) -> bytes:
    """One HTTP/1.1 POST with a Content-Length."""
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


def read_response(tls: ssl.SSLSocket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One response read off ``tls``: status, headers (lower-case names), body by Content-Length."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no complete response head in {timeout} s: {data[:200]!r}")
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed before answering: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the body did not arrive in {timeout} s")
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed inside the body")
        body += chunk
    return status, headers, body[:length]


@dataclass(frozen=True)
class Shot:
    """One request of the load: its connection's opening time, its own start and end, its error."""

    thread: int
    opened: float
    started: float
    ended: float
    error: str | None


# What the load sends, in turn: (path, review file, what the answer must say).
MIX: list[tuple[str, str, Callable[[dict[str, Any]], bool]]] = [
    ("/validate?timeout=10s", "synctarget-create.json", lambda r: r["allowed"] is True),
    ("/mutate?timeout=10s", "synctarget-create.json", lambda r: r.get("patchType") == "JSONPatch"),
    ("/validate?timeout=10s", "synctarget-create-invalid.json", lambda r: r["allowed"] is False),
    ("/validate?timeout=10s", "service-create-unknown-kind.json", lambda r: r["allowed"] is True),
    ("/validate?timeout=10s", "synctarget-delete-protected.json", lambda r: "allowed" in r),
]


class Load:
    """``threads`` clients, each on its own keep-alive connection (a new one every ``reconnect_every``).

    ``context`` is called for every new connection: a test that rotates the CA hands out the
    bundle the clients trust at that moment.  A failed request closes its connection; the next one
    opens a new connection, as the apiserver does.
    """

    def __init__(
        self,
        port: int,
        context: Callable[[], ssl.SSLContext],
        *,
        threads: int = 4,
        duration: float = 10.0,
        max_requests: int = 1_000_000,
        reconnect_every: int = 0,
        pause: float = 0.0,
    ) -> None:
        self.port = port
        self.context = context
        self.duration = duration
        self.max_requests = max_requests
        self.reconnect_every = reconnect_every
        self.pause = pause
        self.shots: list[Shot] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bodies = [(path, json.dumps(example(name)).encode(), ok) for path, name, ok in MIX]
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Shot]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.failures()

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def failures(self) -> list[Shot]:
        with self._lock:
            return [s for s in self.shots if s.error is not None]

    def successes(self) -> list[Shot]:
        with self._lock:
            return [s for s in self.shots if s.error is None]

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            return self.context().wrap_socket(raw, server_hostname=SERVER_NAME)
        except BaseException:
            raw.close()
            raise

    def _run(self, n: int) -> None:
        ends = time.monotonic() + self.duration
        tls: ssl.SSLSocket | None = None
        opened = 0.0
        on_connection = 0
        for i in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > ends:
                break
            path, body, ok = self._bodies[(i + n) % len(self._bodies)]
            started = time.monotonic()
            error = None
            try:
                if tls is None or (self.reconnect_every and on_connection >= self.reconnect_every):
                    if tls is not None:
                        tls.close()
                    tls, opened, on_connection = None, time.monotonic(), 0
                    tls = self._connect()
                on_connection += 1
                tls.sendall(request(path, body))
                status, _, answer = read_response(tls)
                if status != 200 or not ok(json.loads(answer)["response"]):
                    error = f"{path}: {status} {answer[:200]!r}"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            if error is not None and tls is not None:
                tls.close()
                tls = None
            with self._lock:
                self.shots.append(Shot(n, opened, started, time.monotonic(), error))
            if self.pause:
                time.sleep(self.pause)
        if tls is not None:
            tls.close()
