"""Fault: the quota race while gunicorn workers of both webhook processes are SIGKILLed.

200 creates through two ``tmc-webhook`` processes (two workers each) against a quota of 50, while a
killer thread SIGKILLs random workers.  A create whose webhook call died is refused by the
apiserver (``failurePolicy: Fail``); a reservation made by a worker killed before it answered
stays counted.  So: never more admitted than the quota, the pods stored are exactly the admitted
ones, ``status.overallUsed`` never reads below what was admitted (nor above the quota), and once
the quota manager recounts, it reads exactly what was admitted.  One
round in ``make test``; twenty under ``make chaos``.  On the fake API server always; through a
real kube-apiserver too when ``KUBEBUILDER_ASSETS`` is set.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.quota import QuotaController
from kcp_tmc.reconcilers.workloads import WorkloadUsage
from kcp_tmc.testing.crds import crd
from tests.procstats import children
from tests.webhook.quota_race import (
    CREATES,
    LIMIT,
    create,
    pods_now,
    quota_api,
    quota_webhooks,
    reset,
    used_now,
)
from tests.webhook.webhook_helpers import Server

WORKERS = 2
KILLS = 4  # per round, spread over the creates


@pytest.fixture(
    params=["fake", pytest.param("real", marks=[pytest.mark.realapi, pytest.mark.realapi_long])],
    scope="module",
)
def api(request: pytest.FixtureRequest) -> Iterator[Any]:
    with quota_api(request.param) as server:
        # The quota manager names the SyncTargets the use is on: it needs their API.
        server.install_crd(crd("synctargets.workload.kcp.io"))
        yield server


@pytest.fixture(scope="module")
def webhooks(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    with quota_webhooks(api, tmp_path_factory.mktemp("faults"), workers=WORKERS) as servers:
        yield servers


def wait_for_workers(servers: list[Server]) -> None:
    """Until each master has its full set of workers again (it replaces the killed ones)."""
    deadline = time.monotonic() + 30
    while any(len(children(s.proc.pid)) < WORKERS for s in servers):
        assert time.monotonic() < deadline, [children(s.proc.pid) for s in servers]
        time.sleep(0.05)


def killer(servers: list[Server], rng: random.Random, stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL ``KILLS`` random workers at random moments; ends by itself."""
    for _ in range(KILLS):
        if stop.wait(rng.uniform(0.05, 0.4)):
            return
        pids = children(rng.choice(servers).proc.pid)
        if pids:
            pid = rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)


def recompute(api: Any) -> int:
    """Quota-manager cycles over the apiserver until one has nothing left to do; the ``overallUsed``
    CPU it then reads.  A real apiserver may answer 429 with Retry-After while a watch cache
    (re)initializes: the manager retries when told, as it does in production."""
    with KubeClient.from_kubeconfig_file(api.kubeconfig_path, timeout=10.0) as kube:
        engine = Engine(kube, [QuotaController(workloads=WorkloadUsage())])
        deadline = time.monotonic() + 30
        while True:
            assert engine.run_cycle()
            if engine.settled:
                break
            assert time.monotonic() < deadline, "the quota manager never settled"
            time.sleep(0.2)
    return int(used_now(api))


def one_round(api: Any, servers: list[Server], seed: int) -> dict[str, int]:
    wait_for_workers(servers)
    rng = random.Random(seed)  # noqa: S311 - reproducible kill timings, not secrets
    stop, killed = threading.Event(), []
    thread = threading.Thread(target=killer, args=(servers, rng, stop, killed), daemon=True)
    thread.start()
    try:
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda i: create(api, i), range(CREATES)))
    finally:
        stop.set()
        thread.join(10)
    admitted = sum(1 for status, _ in answers if status == 201)
    used = int(used_now(api))
    stored = len(pods_now(api))
    figures = {"seed": seed, "killed": len(killed), "admitted": admitted, "used": used, "stored": stored}
    assert admitted <= LIMIT, figures
    assert stored == admitted, figures
    assert admitted <= used <= LIMIT, figures
    # The quota manager recounts the stored pods: the reservations of killed requests are released.
    recomputed = recompute(api)
    figures["recomputed"] = recomputed
    assert recomputed == admitted, figures
    for status, message in answers:
        if status != 201:
            assert status in (403, 500), (status, message)
            assert "exceeded quota: team-a" in message or "failed calling webhook" in message, message
    for server in servers:
        assert server.proc.poll() is None, server.logs()
    reset(api)
    return figures


@pytest.mark.slow
def test_worker_kills_never_admit_beyond_the_quota(api: Any, webhooks: list[Server]) -> None:
    figures = one_round(api, webhooks, seed=1)
    assert figures["killed"] >= 1, figures


@pytest.mark.chaos
@pytest.mark.timeout(1200)  # twenty rounds of 200 creates on two loaded cores
def test_worker_kills_never_admit_beyond_the_quota_20_rounds(api: Any, webhooks: list[Server]) -> None:
    rounds = []
    for seed in range(20):
        rounds.append(one_round(api, webhooks, seed=seed))
        print(rounds[-1], flush=True)  # the figures of the reliability table
    assert sum(r["killed"] for r in rounds) >= 20
