"""The resources the fake server serves: the built-ins we use and those CRDs add.

A :class:`ResourceInfo` holds what discovery prints (names, verbs, scope,
subresources) and what the REST layer needs (does it bump ``generation``, may
an update leave out ``resourceVersion``, which schema validates it).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kcp_tmc.policies.kinds import api_version_of, group_resource_of

Object = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
CREATE_ONLY = ("create",)


@dataclass(frozen=True)
class ScalePaths:
    """Where a resource keeps what its ``scale`` subresource shows (``.spec.replicas``...)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None
    #: Built-in workloads: ``status.selector`` of the Scale is ``spec.selector`` printed as a string.
    selector_from_spec: bool = False


@dataclass(frozen=True)
class ResourceInfo:
    """One served resource in one version."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    verbs: tuple[str, ...] = ALL_VERBS
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    scale: ScalePaths | None = None
    #: ``metadata.generation`` is kept and bumped on spec changes.
    generation: bool = False
    #: An update without ``metadata.resourceVersion`` is accepted (false for custom resources).
    unconditional_update: bool = True
    #: Served from a CustomResourceDefinition (affects patch types, list items, field selectors).
    custom: bool = False
    #: ``openAPIV3Schema`` of this version (custom resources only).
    schema: Object | None = field(default=None, compare=False, hash=False)
    #: A CRD version's ``selectableFields`` (custom resources only; built-in kinds keep theirs in
    #: :mod:`kcp_tmc.testing.fieldlabels`, which also says how each kind refuses other fields).
    field_selectors: tuple[str, ...] = ()
    #: Column definitions for ``kubectl get`` (``additionalPrinterColumns``).
    printer_columns: tuple[Object, ...] = field(default=(), compare=False, hash=False)
    #: Extra subresources without storage semantics (``namespaces/finalize``).
    extra_subresources: tuple[str, ...] = ()
    #: The version objects are stored in, when another version is (a CRD's ``storage: true`` one).
    storage_version: str = ""

    @property
    def api_version(self) -> str:
        """``group/version`` (``v1`` for the core group)."""
        return api_version_of(self.group, self.version)

    @property
    def group_resource(self) -> str:
        """``plural.group`` as error messages print it."""
        return group_resource_of(self.plural, self.group)

    @property
    def key(self) -> tuple[str, str]:
        """The storage key: objects are shared by every version of a group and plural."""
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        """``<Kind>List``."""
        return f"{self.kind}List"

    @property
    def subresources(self) -> tuple[str, ...]:
        """The subresources discovery lists."""
        subs: list[str] = []
        if self.status:
            subs.append("status")
        if self.scale is not None:
            subs.append("scale")
        subs.extend(self.extra_subresources)
        return tuple(subs)


def _in(group: str, version: str, kind: str, plural: str, namespaced: bool = True, **kw: Any) -> ResourceInfo:
    return ResourceInfo(group, version, kind, plural, kind.lower(), namespaced, **kw)


def _core(kind: str, plural: str, namespaced: bool = True, **kw: Any) -> ResourceInfo:
    return _in("", "v1", kind, plural, namespaced, **kw)


_WORKLOAD_SCALE = ScalePaths(selector_from_spec=True)


def _workload(
    group: str, kind: str, plural: str, *short_names: str, scale: ScalePaths | None = None
) -> ResourceInfo:
    # Controller-managed workloads: kubectl's "all" category, a status subresource, a generation.
    return _in(
        group,
        "v1",
        kind,
        plural,
        short_names=short_names,
        categories=("all",),
        status=True,
        scale=scale,
        generation=True,
    )


BUILTINS: tuple[ResourceInfo, ...] = (
    _core(
        "Namespace",
        "namespaces",
        False,
        verbs=tuple(v for v in ALL_VERBS if v != "deletecollection"),
        short_names=("ns",),
        status=True,
        extra_subresources=("finalize",),
    ),
    _core("ConfigMap", "configmaps", short_names=("cm",)),
    _core("Secret", "secrets"),
    _core("ServiceAccount", "serviceaccounts", short_names=("sa",)),
    _core("Node", "nodes", False, short_names=("no",), status=True),
    _core(
        "Pod",
        "pods",
        short_names=("po",),
        categories=("all",),
        status=True,
    ),
    _core("Service", "services", short_names=("svc",), categories=("all",), status=True),
    _core("Event", "events", short_names=("ev",)),
    _core("ResourceQuota", "resourcequotas", short_names=("quota",), status=True),
    _workload("apps", "Deployment", "deployments", "deploy", scale=_WORKLOAD_SCALE),
    _workload("apps", "ReplicaSet", "replicasets", "rs", scale=_WORKLOAD_SCALE),
    _workload("apps", "StatefulSet", "statefulsets", "sts", scale=_WORKLOAD_SCALE),
    _workload("apps", "DaemonSet", "daemonsets", "ds"),
    _workload("batch", "Job", "jobs"),
    _workload("batch", "CronJob", "cronjobs", "cj"),
    _in("coordination.k8s.io", "v1", "Lease", "leases"),
    _in(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status=True,
        generation=True,
    ),
    _in("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, verbs=CREATE_ONLY),
    _in(
        "authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", False, verbs=CREATE_ONLY
    ),
    _in(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        verbs=CREATE_ONLY,
    ),
    _in(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        False,
        categories=("api-extensions",),
        generation=True,
    ),
    _in(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        False,
        categories=("api-extensions",),
        generation=True,
    ),
    _in("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    _in("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    _in("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _in("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
)

#: Resources that are not stored: a create is answered and forgotten.
VIRTUAL = frozenset(
    {
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
    }
)

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


def infos_from_crd(crd: Object) -> list[ResourceInfo]:
    """One :class:`ResourceInfo` per served version of a CustomResourceDefinition."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind = names.get("kind", "")
    plural = names.get("plural", "")
    infos: list[ResourceInfo] = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        scale = subresources.get("scale")
        scale_paths = None
        if isinstance(scale, dict):
            scale_paths = ScalePaths(
                spec_replicas=scale.get("specReplicasPath", ".spec.replicas"),
                status_replicas=scale.get("statusReplicasPath", ".status.replicas"),
                label_selector=scale.get("labelSelectorPath"),
            )
        selectable = tuple(
            f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or [] if "jsonPath" in f
        )
        infos.append(
            ResourceInfo(
                group=spec.get("group", ""),
                version=version.get("name", ""),
                kind=kind,
                plural=plural,
                singular=names.get("singular") or kind.lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in subresources,
                scale=scale_paths,
                generation=True,
                unconditional_update=False,
                custom=True,
                schema=copy.deepcopy((version.get("schema") or {}).get("openAPIV3Schema")),
                field_selectors=selectable,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                storage_version=storage_version(crd),
            )
        )
    return infos


