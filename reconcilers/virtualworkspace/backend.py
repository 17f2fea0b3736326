"""The aiohttp client the virtual workspaces use to reach the backing apiserver.

It speaks with the reconciler's own credentials (the kubeconfig or in-cluster service account, read
by the ``kubernetes`` package into a ``Configuration``); nothing of a caller's request headers is
ever copied onto a backing request.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

__all__ = ["MAX_LINE", "Backend", "BackendReply", "BackendUnreachable"]

#: The longest watch line (one event) a stream accepts.
MAX_LINE = 16 * 1024 * 1024


class BackendUnreachable(Exception):
    """No HTTP answer from the backing apiserver: refused, reset, timed out or a TLS failure."""


@dataclass(frozen=True)
class BackendReply:
    """One answer: the HTTP status and the body."""

    status: int
    body: bytes
    content_type: str = "application/json"


def _ssl_context(configuration: Any) -> ssl.SSLContext | bool:
    if not str(configuration.host).startswith("https:"):
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


class Backend:
    """Requests to one apiserver from inside an event loop; ``start`` and ``close`` on that loop."""

    def __init__(self, configuration: Any, *, timeout: float = 30.0) -> None:
        self._configuration = configuration
        self.host = str(configuration.host).rstrip("/")
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool (unbounded: each open watch holds one connection)."""
        connector = aiohttp.TCPConnector(ssl=_ssl_context(self._configuration), limit=0)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def close(self) -> None:
        """Close the pool and every connection, watches included."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        # auth_settings() runs the kubeconfig's refresh hook (exec plugins, expiring tokens) when set.
        token = (self._configuration.auth_settings().get("BearerToken") or {}).get("value")
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def _url(self, path: str, query: Mapping[str, str] | None) -> str:
        return f"{self.host}{path}?{urlencode(query)}" if query else f"{self.host}{path}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendUnreachable("the backend client is not started")
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> BackendReply:
        """One request; any HTTP status is a reply, no answer at all is :class:`BackendUnreachable`."""
        try:
            async with self.session.request(
                method,
                self._url(path, query),
                data=body,
                headers=self._headers(content_type if body is not None else None),
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as response:
                data = await response.read()
                return BackendReply(response.status, data, response.content_type or "application/json")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BackendUnreachable(f"{method} {self.host}{path}: {exc or type(exc).__name__}") from exc

    @asynccontextmanager
    async def stream(
        self, path: str, query: Mapping[str, str], *, timeout: float | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streaming GET (a watch): the response is open inside the block and closed after it."""
        try:
            response = await self.session.get(
                self._url(path, query),
                headers=self._headers(None),
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=self.timeout),
                # Watch lines may hold large objects; the default buffer refuses lines over 128 KiB.
                read_bufsize=MAX_LINE // 2,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BackendUnreachable(f"GET {self.host}{path}: {exc or type(exc).__name__}") from exc
        try:
            yield response
        finally:
            response.release()
            response.close()
