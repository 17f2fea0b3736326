"""Instruments and fault injection: only the fake has them (the real server is skipped with the reason)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator

import pytest
import urllib3
from conformance_kit import ALICE, Backend, configmap, failure, fake_only

MERGE_PATCH = "application/merge-patch+json"


@pytest.fixture
def fake(backend: Backend) -> Iterator[Backend]:
    fake_only(backend, "instruments and fault injection exist only in the fake server")
    backend.server.faults.clear()
    yield backend
    backend.server.faults.clear()


def test_request_and_write_counters(fake: Backend, namespace: str) -> None:
    counters = fake.server.counters
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    before_creates = counters.writes("create", "configmaps")
    before_lists = counters.requests("list", "configmaps")
    fake.http("POST", path, configmap("a", namespace))
    fake.http("POST", path, configmap("a", namespace))  # refused: counted as a request, not a write
    fake.http("GET", path)
    fake.http("PATCH", f"{path}/a", {"data": {"x": "1"}}, content_type=MERGE_PATCH)
    fake.http("POST", f"{path}?dryRun=All", configmap("dry", namespace))
    assert counters.writes("create", "configmaps") == before_creates + 1
    assert counters.requests("list", "configmaps") == before_lists + 1
    assert counters.writes("patch", "configmaps") >= 1


def test_write_log_records_the_user(fake: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    started = time.time()
    fake.http("POST", path, configmap("logged", namespace))
    record = [r for r in fake.server.write_log if r.name == "logged"][-1]
    assert record.verb == "create" and record.resource == "configmaps"
    assert record.user == "admin"
    assert started - 1 <= record.time <= time.time() + 1
    assert ALICE  # alice may not write configmaps, so her writes never appear
    assert not [r for r in fake.server.write_log.by("alice") if r.name == "logged"]


def test_error_rate_500_and_429(fake: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    fake.server.faults.error_rate(1.0, code=429, retry_after=7)
    throttled = fake.http("GET", path)
    assert throttled.status == 429
    assert throttled.headers.get("Retry-After") == "7"
    assert throttled.body["reason"] == "TooManyRequests"
    fake.server.faults.error_rate(1.0, code=500)
    failed = fake.http("GET", path)
    assert failed.status == 500 and failed.body["reason"] == "InternalError"
    fake.server.faults.clear()
    assert fake.http("GET", path).status == 200


def test_latency(fake: Backend, namespace: str) -> None:
    fake.server.faults.latency(0.3)
    started = time.monotonic()
    assert fake.http("GET", f"/api/v1/namespaces/{namespace}/configmaps").status == 200
    assert time.monotonic() - started >= 0.3


def test_forced_conflicts(fake: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    fake.http("POST", path, configmap("cm", namespace))
    fake.server.faults.conflict_next(1, "configmaps")
    conflict = fake.http("PATCH", f"{path}/cm", {"data": {"a": "1"}}, content_type=MERGE_PATCH)
    assert conflict.body == failure(
        409,
        "Conflict",
        'Operation cannot be fulfilled on configmaps "cm": the object has been modified; '
        "please apply your changes to the latest version and try again",
        {"name": "cm", "kind": "configmaps"},
    )
    assert fake.http("PATCH", f"{path}/cm", {"data": {"a": "1"}}, content_type=MERGE_PATCH).status == 200


def test_down_for_refuses_connections_then_recovers(fake: Backend, namespace: str) -> None:
    fake.server.faults.down_for(0.5)
    with pytest.raises(urllib3.exceptions.HTTPError):
        fake.http("GET", "/api", timeout=2)
    fake.wait_for(lambda: _reachable(fake), timeout=5, what="server back up")
    assert fake.http("GET", f"/api/v1/namespaces/{urllib.parse.quote(namespace)}").status == 200


def _reachable(backend: Backend) -> bool:
    try:
        return backend.http("GET", "/api", timeout=1).status == 200
    except urllib3.exceptions.HTTPError:
        return False
