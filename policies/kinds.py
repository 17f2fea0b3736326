"""The resource types this project handles, named once.

A :class:`ResourceType` carries what both sides need: the group, version and
kind a policy matches on, and the plural and scope a lookup or a client needs.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """Discovery's ``storageVersionHash``: base64 of the first 8 bytes of SHA-256 over ``group/version/kind``.

    kube-apiserver computes it over the version objects are stored in, whichever version lists it.
    """
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def api_resource_entry(
    *,
    group: str,
    version: str,
    plural: str,
    singular: str,
    kind: str,
    namespaced: bool,
    verbs: Sequence[str],
    short_names: Sequence[str] = (),
    categories: Sequence[str] = (),
    storage_version: str = "",
) -> dict[str, object]:
    """A resource's ``APIResource`` entry in a discovery ``APIResourceList``, as kube-apiserver writes it."""
    entry: dict[str, object] = {
        "name": plural,
        "singularName": singular,
        "namespaced": namespaced,
        "kind": kind,
        "verbs": list(verbs),
    }
    if short_names:
        entry["shortNames"] = list(short_names)
    if categories:
        entry["categories"] = list(categories)
    entry["storageVersionHash"] = storage_version_hash(group, storage_version or version, kind)
    return entry


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes version names: GA before beta before alpha, higher first, others last."""
    match = _KUBE_VERSION.match(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match.group(1)), match.group(2), int(match.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


def api_version_of(group: str, version: str) -> str:
    """``group/version``, or just ``version`` for the core group (``""``)."""
    return f"{group}/{version}" if group else version


def group_resource_of(plural: str, group: str) -> str:
    """``plural.group`` (``plural`` for the core group), as the apiserver names a resource in messages."""
    return f"{plural}.{group}" if group else plural


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource: ``group``/``version``, ``kind``, ``plural`` and scope."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``group/version``, or just ``version`` for the core group."""
        return api_version_of(self.group, self.version)

    @property
    def group_resource(self) -> str:
        """``plural.group`` (``plural`` for the core group), as the apiserver prints it."""
        return group_resource_of(self.plural, self.group)

    def matches(self, group: str, kind: str) -> bool:
        """True for a request of this group and kind, whatever its version."""
        return self.group == group and self.kind == kind


SYNC_TARGET = ResourceType("workload.kcp.io", "v1alpha1", "SyncTarget", "synctargets", namespaced=False)
LOCATION = ResourceType("scheduling.kcp.io", "v1alpha1", "Location", "locations", namespaced=False)
CLUSTER = ResourceType("tmc.kcp.io", "v1alpha1", "Cluster", "clusters", namespaced=False)
FEDERATED_QUOTA = ResourceType("tmc.kcp.io", "v1alpha1", "FederatedQuota", "federatedquotas", namespaced=True)
RESOURCE_QUOTA = ResourceType("", "v1", "ResourceQuota", "resourcequotas", namespaced=True)
NAMESPACE = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)
SECRET = ResourceType("", "v1", "Secret", "secrets", namespaced=True)
NODE = ResourceType("", "v1", "Node", "nodes", namespaced=False)
API_EXPORT = ResourceType("apis.kcp.io", "v1alpha1", "APIExport", "apiexports", namespaced=False)
API_RESOURCE_SCHEMA = ResourceType(
    "apis.kcp.io", "v1alpha1", "APIResourceSchema", "apiresourceschemas", namespaced=False
)
API_RESOURCE_IMPORT = ResourceType(
    "apiresource.kcp.io", "v1alpha1", "APIResourceImport", "apiresourceimports", namespaced=False
)
POD = ResourceType("", "v1", "Pod", "pods", namespaced=True)
DEPLOYMENT = ResourceType("apps", "v1", "Deployment", "deployments", namespaced=True)
REPLICA_SET = ResourceType("apps", "v1", "ReplicaSet", "replicasets", namespaced=True)
STATEFUL_SET = ResourceType("apps", "v1", "StatefulSet", "statefulsets", namespaced=True)
JOB = ResourceType("batch", "v1", "Job", "jobs", namespaced=True)
#: kcp's workspaces: counted by a cluster-scoped quota as ``count/workspaces.tenancy.kcp.io``.
WORKSPACE = ResourceType("tenancy.kcp.io", "v1alpha1", "Workspace", "workspaces", namespaced=False)
#: What a write of a ``scale`` subresource carries (the request's kind; its resource is the workload's).
SCALE = ResourceType("autoscaling", "v1", "Scale", "scale", namespaced=True)
#: The workloads whose compute use quota admission checks.
WORKLOAD_TYPES: tuple[ResourceType, ...] = (POD, DEPLOYMENT, REPLICA_SET, STATEFUL_SET, JOB)

#: The kinds the built-in policies and the webhook know about.
KNOWN_TYPES: tuple[ResourceType, ...] = (
    SYNC_TARGET,
    LOCATION,
    CLUSTER,
    FEDERATED_QUOTA,
    RESOURCE_QUOTA,
)
