"""Soak: a ``tmc-reconciler`` process cycling for a long time; its RSS, open fds and threads must not creep.

The load: SyncTargets whose syncers beat every few seconds, Push-mode Clusters on their own fake
member apiservers (heartbeats written by the Cluster controller), and churn (SyncTargets created and
deleted all the time), against one fake kcp apiserver.  Every minute the figures are printed; after the
warm-up (the first 5 minutes, or the first third of a shorter run) none may grow by more than 10%:
the median of the last third of the samples is compared with the median of the first third.

``TMC_SOAK_MINUTES`` sets the duration (default 30); ``TMC_SOAK_MINUTES=2 make soak`` is a short try.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.testing import FakeAPIServer
from tests.reconcilers.reconciler_processes import (
    Reconciler,
    add_member_cluster,
    crds,
    process_figures,
)
from tests.soak.soakkit import HeartbeatLoad, create_targets, grows, still_reconciling

pytestmark = [pytest.mark.soak, pytest.mark.timeout(0)]

MINUTES = float(os.environ.get("TMC_SOAK_MINUTES", "30"))
SAMPLE_EVERY = 10.0
TARGETS = 30
MEMBERS = 5
GROWTH = 0.10


def test_reconciler_soak(tmp_path: Path) -> None:
    duration = MINUTES * 60
    warmup = min(300.0, duration / 3)
    with ExitStack() as stack:
        kcp = stack.enter_context(FakeAPIServer())
        for crd in crds():
            kcp.install_crd(crd)
        kube = stack.enter_context(KubeClient.from_kubeconfig_file(kcp.kubeconfig_path, timeout=10.0))
        create_targets(kube, TARGETS)
        for i in range(MEMBERS):
            add_member_cluster(kube, stack.enter_context(FakeAPIServer()), tmp_path, f"member-{i}")
        proc = Reconciler(
            kcp.kubeconfig_path,
            tmp_path / "reconciler.log",
            "--shard=root=https://vw.example:6443/",
            "--poll-interval=1s",
            "--syncer-heartbeat-interval=5s",
        )
        started = time.monotonic()
        load = HeartbeatLoad(kube, started + duration, TARGETS)
        load.thread.start()
        samples: list[tuple[float, float, int, int]] = []
        try:
            proc.metrics_port()
            while time.monotonic() - started < duration:
                time.sleep(SAMPLE_EVERY)
                assert proc.process.poll() is None, "the reconciler exited"
                rss, threads, fds = process_figures(proc.process.pid)
                elapsed = time.monotonic() - started
                samples.append((elapsed, rss, threads, fds))
                if len(samples) % int(60 / SAMPLE_EVERY) == 0:
                    print(
                        f"minute {elapsed / 60:5.1f}: RSS {rss:6.1f} MiB, threads {threads}, fds {fds}",
                        flush=True,
                    )
            still_reconciling(kube)
        finally:
            load.until = 0
            load.thread.join(timeout=30)
            code = proc.stop("TERM")
        assert code == 0
        assert not load.errors, load.errors[:5]
        steady = [s for s in samples if s[0] >= warmup]
        assert len(steady) >= 3, f"too few samples after the warm-up ({len(steady)})"
        growth = {
            "RSS": grows([s[1] for s in steady]),
            "threads": grows([float(s[2]) for s in steady]),
            "fds": grows([float(s[3]) for s in steady]),
        }
        print(
            f"growth after the warm-up ({warmup:.0f} s): "
            + ", ".join(f"{k} {v:+.1%}" for k, v in growth.items())
        )
        for name, value in growth.items():
            assert value <= GROWTH, f"{name} grew by {value:.1%} after the warm-up"
