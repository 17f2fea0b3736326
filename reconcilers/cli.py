"""``tmc-reconciler``: the poll-based reconciler process.

Exit codes: 0 after SIGTERM/SIGINT (the write in progress finished, leases released), 2 for bad flags,
1 when the kubeconfig cannot be loaded or the metrics port cannot be bound.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import FrameType

from kcp_tmc.certs.reloading import TLSConfigError
from kcp_tmc.policies.clusters import is_valid_cluster_name
from kcp_tmc.policies.timefmt import format_go_duration, parse_go_duration
from kcp_tmc.reconcilers.aggregator import AggregatorController
from kcp_tmc.reconcilers.client import InvalidKubeconfig, KubeClient
from kcp_tmc.reconcilers.cluster import DEADLINE, WORKERS, ClusterController
from kcp_tmc.reconcilers.engine import Controller, Engine
from kcp_tmc.reconcilers.health import HealthServer, parse_bind
from kcp_tmc.reconcilers.leases import LeaseConfig, LeaseCoordinator, Ownership, StaticOwnership
from kcp_tmc.reconcilers.logs import setup_logging
from kcp_tmc.reconcilers.metrics import Metrics
from kcp_tmc.reconcilers.quota import QuotaController
from kcp_tmc.reconcilers.synctarget import SyncTargetController
from kcp_tmc.reconcilers.virtualworkspace.server import VirtualWorkspaceServer, WorkspaceOptions
from kcp_tmc.reconcilers.virtualworkspaces import parse_shard
from kcp_tmc.reconcilers.workloads import WorkloadUsage

__all__ = ["CONTROLLERS", "build_parser", "main"]

log = logging.getLogger("kcp_tmc.reconcilers")

#: ``--controllers`` names: the three SyncTarget steps, the Cluster controller, the resource aggregator
#: and the quota manager.
CONTROLLERS = ("synctarget", "heartbeat", "syncedresources", "cluster", "aggregator", "quota")
#: The syncer virtual workspace: also a ``--controllers`` name, on whenever ``--vw-bind`` is given.
VIRTUAL_WORKSPACE = "virtual-workspace"
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _duration(flag: str, positive: bool = True) -> Callable[[str], timedelta]:
    def parse(value: str) -> timedelta:
        try:
            parsed = parse_go_duration(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if positive and parsed <= timedelta(0):
            raise argparse.ArgumentTypeError(f"{flag} must be >0 ({format_go_duration(parsed)})")
        return parsed

    return parse


def _controllers(value: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(names - {*CONTROLLERS, VIRTUAL_WORKSPACE})
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown controller(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join((*CONTROLLERS, VIRTUAL_WORKSPACE))}"
        )
    return names


def _default_namespace() -> str:
    try:
        with open(_NAMESPACE_FILE, encoding="utf-8") as handle:
            return handle.read().strip() or "default"
    except OSError:
        return "default"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``tmc-reconciler``."""
    parser = argparse.ArgumentParser(prog="tmc-reconciler", description=__doc__.split("\n")[0])
    parser.add_argument("--kubeconfig", help="kubeconfig of the kcp workspace (default: in-cluster config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current context)")
    parser.add_argument(
        "--logical-cluster",
        default="root",
        help="logical cluster of objects without a kcp.io/cluster annotation (default: root)",
    )
    parser.add_argument(
        "--shard",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a shard's virtual-workspace base URL; repeatable",
    )
    parser.add_argument(
        "--heartbeat-threshold",
        default="1m",
        help="a SyncTarget without a heartbeat for longer than this is not Ready (default: 1m)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_duration("--poll-interval"),
        default=timedelta(seconds=30),
        help="default: 30s",
    )
    parser.add_argument(
        "--controllers",
        type=_controllers,
        default=frozenset(CONTROLLERS),
        help=f"comma-separated subset of {','.join((*CONTROLLERS, VIRTUAL_WORKSPACE))} "
        f"(default: {','.join(CONTROLLERS)}; {VIRTUAL_WORKSPACE} alone serves only the virtual workspaces)",
    )
    parser.add_argument("--metrics-bind", default=":8080", help="HOST:PORT of /healthz, /readyz, /metrics")
    parser.add_argument("--leader-elect", action="store_true", help="only the holder of the Lease writes")
    parser.add_argument(
        "--partitions",
        type=int,
        default=0,
        help="split SyncTargets into N partitions, one Lease each (implies --leader-elect)",
    )
    parser.add_argument("--leader-elect-namespace", default=None, help="namespace of the Leases")
    parser.add_argument(
        "--leader-elect-lease-duration", type=_duration("--leader-elect-lease-duration"), default="15s"
    )
    parser.add_argument(
        "--leader-elect-renew-deadline", type=_duration("--leader-elect-renew-deadline"), default="10s"
    )
    parser.add_argument(
        "--leader-elect-retry-period", type=_duration("--leader-elect-retry-period"), default="2s"
    )
    parser.add_argument("--identity", default=None, help="replica identity (default: hostname_<random>)")
    parser.add_argument(
        "--import-period", type=_duration("--import-period"), default="1m", help="default: 1m"
    )
    parser.add_argument(
        "--syncer-heartbeat-interval",
        type=_duration("--syncer-heartbeat-interval"),
        default="20s",
        help="Push mode: how often the Cluster controller writes the SyncTarget heartbeat (default: 20s)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--cluster-workers",
        type=int,
        default=WORKERS,
        help=f"member clusters reconciled at once (default: {WORKERS})",
    )
    parser.add_argument(
        "--cluster-deadline",
        type=_duration("--cluster-deadline"),
        default=f"{DEADLINE:g}s",
        help=f"time all remote calls of one Cluster reconcile may take together (default: {DEADLINE:g}s)",
    )
    parser.add_argument(
        "--vw-bind",
        default=None,
        metavar="HOST:PORT",
        help="serve the syncer and upsyncer virtual workspaces over TLS here (default: not served)",
    )
    parser.add_argument("--vw-cert-file", default=None, help="TLS certificate of the virtual workspaces")
    parser.add_argument("--vw-key-file", default=None, help="TLS key of the virtual workspaces")
    parser.add_argument(
        "--vw-auth-cache-ttl",
        type=_duration("--vw-auth-cache-ttl", positive=False),
        default="10s",
        help="how long a TokenReview or SubjectAccessReview answer is reused; denials a tenth (default: 10s)",
    )
    parser.add_argument(
        "--vw-auth-cache-size", type=int, default=1024, help="most cached review answers (default: 1024)"
    )
    return parser


