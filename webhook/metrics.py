"""Prometheus metrics of the webhook, and the ``/metrics`` blueprint.

Labels are bounded: ``webhook`` is a route of this server (``/validate``, ``/mutate/<policy>``
for registered policies only), ``operation`` one of the four admission operations, ``kind`` a
kind some policy handles (anything else is ``other``), ``outcome`` one of :data:`OUTCOMES`,
``policy`` a registered policy.  Never a namespace or an object name.

With several gunicorn workers the values live in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus
multiprocess mode) and ``/metrics`` merges the files of every worker; the CLI removes a dead
worker's live gauges from its ``child_exit`` hook.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from flask import Blueprint, Response, current_app
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

__all__ = ["OPERATIONS", "OUTCOMES", "Metrics", "blueprint"]

#: What happened to a review: the engine's decision, or why it never reached the engine.
OUTCOMES = ("allowed", "denied", "error", "unknown_kind", "invalid")
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})

# From 0.5 ms (a warm in-memory review) to 30 s (the longest timeout an apiserver allows).
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
POLICY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)


class Metrics:
    """The metric families of one app, with the labelled children cached for the hot path.

    ``multiprocess_dir`` set: the families are not registered anywhere (their values go to
    the multiprocess files) and :meth:`render` collects the folder.  Unset: they live in a
    registry of their own, so that two apps in one process (tests) do not collide.
    """

    def __init__(self, kinds: Iterable[str], multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry: CollectorRegistry | None = None if multiprocess_dir else CollectorRegistry()
        reg = self.registry
        self.kinds = frozenset(kinds)
        self.requests = Counter(
            "tmc_admission_requests_total",
            "Admission reviews answered, by webhook route, operation, kind and outcome.",
            ["webhook", "operation", "kind", "outcome"],
            registry=reg,
        )
        self.duration = Histogram(
            "tmc_admission_duration_seconds",
            "Time from the first byte of a review's body read to the answer built, by webhook route.",
            ["webhook"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.policy_duration = Histogram(
            "tmc_policy_evaluation_duration_seconds",
            "Time one policy took on one review.",
            ["policy"],
            buckets=POLICY_BUCKETS,
            registry=reg,
        )
        self.policy_errors = Counter(
            "tmc_policy_errors_total",
            "Policy runs that raised, broke the plug-in contract or ran out of time.",
            ["policy"],
            registry=reg,
        )
        self.cert_expiry = Gauge(
            "tmc_serving_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, as a Unix time.",
            registry=reg,
            multiprocess_mode="livemostrecent",
        )
        self._requests: dict[tuple[str, str, str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}
        self._policy_durations: dict[str, Histogram] = {}

    def label_kind(self, kind: str) -> str:
        """``kind`` when a policy handles it, else ``other`` (keeps the label set bounded)."""
        return kind if kind in self.kinds else "other"

    def observe_review(self, webhook: str, operation: str, kind: str, outcome: str, seconds: float) -> None:
        """Count one answered review and its duration."""
        key = (webhook, operation if operation in OPERATIONS else "other", self.label_kind(kind), outcome)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(*key)
        child.inc()
        hist = self._durations.get(webhook)
        if hist is None:
            hist = self._durations[webhook] = self.duration.labels(webhook)
        hist.observe(seconds)

    def observe_policy(self, policy: str, seconds: float, failed: bool) -> None:
        """Record one policy run."""
        hist = self._policy_durations.get(policy)
        if hist is None:
            hist = self._policy_durations[policy] = self.policy_duration.labels(policy)
        hist.observe(seconds)
        if failed:
            self.policy_errors.labels(policy).inc()

    def set_certificate_expiry(self, not_after: datetime) -> None:
        """Publish the serving certificate's notAfter."""
        self.cert_expiry.set(not_after.timestamp())

    def render(self) -> bytes:
        """The exposition text of every family (merged over workers in multiprocess mode)."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            prom_multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        assert self.registry is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        return generate_latest(self.registry)


blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition."""
    state = current_app.extensions["kcp_tmc.webhook"]
    return Response(state.metrics.render(), content_type=CONTENT_TYPE_LATEST)
