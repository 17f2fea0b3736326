"""Which APIs a syncer or upsyncer virtual workspace serves for one SyncTarget, and its discovery documents.

The API set is the union of

- the built-ins every syncer needs: core v1 ``namespaces`` (cluster-scoped, with ``/status``),
  ``configmaps``, ``secrets`` and ``serviceaccounts`` (no short names or categories: kcp serves them from
  schemas of its own that carry none);
- every resource of the SyncTarget's supported APIExports whose ``status.syncedResources`` entry is
  ``Accepted``, in every served version of its APIResourceSchema (Pending and Incompatible are absent);

then filtered by the workspace: the syncer never serves core ``pods`` and ``endpoints``; the upsyncer
serves only core ``persistentvolumes`` and ``pods`` (none of the built-ins, so only what an export
provides and the target accepted).  Verbs follow kcp: the syncer cannot create or delete; neither has
``deletecollection``; ``/status`` has get, patch and update.

The documents have the shapes kube-apiserver answers with: ``APIVersions`` (``/api``),
``APIResourceList`` (``/api/v1``, ``/apis/<group>/<version>``), ``APIGroupList`` (``/apis``),
``APIGroup`` (``/apis/<group>``) and the aggregated ``apidiscovery.k8s.io/v2`` ``APIGroupDiscoveryList``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kcp_tmc.policies.clusters import DEFAULT_CLUSTER, cluster_of
from kcp_tmc.policies.kinds import api_resource_entry, api_version_of, version_priority
from kcp_tmc.reconcilers.syncedresources import ACCEPTED, ExportIndex, export_refs

__all__ = [
    "AGGREGATED_DISCOVERY_MEDIA_TYPE",
    "SERVICE_VERBS",
    "STATUS_VERBS",
    "ServedAPIs",
    "ServedResource",
    "served_apis",
    "wants_aggregated",
]

Obj = dict[str, Any]

#: Main-resource verbs of each virtual workspace.
SERVICE_VERBS: Mapping[str, tuple[str, ...]] = {
    "syncer": ("get", "list", "patch", "update", "watch"),
    "upsyncer": ("create", "delete", "get", "list", "patch", "update", "watch"),
}
#: Verbs of ``<resource>/status`` in both.
STATUS_VERBS = ("get", "patch", "update")

#: The ``Content-Type`` of an aggregated discovery answer.
AGGREGATED_DISCOVERY_MEDIA_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# The core v1 resources served whatever the exports: (plural, singular, kind, namespaced, has status).
_BUILTINS = (
    ("namespaces", "namespace", "Namespace", False, True),
    ("configmaps", "configmap", "ConfigMap", True, False),
    ("secrets", "secret", "Secret", True, False),
    ("serviceaccounts", "serviceaccount", "ServiceAccount", True, False),
)


def _allowed(service: str, group: str, plural: str) -> bool:
    if service == "upsyncer":
        return group == "" and plural in ("persistentvolumes", "pods")
    return not (group == "" and plural in ("pods", "endpoints"))


@dataclass(frozen=True)
class ServedResource:
    """One served group/version/resource."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    #: Served subresources: ``("status",)`` or none.
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    list_kind: str = ""
    #: The identity hash of the export that provides it (empty for the built-ins).
    identity_hash: str = ""
    #: The logical cluster of the export's schema (empty for the built-ins).
    schema_cluster: str = ""
    #: The version objects are stored in (what the storage version hash is computed over).
    storage_version: str = ""

    @property
    def group_version(self) -> str:
        return api_version_of(self.group, self.version)

    def subresource_verbs(self, subresource: str) -> tuple[str, ...]:
        """The verbs of ``<plural>/<subresource>``; none when it is not served."""
        return STATUS_VERBS if subresource in self.subresources else ()

    def api_resources(self) -> list[Obj]:
        """Its ``APIResource`` entries of an ``APIResourceList``: the resource, then its subresources."""
        entry = api_resource_entry(
            group=self.group,
            version=self.version,
            plural=self.plural,
            singular=self.singular,
            kind=self.kind,
            namespaced=self.namespaced,
            verbs=self.verbs,
            short_names=self.short_names,
            categories=self.categories,
            storage_version=self.storage_version,
        )
        entries: list[Obj] = [entry]
        for sub in self.subresources:
            entries.append(
                {
                    "name": f"{self.plural}/{sub}",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": list(self.subresource_verbs(sub)),
                }
            )
        return entries

    def aggregated(self) -> Obj:
        """Its ``APIResourceDiscovery`` entry of aggregated discovery."""
        kind = {"group": self.group, "version": self.version, "kind": self.kind}
        entry: Obj = {
            "resource": self.plural,
            "responseKind": kind,
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        if self.subresources:
            entry["subresources"] = [
                {"subresource": sub, "responseKind": dict(kind), "verbs": list(self.subresource_verbs(sub))}
                for sub in self.subresources
            ]
        return entry


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _has_status(subresources: Any) -> bool:
    return isinstance(subresources, Mapping) and "status" in subresources


def _from_schema(
    schema: Mapping[str, Any], service: str, identity: str, home: str
) -> Iterable[ServedResource]:
    spec = schema.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if isinstance(v, Mapping)]
    storage = next((str(v.get("name")) for v in versions if v.get("storage")), "")
    for version in versions:
        if not version.get("served") or not version.get("name"):
            continue
        subresources = version.get("subresources") or {}
        yield ServedResource(
            group=str(spec.get("group") or ""),
            version=str(version["name"]),
            plural=str(names.get("plural") or ""),
            singular=str(names.get("singular") or ""),
            kind=str(names.get("kind") or ""),
            namespaced=spec.get("scope") != "Cluster",
            verbs=SERVICE_VERBS[service],
            subresources=("status",)
            if isinstance(subresources, Mapping) and "status" in subresources
            else (),
            short_names=_strings(names.get("shortNames")),
            categories=_strings(names.get("categories")),
            list_kind=str(names.get("listKind") or f"{names.get('kind') or ''}List"),
            identity_hash=identity,
            schema_cluster=home,
            storage_version=storage,
        )


