"""A resource whose watch cache is still warming answers 429 with Retry-After; the engine comes back then.

kube-apiserver does this for the first moments after a CRD is established (seen on
v1.36 in the registration flow: the Cluster's first writes were refused with ``429
storage is (re)initializing`` and nothing retried them before the cycles ended).
"""

from __future__ import annotations

from kcp_tmc.reconcilers.client import ApiError, _error_from
from kcp_tmc.testing import FakeAPIServer
from tests.reconcilers.reconciler_processes import crds, register_and_converge


def test_a_warming_resource_is_retried_when_the_server_says() -> None:
    with FakeAPIServer() as kcp, FakeAPIServer() as physical:
        for crd in crds():
            kcp.install_crd(crd)

        def warming() -> None:
            kcp.faults.storage_initializing(1, "clusters", verbs=("patch",))

        waits = register_and_converge(kcp, physical, before_cycles=warming)
        # Retry-After: 1 sets the wait (the engine's own first backoff would be at most 0.5 s).
        assert any(0.5 < wait <= 1.0 for wait in waits), waits
        assert not kcp.faults.take_initializing("clusters", "patch"), "every injected 429 was answered"


def test_the_429_body_carries_retry_after_into_the_error() -> None:
    body = (
        b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
        b'"message":"storage is (re)initializing","reason":"TooManyRequests",'
        b'"details":{"retryAfterSeconds":1},"code":429}'
    )
    error = _error_from(429, body)
    assert isinstance(error, ApiError)
    assert (error.status, error.reason, error.message, error.retry_after) == (
        429,
        "TooManyRequests",
        "storage is (re)initializing",
        1.0,
    )
    assert _error_from(500, b'{"kind":"Status","reason":"InternalError"}').retry_after is None
