"""Shared material of the fake API server tests: a SyncTarget-like CRD and small helpers."""

from __future__ import annotations

import copy
from typing import Any

GROUP = "workload.kcp.io"
VERSION = "v1alpha1"
PLURAL = "synctargets"

SYNC_TARGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "synctargets.workload.kcp.io"},
    "spec": {
        "group": GROUP,
        "scope": "Cluster",
        "names": {"plural": PLURAL, "singular": "synctarget", "kind": "SyncTarget", "shortNames": ["st"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["syncMode"],
                                "properties": {
                                    "syncMode": {"type": "string", "enum": ["Push", "Pull"]},
                                    "cells": {"type": "object", "additionalProperties": {"type": "string"}},
                                    "replicas": {
                                        "type": "integer",
                                        "minimum": 1,
                                        "maximum": 10,
                                        "default": 1,
                                    },
                                    "region": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
                                    "zones": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                                    "port": {"x-kubernetes-int-or-string": True},
                                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "since": {"type": "string", "format": "date-time"},
                                },
                            },
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.size", "statusReplicasPath": ".status.size"},
                },
                "schema": {
                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                },
            }
        ],
    },
}


def sync_target(name: str, mode: str = "Push", **spec: Any) -> dict[str, Any]:
    """A SyncTarget object."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncTarget",
        "metadata": {"name": name},
        "spec": {"syncMode": mode, **spec},
    }


def crd(template: dict[str, Any]) -> dict[str, Any]:
    """A fresh copy of a CRD template."""
    return copy.deepcopy(template)


def failure(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Status body the apiserver answers a failed request with, every field spelled out.

    ``details`` is left out when ``None`` (the apiserver omits an empty one for some errors).
    """
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body
