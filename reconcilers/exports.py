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
    # libyaml's safe loader where PyYAML has it: the file is large and read at every start.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]