class _Options(argparse.Namespace):
    kubeconfig: str | None
    context: str | None
    logical_cluster: str
    shard: list[str]
    heartbeat_threshold: str
    poll_interval: timedelta
    controllers: frozenset[str]
    metrics_bind: str
    leader_elect: bool
    partitions: int
    leader_elect_namespace: str | None
    leader_elect_lease_duration: timedelta
    leader_elect_renew_deadline: timedelta
    leader_elect_retry_period: timedelta
    identity: str | None
    import_period: timedelta
    syncer_heartbeat_interval: timedelta
    log_level: str
    cluster_workers: int
    cluster_deadline: timedelta
    vw_bind: str | None
    vw_cert_file: str | None
    vw_key_file: str | None
    vw_auth_cache_ttl: timedelta
    vw_auth_cache_size: int


def _parse(argv: Sequence[str] | None) -> tuple[_Options, list[str], timedelta, tuple[str, int]]:
    parser = build_parser()
    opts = parser.parse_args(argv, namespace=_Options())
    try:
        threshold = parse_go_duration(opts.heartbeat_threshold)
    except ValueError as exc:
        parser.error(f"--heartbeat-threshold: {exc}")
    if threshold <= timedelta(0):
        parser.error(f"--heartbeat-threshold must be >0 ({format_go_duration(threshold)})")
    shards: list[str] = []
    for spec in opts.shard:
        try:
            shards.append(parse_shard(spec)[1])
        except ValueError as exc:
            parser.error(str(exc))
    try:
        bind = parse_bind(opts.metrics_bind)
    except ValueError as exc:
        parser.error(str(exc))
    if opts.partitions < 0:
        parser.error(f"--partitions must be >= 1 ({opts.partitions})")
    if opts.cluster_workers < 1:
        parser.error(f"--cluster-workers must be >= 1 ({opts.cluster_workers})")
    if not is_valid_cluster_name(opts.logical_cluster):
        # kcp keys SyncTargets and builds the virtual-workspace URLs from the cluster's name; a
        # workspace path gives other keys and URLs that the virtual workspace refuses.
        parser.error(
            f"--logical-cluster {opts.logical_cluster!r} is not a logical-cluster name: give the "
            "name the workspace's objects carry in their kcp.io/cluster annotation (a workspace "
            "path such as root:org:ws is not one)"
        )
    _check_vw_flags(parser, opts)
    return opts, shards, threshold, bind


