"""The quota race's pieces: an apiserver with one FederatedQuota, two webhook processes sharing it.

Used by the race test and by its fault version (webhook workers killed during the creates).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.testing.crds import crd
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, Server, start_server, stop_server

LIMIT, CREATES = 50, 200
QUOTA_PATH = "/apis/tmc.kcp.io/v1alpha1/namespaces/default/federatedquotas/team-a"


@contextmanager
def quota_api(kind: str) -> Iterator[Any]:
    """A fake (``kind="fake"``) or real apiserver holding the FederatedQuota, its use reset to 0."""
    if kind == "fake":
        from kcp_tmc.testing import FakeAPIServer

        # Each create holds a worker while the webhook is called, and the webhook's reservation
        # needs another: more workers than concurrent clients, as a real apiserver has.
        server: Any = FakeAPIServer(workers=64)
    else:
        from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer

        try:
            server = RealAPIServer()
        except EnvtestUnavailable as exc:
            pytest.skip(str(exc))
    with server:
        server.install_crd(crd("federatedquotas.tmc.kcp.io"))
        # The ServiceAccount admission of a real apiserver wants the namespace's default account.
        server.http("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "default"}})
        quota = {
            "apiVersion": "tmc.kcp.io/v1alpha1",
            "kind": "FederatedQuota",
            "metadata": {"name": "team-a", "namespace": "default"},
            "spec": {"overall": {"requests.cpu": str(LIMIT)}},
        }
        assert server.http("POST", QUOTA_PATH.rsplit("/", 1)[0], quota).status == 201
        set_used(server, "0")
        yield server


@contextmanager
def quota_webhooks(api: Any, tmp: Path, workers: int = 1) -> Iterator[list[Server]]:
    """Two ``tmc-webhook`` processes, each the quota webhook of one shard of pods."""
    certs = tmp / "certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, ips=["127.0.0.1"])
    servers: list[Server] = []
    try:
        for _ in range(2):
            servers.append(
                start_server(tmp, certs, "--workers", str(workers), "--kubeconfig", str(api.kubeconfig_path))
            )
        register(api, servers)
        yield servers
    finally:
        for server in servers:
            stop_server(server)


def set_used(api: Any, used: str) -> None:
    for _ in range(20):
        stored = api.http("GET", QUOTA_PATH).json()
        stored["status"] = {"overall": stored["spec"]["overall"], "overallUsed": {"requests.cpu": used}}
        if api.http("PUT", f"{QUOTA_PATH}/status", stored).status == 200:
            return
    raise AssertionError("cannot reset the quota's status")


def used_now(api: Any) -> str:
    return str(api.http("GET", QUOTA_PATH).json()["status"]["overallUsed"]["requests.cpu"])


def register(api: Any, servers: list[Server]) -> None:
    ca = base64.b64encode((servers[0].certs / "ca.crt").read_bytes()).decode()
    rule = {
        "apiGroups": [""],
        "apiVersions": ["v1"],
        "operations": ["CREATE", "UPDATE"],
        "resources": ["pods"],
        "scope": "Namespaced",
    }
    hooks = [
        {
            "name": f"quota-{shard}.tmc.kcp.io",
            "clientConfig": {"url": f"{server.url}/validate/quota-enforcement", "caBundle": ca},
            "rules": [rule],
            "objectSelector": {"matchLabels": {"shard": shard}},
            # Reservations are side effects, never made on dry runs.
            "sideEffects": "NoneOnDryRun",
            "admissionReviewVersions": ["v1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
        }
        for shard, server in zip("ab", servers, strict=True)
    ]
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "tmc-quota"},
        "webhooks": hooks,
    }
    reply = api.http("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", config)
    assert reply.status == 201, reply.body
    wait_until_both_see(api, "0")


def pod(name: str, shard: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"shard": shard}},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": "1"}}}]},
    }


def wait_until_both_see(api: Any, used: str) -> None:
    """Until a dry-run create passes each webhook: both caches show the room (a real apiserver also
    loads the configuration asynchronously)."""
    deadline = time.monotonic() + 30
    for shard in "ab":
        while True:
            reply = api.http(
                "POST", "/api/v1/namespaces/default/pods?dryRun=All", pod(f"probe-{shard}", shard)
            )
            if reply.status == 201:
                break
            assert time.monotonic() < deadline, f"shard {shard} never admitted a dry run: {reply.body!r}"
            time.sleep(0.1)
    assert used_now(api) == used  # a dry run reserves nothing


def create(api: Any, index: int) -> tuple[int, str]:
    reply = api.http("POST", "/api/v1/namespaces/default/pods", pod(f"p{index}", "ab"[index % 2]), timeout=30)
    message = ""
    if reply.status != 201:
        message = json.loads(reply.body).get("message", "")
    return reply.status, message


def pods_now(api: Any) -> list[dict[str, Any]]:
    """The pods the apiserver holds."""
    items: list[dict[str, Any]] = api.http("GET", "/api/v1/namespaces/default/pods").json()["items"]
    return items


def reset(api: Any) -> None:
    """Every pod deleted and the quota's use back to 0, as the quota manager would then report."""
    for item in pods_now(api):
        reply = api.http("DELETE", f"/api/v1/namespaces/default/pods/{item['metadata']['name']}")
        assert reply.status in (200, 202), reply.body
    set_used(api, "0")
    wait_until_both_see(api, "0")
