"""``/healthz``, ``/readyz`` and ``/metrics`` on a port of their own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kcp_tmc.reconcilers.metrics import Metrics

__all__ = ["HealthServer", "parse_bind"]


def parse_bind(value: str, flag: str = "--metrics-bind") -> tuple[str, int]:
    """``HOST:PORT`` or ``:PORT`` (all interfaces); :class:`ValueError` naming the problem."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{flag} must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 (an empty host means every interface, as a metrics port in a pod is meant to listen)


class HealthServer:
    """A small threaded HTTP server; ``healthy`` and ``ready`` are asked at every probe."""

    def __init__(
        self,
        bind: tuple[str, int],
        metrics: Metrics,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        before_scrape: Callable[[], None] | None = None,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    if outer.before_scrape is not None:
                        outer.before_scrape()
                    self._send(200, generate_latest(outer.metrics.registry), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/livez", "/readyz"):
                    ok, why = (outer.ready if path == "/readyz" else outer.healthy)()
                    self._send(
                        200 if ok else 503, (why or "ok").encode() + b"\n", "text/plain; charset=utf-8"
                    )
                else:
                    self._send(404, b"not found\n", "text/plain; charset=utf-8")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes are not worth a log line
                pass

        self.metrics = metrics
        self.healthy = healthy
        self.ready = ready
        self.before_scrape = before_scrape
        self._server = ThreadingHTTPServer(bind, Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
