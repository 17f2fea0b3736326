"""What the engine costs per review on top of the built-in policies themselves (``-m bench``).

Measured in CPU time of the process (all threads), best of several rounds, so that other load on
the machine disturbs it little.  Run with ``pytest -m bench tests/policies/test_engine_overhead.py -s``.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

import pytest

from kcp_tmc.policies import PolicyRequest
from kcp_tmc.policies.engine import Engine
from kcp_tmc.policies.plugins import load_builtins
from kcp_tmc.policies.policy import EMPTY_LOOKUP
from kcp_tmc.policies.registry import Registry
from kcp_tmc.policies.reviews import make_request

pytestmark = pytest.mark.bench

ROUNDS = 5
NUMBER = 3000

SYNC_TARGET_OBJ: dict[str, Any] = {
    "apiVersion": "workload.kcp.io/v1alpha1",
    "kind": "SyncTarget",
    "metadata": {"name": "us-west1", "annotations": {"kcp.io/cluster": "root:org:ws"}},
    "spec": {
        "unschedulable": False,
        "supportedAPIExports": [{"export": "kubernetes"}, {"export": "kubernetes", "path": "root:compute"}],
        "cells": {"region": "us-west1"},
    },
    "status": {
        "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
        "allocatable": {"cpu": "7500m", "memory": "30Gi"},
    },
}


def cpu_us(func: Callable[[], object]) -> float:
    """Best CPU time of one call, in microseconds."""
    timer = timeit.Timer(func, timer=time.process_time)
    return min(timer.repeat(repeat=ROUNDS, number=NUMBER)) / NUMBER * 1e6


def test_engine_overhead_on_the_builtins() -> None:
    registry = Registry()
    load_builtins(registry)
    request = make_request(SYNC_TARGET_OBJ)
    inline = Engine(registry, isolation="inline")
    threaded = Engine(registry)
    plan = inline.select(request)
    assert plan, "no built-in policy handles a SyncTarget CREATE"

    def raw() -> None:
        for policy in plan:
            policy.func(
                PolicyRequest(
                    request=request,
                    object=SYNC_TARGET_OBJ,
                    old_object=None,
                    operation="CREATE",
                    sub_resource="",
                    dry_run=False,
                    user=request["userInfo"],
                    cluster="root:org:ws",
                    lookup=EMPTY_LOOKUP,
                    settings={},
                )
            )

    try:
        policies_alone = cpu_us(raw)
        no_deadline = cpu_us(lambda: inline.evaluate(request).to_response("u", mutating=True))
        with_thread = cpu_us(
            lambda: threaded.evaluate(request, deadline=time.monotonic() + 10).to_response("u", mutating=True)
        )
    finally:
        threaded.close()
    print(
        f"\npolicies alone {policies_alone:.1f} us; through the engine {no_deadline:.1f} us "
        f"(overhead {no_deadline - policies_alone:.1f} us); with a deadline on a pool thread "
        f"{with_thread:.1f} us (hand-over {with_thread - no_deadline:.1f} us)"
    )
    # Generous bounds: this guards against a regression by an order of magnitude, not noise.
    assert no_deadline - policies_alone < 100
    assert with_thread - no_deadline < 200
