"""``tmc-webhook``: serve the admission webhook over TLS with gunicorn.

Example::

    tmc-webhook --bind 0.0.0.0:8443 --cert-file /certs/tls.crt --key-file /certs/tls.key \\
        --config /etc/tmc/policies.yaml

Everything is checked before the first worker starts (the engine configuration, the
certificate and key); a bad value exits with status 2 and one line on stderr.  Logs are JSON
lines on stderr (``--log-format text`` for a terminal).  See ``docs/webhook.md``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from kcp_tmc.policies.config import ConfigError, load_config
from kcp_tmc.policies.engine import Engine
from kcp_tmc.policies.jsonlog import JsonFormatter, TextFormatter
from kcp_tmc.policies.plugins import default_registry
from kcp_tmc.webhook.logs import configure_logging
from kcp_tmc.webhook.tls import ReloadingTLS, TLSConfigError

__all__ = ["build_parser", "main"]

log = logging.getLogger("kcp_tmc.webhook")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 seconds, got {text}")
    return value


def _budget(text: str) -> float:
    value = _seconds(text)
    if value > 30:
        raise argparse.ArgumentTypeError(f"must be at most 30 seconds (the apiserver's limit), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the documentation)."""
    cpus = os.cpu_count() or 1
    p = argparse.ArgumentParser(
        prog="tmc-webhook", description="Serve the kcp-tmc admission webhook over TLS."
    )
    p.add_argument("--bind", default="0.0.0.0:8443", help="address:port to listen on (default: %(default)s)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=min(cpus, 4),
        help="worker processes, one per core is right (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=16,
        help="per worker, the most policy evaluations in flight (engine threads) (default: %(default)s)",
    )
    p.add_argument("--cert-file", required=True, help="PEM serving certificate (re-read when it changes)")
    p.add_argument("--key-file", required=True, help="PEM private key of the serving certificate")
    p.add_argument("--config", help="engine configuration YAML (modes, failure modes, exemptions, settings)")
    p.add_argument("--log-format", choices=("json", "text"), default="json", help="default: %(default)s")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=4 * 1024 * 1024,
        help="larger review bodies are refused with 413 (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-dir",
        help="prometheus multiprocess folder (default: a temporary folder removed at exit)",
    )
    p.add_argument(
        "--default-timeout",
        type=_budget,
        default=10.0,
        help="review budget when the apiserver sends no ?timeout= (default: %(default)s)",
    )
    p.add_argument(
        "--keep-alive",
        type=_positive_int,
        default=120,
        help="seconds an idle connection is kept; keep it above the apiserver's 90 s (default: %(default)s)",
    )
    p.add_argument(
        "--handshake-timeout", type=_seconds, default=10.0, help="TLS handshake limit (default: 10)"
    )
    p.add_argument(
        "--header-timeout",
        type=_seconds,
        default=10.0,
        help="limit for a request's line and headers once its first byte arrived (default: 10)",
    )
    p.add_argument(
        "--body-timeout",
        type=_seconds,
        default=10.0,
        help="longest pause inside a request body (default: 10)",
    )
    p.add_argument(
        "--read-timeout",
        type=_seconds,
        default=30.0,
        help="a request's headers and body must arrive within this time of its first byte (default: 30)",
    )
    p.add_argument(
        "--max-connections",
        type=_positive_int,
        default=4096,
        help="open connections per worker; more wait in the listen backlog (default: %(default)s)",
    )
    p.add_argument(
        "--kubeconfig",
        help="kubeconfig of the apiserver whose objects policies look up and whose quotas they reserve "
        '("in-cluster" for the service account; default: none, quota policies then see no quotas)',
    )
    p.add_argument(
        "--lookup-staleness",
        type=_seconds,
        default=30.0,
        help="oldest cached answer a policy gets, in seconds, before reads go to the apiserver (default: 30)",
    )
    return p


class _JsonGunicornLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own messages (start, worker boot and exit) in our log format."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        fmt = (
            JsonFormatter() if os.environ.get("TMC_WEBHOOK_LOG_FORMAT", "json") == "json" else TextFormatter()
        )
        for handler in self.error_log.handlers:
            handler.setFormatter(fmt)


def _child_exit(server: Any, worker: Any) -> None:
    # Imported here: prometheus_client must first be imported after PROMETHEUS_MULTIPROC_DIR is set.
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


