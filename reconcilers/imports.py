"""APIResourceImports: the schemas a physical cluster serves, written into kcp for the compatibility check.

kcp's API importer names an import ``<plural>.<syncTarget>.<version>.<group or
core>``, sets ``spec.location`` to the SyncTarget name and owns it by the SyncTarget.  We import the
group-versions of the resources the SyncTarget is asked to sync (its ``status.syncedResources``): for
each, one discovery GET (``/apis/<g>/<v>``, for kind, scope and names) and one OpenAPI v3 GET
(``/openapi/v3/apis/<g>/<v>``, for the schema).  ``$ref`` and single-element ``allOf`` are inlined
(descriptions dropped) so that the stored schema stands alone; a reference cycle is cut with
``x-kubernetes-preserve-unknown-fields``.  :func:`structural_schema` then writes it as a CRD schema,
as kcp's schema puller does: ``metadata`` is a plain object, and an OpenAPI int-or-string (``format:
int-or-string`` with a ``oneOf`` of integer and string) becomes ``x-kubernetes-int-or-string`` with the
``anyOf`` a CRD uses (so does a Quantity, a ``oneOf`` of string and number).  The shipped
``kubernetes`` export is written the same way, so that a physical cluster of the same Kubernetes
version is compatible with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kcp_tmc.policies.keys import ANNOTATION_OWNING_CLUSTER
from kcp_tmc.reconcilers.client import ApiError, KubeClient

__all__ = [
    "LABEL_IMPORT_CLUSTER",
    "desired_imports",
    "discover",
    "import_name",
    "inline_schema",
    "structural_schema",
    "wanted_group_versions",
]

#: Label on the imports a Cluster wrote, so that stale ones are found by one list.
LABEL_IMPORT_CLUSTER = "tmc.kcp.io/cluster"
_MAX_DEPTH = 24


def import_name(plural: str, sync_target: str, version: str, group: str) -> str:
    """``<plural>.<syncTarget>.<version>.<group or core>``."""
    return f"{plural}.{sync_target}.{version}.{group or 'core'}"


def wanted_group_versions(sync_target: Mapping[str, Any]) -> dict[tuple[str, str], set[str]]:
    """``{(group, version): {plural}}`` of the SyncTarget's ``status.syncedResources``."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for entry in (sync_target.get("status") or {}).get("syncedResources") or []:
        if not isinstance(entry, Mapping) or not entry.get("resource"):
            continue
        for version in entry.get("versions") or []:
            wanted.setdefault((str(entry.get("group") or ""), str(version)), set()).add(
                str(entry["resource"])
            )
    return wanted


