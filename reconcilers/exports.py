"""The ``kubernetes`` APIExport and its APIResourceSchemas shipped with the reconciler (package data)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import yaml

__all__ = ["EXPORT_FILE", "kubernetes_export"]

EXPORT_FILE = "kubernetes-export.yaml"


def kubernetes_export() -> list[dict[str, Any]]:
    """The APIExport ``kubernetes`` followed by its three APIResourceSchemas, as plain dicts."""
    text = (files("kcp_tmc.reconcilers") / EXPORT_FILE).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]
