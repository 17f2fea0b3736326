"""Pieces the soaks share: durations from the environment, the trend test, and the loads they run.

Each soak samples resident memory, open descriptors and threads while a bounded load runs; these
are the loads (refused bodies beside a webhook's real reviews; syncer heartbeats with SyncTarget
churn against kcp) and the arithmetic that decides whether a series grew.
"""

from __future__ import annotations

import os
import ssl
import statistics
import threading
import time
from datetime import UTC, datetime

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from tests.reconcilers.reconciler_processes import wait_for
from tests.webhook.load import read_response, request
from tests.webhook.webhook_helpers import Server


def seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment variable ``name``, else ``default``."""
    return float(os.environ.get(name) or default)


def rise(samples: list[tuple[float, float]]) -> float:
    """How much the least-squares line through ``samples`` rises over their time span."""
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    var = sum((t - mt) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    slope = sum((t - mt) * (v - mv) for t, v in samples) / var
    return slope * (samples[-1][0] - samples[0][0])


def grows(samples: list[float]) -> float:
    """Relative growth of the median of the last third over the median of the first third."""
    third = max(1, len(samples) // 3)
    first, last = statistics.median(samples[:third]), statistics.median(samples[-third:])
    return (last - first) / first if first else 0.0


# Bodies that must be refused, sent now and then beside the real reviews.
BAD: list[tuple[bytes, int]] = [
    (request("/validate", b"{not json"), 400),
    (request("/validate", b"[" * 5000 + b"]" * 5000), 400),
    (request("/validate", b'{"kind":"AdmissionReview"}'), 400),
    (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 999999999\r\n\r\n",
        413,
    ),
    (request("/validate", b"{}", "Content-Type: text/plain\r\n"), 415),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
]


def bad_input_loop(server: Server, stop: threading.Event, errors: list[str], limit: float) -> None:
    """Send :data:`BAD` in turn, one connection each, until ``stop`` or ``limit`` seconds."""
    ends = time.monotonic() + limit
    i = 0
    while not stop.is_set() and time.monotonic() < ends:
        raw, code = BAD[i % len(BAD)]
        i += 1
        try:
            with server.connect(timeout=10) as tls:
                tls.sendall(raw)
                status = read_response(tls)[0]
            if status != code:
                errors.append(f"{raw[:40]!r}: {status}, expected {code}")
        except (OSError, ssl.SSLError) as exc:
            errors.append(f"{raw[:40]!r}: {type(exc).__name__}: {exc}")
        stop.wait(0.1)


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_targets(kube: KubeClient, count: int) -> None:
    """SyncTargets ``st-00`` ... for the heartbeats of :class:`HeartbeatLoad`."""
    for i in range(count):
        kube.create(
            SYNCTARGETS,
            {
                "apiVersion": "workload.kcp.io/v1alpha1",
                "kind": "SyncTarget",
                "metadata": {"name": f"st-{i:02d}"},
            },
        )


class HeartbeatLoad:
    """Syncer heartbeats on ``targets`` SyncTargets every 5 s, and churn (SyncTargets created and
    deleted in turn), in one thread that stops by itself at ``until``."""

    def __init__(self, kube: KubeClient, until: float, targets: int) -> None:
        self.kube, self.until, self.targets = kube, until, targets
        self.errors: list[str] = []
        self.rounds = 0
        self.thread = threading.Thread(target=self.run, name="soak-load", daemon=True)

    def run(self) -> None:
        while time.monotonic() < self.until:
            try:
                for i in range(self.targets):
                    self.kube.merge_patch(
                        SYNCTARGETS,
                        f"st-{i:02d}",
                        {"status": {"lastSyncerHeartbeatTime": stamp()}},
                        subresource="status",
                    )
                churn = f"churn-{self.rounds % 4}"
                if self.rounds % 8 < 4:
                    body = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget"}
                    self.kube.create(SYNCTARGETS, {**body, "metadata": {"name": churn}})
                else:
                    self.kube.delete(SYNCTARGETS, churn)
            except Exception as exc:  # kept and asserted on at the end
                self.errors.append(repr(exc))
            self.rounds += 1
            time.sleep(5.0)


def still_reconciling(kube: KubeClient) -> None:
    """At the end of a soak the reconciler still works: a new SyncTarget gets its key label."""
    kube.create(
        SYNCTARGETS,
        {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "last"}},
    )
    wait_for(
        lambda: (
            "internal.workload.kcp.io/key" in (kube.get(SYNCTARGETS, "last")["metadata"].get("labels") or {})
        ),
        30,
        "the reconciler stopped reconciling",
    )
