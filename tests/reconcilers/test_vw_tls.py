"""The VW serving certificate follows its files: new connections get a rotated pair, open watches go on."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kcp_tmc.certs.generate import issue_for_names, new_ca
from kcp_tmc.certs.reloading import TLSConfigError
from kcp_tmc.reconcilers.virtualworkspace.server import VirtualWorkspaceServer
from tests.reconcilers.test_vw_watch import _raw_watch, _ready
from tests.reconcilers.vw_env import CONFIGMAPS, VWEnv


def _served_cert(port: int, ca_pem: bytes) -> bytes:
    """The DER certificate a new connection verified by ``ca_pem`` is served."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert(binary_form=True)
    assert cert is not None
    return cert


def _pem_to_der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_a_rotated_pair_serves_new_connections_while_an_open_watch_goes_on(tmp_path: Path) -> None:
    with VWEnv.running(tmp_path) as env:
        target = _ready(env)
        rv = env.configmap("before")["metadata"]["resourceVersion"]
        old_ca = Path(env.ca_path).read_bytes()
        url = env.base(target) + CONFIGMAPS + f"?watch=true&resourceVersion={rv}&timeoutSeconds=20"
        received: list[list[dict[str, Any]]] = []
        watching = threading.Thread(target=lambda: received.append(_raw_watch(env, url, 1, timeout=20)))
        watching.start()
        time.sleep(0.5)
        ca = new_ca("rotated VW CA", days=1)
        pair = issue_for_names(ca, common_name="vw", dns=["localhost"], ips=["127.0.0.1"], days=1)
        # As tmc-certs rotate writes them: the key first, then the certificate; until both agree the
        # old pair keeps serving (the new key does not load with the old certificate).
        (tmp_path / "vw.key").write_bytes(pair.key_pem)
        assert _served_cert(env.server.port, old_ca) != _pem_to_der(pair.cert_pem)
        (tmp_path / "vw.crt").write_bytes(pair.cert_pem)
        deadline = time.monotonic() + 10
        while True:
            try:
                if _served_cert(env.server.port, ca.cert_pem) == _pem_to_der(pair.cert_pem):
                    break
            except ssl.SSLError:
                pass  # still the old certificate, which the new CA does not verify
            assert time.monotonic() < deadline, "new connections never got the rotated certificate"
            time.sleep(0.1)
        with pytest.raises(ssl.SSLCertVerificationError):
            _served_cert(env.server.port, old_ca)
        # The watch opened before the rotation still delivers, over its original connection.
        env.configmap("after")
        watching.join(15)
        assert [[(e["type"], e["object"]["metadata"]["name"]) for e in r] for r in received] == [
            [("ADDED", "after")]
        ]


def test_an_unusable_pair_at_start_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_text("not a certificate", encoding="utf-8")
    (tmp_path / "tls.key").write_text("not a key", encoding="utf-8")
    with pytest.raises(TLSConfigError, match=r"^cannot use .*tls\.crt and .*tls\.key: "):
        VirtualWorkspaceServer.tls_context(str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"))
