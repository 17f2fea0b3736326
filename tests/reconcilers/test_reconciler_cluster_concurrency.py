"""Fifty member clusters, five of which stop answering: the others do not wait for them.

Every member cluster is its own fake apiserver.  The five that fail accept connections and read the
requests, then never answer (the fake's latency fault with an hour's delay), which is what a member
cluster behind a dead load balancer or a stuck apiserver looks like to a client.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.cluster import ClusterController
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.resources import CLUSTERS
from kcp_tmc.reconcilers.synctarget import SyncTargetController
from kcp_tmc.testing import FakeAPIServer
from tests.reconcilers.reconciler_processes import add_member_cluster, ready_of

READYZ_TIMEOUT = 2.0  # at least; raised to 4 healthy cycles on a slow (loaded) machine


#: Members -> how many of them fall silent: 4 of 20 in ``make test``; the 5 of 50 of
#: docs/reliability.md under ``make chaos``.
SILENT_OF = {20: 4, 50: 5}


@pytest.fixture(params=[20, pytest.param(50, marks=pytest.mark.chaos)], ids=str)
def members(
    request: pytest.FixtureRequest, kube: KubeClient, tmp_path: Path
) -> Iterator[list[FakeAPIServer]]:
    count = request.param
    with ExitStack() as stack:
        servers = [stack.enter_context(FakeAPIServer()) for _ in range(count)]
        for index, server in enumerate(servers):
            add_member_cluster(kube, server, tmp_path, f"m{index:02d}")
        yield servers


def timed_cycles(engine: Engine, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        assert engine.run_cycle()
        out.append(time.perf_counter() - started)
    return out


def test_silent_members_do_not_stall_the_others(kube, members):
    clusters = ClusterController(import_period=3600, heartbeat_interval=3600, readyz_timeout=READYZ_TIMEOUT)
    engine = Engine(kube, [clusters, SyncTargetController(shard_urls=["https://vw.example:6443/"])])
    try:
        for _ in range(8):
            assert engine.run_cycle()
            if engine.settled:
                break
        assert engine.settled
        assert all(ready_of(c)["status"] == "True" for c in kube.list(CLUSTERS)[0])
        healthy_cycles = timed_cycles(engine, 5)
        # A cycle that waited for a silent member would then take at least 4 healthy ones.
        timeout = clusters.readyz_timeout = max(READYZ_TIMEOUT, 4 * max(healthy_cycles))

        silent_count = SILENT_OF[len(members)]
        silent = {f"m{index:02d}" for index in range(0, len(members), len(members) // silent_count)}
        for name in silent:
            members[int(name[1:])].faults.latency(3600)
        # Cycle on for longer than the readyz timeout: the silent members' reconciles run out of time
        # in the background and write their status themselves, while the cycles go on without them.
        faulty_cycles: list[float] = []
        deadline = time.monotonic() + timeout + 30
        while True:
            faulty_cycles += timed_cycles(engine, 1)
            states = {c["metadata"]["name"]: ready_of(c) for c in kube.list(CLUSTERS)[0]}
            if all(states[name]["status"] == "False" for name in silent) and len(faulty_cycles) >= 5:
                break
            assert time.monotonic() < deadline, states
        faulty_cycles += timed_cycles(engine, 3)

        for name, ready in states.items():
            if name in silent:
                assert (ready["reason"], ready["severity"]) == ("ClusterNotReady", "Error"), ready
                assert ready["message"].startswith("Error getting /readyz: GET https://127.0.0.1:")
                assert "timed out" in ready["message"], ready
            else:
                assert ready["status"] == "True", (name, ready)
        baseline = statistics.median(healthy_cycles)
        print(f"cycle seconds: healthy {healthy_cycles}, with {silent_count} silent members {faulty_cycles}")
        # Generous but real: a cycle that waited for a silent member would take the readyz timeout,
        # at least four healthy cycles; typical cycles stay near the healthy ones.  (One cycle of a
        # loaded machine may take three healthy ones: that is no wait for a member.)
        assert statistics.median(faulty_cycles) <= 2 * baseline, (healthy_cycles, faulty_cycles)
        assert max(faulty_cycles) < timeout, (timeout, healthy_cycles, faulty_cycles)
    finally:
        for server in members:
            server.faults.clear()
        engine.close()
        clusters.close()