def _check_vw_flags(parser: argparse.ArgumentParser, opts: _Options) -> None:
    if VIRTUAL_WORKSPACE in opts.controllers and not opts.vw_bind:
        parser.error(f"--controllers={VIRTUAL_WORKSPACE} needs --vw-bind")
    if not opts.vw_bind:
        return
    try:
        parse_bind(opts.vw_bind, "--vw-bind")
    except ValueError as exc:
        parser.error(str(exc))
    if not opts.vw_cert_file or not opts.vw_key_file:
        parser.error(
            "--vw-bind needs --vw-cert-file and --vw-key-file (the virtual workspaces serve TLS only)"
        )
    if opts.vw_auth_cache_size < 0:
        parser.error(f"--vw-auth-cache-size must be >= 0 ({opts.vw_auth_cache_size})")


def start_virtual_workspace(opts: _Options, client: KubeClient) -> VirtualWorkspaceServer | None:
    """The virtual-workspace server when ``--vw-bind`` asks for it, started; None otherwise."""
    if not opts.vw_bind or not opts.vw_cert_file or not opts.vw_key_file:
        return None
    host, port = parse_bind(opts.vw_bind, "--vw-bind")
    server = VirtualWorkspaceServer(
        client.configuration,
        host,
        port,
        ssl_context=VirtualWorkspaceServer.tls_context(opts.vw_cert_file, opts.vw_key_file),
        options=WorkspaceOptions(
            default_cluster=opts.logical_cluster,
            auth_cache_ttl=opts.vw_auth_cache_ttl.total_seconds(),
            auth_cache_size=opts.vw_auth_cache_size,
        ),
    )
    server.start()
    return server


