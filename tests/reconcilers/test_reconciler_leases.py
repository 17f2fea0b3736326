"""LeaseCoordinator rounds against the fake apiserver, with a controllable clock."""

from __future__ import annotations

import re

import pytest

from kcp_tmc.reconcilers.leases import LEASES, LeaseConfig, LeaseCoordinator, StaticOwnership, partition_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def coordinator(kube, identity: str, clock: Clock, partitions: int = 4) -> LeaseCoordinator:
    config = LeaseConfig(
        namespace="default",
        identity=identity,
        partitions=partitions,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
    )
    return LeaseCoordinator(kube, config, clock=clock)


def holders(kube) -> dict[str, str]:
    return {
        lease["metadata"]["name"]: (lease.get("spec") or {}).get("holderIdentity") or ""
        for lease in kube.list(LEASES, namespace="default")[0]
    }


def test_partition_of_is_stable_and_spread():
    assert partition_of("6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g", 12) == partition_of(
        "6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g", 12
    )
    assert partition_of("anything", 1) == 0
    counts = [0] * 12
    for i in range(1200):
        counts[partition_of(f"key-{i}", 12)] += 1
    assert min(counts) > 60


def test_config_validation():
    with pytest.raises(ValueError, match=r"--partitions must be >= 1 \(0\)"):
        LeaseConfig(namespace="d", identity="a", partitions=0)
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        LeaseConfig(namespace="d", identity="a", lease_duration=10, renew_deadline=10)


def test_single_replica_takes_everything_and_renews(kube):
    clock = Clock()
    a = coordinator(kube, "a", clock)
    a.tick()
    assert a.owned() == frozenset(range(4))
    assert holders(kube) == {
        "tmc-reconciler-replica-a": "a",
        **{f"tmc-reconciler-partition-{i}": "a" for i in range(4)},
    }
    with a.writing(2) as allowed:
        assert allowed
    # Without a renewal for the renew deadline, writing stops at once (even before the next round).
    clock.now += 10
    assert not a.may_write(0)
    assert a.owned() == frozenset()


def test_second_replica_gets_a_fair_share_and_expired_leases_are_taken_over(kube):
    clock = Clock()
    a, b = coordinator(kube, "a", clock), coordinator(kube, "b", clock)
    a.tick()
    b.tick()  # sees a's presence and 4 held partitions: live 2, share 2, none free yet
    assert b.owned() == frozenset()
    a.tick()  # a now counts 2 live replicas and hands back 2 partitions
    assert len(a.owned()) == 2 and a.live_replicas == 2
    b.tick()
    assert len(b.owned()) == 2 and not (a.owned() & b.owned())

    # a dies: its leases stop changing; b takes them once they have been unchanged for 15 s.
    taken_by_a = a.owned()
    clock.now += 5
    b.tick()
    assert b.owned().isdisjoint(taken_by_a)
    clock.now += 11
    b.tick()
    assert b.owned() == frozenset(range(4))
    assert b.live_replicas == 1


def test_conflicting_renewal_loses_the_partition(kube):
    clock = Clock()
    a = coordinator(kube, "a", clock, partitions=1)
    a.tick()
    lease = kube.get(LEASES, "tmc-reconciler-partition-0", namespace="default")
    lease["spec"]["holderIdentity"] = "intruder"
    kube.replace(LEASES, lease)
    a.tick()
    assert a.owned() == frozenset()
    assert not a.may_write(0)


def test_stop_releases_everything(kube):
    clock = Clock()
    a = coordinator(kube, "a", clock, partitions=2)
    a.tick()
    a.stop(release=True)
    assert holders(kube) == {"tmc-reconciler-partition-0": "", "tmc-reconciler-partition-1": ""}
    assert a.owned() == frozenset()


def test_list_failure_keeps_ownership_until_the_deadline(api, kube):
    clock = Clock()
    a = coordinator(kube, "a", clock, partitions=1)
    a.tick()
    api.faults.down_for(5)
    clock.now += 5
    a.tick()
    assert a.owned() == frozenset({0})
    clock.now += 6
    a.tick()
    assert a.owned() == frozenset()


def test_static_ownership():
    static = StaticOwnership(3)
    assert static.owned() == frozenset({0, 1, 2}) and static.may_write(7)
    with static.writing(1) as allowed:
        assert allowed


def test_a_restart_with_the_same_identity_renews_its_leases_at_once(kube):
    clock = Clock()
    first = coordinator(kube, "pod-0", clock, partitions=2)
    first.tick()
    restarted = coordinator(kube, "pod-0", clock, partitions=2)
    restarted.tick()
    assert restarted.owned() == frozenset({0, 1})


@pytest.mark.parametrize(
    ("identity", "name"),
    [
        ("a", "tmc-reconciler-replica-a"),
        ("pod-7.example", "tmc-reconciler-replica-pod-7.example"),
        ("vm_371d7665", "tmc-reconciler-replica-vm-371d7665-"),
        ("Node_A", "tmc-reconciler-replica-node-a-"),
        ("__", "tmc-reconciler-replica-replica-"),
    ],
)
def test_the_presence_lease_name_is_a_valid_object_name(identity, name):
    # kube-apiserver refused tmc-reconciler-replica-vm_371d7665 (the default identity has a "_").
    lease = LeaseConfig(namespace="d", identity=identity).presence_lease
    assert lease == name or (name.endswith("-") and lease.startswith(name) and len(lease) == len(name) + 8)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", lease)
    assert (
        LeaseConfig(namespace="d", identity="vm-1").presence_lease
        != LeaseConfig(namespace="d", identity="vm_1").presence_lease
    )
