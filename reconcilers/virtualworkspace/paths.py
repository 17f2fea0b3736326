"""Which request paths the syncer and upsyncer virtual workspaces accept, and what they name.

A path is ``/services/<syncer|upsyncer>/<stCluster>/<stName>/<stUID>/clusters/<cluster|*>/<api path>``.
Every refusal is a :class:`PathRefused` carrying the reason; the server answers it with a Kubernetes
``Status`` 404, as kcp's root virtual-workspace server does for a path no workspace handles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kcp_tmc.policies.clusters import is_valid_cluster_name
from kcp_tmc.policies.keys import sync_target_key

__all__ = ["SERVICES", "PathRefused", "VWPath", "check_target", "not_found_status", "parse_vw_path"]

#: The two virtual workspaces, by the path segment that names them.
SERVICES = ("syncer", "upsyncer")


class PathRefused(ValueError):
    """The path is not one this virtual workspace serves; ``str()`` says why."""


@dataclass(frozen=True)
class VWPath:
    """An accepted path: the SyncTarget it addresses and the API path left to serve."""

    service: str
    target_cluster: str
    target_name: str
    target_uid: str
    cluster: str
    api_path: str

    @property
    def key(self) -> str:
        """The SyncTarget key of the target, as the state labels carry it."""
        return sync_target_key(self.target_cluster, self.target_name)


def _check_segments(path: str, raw_path: str) -> None:
    # The backing client normalizes dot segments, so ``namespaces/../configmaps`` would reach the
    # cluster-wide list while being parsed here as a namespaced one: what is parsed must be what is
    # sent.  An encoded slash would let one parsed segment carry several; an empty one means the
    # same as none to some parsers and not to others.  Neither is in a path any client builds.
    if "%2f" in raw_path.lower():
        raise PathRefused(f"path {raw_path!r} has an encoded slash (%2F)")
    inner = path[1:-1] if path.endswith("/") else path[1:]
    for segment in inner.split("/"):
        if segment in ("", ".", ".."):
            raise PathRefused(f"path {path!r} has an empty, '.' or '..' segment")


def parse_vw_path(path: str, raw_path: str | None = None) -> VWPath:
    """The parts of ``path`` (decoded; ``raw_path`` as sent, when known); :class:`PathRefused`
    when any acceptance rule fails."""
    for service in SERVICES:
        prefix = f"/services/{service}/"
        if path.startswith(prefix):
            break
    else:
        raise PathRefused(f"path {path!r} is not under /services/syncer/ or /services/upsyncer/")
    segments = path[len(prefix) :].split("/", 3)
    if len(segments) < 3 or not all(segments[:3]):
        raise PathRefused(f"path {path!r} lacks the SyncTarget cluster, name or UID")
    _check_segments(path, path if raw_path is None else raw_path)
    target_cluster, target_name, target_uid = segments[:3]
    if not is_valid_cluster_name(target_cluster):
        raise PathRefused(f"SyncTarget cluster {target_cluster!r} is not a logical-cluster name")
    rest = "/" + segments[3] if len(segments) > 3 else ""
    if not rest.startswith("/clusters/"):
        raise PathRefused(f"path {path!r} lacks the /clusters/<cluster> segment after the SyncTarget UID")
    cluster, _, api = rest[len("/clusters/") :].partition("/")
    if cluster != "*" and not is_valid_cluster_name(cluster):
        raise PathRefused(f"cluster {cluster!r} is neither * nor a logical-cluster name")
    return VWPath(service, target_cluster, target_name, target_uid, cluster, "/" + api)


def check_target(parsed: VWPath, target: Mapping[str, Any] | None) -> None:
    """Refuse a path whose SyncTarget is missing, or was deleted and recreated (a stale UID)."""
    if target is None:
        raise PathRefused(f"SyncTarget {parsed.target_cluster}/{parsed.target_name} does not exist")
    uid = str((target.get("metadata") or {}).get("uid", ""))
    if uid != parsed.target_uid:
        raise PathRefused(f"sync target UID mismatch: {uid} != {parsed.target_uid}")


def not_found_status(reason: str) -> dict[str, Any]:
    """The ``Status`` body of a refused path."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": reason,
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }
