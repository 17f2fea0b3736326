"""``tmc-reconciler`` flags and a whole run in-process (stopped by SIGTERM)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import urllib.request

import pytest

from kcp_tmc.policies.jsonlog import JsonFormatter
from kcp_tmc.reconcilers.cli import build_controllers, build_parser, main
from kcp_tmc.reconcilers.cluster import ClusterController
from kcp_tmc.reconcilers.health import parse_bind
from kcp_tmc.reconcilers.leases import LEASES
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from kcp_tmc.reconcilers.synctarget import SyncTargetController

NOT_A_NAME = (
    "--logical-cluster '{}' is not a logical-cluster name: give the name the workspace's objects carry in "
    "their kcp.io/cluster annotation (a workspace path such as root:org:ws is not one)"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heartbeat-threshold=0"], "--heartbeat-threshold must be >0 (0s)"),
        (["--heartbeat-threshold=-90s"], "--heartbeat-threshold must be >0 (-1m30s)"),
        (["--heartbeat-threshold=soon"], '--heartbeat-threshold: time: invalid duration "soon"'),
        (["--poll-interval=0s"], "argument --poll-interval: --poll-interval must be >0 (0s)"),
        (["--shard", "root"], "--shard must be NAME=URL, got 'root'"),
        (
            ["--controllers", "synctarget,placement"],
            "argument --controllers: unknown controller(s) placement; "
            "choose from synctarget, heartbeat, syncedresources, cluster, aggregator, quota, "
            "virtual-workspace",
        ),
        (["--metrics-bind", "8080"], "--metrics-bind must be HOST:PORT, got '8080'"),
        (["--partitions=-1"], "--partitions must be >= 1 (-1)"),
        (["--cluster-workers=0"], "--cluster-workers must be >= 1 (0)"),
        (["--cluster-workers=many"], "argument --cluster-workers: invalid int value: 'many'"),
        (["--cluster-deadline=0s"], "argument --cluster-deadline: --cluster-deadline must be >0 (0s)"),
        (["--logical-cluster", "root:org:ws"], NOT_A_NAME.format("root:org:ws")),
        (["--logical-cluster", "Root"], NOT_A_NAME.format("Root")),
        (
            ["--leader-elect", "--leader-elect-renew-deadline=20s", "--kubeconfig", "/dev/null"],
            "lease timings must satisfy 0 < retry period < renew deadline < lease duration (2.0, 20.0, 15.0)",
        ),
    ],
)
def test_bad_flags_exit_2_with_the_reason(args, message, capsys, tmp_path):
    if "/dev/null" in args:
        kubeconfig = tmp_path / "kc"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
            "current-context: x\n"
        )
        args = [a if a != "/dev/null" else str(kubeconfig) for a in args]
    root_handlers = logging.getLogger().handlers[:]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
    finally:
        logging.getLogger().handlers[:] = root_handlers
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"tmc-reconciler: error: {message}"


def test_unloadable_kubeconfig_exits_1(tmp_path):
    root_handlers = logging.getLogger().handlers[:]
    try:
        assert main(["--kubeconfig", str(tmp_path / "missing"), "--metrics-bind=127.0.0.1:0"]) == 1
    finally:
        logging.getLogger().handlers[:] = root_handlers


def test_controllers_flag_selects_the_steps():
    parser = build_parser()
    opts = parser.parse_args(["--controllers", "heartbeat,cluster"])
    from datetime import timedelta

    controllers = build_controllers(opts, ["https://vw/"], timedelta(minutes=1), 1)
    assert [type(c) for c in controllers] == [ClusterController, SyncTargetController]
    st = controllers[1]
    assert (
        st.shard_urls is None and st.heartbeat_threshold == timedelta(minutes=1) and not st.synced_resources
    )
    assert (
        build_controllers(parser.parse_args(["--controllers", "cluster"]), [], timedelta(1), 1)[0].name
        == "cluster"
    )


def test_cluster_pool_flags_reach_the_controller():
    from datetime import timedelta

    parser = build_parser()
    default = build_controllers(parser.parse_args([]), [], timedelta(minutes=1), 1)[0]
    assert (default.workers, default.deadline) == (8, 20.0)
    opts = parser.parse_args(["--cluster-workers=3", "--cluster-deadline=1m30s"])
    cluster = build_controllers(opts, [], timedelta(minutes=1), 1)[0]
    assert (cluster.workers, cluster.deadline) == (3, 90.0)
    with pytest.raises(ValueError, match=r"--cluster-workers must be >= 1 \(0\)"):
        ClusterController(workers=0)
    with pytest.raises(ValueError, match=r"--cluster-deadline must be >0 \(0\)"):
        ClusterController(deadline=0)


def test_aggregator_and_quota_share_one_workload_index():
    from datetime import timedelta

    from kcp_tmc.reconcilers.aggregator import AggregatorController
    from kcp_tmc.reconcilers.quota import QuotaController

    opts = build_parser().parse_args(
        ["--controllers", "quota,aggregator", "--logical-cluster", "2t0gpaylzr6ws2i4"]
    )
    aggregator, quota = build_controllers(opts, [], timedelta(minutes=1), 3)
    assert (type(aggregator), type(quota)) == (AggregatorController, QuotaController)
    assert aggregator.workloads is quota.workloads
    assert aggregator.workloads.logical_cluster == "2t0gpaylzr6ws2i4"
    assert (aggregator.partitions, quota.partitions) == (3, 3)


def test_parse_bind():
    assert parse_bind(":8080") == ("0.0.0.0", 8080)
    assert parse_bind("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind("[::1]:9") == ("::1", 9)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_bind("host:99999")


def test_main_reconciles_serves_metrics_and_stops_on_sigterm(api, kube):
    kube.create(
        SYNCTARGETS,
        {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "st"}},
    )
    seen: dict[str, object] = {}

    def probe_then_stop() -> None:
        # Wait for the reconcile, scrape the endpoints, then SIGTERM this process (main's handler).
        import time

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            labels = kube.get(SYNCTARGETS, "st")["metadata"].get("labels") or {}
            if "internal.workload.kcp.io/key" in labels:
                break
            time.sleep(0.05)
        entries = [json.loads(line) for line in log_lines]
        port = next(int(entry["metrics_port"]) for entry in entries if "metrics_port" in entry)
        for path in ("/healthz", "/readyz", "/metrics", "/nope"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                    seen[path] = (response.status, response.read().decode())
            except urllib.error.HTTPError as exc:
                seen[path] = (exc.code, exc.read().decode())
                exc.close()
        os.kill(os.getpid(), signal.SIGTERM)

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log_lines.append(self.format(record))

    log_lines: list[str] = []
    old_term, old_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    root_handlers = logging.getLogger().handlers[:]
    from kcp_tmc.reconcilers import logs

    original_setup = logs.setup_logging

    def capture_setup(level: str = "info", stream=None) -> None:
        original_setup(level, stream)
        handler = Lines()
        handler.setFormatter(JsonFormatter())
        logging.getLogger().addHandler(handler)

    from kcp_tmc.reconcilers import cli

    cli.setup_logging = capture_setup
    prober = threading.Thread(target=probe_then_stop)
    prober.start()
    try:
        code = main(
            [
                "--kubeconfig",
                api.kubeconfig_path,
                "--metrics-bind=127.0.0.1:0",
                "--poll-interval=100ms",
                "--shard",
                "root=https://vw.example:6443/",
                "--leader-elect",
                "--leader-elect-namespace=default",
                "--leader-elect-lease-duration=2s",
                "--leader-elect-renew-deadline=1500ms",
                "--leader-elect-retry-period=100ms",
                "--identity=solo",
                "--controllers=synctarget,heartbeat",
            ]
        )
    finally:
        prober.join(timeout=15)
        cli.setup_logging = original_setup
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
        logging.getLogger().handlers[:] = root_handlers
    assert code == 0
    assert seen["/healthz"] == (200, "ok\n") and seen["/readyz"] == (200, "ok\n")
    assert seen["/nope"][0] == 404
    metrics = seen["/metrics"][1]
    assert "tmc_reconciler_leader 1.0" in metrics and "tmc_reconciler_partitions_held 1.0" in metrics
    st = kube.get(SYNCTARGETS, "st")
    assert st["status"]["virtualWorkspaces"][0]["syncerURL"].startswith(
        "https://vw.example:6443/services/syncer/root/st/"
    )
    lease = kube.get(LEASES, "tmc-reconciler-partition-0", namespace="default")
    assert not lease["spec"].get("holderIdentity")  # released on SIGTERM
    assert any(json.loads(line)["message"] == "stopped" for line in log_lines)
