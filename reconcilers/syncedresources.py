"""``status.syncedResources`` of a SyncTarget: what to sync, and whether it can be.

Step A (kcp's ``exportReconciler``): for every ``spec.supportedAPIExports`` entry, resolve the APIExport
(its ``path`` or the SyncTarget's own workspace), then each name of its ``spec.latestResourceSchemas``;
a missing export or schema is skipped silently.  Every schema gives ``{group, resource, versions (the
served ones, sorted), identityHash (the export's)}``; ``state`` is carried over from an existing entry
with the same group, resource and identityHash, else ``Pending`` (the CRD default kcp relies on).

Ordering: kcp sorts the list with Go's ``sort.SliceStable`` and a comparator that is not a strict weak
ordering (``i`` before ``j`` when ``group_i > group_j`` OR ``resource_i > resource_j``).  The result
depends on the input order and on the sorting algorithm, so :func:`go_slice_stable` replays Go's (an
insertion sort of blocks of 20, then SymMerge rounds) with that comparator: the list comes out exactly
as kcp writes it.  Within one group that is resource descending; across groups mostly descending group
order (``[apps/deployments, ""/services]``), but not always.

Step B (kcp's ``apiCompatibleReconciler``): for each entry, over its versions in ascending order: no
upstream schema gives ``Pending``; no APIResourceImport of the SyncTarget for that version gives
``Incompatible``; a structural type mismatch (:mod:`.compat`) gives ``Incompatible``; otherwise
``Accepted`` and stop.  The state is therefore Accepted when any version fits, else the last version's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
    "go_slice_stable",
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


def go_slice_stable(items: list[Any], less: Callable[[Any, Any], bool]) -> None:
    """Sort ``items`` in place exactly as Go's ``sort.SliceStable(items, less)`` does, for any ``less``.

    With a comparator that is a strict weak ordering this is any stable sort; with one that is not
    (kcp's for syncedResources), only the same sequence of comparisons and swaps gives the same order.
    """

    def lt(i: int, j: int) -> bool:
        return less(items[i], items[j])

    def swap(i: int, j: int) -> None:
        items[i], items[j] = items[j], items[i]

    def insertion_sort(a: int, b: int) -> None:
        for i in range(a + 1, b):
            j = i
            while j > a and lt(j, j - 1):
                swap(j, j - 1)
                j -= 1

    def swap_range(a: int, b: int, n: int) -> None:
        for i in range(n):
            swap(a + i, b + i)

    def rotate(a: int, m: int, b: int) -> None:
        i, j = m - a, b - m
        while i != j:
            if i > j:
                swap_range(m - i, m, j)
                i -= j
            else:
                swap_range(m - i, m + j - i, i)
                j -= i
        swap_range(m - i, m, i)

    def sym_merge(a: int, m: int, b: int) -> None:
        if m - a == 1:
            # Binary search for the place of items[a] in [m, b), then shift it there.
            i, j = m, b
            while i < j:
                h = (i + j) // 2
                if lt(h, a):
                    i = h + 1
                else:
                    j = h
            for k in range(a, i - 1):
                swap(k, k + 1)
            return
        if b - m == 1:
            i, j = a, m
            while i < j:
                h = (i + j) // 2
                if not lt(m, h):
                    i = h + 1
                else:
                    j = h
            for k in range(m, i, -1):
                swap(k, k - 1)
            return
        mid = (a + b) // 2
        n = mid + m
        if m > mid:
            start, r = n - b, mid
        else:
            start, r = a, m
        p = n - 1
        while start < r:
            c = (start + r) // 2
            if not lt(p - c, c):
                start = c + 1
            else:
                r = c
        end = n - start
        if start < m < end:
            rotate(start, m, end)
        if a < start < mid:
            sym_merge(a, start, mid)
        if mid < end < b:
            sym_merge(mid, end, b)

    n = len(items)
    block = 20
    a, b = 0, block
    while b <= n:
        insertion_sort(a, b)
        a, b = b, b + block
    insertion_sort(a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            sym_merge(a, a + block, b)
            a, b = b, b + 2 * block
        if a + block < n:
            sym_merge(a, a + block, n)
        block *= 2


def _kcp_less(i: ResourceToSync, j: ResourceToSync) -> bool:
    # kcp's comparator, kept as it is (not a strict weak ordering).
    return i["group"] > j["group"] or i["resource"] > j["resource"]


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
    go_slice_stable(entries, _kcp_less)
    if downstream is not None:
        for entry in entries:
            entry["state"] = _state(entry, upstream, downstream)
    return entries or None
