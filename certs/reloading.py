"""The serving TLS context, re-read when the certificate or key file changes (webhook and VW).

:class:`ReloadingTLS` keeps one ready :class:`ssl.SSLContext`.  :meth:`ReloadingTLS.context`
is called for every new connection; at most once per ``check_interval`` it compares the files'
``stat`` signatures with those it loaded.  When they changed it builds a *new* context from
them and swaps it in only if the pair loads and matches; connections already open keep the
context they were accepted with.  A half-written rotation (``tmc-certs rotate`` writes the key,
then the certificate) therefore never reaches a client: until both files agree the old pair
keeps serving, and the next check picks the new one up.  No restart, no refused handshake.

TLS 1.2 is the floor, compression and renegotiation are off.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from datetime import datetime

from kcp_tmc.certs.inspect import certificate_expiry

__all__ = ["ReloadingTLS", "TLSConfigError", "server_context"]

log = logging.getLogger("kcp_tmc.certs.reloading")

Signature = tuple[tuple[int, int, int, int], ...]


class TLSConfigError(RuntimeError):
    """The serving certificate and key cannot be used (at start-up: the server does not start)."""


def server_context(
    cert_file: str, key_file: str, context_class: type[ssl.SSLContext] = ssl.SSLContext
) -> ssl.SSLContext:
    """A server-side context with our settings and the pair loaded (raises on a bad pair)."""
    ctx = context_class(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    # Forward secrecy and AEAD only for TLS 1.2 (TLS 1.3 suites are all of that kind).
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
    ctx.load_cert_chain(cert_file, key_file)
    return ctx


def _signature(paths: tuple[str, ...]) -> Signature:
    out = []
    for path in paths:
        st = os.stat(path)
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


class ReloadingTLS:
    """A TLS context that follows the certificate and key files.

    ``on_load`` is called with the certificate's notAfter after every successful load (the
    expiry metric).  Thread-safe; cheap when nothing changed (one clock read per connection,
    two ``stat`` calls per ``check_interval``).
    """

    def __init__(
        self,
        cert_file: str,
        key_file: str,
        *,
        check_interval: float = 1.0,
        context_class: type[ssl.SSLContext] = ssl.SSLContext,
        on_load: Callable[[datetime], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.check_interval = check_interval
        self._context_class = context_class
        self._on_load = on_load
        self._clock = clock
        self._lock = threading.Lock()
        self._failed: Signature | None = None
        self.reloads = 0
        try:
            sig = _signature((cert_file, key_file))
            self._context = server_context(cert_file, key_file, context_class)
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"cannot use {cert_file} and {key_file}: {_reason(exc)}") from None
        self._loaded = sig
        self._next_check = clock() + check_interval
        self._notify()

    def _notify(self) -> None:
        if self._on_load is None:
            return
        try:
            self._on_load(certificate_expiry(self.cert_file))
        except Exception:  # the metric must never break serving
            log.warning("cannot read the expiry of %s", self.cert_file, exc_info=True)

    def context(self) -> ssl.SSLContext:
        """The context to accept the next connection with (reloaded first if the files changed)."""
        if self._clock() >= self._next_check:
            self.check()
        return self._context

    def check(self) -> bool:
        """Reload now if the files changed and the new pair is usable; True when it was swapped."""
        with self._lock:
            self._next_check = self._clock() + self.check_interval
            try:
                sig = _signature((self.cert_file, self.key_file))
            except OSError as exc:
                # A rename in progress or a deleted file: keep serving the pair we have.
                log.warning("cannot stat the serving certificate: %s; keeping the current one", _reason(exc))
                return False
            if sig in (self._loaded, self._failed):
                return False
            try:
                ctx = server_context(self.cert_file, self.key_file, self._context_class)
            except (OSError, ssl.SSLError) as exc:
                # Usually the moment between the key and the certificate being replaced.
                self._failed = sig
                log.warning(
                    "new serving certificate not usable yet: %s; keeping the current one", _reason(exc)
                )
                return False
            self._context = ctx
            self._loaded = sig
            self._failed = None
            self.reloads += 1
        log.info("serving certificate reloaded", extra={"certFile": self.cert_file})
        self._notify()
        return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