class WebhookServer(BaseApplication):  # type: ignore[misc]
    """gunicorn application: the settings in ``options``, the app built in each worker."""

    def __init__(self, options: dict[str, Any], app_config: dict[str, Any]) -> None:
        self.options = options
        self.app_config = app_config
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from kcp_tmc.webhook.app import create_app  # noqa: PLC0415 - imports prometheus_client

        return create_app(self.app_config)


def _check(args: argparse.Namespace) -> str | None:
    """Fail fast in the master process: the reason the server cannot start, or ``None``."""
    try:
        ReloadingTLS(args.cert_file, args.key_file)
    except TLSConfigError as exc:
        return str(exc)
    if args.config:
        try:
            Engine(default_registry(), load_config(args.config))
        except ConfigError as exc:
            return str(exc)
    if args.kubeconfig and args.kubeconfig != "in-cluster" and not os.path.isfile(args.kubeconfig):
        return f"--kubeconfig {args.kubeconfig}: no such file"
    return None


def _warm_for_forks() -> None:
    """Import in the master what every worker needs, so that forks inherit it.

    A worker that dies is replaced by a fork of the master; whatever the fork must still import
    (the built-in policies and the plug-in entry points: half a second on a loaded machine) is
    time in which that worker's share of new connections waits in the backlog.  The collector's
    freeze keeps these objects out of the workers' own collections and their pages shared.
    """
    default_registry()
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tmc-webhook``."""
    args = build_parser().parse_args(argv)
    # Multiprocess metrics must be chosen before prometheus_client is first imported.
    own_dir = args.metrics_dir is None
    metrics_dir = tempfile.mkdtemp(prefix="tmc-webhook-metrics-") if own_dir else args.metrics_dir
    try:
        os.makedirs(metrics_dir, exist_ok=True)
        for name in os.listdir(metrics_dir):
            if name.endswith(".db"):  # values of an earlier run
                os.unlink(os.path.join(metrics_dir, name))
    except OSError as exc:
        print(f"tmc-webhook: error: --metrics-dir {metrics_dir}: {exc.strerror}", file=sys.stderr)
        return 2
    master = os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ["TMC_WEBHOOK_LOG_FORMAT"] = args.log_format
    try:
        # The worker imports the app and with it prometheus_client: only now.
        from kcp_tmc.webhook.worker import ReviewWorker  # noqa: PLC0415

        configure_logging(args.log_format, getattr(logging, args.log_level.upper()))
        problem = _check(args)
        if problem is not None:
            print(f"tmc-webhook: error: {problem}", file=sys.stderr)
            return 2
        _warm_for_forks()
        worker = ReviewWorker.configured(
            handshake_timeout=args.handshake_timeout,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            read_timeout=args.read_timeout,
        )
        options: dict[str, Any] = {
            "bind": [args.bind],
            "workers": args.workers,
            "worker_class": worker,
            "worker_connections": args.max_connections,
            "keepalive": args.keep_alive,
            "certfile": args.cert_file,
            "keyfile": args.key_file,
            "graceful_timeout": 10,
            # Above the longest review budget (30 s): a worker waiting on a late policy is not killed.
            "timeout": 60,
            "loglevel": "warning" if args.log_level == "info" else args.log_level,
            "errorlog": "-",
            "accesslog": None,
            "logger_class": _JsonGunicornLogger,
            "child_exit": _child_exit,
            "proc_name": "tmc-webhook",
        }
        app_config = {
            "engine_config": args.config,
            "cert_file": args.cert_file,
            "key_file": args.key_file,
            "max_body_bytes": args.max_body_bytes,
            "default_timeout": args.default_timeout,
            "metrics_dir": metrics_dir,
            "log_format": args.log_format,
            "engine_threads": args.threads,
            "kubeconfig": args.kubeconfig,
            "lookup_staleness": args.lookup_staleness,
        }
        log.info("starting", extra={"bind": args.bind, "workers": args.workers, "metricsDir": metrics_dir})
        WebhookServer(options, app_config).run()
        return 0
    finally:
        # gunicorn's workers are forks of this process and leave through this frame too:
        # only the master removes the folder.
        if own_dir and os.getpid() == master:
            shutil.rmtree(metrics_dir, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
