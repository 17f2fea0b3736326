"""The CA kept in a Secret of its own, and ``tmc-certs pull``: renewal inside the cluster.

The chart's certificate Job has no disk that outlives it: it pulls the state from the two Secrets,
rotates, and injects back.  These run on the fake API server.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from kcp_tmc.certs import CertPaths, generate_dir, rotate_dir
from kcp_tmc.certs.cli import main
from kcp_tmc.testing import FakeAPIServer

NS = "tmc-system"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield server


@pytest.fixture
def core(api: FakeAPIServer) -> Iterator[Any]:
    new_client: Any = k8s_config.new_client_from_config
    with new_client(config_file=api.kubeconfig_path) as client:
        core = k8s.CoreV1Api(client)
        yield core
        for secret in core.list_namespaced_secret(NS).items:
            core.delete_namespaced_secret(secret.metadata.name, NS)


def _cli(api: FakeAPIServer, *args: str) -> int:
    return main([*args, "--kubeconfig", api.kubeconfig_path])


def _tls_secret_only(
    api: FakeAPIServer, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> CertPaths:
    """A generated directory, injected as the TLS Secret ``name`` alone (no CA Secret)."""
    paths = generate_dir(tmp_path / "a", service="tmc-webhook", namespace=NS)
    assert _cli(api, "inject", str(paths.directory), "--secret", f"{NS}/{name}") == 0
    capsys.readouterr()
    return paths


def test_inject_keeps_the_ca_in_an_opaque_secret_and_pull_restores_all_four_files(
    api: FakeAPIServer, core: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = generate_dir(tmp_path / "a", service="tmc-webhook", namespace=NS)
    refs = ["--secret", f"{NS}/tls", "--ca-secret", f"{NS}/tls-ca"]
    assert _cli(api, "inject", str(paths.directory), *refs) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Secret {NS}/tls-ca: created",
        f"Secret {NS}/tls: created",
    ]
    ca = core.read_namespaced_secret("tls-ca", NS)
    assert ca.type == "Opaque"
    assert sorted(ca.data) == ["ca.crt", "ca.key"]
    assert base64.b64decode(ca.data["ca.key"]) == paths.ca_key.read_bytes()
    assert sorted(core.read_namespaced_secret("tls", NS).data) == ["ca.crt", "tls.crt", "tls.key"]

    out = tmp_path / "b"
    assert _cli(api, "pull", str(out), *refs) == 0
    pulled = CertPaths.of(out)
    assert capsys.readouterr().out == (
        f"wrote {pulled.ca_key}, {pulled.ca_crt}, {pulled.tls_key}, {pulled.tls_crt}\n"
    )
    for mine, theirs in zip(paths.all(), pulled.all(), strict=True):
        assert theirs.read_bytes() == mine.read_bytes()
        assert theirs.stat().st_mode & 0o777 == mine.stat().st_mode & 0o777
    # What was pulled is a directory rotate accepts: the CA roll keeps the old CA in the bundle.
    rolled = rotate_dir(out, force=True)
    assert rolled.serving_renewed
    assert _cli(api, "inject", str(out), *refs) == 0
    assert "updated" in capsys.readouterr().out


def test_pull_writes_nothing_when_neither_secret_exists(
    api: FakeAPIServer, core: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli(api, "pull", str(tmp_path / "c"), "--secret", f"{NS}/x", "--ca-secret", f"{NS}/x-ca") == 0
    assert capsys.readouterr().out == (
        f"no Secret {NS}/x nor {NS}/x-ca: nothing pulled (run 'tmc-certs generate')\n"
    )
    assert not (tmp_path / "c").exists()


def test_pull_refuses_half_the_state(
    api: FakeAPIServer, core: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tls_secret_only(api, tmp_path, "only-tls", capsys)
    assert (
        _cli(api, "pull", str(tmp_path / "d"), "--secret", f"{NS}/only-tls", "--ca-secret", f"{NS}/gone") == 2
    )
    assert capsys.readouterr().err == (
        f"tmc-certs: error: Secret {NS}/gone is missing while the other one exists; restore it from a "
        "backup, or delete both to start over with a new CA\n"
    )
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "no-key"}, "type": "Opaque", "data": {"ca.crt": "eA=="}}
    )
    assert (
        _cli(api, "pull", str(tmp_path / "d"), "--secret", f"{NS}/only-tls", "--ca-secret", f"{NS}/no-key")
        == 2
    )
    assert capsys.readouterr().err == f"tmc-certs: error: Secret {NS}/no-key has no ca.key\n"
    assert not (tmp_path / "d").exists()


def test_the_ca_secret_must_not_be_a_tls_secret(
    api: FakeAPIServer, core: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = _tls_secret_only(api, tmp_path, "t", capsys)
    assert _cli(api, "inject", str(paths.directory), "--ca-secret", f"{NS}/t") == 2
    assert capsys.readouterr().err == (
        f"tmc-certs: error: Secret {NS}/t has type kubernetes.io/tls, not Opaque; "
        "delete it or choose another name\n"
    )
