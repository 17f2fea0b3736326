"""Wire models (JSON as the apiserver sends it) of the objects kcp-tmc handles, as TypedDicts.

Objects stay plain dicts everywhere (admission requests, lookups, patches); these types only say what
the dicts hold.  Fields that may be absent use ``NotRequired`` or ``total=False``.  The accessors below
tolerate missing or null parts and return empty values, so that policies never crash on partial input.

Kinds:
- ``workload.kcp.io/v1alpha1`` SyncTarget and ``scheduling.kcp.io/v1alpha1`` Location,
- ``tmc.kcp.io/v1alpha1`` Cluster and FederatedQuota (this project's own APIs),
- core ``v1`` ResourceQuota, with kcp's cluster-scoped quota annotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, NotRequired, TypedDict

from kcp_tmc.policies.conditions import Condition
from kcp_tmc.policies.quantities import ResourceList

__all__ = [
    "ACCEPTED",
    "CLUSTER_SCOPED_QUOTA_ANNOTATION",
    "CLUSTER_SCOPED_QUOTA_NAMESPACE",
    "DEFAULT_KUBECONFIG_KEY",
    "DEFAULT_SYNC_MODE",
    "INCOMPATIBLE",
    "PARSE_BOOL_TRUE",
    "PENDING",
    "RESOURCE_STATES",
    "SYNC_MODES",
    "SYNC_MODE_PULL",
    "SYNC_MODE_PUSH",
    "APIExportReference",
    "AggregatedQuotaStatus",
    "AvailableSelectorLabel",
    "Cluster",
    "ClusterSpec",
    "ClusterStatus",
    "EffectiveClusterSpec",
    "FederatedQuota",
    "FederatedQuotaSpec",
    "FederatedQuotaStatus",
    "GroupVersionResource",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Location",
    "LocationSpec",
    "LocationStatus",
    "ObjectMeta",
    "OwnerReference",
    "ResourceList",
    "ResourceQuota",
    "ResourceQuotaSpec",
    "ResourceQuotaStatus",
    "ResourceToSync",
    "ScopeSelector",
    "ScopedResourceSelectorRequirement",
    "SecretReference",
    "StaticAssignment",
    "SyncTarget",
    "SyncTargetSpec",
    "SyncTargetStatus",
    "VirtualWorkspace",
    "annotations_of",
    "cluster_defaults",
    "is_cluster_scoped_quota",
    "labels_of",
    "meta_of",
    "name_of",
    "namespace_of",
    "parse_bool",
    "spec_of",
    "status_of",
    "uid_of",
]


# --- metadata ---------------------------------------------------------------------------------------


class OwnerReference(TypedDict):
    """``metadata.ownerReferences[]``."""

    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: NotRequired[bool]
    blockOwnerDeletion: NotRequired[bool]


class ObjectMeta(TypedDict, total=False):
    """``metadata`` of any object."""

    name: str
    generateName: str
    namespace: str
    uid: str
    resourceVersion: str
    generation: int
    creationTimestamp: str
    deletionTimestamp: str
    deletionGracePeriodSeconds: int
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]
    finalizers: list[str]
    managedFields: list[dict[str, Any]]


class LabelSelectorRequirement(TypedDict):
    """``matchExpressions[]`` of a label selector; ``operator`` is In, NotIn, Exists or DoesNotExist."""

    key: str
    operator: str
    values: NotRequired[list[str]]


class LabelSelector(TypedDict, total=False):
    """``metav1.LabelSelector``."""

    matchLabels: dict[str, str]
    matchExpressions: list[LabelSelectorRequirement]


# --- SyncTarget (workload.kcp.io/v1alpha1) ---------------------------------------------------------

#: ``status.syncedResources[].state`` values.
PENDING: Final = "Pending"
ACCEPTED: Final = "Accepted"
INCOMPATIBLE: Final = "Incompatible"
RESOURCE_STATES: Final = (PENDING, ACCEPTED, INCOMPATIBLE)


class APIExportReference(TypedDict):
    """``spec.supportedAPIExports[]``; an empty ``path`` means the SyncTarget's own workspace."""

    export: str
    path: NotRequired[str]


class SyncTargetSpec(TypedDict, total=False):
    """``SyncTarget.spec``."""

    unschedulable: bool
    evictAfter: str
    supportedAPIExports: list[APIExportReference]
    cells: dict[str, str]


class ResourceToSync(TypedDict):
    """``status.syncedResources[]``."""

    group: NotRequired[str]
    resource: str
    versions: list[str]
    identityHash: NotRequired[str]
    state: NotRequired[str]


class VirtualWorkspace(TypedDict):
    """``status.virtualWorkspaces[]``."""

    syncerURL: str
    upsyncerURL: str


