"""The syncer a Pull-mode Cluster installs into its physical cluster, as plain manifests.

Everything lives in one namespace, ``kcp-syncer-<syncTarget>-<first 8 characters of the key>``
(lowercased: namespace names are DNS labels, the key is base62; the SyncTarget part is shortened so
that the name stays within 63 characters).  The objects: a ServiceAccount, a ClusterRole limited to the
synced resources (plus namespaces, and the configmaps and secrets the syncer always syncs) and its
binding, a Secret holding a kubeconfig for the syncer virtual-workspace URL, and a Deployment of
``spec.syncerImage``.  All carry :data:`LABEL_MANAGED_BY` and the owning Cluster's name, and the
Deployment an annotation with a hash of the whole set, so that an unchanged installation costs one GET.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from kcp_tmc.policies.keys import ANNOTATION_OWNING_CLUSTER, syncer_id

__all__ = [
    "ANNOTATION_INSTALL_HASH",
    "LABEL_MANAGED_BY",
    "SYNCER_NAME",
    "SyncerInstall",
    "desired_install",
    "kcp_identity",
    "syncer_namespace",
]

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "tmc-reconciler"
LABEL_CLUSTER = "tmc.kcp.io/cluster"
ANNOTATION_INSTALL_HASH = "tmc.kcp.io/install-hash"
SYNCER_NAME = "kcp-syncer"
_DNS_LABEL_MAX = 63


def syncer_namespace(sync_target: str, key: str) -> str:
    """``kcp-syncer-<syncTarget>-<8 chars of the key, lowercased>``, at most 63 characters."""
    suffix = key[:8].lower()
    room = _DNS_LABEL_MAX - len("kcp-syncer-") - 1 - len(suffix)
    return f"kcp-syncer-{sync_target[:room].rstrip('-')}-{suffix}"


def _rules(resources: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "get", "list", "watch"]},
    ]
    by_group: dict[str, set[str]] = {"": {"configmaps", "secrets"}}
    for group, resource in resources:
        by_group.setdefault(group, set()).add(resource)
    for group in sorted(by_group):
        names = sorted(by_group[group])
        rules.append(
            {
                "apiGroups": [group],
                "resources": names,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
        )
        rules.append(
            {
                "apiGroups": [group],
                "resources": [f"{n}/status" for n in names],
                "verbs": ["get", "patch", "update"],
            }
        )
    return rules


def _kubeconfig(server: str, token: str, ca_data: str | None) -> str:
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = ca_data
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kcp", "cluster": cluster}],
        "users": [{"name": "syncer", "user": {"token": token} if token else {}}],
        "contexts": [{"name": "syncer", "context": {"cluster": "kcp", "user": "syncer"}}],
        "current-context": "syncer",
    }
    return yaml.safe_dump(config, sort_keys=True)


class SyncerInstall:
    """The desired objects, in creation order, with their REST resource names."""

    def __init__(self, namespace: str, objects: list[tuple[str, dict[str, Any]]], digest: str) -> None:
        self.namespace = namespace
        self.objects = objects
        self.digest = digest


def desired_install(
    *,
    cluster_name: str,
    sync_target: Mapping[str, Any],
    key: str,
    logical_cluster: str,
    image: str,
    resources: Iterable[tuple[str, str]],
    syncer_url: str,
    token: str = "",
    ca_data: str | None = None,
) -> SyncerInstall:
    """Manifests for one Pull-mode syncer (see the module docstring)."""
    st_meta = sync_target["metadata"]
    namespace = syncer_namespace(st_meta["name"], key)
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLUSTER: cluster_name}
    annotations = {ANNOTATION_OWNING_CLUSTER: cluster_name}

    def meta(name: str, namespaced: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "labels": dict(labels), "annotations": dict(annotations)}
        if namespaced:
            out["namespace"] = namespace
        return out

    objects: list[tuple[str, dict[str, Any]]] = [
        ("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(namespace, False)}),
        ("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(SYNCER_NAME)}),
        (
            "clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": meta(namespace, False),
                "rules": _rules(resources),
            },
        ),
        (
            "clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": meta(namespace, False),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": namespace,
                },
                "subjects": [{"kind": "ServiceAccount", "name": SYNCER_NAME, "namespace": namespace}],
            },
        ),
        (
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(SYNCER_NAME + "-kubeconfig"),
                "type": "Opaque",
                "stringData": {"kubeconfig": _kubeconfig(syncer_url, token, ca_data)},
            },
        ),
    ]
    selector = {"app.kubernetes.io/name": SYNCER_NAME, LABEL_CLUSTER: cluster_name}
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(SYNCER_NAME),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": {**selector, LABEL_MANAGED_BY: MANAGED_BY}},
                "spec": {
                    "serviceAccountName": SYNCER_NAME,
                    "containers": [
                        {
                            "name": "syncer",
                            "image": image,
                            "args": [
                                "--from-kubeconfig=/kcp/kubeconfig",
                                f"--sync-target-name={st_meta['name']}",
                                f"--sync-target-uid={st_meta.get('uid', '')}",
                                f"--from-cluster={logical_cluster}",
                            ],
                            "volumeMounts": [{"name": "kcp-config", "mountPath": "/kcp", "readOnly": True}],
                        }
                    ],
                    "volumes": [
                        {"name": "kcp-config", "secret": {"secretName": SYNCER_NAME + "-kubeconfig"}}
                    ],
                },
            },
        },
    }
    digest = hashlib.sha256(
        json.dumps([obj for _, obj in objects] + [deployment], sort_keys=True).encode()
    ).hexdigest()[:16]
    deployment["metadata"]["annotations"][ANNOTATION_INSTALL_HASH] = digest
    objects.append(("deployments", deployment))
    return SyncerInstall(namespace, objects, digest)


def deployment_available(deployment: Mapping[str, Any] | None) -> bool:
    """True when the Deployment reports condition Available=True or at least one available replica."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    for condition in status.get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Available":
            return condition.get("status") == "True"
    return int(status.get("availableReplicas") or 0) > 0


