"""urllib3 connection pools over gevent's sockets: an HTTP call made on a greenlet waits on the loop.

The webhook's worker runs gevent's event loop without monkey-patching (:mod:`kcp_tmc.webhook.worker`),
so urllib3's own sockets block the OS thread, and with it every connection of the worker.  Handing
each blocking call to the loop's threadpool instead costs far more than the thread switch itself:
in a profile of a quota reservation at one connection the write ran 0.8 ms slower on the pool's
thread than on the loop's, with the loop, the pool thread and the caches' threads taking turns for
the interpreter's lock on one core.

The pools here are urllib3's, with one change, the one urllib3's SOCKS support makes too: the
connection's socket is made by ``_new_conn``, here a gevent socket, and TLS wraps it through a
gevent :class:`~gevent.ssl.SSLContext`, so reads and writes wait on the loop.  Everything else
(keep-alive, the pool, timeouts, TLS verification, the errors raised) is urllib3's.  A gevent
socket belongs to the loop of the thread that made it, so a pool must only be used from
greenlets of one thread: :func:`loop_connection_pool` makes one, the caller keeps one per thread.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

import urllib3
from gevent import socket as gsocket
from gevent import ssl as gssl
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_ import resolve_cert_reqs

__all__ = ["LoopHTTPConnectionPool", "LoopHTTPSConnectionPool", "loop_connection_pool"]


class _LoopSocket:
    """``_new_conn`` of urllib3's connections, with a gevent socket (errors mapped as urllib3 maps them)."""

    _dns_host: str
    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def _new_conn(self) -> Any:
        try:
            sock = gsocket.create_connection(
                (self._dns_host, self.port), self.timeout, source_address=self.source_address
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[arg-type]
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]
        for option in self.socket_options or ():
            sock.setsockopt(*option)
        return sock


class _LoopHTTPConnection(_LoopSocket, HTTPConnection):
    pass


class _LoopHTTPSConnection(_LoopSocket, HTTPSConnection):
    pass


class LoopHTTPConnectionPool(urllib3.HTTPConnectionPool):
    """urllib3's plain-HTTP pool, its connections on gevent sockets."""

    ConnectionCls = _LoopHTTPConnection


class LoopHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    """urllib3's HTTPS pool, its connections on gevent sockets (give it a gevent ``ssl_context``)."""

    ConnectionCls = _LoopHTTPSConnection


def loop_connection_pool(blocking: urllib3.PoolManager, url: str) -> urllib3.HTTPConnectionPool | None:
    """A pool of connections to the host of ``url`` with the settings of ``blocking``, waiting on the loop.

    The TLS settings (CA, client certificate, verification, server name), socket options and pool
    size are ``blocking``'s own.  A pool rather than a manager: the lookup talks to one host, and
    a manager's parsing of every URL and its lookup of the pool cost a tenth of a millisecond per
    call in a profile.  ``None`` when ``blocking`` goes through a proxy: its tunnels are left to
    the blocking manager (the caller then runs the call off the loop).
    """
    if type(blocking) is not urllib3.PoolManager:
        return None  # a ProxyManager or SOCKSProxyManager: not reproduced here
    settings = dict(blocking.connection_pool_kw)
    context = gssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if resolve_cert_reqs(settings.get("cert_reqs")) == ssl.CERT_NONE:
        context.check_hostname = False  # urllib3 then sets CERT_NONE, which needs this first
    settings["ssl_context"] = context
    manager = urllib3.PoolManager(**settings)
    manager.pool_classes_by_scheme = {"http": LoopHTTPConnectionPool, "https": LoopHTTPSConnectionPool}
    return manager.connection_from_url(url)
