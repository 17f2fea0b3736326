"""The REST resources the reconcilers read and write."""

from __future__ import annotations

from kcp_tmc.reconcilers.client import Resource

__all__ = [
    "APIEXPORTS",
    "APIRESOURCEIMPORTS",
    "APIRESOURCESCHEMAS",
    "CLUSTERROLEBINDINGS",
    "CLUSTERROLES",
    "CLUSTERS",
    "DEPLOYMENTS",
    "FEDERATEDQUOTAS",
    "LOCATIONS",
    "NAMESPACES",
    "NODES",
    "RESOURCEQUOTAS",
    "SECRETS",
    "SERVICEACCOUNTS",
    "SYNCTARGETS",
]

SYNCTARGETS = Resource("workload.kcp.io", "v1alpha1", "synctargets", kind="SyncTarget")
APIEXPORTS = Resource("apis.kcp.io", "v1alpha1", "apiexports", kind="APIExport")
APIRESOURCESCHEMAS = Resource("apis.kcp.io", "v1alpha1", "apiresourceschemas", kind="APIResourceSchema")
APIRESOURCEIMPORTS = Resource(
    "apiresource.kcp.io", "v1alpha1", "apiresourceimports", kind="APIResourceImport"
)
CLUSTERS = Resource("tmc.kcp.io", "v1alpha1", "clusters", kind="Cluster")

SECRETS = Resource("", "v1", "secrets", namespaced=True, kind="Secret")
NAMESPACES = Resource("", "v1", "namespaces", kind="Namespace")
NODES = Resource("", "v1", "nodes", kind="Node")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts", namespaced=True, kind="ServiceAccount")
CLUSTERROLES = Resource("rbac.authorization.k8s.io", "v1", "clusterroles", kind="ClusterRole")
CLUSTERROLEBINDINGS = Resource(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", kind="ClusterRoleBinding"
)
DEPLOYMENTS = Resource("apps", "v1", "deployments", namespaced=True, kind="Deployment")
LOCATIONS = Resource("scheduling.kcp.io", "v1alpha1", "locations", kind="Location")
FEDERATEDQUOTAS = Resource(
    "tmc.kcp.io", "v1alpha1", "federatedquotas", namespaced=True, kind="FederatedQuota"
)
RESOURCEQUOTAS = Resource("", "v1", "resourcequotas", namespaced=True, kind="ResourceQuota")
