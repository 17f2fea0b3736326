"""Logical clusters: which one an object lives in, and workspace paths (``root:org:ws``).

kcp writes the logical cluster of every object into the ``kcp.io/cluster`` annotation; a plain
Kubernetes apiserver has no such annotation, so callers name the cluster to assume instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from kcp_tmc.policies.keys import ANNOTATION_CLUSTER

__all__ = [
    "ANNOTATION_CLUSTER",
    "CLUSTER_PATH_PATTERN",
    "DEFAULT_CLUSTER",
    "cluster_of",
    "is_valid_cluster_name",
    "is_valid_cluster_path",
    "join_path",
    "parent_path",
]

#: The cluster assumed for objects that carry no ``kcp.io/cluster`` annotation.
DEFAULT_CLUSTER: Final = "root"

#: A workspace path: DNS-label segments joined by ``:`` (the CRD pattern of ``supportedAPIExports[].path``).
CLUSTER_PATH_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_CLUSTER_PATH = re.compile(CLUSTER_PATH_PATTERN)
_CLUSTER_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def cluster_of(obj: Mapping[str, Any] | None, default: str = DEFAULT_CLUSTER) -> str:
    """The logical cluster of ``obj``: its non-empty ``kcp.io/cluster`` annotation, else ``default``."""
    if not obj:
        return default
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return default
    annotations = metadata.get("annotations")
    if not isinstance(annotations, Mapping):
        return default
    value = annotations.get(ANNOTATION_CLUSTER)
    if isinstance(value, str) and value:
        return value
    return default


def is_valid_cluster_path(path: str) -> bool:
    """True when ``path`` is a well-formed workspace path such as ``root:org:ws``."""
    # fullmatch, because "$" would also accept a trailing newline.
    return _CLUSTER_PATH.fullmatch(path) is not None


def is_valid_cluster_name(name: str) -> bool:
    """True when ``name`` is a logical-cluster name (what ``kcp.io/cluster`` holds), not a path.

    A name is one DNS-label-like segment (``root``, or the hash kcp gives a workspace's cluster);
    names with ``:`` are workspace paths, except the ``system:`` names kcp keeps for itself.
    """
    if name.startswith("system:"):
        return bool(name[len("system:") :])
    return _CLUSTER_NAME.fullmatch(name) is not None


def join_path(parent: str, name: str) -> str:
    """``parent:name``, or ``name`` alone when ``parent`` is empty (logicalcluster ``Path.Join``)."""
    return f"{parent}:{name}" if parent else name


def parent_path(path: str) -> str:
    """The path without its last segment; ``""`` for a single-segment path such as ``root``."""
    head, _, _ = path.rpartition(":")
    return head