def inline_schema(
    schema: Any, components: Mapping[str, Any], seen: tuple[str, ...] = (), depth: int = 0
) -> Any:
    """``schema`` with ``$ref``s replaced by their targets (see the module docstring)."""
    if not isinstance(schema, Mapping):
        return schema
    if depth > _MAX_DEPTH:
        return {"x-kubernetes-preserve-unknown-fields": True}
    node = dict(schema)
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], Mapping):
        node.pop("allOf")
        node = {**all_of[0], **node}
    ref = node.pop("$ref", None)
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or name not in components:
            return {"x-kubernetes-preserve-unknown-fields": True}
        target = inline_schema(components[name], components, (*seen, name), depth + 1)
        node = {**target, **node}
        seen = (*seen, name)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key == "properties" and isinstance(value, Mapping):
            out[key] = {k: inline_schema(v, components, seen, depth + 1) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = inline_schema(value, components, seen, depth + 1)
        else:
            out[key] = value
    return out


_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def _scalar_one_of(node: Mapping[str, Any]) -> bool:
    # A Quantity: OpenAPI says "a string or a number"; a CRD says int-or-string.
    one_of = node.get("oneOf")
    return (
        "type" not in node
        and isinstance(one_of, list)
        and bool(one_of)
        and all(isinstance(o, Mapping) and o.get("type") in ("integer", "number", "string") for o in one_of)
    )


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {key: _structural(value) for key, value in node.items()}
    if out.get("format") == "int-or-string" or out.get("x-kubernetes-int-or-string") or _scalar_one_of(out):
        for key in ("format", "oneOf", "type"):
            out.pop(key, None)
        out["x-kubernetes-int-or-string"] = True
        out["anyOf"] = [dict(item) for item in _INT_OR_STRING_ANY_OF]
    return out


def structural_schema(schema: Any) -> Any:
    """An inlined OpenAPI schema of a kind as a CRD schema (see the module docstring)."""
    if not isinstance(schema, Mapping):
        return schema
    out = _structural(schema)
    out.pop("x-kubernetes-group-version-kind", None)
    properties = out.get("properties")
    if isinstance(properties, dict) and "metadata" in properties:
        # A CRD's metadata is the apiserver's own; kcp's puller leaves it a plain object.
        properties["metadata"] = {"type": "object"}
    return out


def _group_version_path(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def discover(client: KubeClient, wanted: Mapping[tuple[str, str], set[str]]) -> list[dict[str, Any]]:
    """Resource descriptions with inlined schemas for the wanted group-versions that the cluster serves.

    Each item: ``group, version, plural, singular, kind, namespaced, schema``.  A group-version the
    cluster does not serve (404) is skipped; any other failure raises.
    """
    found: list[dict[str, Any]] = []
    for (group, version), plurals in sorted(wanted.items()):
        path = _group_version_path(group, version)
        try:
            discovery = client.get_json(path)
            openapi = client.get_json("/openapi/v3" + path)
        except ApiError as exc:
            if exc.status == 404:
                continue
            raise
        components = ((openapi.get("components") or {}).get("schemas")) or {}
        by_gvk: dict[tuple[str, str, str], Any] = {}
        for schema in components.values():
            for gvk in (
                (schema.get("x-kubernetes-group-version-kind") or []) if isinstance(schema, Mapping) else []
            ):
                by_gvk[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = schema
        for resource in discovery.get("resources") or []:
            plural = resource.get("name", "")
            if "/" in plural or plural not in plurals:
                continue
            schema = by_gvk.get((group, version, resource.get("kind", "")))
            found.append(
                {
                    "group": group,
                    "version": version,
                    "plural": plural,
                    "singular": resource.get("singularName") or resource.get("kind", "").lower(),
                    "kind": resource.get("kind", ""),
                    "namespaced": bool(resource.get("namespaced")),
                    "schema": structural_schema(inline_schema(schema, components))
                    if schema is not None
                    else None,
                }
            )
    return found


def desired_imports(
    discovered: Iterable[Mapping[str, Any]], sync_target: Mapping[str, Any], cluster_name: str
) -> dict[str, dict[str, Any]]:
    """The APIResourceImport objects, by name, for the discovered resources of one SyncTarget."""
    meta = sync_target["metadata"]
    out: dict[str, dict[str, Any]] = {}
    for item in discovered:
        if item.get("schema") is None:
            continue
        name = import_name(item["plural"], meta["name"], item["version"], item["group"])
        out[name] = {
            "apiVersion": "apiresource.kcp.io/v1alpha1",
            "kind": "APIResourceImport",
            "metadata": {
                "name": name,
                "labels": {LABEL_IMPORT_CLUSTER: cluster_name},
                "annotations": {ANNOTATION_OWNING_CLUSTER: cluster_name},
                "ownerReferences": [
                    {
                        "apiVersion": "workload.kcp.io/v1alpha1",
                        "kind": "SyncTarget",
                        "name": meta["name"],
                        "uid": meta.get("uid", ""),
                    }
                ],
            },
            "spec": {
                "location": meta["name"],
                "schemaUpdateStrategy": "UpdateUnpublished",
                "groupVersion": {"group": item["group"], "version": item["version"]},
                "scope": "Namespaced" if item["namespaced"] else "Cluster",
                "plural": item["plural"],
                "singular": item["singular"],
                "kind": item["kind"],
                "listKind": item["kind"] + "List",
                "openAPIV3Schema": item["schema"],
            },
        }
    return out
