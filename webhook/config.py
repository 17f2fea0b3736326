"""The webhook's settings: one frozen record, built from keyword arguments or a mapping.

``create_app`` takes a :class:`WebhookConfig`, a plain mapping of the same field names (as a
Flask ``app.config``-style dictionary would hold them), or ``None`` for the defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kcp_tmc.policies.config import EngineConfig
from kcp_tmc.policies.policy import Lookup, Reserver
from kcp_tmc.policies.registry import Registry

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WebhookConfig", "WebhookConfigError", "coerce_config"]

#: 4 MiB: far above any real review (etcd refuses objects over 1.5 MiB), far below memory trouble.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


class WebhookConfigError(ValueError):
    """A setting that cannot be used; the message names the setting and the fix."""


@dataclass(frozen=True)
class WebhookConfig:
    """Everything the app needs.

    ``engine_config`` is the engine's YAML file (or an already parsed
    :class:`~kcp_tmc.policies.config.EngineConfig`); ``None`` runs every registered policy
    with its own defaults.  ``registry`` defaults to the built-in policies plus installed
    plug-ins.  ``cert_file``/``key_file`` are the serving pair the readiness check and the
    expiry metric read (TLS itself is served by the worker).  ``default_timeout`` is the budget
    when the apiserver sends no ``?timeout=``; ``deadline_margin`` is kept back from every
    budget to write the answer.  ``metrics_dir`` turns on prometheus multiprocess mode (the
    ``PROMETHEUS_MULTIPROC_DIR`` environment variable must name the same folder before
    ``prometheus_client`` is imported: :mod:`kcp_tmc.webhook.cli` does that).  ``lookup`` gives
    policies read access to other objects.  ``fast_path`` serves the review routes with a thin
    WSGI dispatcher in front of Flask (same answers, less overhead); turn it off to debug with
    Flask's own routing.  ``engine_threads`` bounds the policy evaluations in flight (each
    review with a deadline runs on one engine thread; one still running past its deadline keeps
    its thread until it returns).  ``kubeconfig`` (a path, or ``"in-cluster"`` for the pod's
    service account) gives the policies a cached view of the apiserver
    (:class:`~kcp_tmc.webhook.lookup.ApiLookup`) when ``lookup`` is not given, and writes the
    quota reservations; ``reserver`` overrides what writes them (by default the lookup, when it
    can).  ``lookup_staleness`` bounds the age of a cached answer in seconds.
    """

    engine_config: str | Path | EngineConfig | None = None
    registry: Registry | None = None
    cert_file: str | None = None
    key_file: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    default_timeout: float = 10.0
    deadline_margin: float = 0.1
    metrics_dir: str | None = None
    log_format: Literal["json", "text"] = "json"
    log_reviews: bool = True
    lookup: Lookup | None = None
    fast_path: bool = True
    engine_threads: int = 16
    kubeconfig: str | None = None
    reserver: Reserver | None = None
    lookup_staleness: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise WebhookConfigError(
                f"max_body_bytes must be a positive integer, got {self.max_body_bytes!r}"
            )
        if not 0 < self.default_timeout <= 30:
            raise WebhookConfigError(
                f"default_timeout must be more than 0 and at most 30 seconds (the apiserver's limit), "
                f"got {self.default_timeout!r}"
            )
        if not 0 <= self.deadline_margin < 1:
            raise WebhookConfigError(
                f"deadline_margin must be at least 0 and under 1 second, got {self.deadline_margin!r}"
            )
        if not isinstance(self.engine_threads, int) or self.engine_threads < 1:
            raise WebhookConfigError(
                f"engine_threads must be a positive integer, got {self.engine_threads!r}"
            )
        if not 0 < self.lookup_staleness <= 3600:
            raise WebhookConfigError(
                "lookup_staleness must be more than 0 and at most 3600 seconds, "
                f"got {self.lookup_staleness!r}"
            )
        if self.log_format not in ("json", "text"):
            raise WebhookConfigError(f"log_format must be json or text, got {self.log_format!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise WebhookConfigError("cert_file and key_file go together: give both or neither")


_FIELDS = tuple(f.name for f in dataclasses.fields(WebhookConfig))


def coerce_config(config: WebhookConfig | Mapping[str, Any] | None) -> WebhookConfig:
    """A :class:`WebhookConfig` from any form ``create_app`` accepts.

    Mapping keys are the field names, in lower or upper case (``MAX_BODY_BYTES`` works too);
    an unknown key is refused rather than silently ignored.
    """
    if config is None:
        return WebhookConfig()
    if isinstance(config, WebhookConfig):
        return config
    if not isinstance(config, Mapping):
        raise WebhookConfigError(
            f"config must be a WebhookConfig, a mapping or None, got {type(config).__name__}"
        )
    values: dict[str, Any] = {}
    for key, value in config.items():
        name = str(key).lower()
        if name not in _FIELDS:
            raise WebhookConfigError(f"unknown setting {key!r} (known: {', '.join(_FIELDS)})")
        values[name] = value
    return WebhookConfig(**values)
