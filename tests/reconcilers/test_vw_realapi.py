"""The syncer virtual workspace in front of a real kube-apiserver, called with a ServiceAccount token.

Opt-in: needs ``KUBEBUILDER_ASSETS`` (a folder with ``etcd`` and ``kube-apiserver``); skipped otherwise.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kcp_tmc.policies.keys import state_label, sync_target_key
from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.virtualworkspace.server import VirtualWorkspaceServer, WorkspaceOptions
from kcp_tmc.testing.tls import serving_certs
from tests.reconcilers.reconciler_processes import crds
from tests.reconcilers.vw_env import CONFIGMAPS, VWEnv

pytestmark = [
    pytest.mark.realapi,
    pytest.mark.skipif(
        not os.environ.get("KUBEBUILDER_ASSETS"),
        reason="KUBEBUILDER_ASSETS is not set: the real kube-apiserver tests are skipped",
    ),
]

LABEL = state_label(sync_target_key("root", "st1"))


@pytest.fixture(scope="module")
def real_env(tmp_path_factory) -> Iterator[tuple[Any, VWEnv]]:
    from kcp_tmc.testing.envtest import RealAPIServer

    tmp: Path = tmp_path_factory.mktemp("vw-real")
    certs = serving_certs()
    (tmp / "vw.crt").write_bytes(certs.cert_pem)
    (tmp / "vw.key").write_bytes(certs.key_pem)
    (tmp / "ca.crt").write_bytes(certs.ca_pem)
    with RealAPIServer() as real:
        for crd in crds():
            real.install_crd(crd)
        with KubeClient.from_kubeconfig_file(real.kubeconfig_path, timeout=10) as kube:
            server = VirtualWorkspaceServer(
                kube.configuration,
                "127.0.0.1",
                0,
                ssl_context=VirtualWorkspaceServer.tls_context(str(tmp / "vw.crt"), str(tmp / "vw.key")),
                options=WorkspaceOptions(auth_cache_ttl=0.5),
            )
            with server:
                yield real, VWEnv(real, kube, server, str(tmp / "ca.crt"))  # type: ignore[arg-type]


def _service_account_token(real: Any, name: str) -> str:
    real.request_json(
        "POST",
        "/api/v1/namespaces/default/serviceaccounts",
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
    )
    review = real.request_json(
        "POST",
        f"/api/v1/namespaces/default/serviceaccounts/{name}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )
    return str(review["status"]["token"])


def _grant_sync(real: Any, account: str, role: str, names: list[str] | None = None) -> None:
    """A ClusterRole ``role`` granting ``sync`` on synctargets (``names`` only, if given) to ``account``."""
    rule: dict[str, Any] = {"verbs": ["sync"], "apiGroups": ["workload.kcp.io"], "resources": ["synctargets"]}
    if names:
        rule["resourceNames"] = names
    real.request_json(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [rule],
        },
    )
    real.request_json(
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "default"}],
        },
    )


def _configmap(real: Any, name: str, state: str) -> None:
    real.request_json(
        "POST",
        CONFIGMAPS,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {LABEL: state}}},
    )


def test_a_service_account_is_forbidden_until_granted_sync_then_sees_only_its_objects(real_env) -> None:
    real, env = real_env
    target = real.request_json(
        "POST",
        "/apis/workload.kcp.io/v1alpha1/synctargets",
        {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "st1"}},
    )
    env.wait_for_target()
    _configmap(real, "placed", "Sync")
    _configmap(real, "pending", "")
    token = _service_account_token(real, "syncer")
    url = env.base(target) + CONFIGMAPS
    status, body = env.http("GET", url, token=token)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        'configmaps is forbidden: User "system:serviceaccount:default:syncer" cannot list resource '
        '"configmaps" in API group "" in the namespace "default"'
    )
    _grant_sync(real, "syncer", "st1-syncer", ["st1"])
    deadline = time.monotonic() + 10
    while (status := env.http("GET", url, token=token)[0]) == 403 and time.monotonic() < deadline:
        time.sleep(0.1)
    status, body = env.http("GET", url, token=token)
    assert status == 200, body
    assert [item["metadata"]["name"] for item in body["items"]] == ["placed"]
    status, body = env.http("GET", url + "/pending", token=token)
    assert (status, body["message"]) == (404, 'configmaps "pending" not found')
    status, body = env.http("GET", url, token="not-a-token")
    assert (status, body["reason"]) == (401, "Unauthorized")


def test_a_status_write_through_the_vw_is_promoted_on_a_real_apiserver(real_env) -> None:
    real, env = real_env
    target = real.request_json("GET", "/apis/workload.kcp.io/v1alpha1/synctargets/st1")
    key = sync_target_key("root", "st1")
    real.request_json(
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "ns1",
                "labels": {LABEL: "Sync"},
                "finalizers": [f"workload.kcp.io/syncer-{key}"],
            },
        },
    )
    status, body = env.http(
        "PATCH",
        env.base(target) + "/api/v1/namespaces/ns1/status",
        body={"status": {"conditions": [{"type": "Synced", "status": "True"}]}},
        content_type="application/merge-patch+json",
        token=real.admin_token,
    )
    assert status == 200, body
    upstream = real.request_json("GET", "/api/v1/namespaces/ns1")
    assert [(c["type"], c["status"]) for c in upstream["status"]["conditions"]] == [("Synced", "True")]
    assert (
        upstream["metadata"]["annotations"][f"diff.syncer.internal.kcp.io/{key}"]
        == '{"status":"##promoted##"}'
    )
    assert [(c["type"], c["status"]) for c in body["status"]["conditions"]] == [("Synced", "True")]


def test_shared_watches_on_a_real_apiserver_replay_from_a_list_and_unmatch(real_env) -> None:
    import json
    import threading

    import urllib3

    real, env = real_env
    if env.server.workspace.targets.objects.get("st1") is None:
        real.request_json(
            "POST",
            "/apis/workload.kcp.io/v1alpha1/synctargets",
            {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "st1"}},
        )
        env.wait_for_target()
    target = env.server.workspace.targets.objects["st1"]
    token = _service_account_token(real, "watcher")
    _grant_sync(real, "watcher", "st1-watcher")
    _configmap(real, "kept", "Sync")
    url = env.base(target) + CONFIGMAPS
    deadline = time.monotonic() + 10
    while (reply := env.http("GET", url, token=token))[0] != 200:
        assert time.monotonic() < deadline, reply
        time.sleep(0.1)
    rv = reply[1]["metadata"]["resourceVersion"]

    def watch(query: str, count: int, out: list[tuple[str, str]]) -> None:
        with urllib3.PoolManager(ca_certs=env.ca_path, retries=False) as pool:
            response = pool.request(
                "GET",
                f"{url}?watch=true&{query}&timeoutSeconds=15",
                headers={"Authorization": f"Bearer {token}"},
                preload_content=False,
                timeout=urllib3.Timeout(connect=5, read=20),
            )
            assert response.status == 200
            buffer = b""
            for chunk in response.stream(1024):
                buffer += chunk
                while b"\n" in buffer and len(out) < count:
                    line, buffer = buffer.split(b"\n", 1)
                    event = json.loads(line)
                    out.append((event["type"], event["object"]["metadata"]["name"]))
                if len(out) >= count:
                    response.release_conn()
                    return

    from_list: list[tuple[str, str]] = []
    watching = threading.Thread(target=watch, args=(f"resourceVersion={rv}", 2, from_list))
    watching.start()
    time.sleep(0.5)
    _configmap(real, "watched", "Sync")
    changed = real.request_json("GET", f"{CONFIGMAPS}/watched")
    changed["metadata"]["labels"][LABEL] = ""
    real.request_json("PUT", f"{CONFIGMAPS}/watched", changed)
    watching.join(20)
    assert from_list == [("ADDED", "watched"), ("DELETED", "watched")]
    current: list[tuple[str, str]] = []
    watch("resourceVersion=0", 1, current)
    # The current state: an ADDED per placed object; the one no longer placed is not among them.
    assert current and all(kind == "ADDED" for kind, _ in current)
    assert ("ADDED", "watched") not in current
