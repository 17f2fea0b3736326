"""The gunicorn worker ``tmc-webhook`` runs: event-driven connections, bounded at every stage.

Why not ``gthread``: it hands every new connection to a thread that completes the TLS
handshake and then waits for the first request without a time limit, so a few idle
keep-alive connections (kube-apiserver keeps a pool of them) block every thread and real
reviews queue behind them (see ``docs/webhook.md``).

This worker is gevent's event loop without monkey-patching: each connection is a greenlet
that costs nothing while it waits, so no number of idle, slow or half-open connections holds up
another connection's review.  Every wait is bounded:

* ``handshake_timeout``: a connection that does not finish its TLS handshake in time is closed;
* ``keepalive`` (gunicorn's ``--keep-alive``): an idle connection waits at most that long for its
  next request; keep it above the client's idle timeout (Go's is 90 s) so that the client, not
  the server, closes idle connections and never sends a review into a closing one;
* ``header_timeout``: once the first byte of a request has arrived, its request line and headers
  must be complete within this time (the slow-loris defence, nginx's
  ``client_header_timeout``);
* ``body_timeout``: longest wait for the next piece of a body (nginx's ``client_body_timeout``);
* ``read_timeout``: the whole request, headers and body, must have arrived within this time of
  its first byte; a client that trickles its body a byte at a time inside ``body_timeout`` (slow
  POST) is answered 408 and closed when it runs out, instead of holding a connection for hours;
* ``worker_connections``: open connections per worker; beyond it new ones wait in the backlog.

Policies are not run in greenlets: without monkey-patching, the engine's deadline threads are
real threads, so a policy that spins past the apiserver's budget is still answered for in time.
A greenlet waits for such a thread without holding the loop (:func:`cooperative_waiter`): a policy
waiting on a live apiserver read holds only its own review.  The lookup's own calls made from a
connection's greenlet (quota reservations) wait on the loop as well: their sockets are gevent's
(:mod:`kcp_tmc.webhook.loophttp`).
The TLS context comes from :class:`~kcp_tmc.webhook.tls.ReloadingTLS`: a renewed certificate is
used for new connections without a restart.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import ssl
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import gevent
from gevent import socket as gsocket
from gevent import ssl as gssl
from gevent.pool import Pool
from gevent.server import StreamServer
from gevent.threadpool import ThreadPool
from gunicorn import http
from gunicorn.workers.ggevent import GeventWorker

from kcp_tmc.webhook.app import EXTENSION
from kcp_tmc.webhook.review import BodyTimeout, error_body
from kcp_tmc.webhook.tls import ReloadingTLS

__all__ = ["ReviewWorker", "cooperative_waiter"]

#: Most bytes of an unread body drained to keep a connection (more: the connection is closed).
DRAIN_LIMIT = 64 * 1024

# Lingering close (nginx's ``lingering_close``): closing a socket that still has unread bytes
# makes the kernel answer with a reset, which destroys the 413 we just wrote before a client that
# writes its whole body first (http.client, most HTTP/1.1 clients) gets to read it; it sees a TLS
# EOF instead.  So after a response that closes the connection the write side is shut down and the
# rest of the body is read off the raw socket and thrown away (never decrypted: a memory copy per
# chunk, one event-loop turn each), within both bounds below; past them the connection is closed
# anyway, so a client that never stops sending costs at most that much.
#: Longest a refused body is still read after the answer (enough for tens of MiB on a local link).
LINGER_SECONDS = 2.0
#: A client that sends nothing for this long has stopped sending (or is reading our answer).
LINGER_IDLE_SECONDS = 1.0
#: Most bytes of a refused body read and discarded; about 16 times the default body limit.
LINGER_BYTES = 64 * 1024 * 1024
#: Size of one discarding read.
_LINGER_CHUNK = 256 * 1024
#: Longest a greenlet waits for a policy thread on the loop itself: a review whose policies read
#: only caches is done well within it, and costs no hand-over to a waiting thread.
QUICK_WAIT = 0.001


def cooperative_waiter(threads: int) -> Callable[[Any, float], bool]:
    """An engine ``waiter`` that lets the event loop run while a review's policies are evaluated.

    The first ``QUICK_WAIT`` is waited on the loop; after that, one of ``threads`` threads of a
    pool of its own waits for the policy thread and the greenlet waits for it.  The timeout is
    counted from the call, so a wait that found every waiting thread busy still ends by the
    engine's deadline.  Off the loop (another thread) the wait blocks as the engine's default does.
    """
    pool = ThreadPool(threads)

    def wait(done: Any, timeout: float) -> bool:
        end = time.monotonic() + timeout
        if done.acquire(timeout=min(timeout, QUICK_WAIT)):
            return True
        if not isinstance(gevent.getcurrent(), gevent.Greenlet):
            return bool(done.acquire(timeout=max(0.0, end - time.monotonic())))
        return bool(pool.apply(lambda: done.acquire(timeout=max(0.0, end - time.monotonic()))))

    return wait


class ReviewWorker(GeventWorker):  # type: ignore[misc]
    """gunicorn worker class; configure the timeouts with :meth:`configured`."""

    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    # The apiserver gives a webhook at most 30 s: a request still arriving after that has no caller.
    read_timeout: float = 30.0
    tls_check_interval: float = 1.0

    tls: ReloadingTLS | None = None
    # Set by gunicorn's Worker.__init__ / load_wsgi.
    sockets: list[Any]
    wsgi: Any

    @classmethod
    def configured(cls, **timeouts: float) -> type[ReviewWorker]:
        """A subclass with these class attributes (``handshake_timeout=5`` ...)."""
        for name in timeouts:
            if not hasattr(cls, name):
                raise TypeError(f"unknown worker setting {name!r}")
        return type(cls.__name__, (cls,), dict(timeouts))

    def patch(self) -> None:
        # No monkey-patching: the app and the engine keep real threads and blocking stdlib
        # calls; only the listening sockets become gevent sockets so that the loop can wait on
        # them.
        self.sockets = [
            gsocket.socket(s.FAMILY, socket.SOCK_STREAM, fileno=s.sock.detach()) for s in self.sockets
        ]

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self._idle: set[Any] = set()
        self._read_deadlines: dict[Any, float] = {}
        self.wsgi = _honour_connection_close(self.wsgi, self._read_deadlines.get, self.read_timeout)
        # Everything loaded so far lives as long as the worker: keep it out of the collector's
        # full scans, which would otherwise add their pause to some reviews' latency.
        gc.collect()
        gc.freeze()
        state = (getattr(self.wsgi, "extensions", None) or {}).get(EXTENSION)
        if state is not None:
            # One waiting thread per engine thread: as many as can be evaluating at once.
            state.engine.waiter = cooperative_waiter(state.config.engine_threads)
        if self.cfg.is_ssl:
            self.tls = ReloadingTLS(
                self.cfg.certfile,
                self.cfg.keyfile,
                check_interval=self.tls_check_interval,
                context_class=gssl.SSLContext,
                on_load=state.metrics.set_certificate_expiry if state is not None else None,
            )

    def run(self) -> None:
        servers = []
        for listener in self.sockets:
            listener.setblocking(True)
            server = StreamServer(
                listener, handle=partial(self.handle, listener), spawn=Pool(self.worker_connections)
            )
            if self.cfg.workers > 1:
                # Take one connection per wake-up so that the workers share new connections.
                server.max_accept = 1
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()
            gevent.sleep(1.0)
        for server in servers:
            server.close()  # stop accepting; open connections finish their request
        for idle in list(self._idle):
            idle.kill(block=False)  # connections between requests close now
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline and any(s.pool.free_count() != s.pool.size for s in servers):
            self.notify()
            gevent.sleep(0.1)
        for server in servers:
            server.stop(timeout=1)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        """Serve one connection until it closes or times out."""
        try:
            client.settimeout(self.handshake_timeout)
            if self.tls is not None:
                client = self.tls.context().wrap_socket(
                    client, server_side=True, do_handshake_on_connect=False, suppress_ragged_eofs=True
                )
                client.do_handshake()
            self._serve(listener, client, addr)
        except (OSError, ssl.SSLError, http.errors.NoMoreData, StopIteration):
            # Timeouts, resets, failed handshakes, clients that went away: nothing to answer.
            pass
        except Exception as exc:
            self.log.debug("connection from %s ended: %r", addr, exc)
        finally:
            with contextlib.suppress(OSError):
                client.close()

    def _serve(self, listener: Any, client: Any, addr: Any) -> None:
        parser = http.get_parser(self.cfg, client, addr)
        listener_name = listener.getsockname()
        me = gevent.getcurrent()
        while self.alive:
            if not _buffered(parser, client):
                # Idle: wait for the first byte of the next request, at most the keep-alive time.
                self._idle.add(me)
                try:
                    gsocket.wait_read(client.fileno(), timeout=self.cfg.keepalive or 2.0)
                finally:
                    self._idle.discard(me)
            req = None
            client.settimeout(self.body_timeout)
            self._read_deadlines[me] = time.monotonic() + self.read_timeout
            try:
                with gevent.Timeout(self.header_timeout, False):
                    req = next(parser)
            except http.errors.ParseException as exc:
                _refuse(client, exc)
                _linger(client)
                return
            finally:
                if req is None:
                    self._read_deadlines.pop(me, None)
            if req is None:
                return  # headers not complete in time, or the client closed cleanly
            try:
                self.handle_request(listener_name, req, client, addr)
            except StopIteration:
                # The response said Connection: close (a refused body, for one): let the client
                # read it before the socket goes away.
                _linger(client)
                return
            finally:
                self._read_deadlines.pop(me, None)
            if not parser.finish_body(deadline=time.monotonic() + self.body_timeout, max_bytes=DRAIN_LIMIT):
                # The app left a body unread and too big to drain for keep-alive: close, gracefully.
                _linger(client)
                return


class _DeadlineInput:
    """``wsgi.input`` that raises :class:`~kcp_tmc.webhook.review.BodyTimeout` past the read deadline.

    The wait is cut short by a ``gevent.Timeout``: the greenlet only waits inside socket reads,
    which is where a slow client keeps it.
    """

    def __init__(self, stream: Any, deadline: float, budget: float) -> None:
        self._stream = stream
        self._deadline = deadline
        self._budget = budget

    def _call(self, method: str, *args: Any) -> Any:
        message = f"the request was not received within {self._budget:g} s; send it whole"
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise BodyTimeout(message)
        with gevent.Timeout(left, BodyTimeout(message)):
            return getattr(self._stream, method)(*args)

    def read(self, size: int | None = None) -> bytes:
        return self._call("read", size)  # type: ignore[no-any-return]

    def readline(self, size: int | None = None) -> bytes:
        return self._call("readline", size)  # type: ignore[no-any-return]

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._call("readlines", hint)  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


def _honour_connection_close(
    app: Any, read_deadline: Callable[[Any], float | None], read_timeout: float
) -> Any:
    """Let the app close the connection with a ``Connection: close`` header; bound its body reads.

    gunicorn drops hop-by-hop headers an app sets; this asks gunicorn's response to close
    instead, so that a refused body (413) is never read as the next request.  ``read_deadline``
    gives the current connection's deadline for the request to have arrived whole.
    """
    extensions = getattr(app, "extensions", None)

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        deadline = read_deadline(gevent.getcurrent())
        if deadline is not None:
            environ["wsgi.input"] = _DeadlineInput(environ["wsgi.input"], deadline, read_timeout)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            for name, value in headers:
                if name == "Connection" and value == "close":
                    owner = getattr(start_response, "__self__", None)
                    if owner is not None and hasattr(owner, "force_close"):
                        owner.force_close()
            return start_response(status, headers, exc_info)

        return app(environ, start)

    wrapped.extensions = extensions  # type: ignore[attr-defined]
    return wrapped


def _refuse(client: Any, exc: Exception) -> None:
    """Answer a request gunicorn could not parse with 400 and close (never a 5xx for bad input)."""
    body = error_body(400, f"malformed HTTP request: {type(exc).__name__}: {exc}")
    head = (
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with contextlib.suppress(OSError):
        client.sendall(head.encode("latin-1") + body)


def _linger(client: Any) -> None:
    """Half-close, then discard what the client still sends, within the ``LINGER_*`` bounds."""
    try:
        fd = client.fileno()
        if fd < 0:
            return  # already closed (a response that failed half-way)
        # A FIN after the answer: the client's reader sees the end; its writer may go on.  TLS's
        # close_notify is not sent: the answer carries its length, and the peer is mid-write.
        client.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = time.monotonic() + LINGER_SECONDS
    discarded = 0
    while discarded < LINGER_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            gsocket.wait_read(fd, timeout=min(left, LINGER_IDLE_SECONDS))
            data = os.read(fd, _LINGER_CHUNK)
        except BlockingIOError:
            continue
        except OSError:  # the idle wait timed out (socket.timeout is an OSError), or a reset
            return
        if not data:
            return  # the client closed: nothing unread is left, close without a reset
        discarded += len(data)


def _buffered(parser: Any, client: Any) -> bool:
    """True when the next request's bytes are already read (no need to wait for the socket)."""
    unreader = getattr(parser, "unreader", None)
    buf = getattr(unreader, "buf", None)
    if buf is not None and buf.getvalue():
        return True
    pending = getattr(client, "pending", None)
    return bool(pending and pending())
