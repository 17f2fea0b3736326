"""Helpers of the conformance suite: the backend handle, raw HTTP, watch streams, object builders.

``backend.http()`` sends raw requests, so tests can assert exact status codes,
headers and ``Status`` bodies; ``backend.core`` & co. are the official client.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import urllib3
import yaml

from kcp_tmc.testing.crds import crd as tmc_crd

CRD_DIR = Path(__file__).parent / "crds"

#: Bearer tokens every backend knows, besides the admin's: (user, groups, uid).
TOKENS: dict[str, tuple[str, list[str], str]] = {
    "conformance-alice-token": ("alice", ["dev"], "alice-uid"),
    "conformance-bob-token": ("bob", [], "bob-uid"),
}
ALICE = "conformance-alice-token"
BOB = "conformance-bob-token"
#: Events the session's fake server keeps for watches (older resourceVersions get 410 Gone).
FAKE_WATCH_WINDOW = 200

#: What alice may do.  The fake takes it as its rule table; on the real server the
#: ``alice_rbac`` fixture grants the same through a ClusterRole and a binding.
ALICE_RULES = [
    {"user": "alice", "verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["configmaps"]}
]


def load_crd(name: str) -> dict[str, Any]:
    """A CRD by name: the chart's own CRDs (``synctarget``), or a test one from ``crds/``."""
    if name == "synctarget":
        return tmc_crd("synctargets.workload.kcp.io")
    loaded = yaml.safe_load((CRD_DIR / f"{name}.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def unique(prefix: str) -> str:
    """A name no other test uses (both backends live for the whole session)."""
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class Response:
    """A raw HTTP answer: status, headers and the body (decoded JSON when it is JSON)."""

    status: int
    headers: Mapping[str, str]
    raw: bytes

    @functools.cached_property
    def body(self) -> Any:
        """The decoded body (decoded once: edits to it stick)."""
        return json.loads(self.raw) if self.raw else None

    @property
    def warnings(self) -> list[str]:
        return [h for k, h in self.headers.items() if k.lower() == "warning"]


@dataclass
class Backend:
    """One API server under test and the ways to talk to it."""

    kind: str
    server: Any
    client: kubernetes.client.ApiClient
    installed: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return str(self.client.configuration.host)

    @property
    def core(self) -> kubernetes.client.CoreV1Api:
        return kubernetes.client.CoreV1Api(self.client)

    @property
    def apps(self) -> kubernetes.client.AppsV1Api:
        return kubernetes.client.AppsV1Api(self.client)

    @property
    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(self.client)

    def _headers(self, token: str | None) -> dict[str, str]:
        if token is not None:
            return {"Authorization": f"Bearer {token}"} if token else {}
        auth = self.client.configuration.auth_settings().get("BearerToken")
        return {"Authorization": auth["value"]} if auth else {}

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 15,
    ) -> Response:
        """One request; ``token=""`` sends none, ``None`` the admin's."""
        all_headers = {"Accept": "application/json", **self._headers(token), **(headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = content_type
        response = self.client.rest_client.pool_manager.request(
            method, self.url + path, body=data, headers=all_headers, timeout=timeout, retries=False
        )
        return Response(response.status, dict(response.headers), response.data)

    def watch(self, path: str, *, timeout: float = 10, token: str | None = None) -> WatchStream:
        """Opens ``path`` (which carries ``watch=true``) as a stream of events, on its own connection."""
        pool = urllib3.PoolManager(num_pools=1, **self.client.rest_client.pool_manager.connection_pool_kw)
        response = pool.request(
            "GET",
            self.url + path,
            headers={"Accept": "application/json", **self._headers(token)},
            preload_content=False,
            timeout=urllib3.Timeout(connect=5, read=timeout),
            retries=False,
        )
        return WatchStream(response, pool)

    def install(self, crd_name: str) -> dict[str, Any]:
        """Installs a CRD from ``crds/`` once per backend and waits until it is served."""
        crd = load_crd(crd_name)
        if crd_name not in self.installed:
            self.server.install_crd(crd)
            self.installed.add(crd_name)
        return crd

    def wait_for(self, check: Callable[[], Any], timeout: float = 10, what: str = "condition") -> Any:
        """Polls ``check`` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)


class WatchStream:
    """Line-delimited watch events from a streaming response."""

    def __init__(self, response: urllib3.BaseHTTPResponse, pool: urllib3.PoolManager) -> None:
        self.response = response
        self.pool = pool
        self.status = response.status
        self._buffer = b""
        self._chunks = response.stream(1024, decode_content=True) if response.status == 200 else iter(())
        self.ended = False

    def next(self) -> dict[str, Any] | None:
        """The next event, or ``None`` when the server ended the stream."""
        while b"\n" not in self._buffer:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.ended = True
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        if not line.strip():
            return self.next()
        event: dict[str, Any] = json.loads(line)
        return event

    def take(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` events (fails if the stream ends first)."""
        events: list[dict[str, Any]] = []
        for _ in range(count):
            event = self.next()
            assert event is not None, f"watch ended after {len(events)} events: {events}"
            events.append(event)
        return events

    def body(self) -> Any:
        return json.loads(self.response.data) if self.status != 200 else None

    def close(self) -> None:
        # An unfinished stream cannot go back to a pool: drop the connection with it.
        self.response.close()
        self.pool.clear()

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def failure(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``Status`` body the apiserver answers a refused request with."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        body["details"] = dict(details)
    body["code"] = code
    return body


def configmap(
    name: str, namespace: str, labels: Mapping[str, str] | None = None, **data: str
) -> dict[str, Any]:
    """A ConfigMap body."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": dict(data)}


def deployment(name: str, namespace: str, replicas: int = 1) -> dict[str, Any]:
    """A Deployment with two containers (``app`` and ``sidecar``)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "app", "image": "example.com/app:1"},
                        {"name": "sidecar", "image": "example.com/sidecar:1"},
                    ]
                },
            },
        },
    }


def synctarget(name: str, **spec: Any) -> dict[str, Any]:
    """A SyncTarget body."""
    body: dict[str, Any] = {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": name},
    }
    if spec:
        body["spec"] = spec
    return body


def fake_only(backend: Backend, why: str) -> None:
    """Skips on the real server: the feature only exists in the fake (instruments, faults)."""
    if backend.kind != "fake":
        pytest.skip(f"fake-only: {why}")
