"""Discovery and OpenAPI documents of the fake server.

Discovery is the plain (non-aggregated) form: ``APIVersions``, ``APIGroupList``,
``APIGroup`` and ``APIResourceList``.  OpenAPI v3 has one document per group
version with a component schema per kind: the CRD's ``openAPIV3Schema`` for
custom resources, a permissive object schema for built-ins.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from typing import Any

from kcp_tmc.policies.kinds import api_resource_entry, version_priority
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.testing.resources import ResourceInfo, ResourceTable

Object = dict[str, Any]

GIT_VERSION = "v1.30.0-fake"

VERSION_INFO: Object = {
    "major": "1",
    "minor": "30",
    "gitVersion": GIT_VERSION,
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(address: str) -> Object:
    """``/api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def api_group(table: ResourceTable, group: str) -> Object | None:
    """``/apis/<group>``: its versions, preferred first."""
    versions = sorted(table.group_versions().get(group, []), key=version_priority)
    if not versions:
        return None
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_group_list(table: ResourceTable) -> Object:
    """``/apis``: every named group."""
    groups = []
    for group in table.group_versions():
        if group:
            doc = api_group(table, group)
            assert doc is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
            doc.pop("kind")
            doc.pop("apiVersion")
            groups.append(doc)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _resource_entry(info: ResourceInfo) -> Object:
    return api_resource_entry(
        group=info.group,
        version=info.version,
        plural=info.plural,
        singular=info.singular,
        kind=info.kind,
        namespaced=info.namespaced,
        verbs=sorted(info.verbs),
        short_names=info.short_names,
        categories=info.categories,
        storage_version=info.storage_version,
    )


def resource_list(table: ResourceTable, group: str, version: str) -> Object | None:
    """``/api/v1`` or ``/apis/<group>/<version>``: resources and their subresources."""
    infos = table.resources(group, version)
    if not infos:
        return None
    resources: list[Object] = []
    for info in sorted(infos, key=lambda i: i.plural):
        resources.append(_resource_entry(info))
        for sub in info.subresources:
            entry: Object = {
                "name": f"{info.plural}/{sub}",
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "scale":
                entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            elif sub == "finalize":
                entry["verbs"] = ["update"]
            resources.append(entry)
    group_version = f"{group}/{version}" if group else version
    doc: Object = {"kind": "APIResourceList"}
    if group:
        # As kube-apiserver: the core list (/api/v1) carries no apiVersion, the group lists do.
        doc["apiVersion"] = "v1"
    doc.update({"groupVersion": group_version, "resources": resources})
    return doc


# --- OpenAPI -------------------------------------------------------------------------------------------


def _schema_name(info: ResourceInfo) -> str:
    if info.custom:
        reversed_group = ".".join(reversed(info.group.split(".")))
        return f"{reversed_group}.{info.version}.{info.kind}"
    package = {"": "core", "apps": "apps", "batch": "batch"}.get(info.group, info.group.split(".")[0])
    return f"io.k8s.api.{package}.{info.version}.{info.kind}"


_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@functools.cache
def _builtin_schemas() -> dict[tuple[str, str, str], Object]:
    # The schemas of services, deployments and ingresses are those a real kube-apiserver publishes:
    # the shipped kubernetes export holds them, written from one (as CRD schemas).
    out: dict[tuple[str, str, str], Object] = {}
    for doc in kubernetes_export():
        if doc.get("kind") != "APIResourceSchema":
            continue
        spec = doc["spec"]
        for version in spec["versions"]:
            out[(spec["group"], version["name"], spec["names"]["kind"])] = version["schema"]
    return out


def _kind_schema(info: ResourceInfo) -> Object:
    gvk = [{"group": info.group, "kind": info.kind, "version": info.version}]
    builtin = None if info.custom else _builtin_schemas().get((info.group, info.version, info.kind))
    if info.custom and info.schema:
        body = copy.deepcopy(info.schema)
    elif builtin is not None:
        body = copy.deepcopy(builtin)
    else:
        body = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    properties = body.setdefault("properties", {})
    properties.setdefault("apiVersion", {"type": "string"})
    properties.setdefault("kind", {"type": "string"})
    properties["metadata"] = {"allOf": [{"$ref": f"#/components/schemas/{_OBJECT_META}"}], "default": {}}
    body.setdefault("type", "object")
    body["x-kubernetes-group-version-kind"] = gvk
    return body


_QUERY_PARAMETERS = ("dryRun", "fieldManager", "fieldValidation")


def _item_path(info: ResourceInfo) -> str:
    prefix = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    scope = "/namespaces/{namespace}" if info.namespaced else ""
    return f"{prefix}{scope}/{info.plural}/{{name}}"


def _item_operations(info: ResourceInfo) -> Object:
    """The PATCH operation of an object's path: kubectl looks there for ``fieldValidation`` support."""
    gvk = {"group": info.group, "version": info.version, "kind": info.kind}
    parameters = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in _QUERY_PARAMETERS
    ]
    reference = {"$ref": f"#/components/schemas/{_schema_name(info)}"}
    return {
        "patch": {
            "operationId": f"patch{info.kind}",
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": reference}}}
            },
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
        }
    }


def openapi_v3_document(table: ResourceTable, group: str, version: str) -> Object | None:
    """``/openapi/v3/apis/<group>/<version>`` (or ``/openapi/v3/api/v1``)."""
    infos = table.resources(group, version)
    if not infos:
        return None
    schemas: Object = {
        _OBJECT_META: {
            "type": "object",
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    }
    paths: Object = {}
    for info in infos:
        schemas[_schema_name(info)] = _kind_schema(info)
        paths[_item_path(info)] = _item_operations(info)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def openapi_v3_index(table: ResourceTable) -> Object:
    """``/openapi/v3``: one entry per group version, with a content hash."""
    paths: Object = {}
    for group, versions in table.group_versions().items():
        for version in versions:
            key = f"apis/{group}/{version}" if group else f"api/{version}"
            document = openapi_v3_document(table, group, version)
            digest = hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:128].upper()
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}


def openapi_v2(table: ResourceTable) -> Object:
    """``/openapi/v2``: a Swagger 2.0 document with a definition per kind."""
    definitions: Object = {}
    for info in table.all():
        schema = _kind_schema(info)
        schema["properties"]["metadata"] = {"type": "object"}
        definitions[_schema_name(info)] = schema
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": GIT_VERSION},
        "paths": {},
        "definitions": definitions,
    }