class SyncTargetStatus(TypedDict, total=False):
    """``SyncTarget.status``."""

    allocatable: ResourceList
    capacity: ResourceList
    conditions: list[Condition]
    syncedResources: list[ResourceToSync]
    lastSyncerHeartbeatTime: str
    virtualWorkspaces: list[VirtualWorkspace]
    #: This project's extension: what the workloads placed on the target request of its nodes.
    used: ResourceList


class SyncTarget(TypedDict, total=False):
    """``workload.kcp.io/v1alpha1`` SyncTarget (cluster-scoped)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: SyncTargetSpec
    status: SyncTargetStatus


# --- Location (scheduling.kcp.io/v1alpha1) --------------------------------------------------------


class GroupVersionResource(TypedDict):
    """``Location.spec.resource``; kcp accepts only workload.kcp.io / v1alpha1 / synctargets."""

    group: str
    version: str
    resource: str


class AvailableSelectorLabel(TypedDict):
    """``Location.spec.availableSelectorLabels[]``."""

    key: str
    values: list[str]
    description: NotRequired[str]


class LocationSpec(TypedDict, total=False):
    """``Location.spec``."""

    resource: GroupVersionResource
    description: str
    availableSelectorLabels: list[AvailableSelectorLabel]
    instanceSelector: LabelSelector | None


class LocationStatus(TypedDict, total=False):
    """``Location.status``."""

    instances: int
    availableInstances: int
    #: This project's extension: sums over the available instances.
    capacity: ResourceList
    allocatable: ResourceList
    used: ResourceList


class Location(TypedDict, total=False):
    """``scheduling.kcp.io/v1alpha1`` Location (cluster-scoped)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: LocationSpec
    status: LocationStatus


# --- Cluster (tmc.kcp.io/v1alpha1) ----------------------------------------------------------------

SYNC_MODE_PUSH: Final = "Push"
SYNC_MODE_PULL: Final = "Pull"
#: The legal values of ``Cluster.spec.syncMode``.
SYNC_MODES: Final = (SYNC_MODE_PUSH, SYNC_MODE_PULL)
DEFAULT_SYNC_MODE: Final = SYNC_MODE_PUSH
#: The key read from the kubeconfig secret when ``kubeconfigSecretRef.key`` is not set.
DEFAULT_KUBECONFIG_KEY: Final = "kubeconfig"


class SecretReference(TypedDict):
    """``Cluster.spec.kubeconfigSecretRef``."""

    namespace: str
    name: str
    key: NotRequired[str]


class ClusterSpec(TypedDict, total=False):
    """``Cluster.spec``: how to reach a physical cluster and the SyncTarget that represents it."""

    kubeconfigSecretRef: SecretReference
    syncMode: str
    syncTargetName: str
    unschedulable: bool
    evictAfter: str
    syncerImage: str


class ClusterStatus(TypedDict, total=False):
    """``Cluster.status``."""

    conditions: list[Condition]
    capacity: ResourceList
    allocatable: ResourceList
    syncedResources: list[ResourceToSync]
    lastHeartbeatTime: str
    kubernetesVersion: str


class Cluster(TypedDict, total=False):
    """``tmc.kcp.io/v1alpha1`` Cluster (cluster-scoped)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ClusterSpec
    status: ClusterStatus


class EffectiveClusterSpec(TypedDict):
    """A Cluster spec with every default applied (see :func:`cluster_defaults`)."""

    kubeconfigSecretRef: SecretReference | None
    syncMode: str
    syncTargetName: str
    unschedulable: bool
    evictAfter: str | None
    syncerImage: str | None


# --- FederatedQuota (tmc.kcp.io/v1alpha1) ----------------------------------------------------------


class StaticAssignment(TypedDict):
    """``FederatedQuota.spec.staticAssignments[]``: a fixed share of the quota for one SyncTarget."""

    syncTarget: str
    hard: ResourceList


class FederatedQuotaSpec(TypedDict, total=False):
    """``FederatedQuota.spec``."""

    overall: ResourceList
    staticAssignments: list[StaticAssignment]


class AggregatedQuotaStatus(TypedDict):
    """``FederatedQuota.status.aggregatedStatus[]``."""

    syncTarget: str
    #: Only for SyncTargets with a static assignment.
    hard: NotRequired[ResourceList]
    used: NotRequired[ResourceList]


class FederatedQuotaStatus(TypedDict, total=False):
    """``FederatedQuota.status``."""

    overall: ResourceList
    overallUsed: ResourceList
    aggregatedStatus: list[AggregatedQuotaStatus]
    conditions: list[Condition]


class FederatedQuota(TypedDict, total=False):
    """``tmc.kcp.io/v1alpha1`` FederatedQuota (namespaced)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: FederatedQuotaSpec
    status: FederatedQuotaStatus


