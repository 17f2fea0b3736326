"""Property tests of the quota arithmetic.

Reservations never go negative nor past the limit; change is antisymmetric.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.policies.keys import state_label
from kcp_tmc.policies.kinds import FEDERATED_QUOTA
from kcp_tmc.policies.policy import Reservation
from kcp_tmc.policies.quantities import Quantity
from kcp_tmc.policies.quota import apply_reservation, check, federated_view
from kcp_tmc.policies.usage import change, usage_of

RESOURCES = ("cpu", "limits.memory", "pods")
milli = st.integers(min_value=0, max_value=10_000).map(lambda m: Quantity(m, -3))
signed = st.integers(min_value=-10_000, max_value=10_000).map(lambda m: Quantity(m, -3))


def quota(hard: dict[str, Quantity], used: dict[str, Quantity]) -> dict[str, Any]:
    return {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "FederatedQuota",
        "metadata": {"name": "q", "namespace": "default", "resourceVersion": "1"},
        "spec": {"overall": {k: str(v) for k, v in hard.items()}},
        "status": {"overallUsed": {k: str(v) for k, v in used.items()}},
    }


@settings(max_examples=200, deadline=None)
@given(
    hard=st.fixed_dictionaries(dict.fromkeys(RESOURCES, milli)),
    used=st.fixed_dictionaries(dict.fromkeys(RESOURCES, milli)),
    delta=st.dictionaries(st.sampled_from(RESOURCES), signed),
)
def test_a_reservation_never_makes_use_negative_nor_exceeds_where_it_grows(
    hard: dict[str, Quantity], used: dict[str, Quantity], delta: dict[str, Quantity]
) -> None:
    reservation = Reservation("p", FEDERATED_QUOTA, "default", "q", delta)
    status, denial = apply_reservation(quota(hard, used), reservation)
    grows_past = any(v.sign > 0 and used[k] + v > hard[k] for k, v in delta.items())
    assert (status is None) == grows_past == (denial is not None)
    if status is not None:
        after = {k: Quantity(0) + _q(v) for k, v in status["overallUsed"].items()}
        for name in RESOURCES:
            assert after[name].sign >= 0
            expected = used[name] + delta.get(name, Quantity(0))
            assert after[name] == (expected if expected.sign >= 0 else Quantity(0))


def _q(text: str) -> Quantity:
    from kcp_tmc.policies.quantities import parse_quantity

    return parse_quantity(text)


@settings(max_examples=100, deadline=None)
@given(
    limit=st.integers(min_value=0, max_value=20),
    requests=st.lists(st.integers(min_value=0, max_value=5), max_size=30),
)
def test_admitting_in_turn_never_exceeds_the_limit(limit: int, requests: list[int]) -> None:
    obj = quota({"cpu": Quantity(limit)}, {"cpu": Quantity(0)})
    for amount in requests:
        denial, reservation = check(
            federated_view(obj), {"requests.cpu": Quantity(amount)}, {}, policy="p", path=""
        )
        if reservation is None:
            continue
        status, late = apply_reservation(obj, reservation)
        assert denial is None and late is None and status is not None
        obj["status"] = status
    used = _q(obj["status"]["overallUsed"]["cpu"])
    assert Quantity(0) <= used <= Quantity(limit)
    assert used == Quantity(_greedy(limit, requests))


def _greedy(limit: int, requests: list[int]) -> int:
    total = 0
    for amount in requests:
        if amount and total + amount <= limit:
            total += amount
    return total


def pods(cpu_milli: int, replicas: int, targets: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "labels": {state_label(t): "Sync" for t in targets}},
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": f"{cpu_milli}m"}}}]}
            },
        },
    }


workloads = st.builds(
    pods,
    st.integers(min_value=0, max_value=4000),
    st.integers(min_value=0, max_value=5),
    st.lists(st.sampled_from(["t1", "t2", "t3"]), unique=True, max_size=3),
)


@settings(max_examples=150, deadline=None)
@given(a=workloads, b=workloads)
def test_change_is_antisymmetric(a: dict[str, Any], b: dict[str, Any]) -> None:
    ua = usage_of(a, "apps", "Deployment", "deployments")
    ub = usage_of(b, "apps", "Deployment", "deployments")
    forward, forward_targets = change(ua, ub)
    backward, backward_targets = change(ub, ua)
    assert forward == {k: -v for k, v in backward.items()}
    assert forward_targets == {t: {k: -v for k, v in d.items()} for t, d in backward_targets.items()}
    assert change(ua, ua) == ({}, {})
