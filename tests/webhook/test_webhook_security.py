"""Security checks of the served webhook: protocol versions, cipher suites, key files."""

from __future__ import annotations

import socket
import ssl
import stat
import subprocess
import sys
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kcp_tmc.certs.generate import generate_dir
from tests.webhook.webhook_helpers import NAMESPACE, SERVER_NAME, SERVICE, Server

pytestmark = pytest.mark.slow


def _client(server: Server, *, version: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    """A client forced to one protocol version (and cipher list); it trusts our CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(server.certs / "ca.crt"))
    # Security level 0 so that this client may offer what a modern default would not.
    ctx.set_ciphers(ciphers or "DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


def _handshake(server: Server, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        return ctx.wrap_socket(raw, server_hostname=SERVER_NAME)
    except BaseException:
        raw.close()
        raise


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_old_protocol_versions_are_refused(server: Server, version: str) -> None:
    ctx = _client(server, version=getattr(ssl.TLSVersion, version))
    with pytest.raises(ssl.SSLError) as err:
        _handshake(server, ctx).close()
    # The server's protocol-version alert, not this client failing to offer the version.
    assert err.value.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"), err.value


def _offerable(ciphers: str) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        return False
    return True


WEAK_TLS12 = [
    "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0",  # CBC with SHA-1
    "ECDHE-ECDSA-AES256-SHA:@SECLEVEL=0",
    "ECDHE-ECDSA-AES128-SHA256:@SECLEVEL=0",  # CBC, no AEAD
    "ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0",
    "ECDHE-ECDSA-NULL-SHA:@SECLEVEL=0",  # no encryption at all
    "ECDHE-ECDSA-DES-CBC3-SHA:@SECLEVEL=0",  # 3DES (Sweet32)
    "ECDHE-ECDSA-RC4-SHA:@SECLEVEL=0",
    "AES128-GCM-SHA256:AES256-GCM-SHA384:@SECLEVEL=0",  # no forward secrecy
    "ADH-AES128-GCM-SHA256:AECDH-AES128-SHA:@SECLEVEL=0",  # anonymous: no authentication
]


@pytest.mark.parametrize("ciphers", WEAK_TLS12)
def test_weak_cipher_suites_are_refused(server: Server, ciphers: str) -> None:
    if not _offerable(ciphers):
        pytest.skip(f"this OpenSSL ({ssl.OPENSSL_VERSION}) cannot even offer {ciphers}")
    ctx = _client(server, version=ssl.TLSVersion.TLSv1_2, ciphers=ciphers)
    with pytest.raises(ssl.SSLError) as err:
        _handshake(server, ctx).close()
    assert err.value.reason in ("SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER"), err.value


@pytest.mark.parametrize(
    ("version", "ciphers", "expected"),
    [
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        (ssl.TLSVersion.TLSv1_3, None, None),
    ],
)
def test_strong_suites_are_accepted(
    server: Server, version: ssl.TLSVersion, ciphers: str | None, expected: str | None
) -> None:
    """The other side of the refusals: what a modern client (Go's defaults) offers works."""
    ctx = _client(server, version=version, ciphers=ciphers)
    with _handshake(server, ctx) as tls:
        cipher = tls.cipher()
        assert cipher is not None
        if expected is not None:
            assert cipher[0] == expected
        else:
            assert tls.version() == "TLSv1.3"
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200")


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(directory.iterdir()) if p.is_file()}


UMASK_0_TMC_CERTS = (
    "import os, sys; os.umask(0); from kcp_tmc.certs.cli import main; sys.exit(main(sys.argv[1:]))"
)


def _tmc_certs(*args: str) -> subprocess.CompletedProcess[str]:
    """``tmc-certs`` run with umask 0, so that only the tool's own modes protect the keys."""
    return subprocess.run(
        [sys.executable, "-c", UMASK_0_TMC_CERTS, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_are_written_0600_even_with_umask_0(tmp_path: Path) -> None:
    out = tmp_path / "generated"
    run = _tmc_certs("generate", "--service", SERVICE, "--namespace", NAMESPACE, "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert _modes(out) == {"ca.crt": 0o644, "ca.key": 0o600, "tls.crt": 0o644, "tls.key": 0o600}
    # A CA roll and a renewal rewrite both keys: still 0600 (a CA with a sixth of its life left is due).
    rolling = tmp_path / "rolling"
    generate_dir(
        rolling, service=SERVICE, namespace=NAMESPACE, ca_days=6, now=datetime.now(UTC) - timedelta(days=5)
    )
    for args in (["rotate", str(rolling)], ["rotate", str(rolling), "--force"], ["rotate", str(rolling)]):
        before = {p.name: p.stat().st_ino for p in rolling.iterdir() if p.is_file()}
        run = _tmc_certs(*args)
        assert run.returncode == 0, run.stderr
        changed = {p.name for p in rolling.iterdir() if p.is_file() and before.get(p.name) != p.stat().st_ino}
        assert changed, f"{args} rewrote nothing"
        assert _modes(rolling) == {"ca.crt": 0o644, "ca.key": 0o600, "tls.crt": 0o644, "tls.key": 0o600}
    # The directory lock file (if any) is not a key; no other file appeared.
    assert not [p for p in rolling.iterdir() if p.is_file() and p.name.startswith(".")]
