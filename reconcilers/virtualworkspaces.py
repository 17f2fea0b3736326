"""``status.virtualWorkspaces`` of a SyncTarget from the configured shards, as kcp fills it.

kcp builds one ``{syncerURL, upsyncerURL}`` pair per shard with a non-empty external URL: the shard URL
with its path replaced by Go ``path.Join(shardPath, "/services", "syncer"|"upsyncer", cluster, name,
uid)``.  ``path.Join`` drops empty elements and cleans the result; ``:`` in the cluster name is not
escaped.  Entries are deduplicated by shard URL and sorted by it, ascending (kcp v0.11 order; the later
"root shard first" order of contrib-tmc is not reproduced).  With no shards the field is omitted.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import TypedDict
from urllib.parse import urlsplit, urlunsplit

__all__ = ["VirtualWorkspace", "go_path_join", "parse_shard", "virtual_workspaces"]


class VirtualWorkspace(TypedDict):
    """One entry of ``status.virtualWorkspaces``."""

    syncerURL: str
    upsyncerURL: str


def go_path_join(*elements: str) -> str:
    """Go ``path.Join``: join the non-empty elements with ``/`` and clean; ``""`` when all are empty."""
    parts = [element for element in elements if element]
    if not parts:
        return ""
    cleaned = posixpath.normpath("/".join(parts))
    # posixpath keeps a leading "//" (POSIX allows it); Go's path.Clean does not.
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _service_url(shard_url: str, service: str, cluster: str, name: str, uid: str) -> str:
    base_path = urlsplit(shard_url).path
    return _with_path(shard_url, go_path_join(base_path, "/services", service, cluster, name, uid))


def parse_shard(spec: str) -> tuple[str, str]:
    """Parse a ``--shard NAME=URL`` value; :class:`ValueError` with the reason when malformed."""
    name, sep, url = spec.partition("=")
    if not sep or not name or not url:
        raise ValueError(f"--shard must be NAME=URL, got {spec!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--shard {name}: URL must be absolute http(s), got {url!r}")
    return name, url


def virtual_workspaces(
    shard_urls: Iterable[str], cluster: str, name: str, uid: str
) -> list[VirtualWorkspace] | None:
    """The desired ``status.virtualWorkspaces``; None (field omitted) when no shard has a URL."""
    by_url: dict[str, VirtualWorkspace] = {}
    for shard_url in shard_urls:
        if not shard_url or shard_url in by_url:
            continue
        by_url[shard_url] = {
            "syncerURL": _service_url(shard_url, "syncer", cluster, name, uid),
            "upsyncerURL": _service_url(shard_url, "upsyncer", cluster, name, uid),
        }
    if not by_url:
        return None
    return [by_url[url] for url in sorted(by_url)]


def shard_urls_of(shards: Mapping[str, str]) -> list[str]:
    """The URLs of a ``{name: url}`` shard map, in name order (the order does not change the result)."""
    return [shards[name] for name in sorted(shards)]