def build_controllers(
    opts: _Options, shards: list[str], threshold: timedelta, partitions: int
) -> list[Controller]:
    """The controllers ``--controllers`` asks for; the Cluster controller runs first in a cycle."""
    controllers: list[Controller] = []
    if "cluster" in opts.controllers:
        controllers.append(
            ClusterController(
                logical_cluster=opts.logical_cluster,
                partitions=partitions,
                import_period=opts.import_period.total_seconds(),
                heartbeat_interval=opts.syncer_heartbeat_interval.total_seconds(),
                workers=opts.cluster_workers,
                deadline=opts.cluster_deadline.total_seconds(),
            )
        )
    if opts.controllers & {"synctarget", "heartbeat", "syncedresources"}:
        controllers.append(
            SyncTargetController(
                logical_cluster=opts.logical_cluster,
                shard_urls=shards,
                workspaces="synctarget" in opts.controllers,
                heartbeat_threshold=threshold if "heartbeat" in opts.controllers else None,
                synced_resources="syncedresources" in opts.controllers,
                partitions=partitions,
            )
        )
    # The aggregator and the quota manager share one workload index: the workloads are listed once.
    workloads = WorkloadUsage(logical_cluster=opts.logical_cluster)
    if "aggregator" in opts.controllers:
        controllers.append(
            AggregatorController(
                logical_cluster=opts.logical_cluster, partitions=partitions, workloads=workloads
            )
        )
    if "quota" in opts.controllers:
        controllers.append(
            QuotaController(logical_cluster=opts.logical_cluster, partitions=partitions, workloads=workloads)
        )
    return controllers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reconciler until SIGTERM or SIGINT."""
    opts, shards, threshold, bind = _parse(argv)
    setup_logging(opts.log_level)
    try:
        if opts.kubeconfig:
            client = KubeClient.from_kubeconfig_file(opts.kubeconfig, context=opts.context)
        else:
            client = KubeClient.in_cluster()
    except InvalidKubeconfig as exc:
        log.error("cannot load kubeconfig", extra={"error": str(exc)})
        return 1

    partitions = opts.partitions or 1
    elect = opts.leader_elect or opts.partitions > 0
    metrics = Metrics()
    coordinator: LeaseCoordinator | None = None
    ownership: Ownership = StaticOwnership(partitions)
    if elect:
        identity = opts.identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        try:
            config = LeaseConfig(
                namespace=opts.leader_elect_namespace or _default_namespace(),
                identity=identity,
                partitions=partitions,
                lease_duration=opts.leader_elect_lease_duration.total_seconds(),
                renew_deadline=opts.leader_elect_renew_deadline.total_seconds(),
                retry_period=opts.leader_elect_retry_period.total_seconds(),
            )
        except ValueError as exc:
            build_parser().error(str(exc))
        coordinator = LeaseCoordinator(client, config)
        ownership = coordinator

    controllers = build_controllers(opts, shards, threshold, partitions)
    engine = Engine(
        client,
        controllers,
        poll_interval=opts.poll_interval.total_seconds(),
        ownership=ownership,
        metrics=metrics,
    )
    if coordinator is not None:
        coordinator.on_change = lambda owned: engine.request_cycle()

    def update_gauges() -> None:
        owned = ownership.owned()
        metrics.leader.set(1 if owned else 0)
        metrics.partitions_held.set(len(owned))
        metrics.live_replicas.set(coordinator.live_replicas if coordinator is not None else 1)

    stale_after = max(3 * opts.poll_interval.total_seconds(), 60.0)

    def healthy() -> tuple[bool, str]:
        if engine.healthy_at and time.time() - engine.healthy_at > stale_after:
            return False, f"no reconcile loop progress for {time.time() - engine.healthy_at:.0f}s"
        return True, "ok"

    def ready() -> tuple[bool, str]:
        return (True, "ok") if engine.ready else (False, "no successful cycle yet")

    try:
        server = HealthServer(bind, metrics, healthy, ready, before_scrape=update_gauges)
    except OSError as exc:
        log.error("cannot bind the metrics address", extra={"bind": opts.metrics_bind, "error": str(exc)})
        client.close()
        return 1
    server.start()
    try:
        vw_server = start_virtual_workspace(opts, client)
    except (OSError, ssl.SSLError, TLSConfigError) as exc:
        log.error("cannot serve the virtual workspaces", extra={"bind": opts.vw_bind, "error": str(exc)})
        server.stop()
        client.close()
        return 1
    log.info(
        "started",
        extra={
            "metrics_port": server.port,
            "controllers": sorted(opts.controllers),
            "leader_elect": elect,
            "partitions": partitions,
            "identity": coordinator.config.identity if coordinator is not None else None,
            "virtual_workspace_url": vw_server.url if vw_server is not None else None,
        },
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        engine.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    if coordinator is not None:
        coordinator.start()
    try:
        engine.run()
    finally:
        if coordinator is not None:
            coordinator.stop(release=True)
        for controller in controllers:
            close = getattr(controller, "close", None)
            if close is not None:
                close()
        if vw_server is not None:
            vw_server.stop()
        server.stop()
        client.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
