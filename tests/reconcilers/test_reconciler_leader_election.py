"""Leader election and partitions with real ``tmc-reconciler`` processes on one fake apiserver."""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.leases import LEASES, partition_of
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from tests.reconcilers.reconciler_processes import Reconciler, kcp_for_replicas, start_replica, wait_for

LEASE_DURATION = 2.0
RETRY = 0.25
KEY_LABEL = "internal.workload.kcp.io/key"
NAMES = ("a", "b", "c")


@pytest.fixture
def server():
    with kcp_for_replicas(NAMES) as api:
        yield api


@pytest.fixture
def admin(server):
    with KubeClient.from_kubeconfig_file(server.kubeconfig_path, timeout=5.0) as client:
        yield client


def start(server, tmp_path, name: str, *args: str) -> Reconciler:
    return start_replica(server, tmp_path, name, *args)


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def create_targets(admin, names) -> None:
    for name in names:
        admin.create(
            SYNCTARGETS,
            {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": name}},
        )
        admin.merge_patch(
            SYNCTARGETS, name, {"status": {"lastSyncerHeartbeatTime": now_text()}}, subresource="status"
        )


def labelled(admin, names) -> bool:
    items = {st["metadata"]["name"]: st for st in admin.list(SYNCTARGETS)[0]}
    return all(KEY_LABEL in (items.get(n, {}).get("metadata", {}).get("labels") or {}) for n in names)


def target_writers(server) -> dict[str, set[str]]:
    writers: dict[str, set[str]] = defaultdict(set)
    for record in list(server.write_log):
        if record.resource.split("/")[0] == "synctargets" and record.user.startswith("replica-"):
            writers[record.name].add(record.user)
    return writers


def holders(admin) -> dict[str, str]:
    leases, _ = admin.list(LEASES, namespace="default")
    return {
        lease["metadata"]["name"]: (lease.get("spec") or {}).get("holderIdentity") or ""
        for lease in leases
        if "-partition-" in lease["metadata"]["name"]
    }


def test_two_processes_only_the_leader_writes_and_failover(server, admin, tmp_path):
    names = [f"st-{i}" for i in range(5)]
    create_targets(admin, names)
    procs = {n: start(server, tmp_path, n, "--leader-elect") for n in ("a", "b")}
    try:
        wait_for(lambda: labelled(admin, names), 15, "the SyncTargets were not reconciled")
        leader = wait_for(lambda: holders(admin).get("tmc-reconciler-partition-0"), 5, "no leader")
        follower = "b" if leader == "a" else "a"
        time.sleep(1.0)  # a few more cycles: the follower must still not write
        writers = target_writers(server)
        assert set().union(*writers.values()) == {f"replica-{leader}"}

        # /healthz, /readyz and /metrics of the leader.
        port = procs[leader].metrics_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert "tmc_reconciler_leader 1.0" in metrics
        assert 'tmc_reconciler_writes_total{controller="synctarget"}' in metrics
        assert "tmc_reconciler_cycle_duration_seconds_count" in metrics
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                assert response.status == 200 and response.read() == b"ok\n"
        follower_port = procs[follower].metrics_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{follower_port}/metrics", timeout=5) as response:
            assert "tmc_reconciler_leader 0.0" in response.read().decode()

        # Kill the leader. The follower judges expiry as client-go does (the record unchanged for the
        # lease duration on its own clock), so it holds the lease at most one lease duration plus two
        # retry periods after the leader's last renewal, which was at most one retry period before the kill.
        procs[leader].stop("KILL")
        killed_at = time.monotonic()
        wait_for(lambda: holders(admin)["tmc-reconciler-partition-0"] == follower, 10, "no failover", 0.02)
        took = time.monotonic() - killed_at
        assert took < LEASE_DURATION + 2 * RETRY + 0.3, took
        create_targets(admin, ["after-failover"])
        wait_for(lambda: labelled(admin, ["after-failover"]), 5, "the new leader does not reconcile")
        assert target_writers(server)["after-failover"] == {f"replica-{follower}"}
        assert holders(admin)["tmc-reconciler-partition-0"] == follower

        # SIGTERM: exit 0 and the lease is handed back.
        assert procs[follower].stop("TERM") == 0
        assert holders(admin)["tmc-reconciler-partition-0"] == ""
        assert any(line.get("message") == "released partition lease" for line in procs[follower].lines())
    finally:
        for proc in procs.values():
            proc.stop("KILL")


def test_three_processes_split_twelve_partitions_and_take_over(server, admin, tmp_path):
    procs = {n: start(server, tmp_path, n, "--partitions=12") for n in NAMES}
    try:

        def balanced() -> dict[str, str] | None:
            held = holders(admin)
            counts = defaultdict(int)
            for holder in held.values():
                counts[holder] += 1
            return (
                held
                if len(held) == 12 and sorted(counts.values()) == [4, 4, 4] and "" not in counts
                else None
            )

        held = wait_for(balanced, 20, "the partitions were not split 4/4/4")
        names = [f"st-{i:02d}" for i in range(30)]
        create_targets(admin, names)
        wait_for(lambda: labelled(admin, names), 15, "the SyncTargets were not reconciled")
        writers = target_writers(server)
        for name in names:
            partition = partition_of(sync_target_key("root", name), 12)
            assert writers[name] == {f"replica-{held[f'tmc-reconciler-partition-{partition}']}"}, name

        # Kill one replica: the two others take its four partitions over, 6 each.
        victim = held["tmc-reconciler-partition-0"]
        procs[victim].stop("KILL")
        killed_at = time.monotonic()

        def rebalanced() -> dict[str, str] | None:
            now = holders(admin)
            counts = defaultdict(int)
            for holder in now.values():
                counts[holder] += 1
            return now if victim not in counts and sorted(counts.values()) == [6, 6] else None

        after = wait_for(rebalanced, 15, "the partitions of the killed replica were not taken over")
        assert time.monotonic() - killed_at < LEASE_DURATION + 4 * RETRY + 2.0
        server.write_log.reset()
        # Ask for work on every object again: remove the key labels.
        for name in names:
            admin.merge_patch(SYNCTARGETS, name, {"metadata": {"labels": {KEY_LABEL: None}}})
        wait_for(lambda: labelled(admin, names), 15, "not reconciled after the takeover")
        writers = target_writers(server)
        for name in names:
            partition = partition_of(sync_target_key("root", name), 12)
            assert writers[name] == {f"replica-{after[f'tmc-reconciler-partition-{partition}']}"}, name
    finally:
        for proc in procs.values():
            proc.stop("KILL")
