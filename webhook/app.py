"""The Flask app factory: ``create_app(config)``.

Blueprints: ``review`` (``POST /validate``, ``/mutate``, ``/validate/<policy>``,
``/mutate/<policy>``), ``health`` (``/healthz``, ``/readyz``) and ``metrics`` (``/metrics``).
With ``fast_path`` (the default) the review routes are served by
:class:`~kcp_tmc.webhook.review.ReviewDispatcher` in front of Flask; the blueprint's views give
the same answers when it is off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException

from kcp_tmc.certs.inspect import certificate_expiry
from kcp_tmc.policies.config import EngineConfig, load_config
from kcp_tmc.policies.engine import Engine
from kcp_tmc.policies.plugins import default_registry
from kcp_tmc.policies.registry import Registry
from kcp_tmc.webhook import health, metrics, review
from kcp_tmc.webhook.config import WebhookConfig, WebhookConfigError, coerce_config
from kcp_tmc.webhook.lookup import ApiLookup
from kcp_tmc.webhook.metrics import Metrics
from kcp_tmc.webhook.review import ReviewDispatcher, ReviewService, error_body

__all__ = ["EXTENSION", "WebhookState", "create_app"]

log = logging.getLogger("kcp_tmc.webhook")

#: The key of the webhook's state in ``app.extensions``.
EXTENSION = "kcp_tmc.webhook"


@dataclass
class WebhookState:
    """What the views share: the settings, the engine, the review service and the metrics."""

    config: WebhookConfig
    registry: Registry
    engine: Engine
    service: ReviewService
    metrics: Metrics

    def close(self) -> None:
        """Stop the engine's threads and the lookup's caches (tests; gunicorn workers just exit)."""
        self.engine.close()
        if isinstance(self.service.lookup, ApiLookup):
            self.service.lookup.close()


def _engine_config(value: Any) -> EngineConfig | None:
    if value is None or isinstance(value, EngineConfig):
        return value
    return load_config(value)


def create_app(config: WebhookConfig | Mapping[str, Any] | None = None) -> Flask:
    """Build the webhook app.

    Raises :class:`~kcp_tmc.policies.config.ConfigError` for a bad engine configuration file
    and :class:`~kcp_tmc.webhook.config.WebhookConfigError` for a bad setting, before anything
    is served.
    """
    cfg = coerce_config(config)
    registry = cfg.registry if cfg.registry is not None else default_registry()
    engine_config = _engine_config(cfg.engine_config)
    engine = Engine(registry, engine_config, max_threads=cfg.engine_threads)
    enabled = [p for p in engine.policies if engine.config.is_enabled(p.name)]
    enabled_kinds = {(t.group, t.kind) for p in enabled for t in p.kinds}
    metrics_ = Metrics({kind for _, kind in enabled_kinds}, cfg.metrics_dir)
    if cfg.cert_file is not None:
        try:
            metrics_.set_certificate_expiry(certificate_expiry(cfg.cert_file))
        except Exception as exc:  # /readyz reports it; the metric stays unset
            log.warning("cannot read the serving certificate %s: %s", cfg.cert_file, exc)
    lookup = cfg.lookup
    if lookup is None and cfg.kubeconfig:
        try:
            api = (
                ApiLookup.in_cluster(max_staleness=cfg.lookup_staleness)
                if cfg.kubeconfig == "in-cluster"
                else ApiLookup.from_kubeconfig(cfg.kubeconfig, max_staleness=cfg.lookup_staleness)
            )
        except ValueError as exc:
            raise WebhookConfigError(f"kubeconfig: {exc}") from exc
        # Not waiting for the first lists: until a cache is filled its reads go to the apiserver, so a
        # worker (a replacement for a killed one too) serves at once even when the apiserver is slow.
        lookup = api.start()
    reserver = cfg.reserver if cfg.reserver is not None else lookup if isinstance(lookup, ApiLookup) else None
    service = ReviewService(
        engine,
        metrics_,
        enabled_kinds=enabled_kinds,
        max_body_bytes=cfg.max_body_bytes,
        default_timeout=cfg.default_timeout,
        deadline_margin=cfg.deadline_margin,
        lookup=lookup,
        reserver=reserver,
        log_reviews=cfg.log_reviews,
    )

    app = Flask("kcp_tmc.webhook")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.extensions[EXTENSION] = WebhookState(cfg, registry, engine, service, metrics_)
    app.register_blueprint(review.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 400
        resp = Response(
            error_body(code, exc.description or exc.name), status=code, mimetype="application/json"
        )
        if code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> Response:
        # Health and metrics only: the review routes answer every failure themselves.
        log.exception("internal error")
        return Response(
            error_body(500, f"internal error: {type(exc).__name__}"), status=500, mimetype="application/json"
        )

    if cfg.fast_path:
        app.wsgi_app = ReviewDispatcher(app.wsgi_app, service)  # type: ignore[method-assign]
    log.info(
        "webhook ready",
        extra={"policies": [p.name for p in enabled], "kinds": sorted(k for _, k in enabled_kinds)},
    )
    return app
