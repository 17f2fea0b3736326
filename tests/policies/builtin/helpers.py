"""Helpers for the built-in policy tests: build a PolicyRequest from plain dicts, read verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kcp_tmc.policies import Operation, PolicyRequest, StaticLookup
from kcp_tmc.policies.admission import AdmissionRequest
from kcp_tmc.policies.kinds import ResourceType

CLUSTER_NAME = "root:org:ws"
#: The names of the policies kcp-tmc ships.
BUILTIN_POLICIES = frozenset(
    {
        "synctarget-validation",
        "synctarget-deletion-protection",
        "synctarget-defaults",
        "cluster-validation",
        "cluster-defaults",
        "location-validation",
        "federatedquota-validation",
        "resourcequota-validation",
        "quota-enforcement",
    }
)


def build_request(
    rtype: ResourceType,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    operation: Operation | None = None,
    sub_resource: str = "",
    cluster: str = CLUSTER_NAME,
    settings: Mapping[str, Any] | None = None,
    lookup_objects: Sequence[dict[str, Any]] = (),
    name: str = "",
    namespace: str = "",
    kind: tuple[str, str] | None = None,
) -> PolicyRequest:
    """A PolicyRequest as the engine would build it; the operation follows from obj/old when not given.

    ``kind`` is the request's ``(group, kind)`` when it is not ``rtype``'s (a ``scale`` write).
    """
    if operation is None:
        operation = "CREATE" if old is None else ("DELETE" if obj is None else "UPDATE")
    request: AdmissionRequest = {
        "uid": "test-uid",
        "kind": {"group": kind[0], "version": "v1", "kind": kind[1]}
        if kind
        else {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "resource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
        "operation": operation,
        "name": name,
        "object": obj,
        "oldObject": old,
        "userInfo": {"username": "alice"},
    }
    if sub_resource:
        request["subResource"] = sub_resource
    if namespace:
        request["namespace"] = namespace
    return PolicyRequest(
        request=request,
        object=obj,
        old_object=old,
        operation=operation,
        sub_resource=sub_resource,
        dry_run=False,
        user={"username": "alice"},
        cluster=cluster,
        lookup=StaticLookup(lookup_objects),
        settings=settings or {},
    )


def messages(verdict: Any) -> list[str]:
    """The verdict's errors as ``path: message`` lines; ``[]`` for an allowing verdict or None."""
    if verdict is None:
        return []
    return [str(e) for e in verdict.errors]
