"""What an API path under a virtual workspace asks for, as apiserver's ``RequestInfo`` reads it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Discovery", "ResourceRequest", "parse_api_path", "verb_of"]

# Subresources of a namespace (``/api/v1/namespaces/<name>/status``), not namespaced resources in it.
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})


@dataclass(frozen=True)
class Discovery:
    """``/api``, ``/api/v1``, ``/apis``, ``/apis/<g>`` or ``/apis/<g>/<v>``; empty parts are absent."""

    legacy: bool
    group: str = ""
    version: str = ""


@dataclass(frozen=True)
class ResourceRequest:
    """A request for a resource: the collection (``name`` empty) or one object and its subresource."""

    group: str
    version: str
    plural: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""

    def backing_path(self) -> str:
        """The same request's path on the backing apiserver."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespace:
            base += f"/namespaces/{self.namespace}"
        base += f"/{self.plural}"
        if self.name:
            base += f"/{self.name}"
            if self.subresource:
                base += f"/{self.subresource}"
        return base


def verb_of(method: str, request: ResourceRequest, watch: bool) -> str:
    """The Kubernetes verb of an HTTP method on ``request``; ``""`` for a method with none."""
    if method in ("GET", "HEAD"):
        if request.name:
            return "get"
        return "watch" if watch else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    return ""


def parse_api_path(path: str) -> Discovery | ResourceRequest | None:
    """The request an API path names; None for a path that names nothing an apiserver serves."""
    parts = path.strip("/").split("/") if path.strip("/") else []
    if not parts:
        return None
    if parts[0] == "api":
        if len(parts) == 1:
            return Discovery(legacy=True)
        group, version, rest = "", parts[1], parts[2:]
        if not rest:
            return Discovery(legacy=True, version=version)
    elif parts[0] == "apis":
        if len(parts) <= 3:
            return Discovery(
                legacy=False,
                group=parts[1] if len(parts) > 1 else "",
                version=parts[2] if len(parts) > 2 else "",
            )
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if len(rest) > 3 or not all(rest):
        return None
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if plural == "namespaces" and not group:
        # A namespace is cluster-scoped: /api/v1/namespaces/<name> names it, it is not "in" itself.
        namespace = ""
    return ResourceRequest(group, version, plural, namespace, name, subresource)