#: Namespace of the syncer's ServiceAccount and token Secret inside the kcp workspace.
KCP_IDENTITY_NAMESPACE = "default"


def kcp_identity(sync_target: Mapping[str, Any], cluster_name: str) -> list[tuple[str, dict[str, Any]]]:
    """The syncer's identity inside kcp, as ``kubectl kcp workload sync`` creates it.

    A ServiceAccount and its token Secret named by the syncer ID (``kcp-syncer-<name>-<hash of uid>``),
    and a ClusterRole and binding granting ``sync`` on this SyncTarget, ``get`` on its tunnel,
    ``get,list,watch`` on it, ``update,patch`` on its status, and everything on APIResourceImports.
    """
    meta = sync_target["metadata"]
    name = syncer_id(meta["name"], meta.get("uid", ""))
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_CLUSTER: cluster_name}
    annotations = {ANNOTATION_OWNING_CLUSTER: cluster_name}

    def object_meta(namespaced: bool, extra: dict[str, str] | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": name,
            "labels": dict(labels),
            "annotations": {**annotations, **(extra or {})},
        }
        if namespaced:
            out["namespace"] = KCP_IDENTITY_NAMESPACE
        return out

    target = [meta["name"]]
    return [
        ("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": object_meta(True)}),
        (
            "secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "kubernetes.io/service-account-token",
                "metadata": object_meta(True, {"kubernetes.io/service-account.name": name}),
            },
        ),
        (
            "clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": object_meta(False),
                "rules": [
                    {
                        "apiGroups": ["workload.kcp.io"],
                        "resources": ["synctargets"],
                        "resourceNames": target,
                        "verbs": ["sync", "get", "list", "watch"],
                    },
                    {"apiGroups": ["workload.kcp.io"], "resources": ["synctargets/tunnel"], "verbs": ["get"]},
                    {
                        "apiGroups": ["workload.kcp.io"],
                        "resources": ["synctargets/status"],
                        "resourceNames": target,
                        "verbs": ["update", "patch"],
                    },
                    {
                        "apiGroups": ["apiresource.kcp.io"],
                        "resources": ["apiresourceimports"],
                        "verbs": ["*"],
                    },
                ],
            },
        ),
        (
            "clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": object_meta(False),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": KCP_IDENTITY_NAMESPACE}],
            },
        ),
    ]
