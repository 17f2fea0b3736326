"""coordination.k8s.io/v1 Leases, as leader election uses them."""

from __future__ import annotations

from typing import Any

from conformance_kit import Backend, failure

MICRO_TIME = "2024-01-01T00:00:00.000000Z"


def lease(name: str, holder: str) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": MICRO_TIME,
            "renewTime": MICRO_TIME,
            "leaseTransitions": 0,
        },
    }


def test_lease_acquire_renew_and_lose(backend: Backend, namespace: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    created = backend.http("POST", path, lease("leader", "a"))
    assert created.status == 201
    body = created.body
    assert body["spec"]["holderIdentity"] == "a"
    assert body["spec"]["renewTime"] == MICRO_TIME
    # Both candidates read the same version; the first write wins.
    renewed = {**body, "spec": {**body["spec"], "renewTime": "2024-01-01T00:00:10.000000Z"}}
    assert backend.http("PUT", f"{path}/leader", renewed).status == 200
    takeover = {**body, "spec": {**body["spec"], "holderIdentity": "b", "leaseTransitions": 1}}
    lost = backend.http("PUT", f"{path}/leader", takeover)
    assert lost.status == 409
    assert lost.body == failure(
        409,
        "Conflict",
        'Operation cannot be fulfilled on leases.coordination.k8s.io "leader": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": "leader", "group": "coordination.k8s.io", "kind": "leases"},
    )
    second = backend.http("POST", path, lease("leader", "b"))
    assert second.body == failure(
        409,
        "AlreadyExists",
        'leases.coordination.k8s.io "leader" already exists',
        {"name": "leader", "group": "coordination.k8s.io", "kind": "leases"},
    )
    assert backend.http("GET", f"{path}/leader").body["spec"]["holderIdentity"] == "a"