def _builtins(service: str) -> Iterable[ServedResource]:
    for plural, singular, kind, namespaced, status in _BUILTINS:
        yield ServedResource(
            group="",
            version="v1",
            plural=plural,
            singular=singular,
            kind=kind,
            namespaced=namespaced,
            verbs=SERVICE_VERBS[service],
            subresources=("status",) if status else (),
            list_kind=f"{kind}List",
            storage_version="v1",
        )


@dataclass
class ServedAPIs:
    """The APIs served to one SyncTarget by one virtual workspace, and the discovery documents of them."""

    service: str
    resources: dict[tuple[str, str, str], ServedResource] = field(default_factory=dict)

    def resource(self, group: str, version: str, plural: str) -> ServedResource | None:
        """The served resource, or None: what a request for any other resource must be answered with 404."""
        return self.resources.get((group, version, plural))

    def group_versions(self) -> dict[str, list[str]]:
        """Every served group (core ``""`` included) with its versions, preferred first."""
        out: dict[str, set[str]] = {}
        for group, version, _ in self.resources:
            out.setdefault(group, set()).add(version)
        return {g: sorted(out[g], key=version_priority) for g in sorted(out)}

    def _in(self, group: str, version: str) -> list[ServedResource]:
        found = [r for (g, v, _), r in self.resources.items() if g == group and v == version]
        return sorted(found, key=lambda r: r.plural)

    # --- documents ---

    def api_versions(self, server_address: str = "") -> Obj:
        """``/api``: ``APIVersions`` (``v1`` is always there: the built-ins are, for the syncer)."""
        versions = self.group_versions().get("", [])
        doc: Obj = {"kind": "APIVersions", "versions": versions}
        if server_address:
            doc["serverAddressByClientCIDRs"] = [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
        return doc

    def resource_list(self, group: str, version: str) -> Obj | None:
        """``/api/v1`` or ``/apis/<group>/<version>``: ``APIResourceList``; None when nothing is served."""
        found = self._in(group, version)
        if not found:
            return None
        doc: Obj = {"kind": "APIResourceList"}
        if group:
            # kube-apiserver's core list carries no apiVersion; the group lists do.
            doc["apiVersion"] = "v1"
        doc["groupVersion"] = found[0].group_version
        doc["resources"] = [entry for r in found for entry in r.api_resources()]
        return doc

    def _group(self, group: str, versions: list[str]) -> Obj:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def api_group(self, group: str) -> Obj | None:
        """``/apis/<group>``: ``APIGroup``; None when the group is not served."""
        versions = self.group_versions().get(group) if group else None
        if not versions:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group(group, versions)}

    def api_group_list(self) -> Obj:
        """``/apis``: ``APIGroupList`` of every named group."""
        groups = [self._group(g, vs) for g, vs in self.group_versions().items() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def aggregated(self, core: bool) -> Obj:
        """Aggregated discovery (``APIGroupDiscoveryList``) of ``/api`` (``core``) or of ``/apis``."""
        items = []
        for group, versions in self.group_versions().items():
            if bool(group) == core:
                continue
            items.append(
                {
                    "metadata": {"name": group} if group else {},
                    "versions": [
                        {
                            "version": v,
                            "resources": [r.aggregated() for r in self._in(group, v)],
                            "freshness": "Current",
                        }
                        for v in versions
                    ],
                }
            )
        return {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": "apidiscovery.k8s.io/v2",
            "metadata": {},
            "items": items,
        }


def wants_aggregated(accept: str) -> bool:
    """Whether an ``Accept`` header asks for aggregated discovery (v2) before any plain JSON."""
    for part in accept.split(","):
        params = {}
        media, *rest = (p.strip() for p in part.split(";"))
        for param in rest:
            name, _, value = param.partition("=")
            params[name.strip()] = value.strip()
        if (
            media in ("application/json", "*/*")
            and params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") == "v2"
            and params.get("as") == "APIGroupDiscoveryList"
        ):
            return media == "application/json"
        if media in ("application/json", "*/*", "application/*") and "g" not in params:
            return False
    return False


def served_apis(
    target: Mapping[str, Any],
    exports: list[dict[str, Any]],
    schemas: list[dict[str, Any]],
    service: str,
    *,
    cluster: str | None = None,
    default_cluster: str = DEFAULT_CLUSTER,
) -> ServedAPIs:
    """The APIs ``service`` (``"syncer"`` or ``"upsyncer"``) serves for the SyncTarget ``target``.

    ``exports`` and ``schemas`` are APIExports and APIResourceSchemas of any workspaces, each in the
    logical cluster its ``kcp.io/cluster`` annotation names (else ``default_cluster``); ``cluster`` is
    the SyncTarget's own (by default, read the same way).  An export is found by its cluster name or by
    its ``kcp.io/path``.
    """
    if service not in SERVICE_VERBS:
        raise ValueError(f"unknown virtual workspace {service!r}: expected one of {sorted(SERVICE_VERBS)}")
    target_cluster = cluster if cluster is not None else cluster_of(target, default_cluster)
    accepted: dict[tuple[str, str], str] = {}
    for entry in (target.get("status") or {}).get("syncedResources") or []:
        if isinstance(entry, Mapping) and entry.get("state") == ACCEPTED:
            accepted[(str(entry.get("group") or ""), str(entry.get("resource") or ""))] = str(
                entry.get("identityHash") or ""
            )
    index = ExportIndex.build(exports, schemas, lambda obj: cluster_of(obj, default_cluster))
    served = ServedAPIs(service)
    for export_cluster, export_name in export_refs(target, target_cluster):
        export = index.exports.get((export_cluster, export_name))
        if export is None:
            continue
        home = index.homes[(export_cluster, export_name)]
        for schema_name in (export.get("spec") or {}).get("latestResourceSchemas") or []:
            schema = index.schemas.get((home, str(schema_name)))
            if schema is None:
                continue
            spec = schema.get("spec") or {}
            gr = (str(spec.get("group") or ""), str((spec.get("names") or {}).get("plural") or ""))
            if gr not in accepted or not _allowed(service, *gr):
                continue
            for resource in _from_schema(schema, service, accepted[gr], home):
                served.resources[(resource.group, resource.version, resource.plural)] = resource
    for resource in _builtins(service):
        # The built-ins win over an export's schema of the same resource, as in kcp.
        if _allowed(service, resource.group, resource.plural):
            served.resources[(resource.group, resource.version, resource.plural)] = resource
    return served
