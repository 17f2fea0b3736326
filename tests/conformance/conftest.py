"""Backends for the conformance suite: the fake API server always, a real kube-apiserver when available.

Every test in this folder takes the ``backend`` fixture and runs once per
backend.  The real pair (etcd + kube-apiserver from ``KUBEBUILDER_ASSETS``) is
skipped with a clear reason when the binaries are not there.  Both backends
live for the whole session; tests isolate themselves with the ``namespace``
fixture (a fresh namespace each) and unique names for cluster-scoped objects.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conformance_kit import ALICE_RULES, FAKE_WATCH_WINDOW, TOKENS, Backend, unique

from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer


def _fake_backend() -> Iterator[Backend]:
    from kcp_tmc.testing import FakeAPIServer

    with FakeAPIServer(tokens=TOKENS, rules=ALICE_RULES, watch_window=FAKE_WATCH_WINDOW) as api:
        yield Backend("fake", api, api.api_client())


def _real_backend() -> Iterator[Backend]:
    try:
        server = RealAPIServer(tokens=TOKENS)
    except EnvtestUnavailable as unavailable:
        pytest.skip(str(unavailable))
    with server as api:
        yield Backend("real", api, api.api_client())


@pytest.fixture(scope="session", params=["fake", "real"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The API server under test (``backend.kind`` is ``"fake"`` or ``"real"``)."""
    factory = _fake_backend if request.param == "fake" else _real_backend
    yield from factory()


@pytest.fixture
def namespace(backend: Backend) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    name = unique("conf")
    created = backend.http("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert created.status == 201, created.body
    yield name
    backend.http("DELETE", f"/api/v1/namespaces/{name}")


@pytest.fixture
def synctargets(backend: Backend) -> str:
    """The SyncTarget CRD, installed; returns the collection path."""
    backend.install("synctarget")
    return "/apis/workload.kcp.io/v1alpha1/synctargets"


@pytest.fixture
def widgets(backend: Backend, namespace: str) -> str:
    """The Widget CRD, installed; returns the collection path in the test's namespace."""
    backend.install("widget")
    return f"/apis/conformance.kcp.io/v1/namespaces/{namespace}/widgets"
