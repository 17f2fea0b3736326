"""``status.syncedResources`` of a SyncTarget: what to sync, and whether it can be.

Step A (kcp's ``exportReconciler``): for every ``spec.supportedAPIExports`` entry, resolve the APIExport
(its ``path`` or the SyncTarget's own workspace), then each name of its ``spec.latestResourceSchemas``;
a missing export or schema is skipped silently.  Every schema gives ``{group, resource, versions (the
served ones, sorted), identityHash (the export's)}``; ``state`` is carried over from an existing entry
with the same group, resource and identityHash, else ``Pending`` (the CRD default kcp relies on).

Ordering: kcp sorts with a comparator that is not a strict weak ordering (``i < j`` when
``group_i > group_j`` OR ``resource_i > resource_j``), whose visible effect is descending group order.
We sort by group descending, then resource ascending: the same order on every input kcp's tests and e2e
use (``[apps/deployments, ""/services]``, ``[wildwest.dev/cowboys, ""/services]``), and deterministic
where kcp's is not (several resources in one group).

Step B (kcp's ``apiCompatibleReconciler``): for each entry, over its versions in ascending order: no
upstream schema gives ``Pending``; no APIResourceImport of the SyncTarget for that version gives
``Incompatible``; a structural type mismatch (:mod:`.compat`) gives ``Incompatible``; otherwise
``Accepted`` and stop.  The state is therefore Accepted when any version fits, else the last version's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from kcp_tmc.policies.keys import ANNOTATION_PATH
from kcp_tmc.reconcilers.compat import is_compatible

__all__ = [
    "ACCEPTED",
    "INCOMPATIBLE",
    "PENDING",
    "ExportIndex",
    "ResourceToSync",
    "SchemaKey",
    "desired_synced_resources",
    "downstream_schemas",
    "export_refs",
]

PENDING = "Pending"
INCOMPATIBLE = "Incompatible"
ACCEPTED = "Accepted"

#: ``(group, version, resource)``.
SchemaKey = tuple[str, str, str]


class ResourceToSync(TypedDict):
    """One entry of ``status.syncedResources``."""

    group: str
    resource: str
    versions: list[str]
    identityHash: str
    state: str


@dataclass
class ExportIndex:
    """APIExports and APIResourceSchemas of one cycle, indexed by ``(cluster, name)``."""

    exports: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    schemas: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    #: The logical cluster holding each export (and so its schemas), whichever key found it.
    homes: dict[tuple[str, str], str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        exports: Iterable[Mapping[str, Any]],
        schemas: Iterable[Mapping[str, Any]],
        cluster_of: Any,
    ) -> ExportIndex:
        """Index listed objects; ``cluster_of(obj)`` names the logical cluster of each."""
        index = cls()
        for export in exports:
            name = export["metadata"]["name"]
            home = cluster_of(export)
            index.exports[(home, name)] = export
            index.homes[(home, name)] = home
            # kcp cluster names are hashes; users name a workspace by its path, which kcp records in the
            # ``kcp.io/path`` annotation.  An export is found under either.
            path = (export["metadata"].get("annotations") or {}).get(ANNOTATION_PATH)
            if path:
                index.exports.setdefault((str(path), name), export)
                index.homes.setdefault((str(path), name), home)
        for schema in schemas:
            index.schemas[(cluster_of(schema), schema["metadata"]["name"])] = schema
        return index


def export_refs(sync_target: Mapping[str, Any], cluster: str) -> list[tuple[str, str]]:
    """``(cluster, export name)`` of every supported export; the K11 default ``kubernetes`` when unset."""
    spec = sync_target.get("spec") or {}
    if "supportedAPIExports" not in spec or spec["supportedAPIExports"] is None:
        # Only an absent field defaults to ``kubernetes``; an explicit empty list supports nothing.
        return [(cluster, "kubernetes")]
    refs = spec["supportedAPIExports"] or []
    out: list[tuple[str, str]] = []
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("export"):
            out.append((str(ref.get("path") or cluster), str(ref["export"])))
    return out


def _served_versions(schema: Mapping[str, Any]) -> list[str]:
    versions = (schema.get("spec") or {}).get("versions") or []
    return sorted(
        str(v["name"]) for v in versions if isinstance(v, Mapping) and v.get("served") and v.get("name")
    )


def _upstream(
    sync_target: Mapping[str, Any], cluster: str, index: ExportIndex
) -> tuple[list[ResourceToSync], dict[SchemaKey, Any]]:
    entries: list[ResourceToSync] = []
    schemas_by_gvr: dict[SchemaKey, Any] = {}
    for export_cluster, export_name in export_refs(sync_target, cluster):
        export = index.exports.get((export_cluster, export_name))
        if export is None:
            continue
        identity = str((export.get("status") or {}).get("identityHash") or "")
        for schema_name in (export.get("spec") or {}).get("latestResourceSchemas") or []:
            home = index.homes.get((export_cluster, export_name), export_cluster)
            schema = index.schemas.get((home, schema_name))
            if schema is None:
                continue
            spec = schema.get("spec") or {}
            group = str(spec.get("group") or "")
            plural = str((spec.get("names") or {}).get("plural") or "")
            versions = _served_versions(schema)
            if not plural or not versions:
                continue
            entries.append(
                {
                    "group": group,
                    "resource": plural,
                    "versions": versions,
                    "identityHash": identity,
                    "state": "",
                }
            )
            for version in spec.get("versions") or []:
                if isinstance(version, Mapping) and version.get("name"):
                    schemas_by_gvr[(group, str(version["name"]), plural)] = version.get("schema")
    return entries, schemas_by_gvr


def _sort_key(entry: ResourceToSync) -> tuple[tuple[int, ...], str]:
    # Descending group: negate the code points (a shorter prefix sorts after its extensions, as in kcp).
    return (*(-ord(c) for c in entry["group"]), 1), entry["resource"]


def downstream_schemas(imports: Iterable[Mapping[str, Any]], location: str) -> dict[SchemaKey, Any]:
    """OpenAPI schemas of the APIResourceImports whose ``spec.location`` is ``location``."""
    out: dict[SchemaKey, Any] = {}
    for imp in imports:
        spec = imp.get("spec") or {}
        if spec.get("location") != location:
            continue
        gv = spec.get("groupVersion") or {}
        out[(str(gv.get("group") or ""), str(gv.get("version") or ""), str(spec.get("plural") or ""))] = (
            spec.get("openAPIV3Schema")
        )
    return out


def _state(
    entry: ResourceToSync, upstream: Mapping[SchemaKey, Any], downstream: Mapping[SchemaKey, Any]
) -> str:
    state = entry["state"] or PENDING
    for version in entry["versions"]:
        key = (entry["group"], version, entry["resource"])
        if upstream.get(key) is None:
            state = PENDING
            continue
        if key not in downstream or downstream[key] is None:
            state = INCOMPATIBLE
            continue
        if not is_compatible(upstream[key], downstream[key]):
            state = INCOMPATIBLE
            continue
        return ACCEPTED
    return state


def desired_synced_resources(
    sync_target: Mapping[str, Any],
    cluster: str,
    index: ExportIndex,
    downstream: Mapping[SchemaKey, Any] | None,
) -> list[ResourceToSync] | None:
    """The desired ``status.syncedResources`` (None when empty, as kcp leaves it nil).

    ``downstream`` holds the SyncTarget's imported schemas (:func:`downstream_schemas`); None skips
    step B and only carries states over (the compatibility controller disabled).
    """
    entries, upstream = _upstream(sync_target, cluster, index)
    existing = (sync_target.get("status") or {}).get("syncedResources") or []
    carried = {
        (e.get("group") or "", e.get("resource"), e.get("identityHash") or ""): e.get("state") or ""
        for e in existing
        if isinstance(e, Mapping)
    }
    for entry in entries:
        entry["state"] = (
            carried.get((entry["group"], entry["resource"], entry["identityHash"]), "") or PENDING
        )
    entries.sort(key=_sort_key)
    if downstream is not None:
        for entry in entries:
            entry["state"] = _state(entry, upstream, downstream)
    return entries or None
