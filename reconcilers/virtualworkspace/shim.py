"""Stand-ins for the transformation and discovery modules until they land (identity transforms)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


class TransformError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def to_syncer(obj: Obj, key: str) -> Obj:
    return copy.deepcopy(obj)


def from_syncer(stored: Obj, incoming: Obj, key: str, subresource: str | None) -> Obj:
    return copy.deepcopy(incoming)


def upsyncer_from_client(obj: Obj, key: str) -> Obj:
    return copy.deepcopy(obj)


@dataclass(frozen=True)
class ServedResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...]
    subresources: tuple[str, ...] = ("status",)


_SYNCER_VERBS = ("get", "list", "patch", "update", "watch")
_UPSYNCER_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


@dataclass
class ServedAPIs:
    resources: dict[tuple[str, str, str], ServedResource] = field(default_factory=dict)

    def resource(self, group: str, version: str, plural: str) -> ServedResource | None:
        return self.resources.get((group, version, plural))


def served_apis(target: Obj, exports: list[Obj], schemas: list[Obj], service: str) -> ServedAPIs:
    apis = ServedAPIs()
    if service == "upsyncer":
        builtins = [("persistentvolumes", "PersistentVolume", False), ("pods", "Pod", True)]
        verbs = _UPSYNCER_VERBS
    else:
        builtins = [
            ("namespaces", "Namespace", False),
            ("configmaps", "ConfigMap", True),
            ("secrets", "Secret", True),
            ("serviceaccounts", "ServiceAccount", True),
        ]
        verbs = _SYNCER_VERBS
    for plural, kind, namespaced in builtins:
        subs = ("status",) if plural in ("namespaces", "persistentvolumes", "pods") else ()
        apis.resources[("", "v1", plural)] = ServedResource("", "v1", plural, kind, namespaced, verbs, subs)
    if service == "upsyncer":
        return apis
    accepted = {
        (str(e.get("group", "")), str(e.get("resource", "")))
        for e in (target.get("status") or {}).get("syncedResources") or []
        if e.get("state") == "Accepted"
    }
    for schema in schemas:
        spec = schema.get("spec") or {}
        group, names = str(spec.get("group", "")), spec.get("names") or {}
        if (group, names.get("plural")) not in accepted:
            continue
        for version in spec.get("versions") or []:
            if version.get("served", True):
                plural = str(names["plural"])
                apis.resources[(group, version["name"], plural)] = ServedResource(
                    group,
                    version["name"],
                    plural,
                    str(names.get("kind")),
                    spec.get("scope") == "Namespaced",
                    verbs,
                )
    return apis
