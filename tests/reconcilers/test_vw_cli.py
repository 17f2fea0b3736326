"""``tmc-reconciler`` serving the virtual workspaces: flags, and the URLs it writes pointing at them."""

from __future__ import annotations

import socket

import pytest

from kcp_tmc.reconcilers.cli import _parse
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.tls import serving_certs
from tests.reconcilers.reconciler_processes import Reconciler, crds, wait_for
from tests.reconcilers.vw_env import SYNCER_TOKEN, VWEnv, sync_rule


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--controllers=virtual-workspace"], "--controllers=virtual-workspace needs --vw-bind"),
        (["--vw-bind=127.0.0.1:8443"], "--vw-bind needs --vw-cert-file and --vw-key-file"),
        (
            ["--vw-bind=nope", "--vw-cert-file=c", "--vw-key-file=k"],
            "--vw-bind must be HOST:PORT, got 'nope'",
        ),
        (
            ["--vw-bind=:1", "--vw-cert-file=c", "--vw-key-file=k", "--vw-auth-cache-size=-1"],
            "--vw-auth-cache-size must be >= 0 (-1)",
        ),
        (["--controllers=virtual-workspaces"], "unknown controller(s) virtual-workspaces; choose from"),
    ],
)
def test_bad_virtual_workspace_flags_exit_2_naming_the_problem(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_defaults_leave_the_virtual_workspaces_off() -> None:
    opts = _parse([])[0]
    assert opts.vw_bind is None
    assert "virtual-workspace" not in opts.controllers
    assert opts.vw_auth_cache_ttl.total_seconds() == 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_reconciler_serves_the_vw_at_the_url_it_writes_into_the_synctarget(tmp_path) -> None:
    certs = serving_certs()
    (tmp_path / "tls.crt").write_bytes(certs.cert_pem)
    (tmp_path / "tls.key").write_bytes(certs.key_pem)
    (tmp_path / "ca.crt").write_bytes(certs.ca_pem)
    port = _free_port()
    tokens = {SYNCER_TOKEN: ("syncer", [])}
    with FakeAPIServer(tokens=tokens, rules=[sync_rule("syncer", "st1")]) as api:
        for crd in crds():
            api.install_crd(crd)
        target = api.create(
            {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "st1"}}
        )
        reconciler = Reconciler(
            str(api.kubeconfig_path),
            tmp_path / "reconciler.log",
            f"--vw-bind=127.0.0.1:{port}",
            f"--vw-cert-file={tmp_path / 'tls.crt'}",
            f"--vw-key-file={tmp_path / 'tls.key'}",
            f"--shard=root=https://127.0.0.1:{port}",
            "--controllers=synctarget,virtual-workspace",
            "--poll-interval=300ms",
        )
        try:
            reconciler.metrics_port()

            def written_url() -> str | None:
                st = api.get("workload.kcp.io/v1alpha1", SYNCTARGETS.plural, "st1") or {}
                workspaces = (st.get("status") or {}).get("virtualWorkspaces") or []
                return workspaces[0]["syncerURL"] if workspaces else None

            url = wait_for(written_url, 15, "the reconciler never wrote status.virtualWorkspaces")
            assert url == f"https://127.0.0.1:{port}/services/syncer/root/st1/{target['metadata']['uid']}"
            env = VWEnv(api, None, None, str(tmp_path / "ca.crt"))  # type: ignore[arg-type]
            env.configmap("placed")

            def listed() -> list[str] | None:
                status, body = env.http("GET", url + "/clusters/*/api/v1/namespaces/default/configmaps")
                return [item["metadata"]["name"] for item in body["items"]] if status == 200 else None

            assert wait_for(listed, 15, "the virtual workspace never answered") == ["placed"]
        finally:
            assert reconciler.stop() == 0
        started = next(line for line in reconciler.lines() if line.get("message") == "started")
        assert started["virtual_workspace_url"] == f"https://127.0.0.1:{port}"
