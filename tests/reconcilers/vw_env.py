"""A fake apiserver with a syncer's token and rules, and the virtual workspace server in front of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client as k8s

from kcp_tmc.policies.keys import state_label, sync_target_key
from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from kcp_tmc.reconcilers.virtualworkspace.server import VirtualWorkspaceServer, WorkspaceOptions
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.tls import serving_certs
from tests.reconcilers.reconciler_processes import crds

SYNCER_TOKEN = "syncer-token"  # noqa: S105 - a throwaway token of the fake apiserver
OTHER_TOKEN = "other-token"  # noqa: S105 - a throwaway token of the fake apiserver
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def sync_rule(user: str, target: str) -> dict[str, Any]:
    """The grant a syncer needs on its SyncTarget: verb ``sync`` on ``synctargets/<target>``."""
    return {
        "user": user,
        "verbs": ["sync"],
        "apiGroups": ["workload.kcp.io"],
        "resources": ["synctargets"],
        "names": [target],
    }


class VWEnv:
    """The pieces of one virtual-workspace test, and helpers to reach them."""

    def __init__(self, api: FakeAPIServer, kube: KubeClient, server: VirtualWorkspaceServer, ca_path: str):
        self.api = api
        self.kube = kube
        self.server = server
        self.ca_path = ca_path

    @classmethod
    @contextmanager
    def running(
        cls, tmp_path: Path, *, auth_ttl: float = 0.5, install_crds: bool = True, **server_kwargs: Any
    ) -> Iterator[VWEnv]:
        certs = serving_certs()
        cert, key, ca = tmp_path / "vw.crt", tmp_path / "vw.key", tmp_path / "vw-ca.crt"
        cert.write_bytes(certs.cert_pem)
        key.write_bytes(certs.key_pem)
        ca.write_bytes(certs.ca_pem)
        tokens = {SYNCER_TOKEN: ("syncer", ["syncers"]), OTHER_TOKEN: ("other", [])}
        with FakeAPIServer(tokens=tokens, rules=[sync_rule("syncer", "st1")], **server_kwargs) as api:
            for crd in crds() if install_crds else []:
                api.install_crd(crd)
            with KubeClient.from_kubeconfig_file(api.kubeconfig_path, timeout=5.0) as kube:
                options = WorkspaceOptions(auth_cache_ttl=auth_ttl, informer_absent_retry=0.2)
                server = VirtualWorkspaceServer(
                    kube.configuration,
                    "127.0.0.1",
                    0,
                    ssl_context=VirtualWorkspaceServer.tls_context(str(cert), str(key)),
                    options=options,
                )
                with server:
                    env = cls(api, kube, server, str(ca))
                    yield env

    def create_target(self, name: str = "st1") -> dict[str, Any]:
        return self.kube.create(
            SYNCTARGETS,
            {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": name}},
        )

    def base(self, target: dict[str, Any], service: str = "syncer", cluster: str = "*") -> str:
        meta = target["metadata"]
        return f"{self.server.url}/services/{service}/root/{meta['name']}/{meta['uid']}/clusters/{cluster}"

    def client(self, base: str, token: str = SYNCER_TOKEN) -> k8s.ApiClient:
        configuration = k8s.Configuration()
        configuration.host = base
        configuration.ssl_ca_cert = self.ca_path
        configuration.api_key = {"authorization": f"Bearer {token}"}
        configuration.retries = False
        return k8s.ApiClient(configuration)

    def http(
        self,
        method: str,
        url: str,
        token: str | None = SYNCER_TOKEN,
        body: Any = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """One raw request to the virtual workspace: the status and the parsed JSON body."""
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        with urllib3.PoolManager(ca_certs=self.ca_path, retries=False) as pool:
            reply = pool.request(method, url, body=data, headers=headers, timeout=10)
        return reply.status, json.loads(reply.data) if reply.data else None

    def wait_for_target(self, name: str = "st1") -> None:
        """Until the server's SyncTarget cache holds ``name``."""
        import time

        deadline = time.monotonic() + 10
        while self.server.workspace.targets.objects.get(name) is None:
            assert time.monotonic() < deadline, f"SyncTarget {name} never reached the cache"
            time.sleep(0.02)

    def configmap(
        self, name: str, state: str | None = "Sync", target: str = "st1", **extra: Any
    ) -> dict[str, Any]:
        labels = dict(extra.pop("labels", {}))
        if state is not None:
            labels[state_label(sync_target_key("root", target))] = state
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "labels": labels},
        }
        obj.update(extra)
        return self.api.create(obj)

    def namespace(
        self, name: str, state: str | None = "Sync", owned: bool = True, **extra: Any
    ) -> dict[str, Any]:
        """A namespace placed on ``st1``; ``owned`` adds the finalizer a syncer holds on its objects."""
        key = sync_target_key("root", "st1")
        metadata: dict[str, Any] = {
            "name": name,
            "labels": {state_label(key): state} if state is not None else {},
        }
        if owned:
            metadata["finalizers"] = [f"workload.kcp.io/syncer-{key}"]
        metadata.update(extra.pop("metadata", {}))
        return self.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata, **extra})

    def kubeconfig(self, base: str, path: Path, token: str = SYNCER_TOKEN) -> Path:
        """A kubeconfig for ``kubectl --kubeconfig`` through the virtual workspace at ``base``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "vw", "cluster": {"server": base, "certificate-authority": self.ca_path}}],
            "users": [{"name": "syncer", "user": {"token": token}}],
            "contexts": [
                {"name": "vw", "context": {"cluster": "vw", "user": "syncer", "namespace": "default"}}
            ],
            "current-context": "vw",
        }
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    def accept(self, target_name: str, *resources: tuple[str, str, str, str]) -> None:
        """Serve core ``(plural, kind, scope, version)`` resources to the target through an export.

        As the syncedResources controller would: an APIExport ``tmc-core`` with one APIResourceSchema
        per resource, supported by the SyncTarget, each resource ``Accepted`` in its status.
        """
        schemas = []
        for plural, kind, scope, version in resources:
            name = f"v1.{plural}.core"
            schemas.append(name)
            self.api.create(
                {
                    "apiVersion": "apis.kcp.io/v1alpha1",
                    "kind": "APIResourceSchema",
                    "metadata": {"name": name},
                    "spec": {
                        "group": "",
                        "names": {
                            "plural": plural,
                            "singular": kind.lower(),
                            "kind": kind,
                            "listKind": f"{kind}List",
                        },
                        "scope": scope,
                        "versions": [
                            {
                                "name": version,
                                "served": True,
                                "storage": True,
                                "schema": {"type": "object"},
                                "subresources": {"status": {}},
                            }
                        ],
                    },
                }
            )
        export = self.api.create(
            {
                "apiVersion": "apis.kcp.io/v1alpha1",
                "kind": "APIExport",
                "metadata": {"name": "tmc-core"},
                "spec": {"latestResourceSchemas": schemas},
            }
        )
        export["status"] = {"identityHash": "core-identity"}
        self.api.update(export, "status")
        target = self.api.get("workload.kcp.io/v1alpha1", "synctargets", target_name)
        target.setdefault("spec", {})["supportedAPIExports"] = [{"export": "tmc-core", "path": "root"}]
        target = self.api.update(target)
        target["status"] = {
            "syncedResources": [
                {
                    "group": "",
                    "resource": plural,
                    "versions": [version],
                    "identityHash": "core-identity",
                    "state": "Accepted",
                }
                for plural, _, _, version in resources
            ]
        }
        self.api.update(target, "status")
        import time

        deadline = time.monotonic() + 10
        while True:
            cached = self.server.workspace.targets.objects.get(target_name) or {}
            schemas_seen = set(self.server.workspace.schemas.objects)
            if (
                (cached.get("status") or {}).get("syncedResources")
                and set(schemas) <= schemas_seen
                and ("tmc-core" in self.server.workspace.exports.objects)
            ):
                return
            assert time.monotonic() < deadline, "the virtual workspace never saw the accepted resources"
            time.sleep(0.02)