def storage_version(crd: Object) -> str:
    """The version marked ``storage: true`` (the first one when none is)."""
    versions = (crd.get("spec") or {}).get("versions") or []
    for version in versions:
        if version.get("storage"):
            return str(version.get("name", ""))
    return str(versions[0].get("name", "")) if versions else ""


class ResourceTable:
    """Lookup of served resources by group/version and plural, kind, or short name.

    Not thread-safe on its own; the store guards it with its lock.
    """

    def __init__(self, infos: Iterable[ResourceInfo] = BUILTINS) -> None:
        self._by_gv: dict[tuple[str, str], dict[str, ResourceInfo]] = {}
        self._crd_owned: dict[str, list[ResourceInfo]] = {}
        for info in infos:
            self.add(info)

    def add(self, info: ResourceInfo) -> None:
        """Serve ``info`` (replacing one of the same group, version and plural)."""
        self._by_gv.setdefault((info.group, info.version), {})[info.plural] = info

    def remove(self, info: ResourceInfo) -> None:
        """Stop serving ``info``."""
        resources = self._by_gv.get((info.group, info.version), {})
        resources.pop(info.plural, None)
        if not resources:
            self._by_gv.pop((info.group, info.version), None)

    def set_crd(self, crd_name: str, infos: list[ResourceInfo]) -> None:
        """Serve exactly ``infos`` for the CRD ``crd_name`` (an empty list stops serving it)."""
        for old in self._crd_owned.pop(crd_name, []):
            self.remove(old)
        for info in infos:
            self.add(info)
        if infos:
            self._crd_owned[crd_name] = infos

    def lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        """The resource at ``/apis/<group>/<version>/<plural>``, or ``None``."""
        return self._by_gv.get((group, version), {}).get(plural)

    def find(self, api_version: str, name: str) -> ResourceInfo | None:
        """By apiVersion and any of kind, plural, singular or short name (case-insensitive kind)."""
        group, _, version = api_version.rpartition("/")
        resources = self._by_gv.get((group, version), {})
        if name in resources:
            return resources[name]
        lowered = name.lower()
        for info in resources.values():
            if lowered in (info.kind.lower(), info.singular) or lowered in info.short_names:
                return info
        return None

    def any_version(self, group: str, plural: str) -> ResourceInfo | None:
        """Some served version of ``group``/``plural`` (the first one added)."""
        for (g, _), resources in self._by_gv.items():
            if g == group and plural in resources:
                return resources[plural]
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group, in the order they were first served."""
        out: dict[str, list[str]] = {}
        for group, version in self._by_gv:
            out.setdefault(group, []).append(version)
        return out

    def resources(self, group: str, version: str) -> list[ResourceInfo]:
        """Every resource of one group/version."""
        return list(self._by_gv.get((group, version), {}).values())

    def all(self) -> list[ResourceInfo]:
        """Every served resource in every version."""
        return [info for resources in self._by_gv.values() for info in resources.values()]