# --- ResourceQuota (core v1) -----------------------------------------------------------------------

#: kcp's annotation making a ResourceQuota in namespace ``admin`` count across the whole workspace.
CLUSTER_SCOPED_QUOTA_ANNOTATION: Final = "experimental.quota.kcp.io/cluster-scoped"
#: The namespace a cluster-scoped quota must live in.
CLUSTER_SCOPED_QUOTA_NAMESPACE: Final = "admin"
#: The spellings Go ``strconv.ParseBool`` reads as true.
PARSE_BOOL_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_PARSE_BOOL_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class ScopedResourceSelectorRequirement(TypedDict):
    """``spec.scopeSelector.matchExpressions[]``."""

    scopeName: str
    operator: str
    values: NotRequired[list[str]]


class ScopeSelector(TypedDict, total=False):
    """``spec.scopeSelector``."""

    matchExpressions: list[ScopedResourceSelectorRequirement]


class ResourceQuotaSpec(TypedDict, total=False):
    """``ResourceQuota.spec``."""

    hard: ResourceList
    scopes: list[str]
    scopeSelector: ScopeSelector


class ResourceQuotaStatus(TypedDict, total=False):
    """``ResourceQuota.status``."""

    hard: ResourceList
    used: ResourceList


class ResourceQuota(TypedDict, total=False):
    """Core ``v1`` ResourceQuota (namespaced)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: ResourceQuotaSpec
    status: ResourceQuotaStatus


def parse_bool(value: str) -> bool | None:
    """Go ``strconv.ParseBool``: True or False for its accepted spellings, None for anything else."""
    if value in PARSE_BOOL_TRUE:
        return True
    if value in _PARSE_BOOL_FALSE:
        return False
    return None


def is_cluster_scoped_quota(rq: Mapping[str, Any] | None) -> bool:
    """True for a ResourceQuota in namespace ``admin`` whose cluster-scoped annotation ParseBools to true."""
    if namespace_of(rq) != CLUSTER_SCOPED_QUOTA_NAMESPACE:
        return False
    value = annotations_of(rq).get(CLUSTER_SCOPED_QUOTA_ANNOTATION)
    return isinstance(value, str) and parse_bool(value) is True


# --- accessors ------------------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def meta_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``obj.metadata``, or an empty mapping when it is missing, null or not an object."""
    return _mapping(_mapping(obj).get("metadata"))


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``obj.metadata.labels``, or an empty mapping."""
    return _mapping(meta_of(obj).get("labels"))


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``obj.metadata.annotations``, or an empty mapping."""
    return _mapping(meta_of(obj).get("annotations"))


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def name_of(obj: Mapping[str, Any] | None) -> str:
    """``obj.metadata.name``, or ``""``."""
    return _string(meta_of(obj).get("name"))


def namespace_of(obj: Mapping[str, Any] | None) -> str:
    """``obj.metadata.namespace``, or ``""``."""
    return _string(meta_of(obj).get("namespace"))


def uid_of(obj: Mapping[str, Any] | None) -> str:
    """``obj.metadata.uid``, or ``""``."""
    return _string(meta_of(obj).get("uid"))


def spec_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``obj.spec``, or an empty mapping."""
    return _mapping(_mapping(obj).get("spec"))


def status_of(obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """``obj.status``, or an empty mapping."""
    return _mapping(_mapping(obj).get("status"))


def cluster_defaults(obj: Mapping[str, Any] | None) -> EffectiveClusterSpec:
    """The effective spec of a tmc.kcp.io Cluster, defaults applied.

    ``syncMode`` defaults to Push, ``syncTargetName`` to the Cluster's name, ``unschedulable`` to false,
    ``kubeconfigSecretRef.key`` to ``kubeconfig``.  Values of the wrong type count as unset; validating
    them is admission's job.
    """
    spec = spec_of(obj)
    ref_raw = spec.get("kubeconfigSecretRef")
    ref: SecretReference | None = None
    if isinstance(ref_raw, Mapping):
        ref = {
            "namespace": _string(ref_raw.get("namespace")),
            "name": _string(ref_raw.get("name")),
            "key": _string(ref_raw.get("key")) or DEFAULT_KUBECONFIG_KEY,
        }
    unschedulable = spec.get("unschedulable")
    return {
        "kubeconfigSecretRef": ref,
        "syncMode": _string(spec.get("syncMode")) or DEFAULT_SYNC_MODE,
        "syncTargetName": _string(spec.get("syncTargetName")) or name_of(obj),
        "unschedulable": unschedulable if isinstance(unschedulable, bool) else False,
        "evictAfter": _string(spec.get("evictAfter")) or None,
        "syncerImage": _string(spec.get("syncerImage")) or None,
    }
