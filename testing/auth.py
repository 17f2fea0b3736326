"""Bearer-token authentication and rule-based authorization for the fake server.

Tokens map to a user and groups (``{"tok": ("alice", ["dev"])}``); rules are
RBAC-like dicts (``{"user": "alice", "groups": [...], "verbs": [...],
"apiGroups": [...], "resources": [...], "names": [...], "namespaces": [...]}``)
where ``*`` matches anything.  As in RBAC, ``resources: ["synctargets"]`` does
not cover ``synctargets/status``; write ``synctargets/status`` or ``*``.
Members of ``system:masters`` are allowed everything, as with the real
superuser group.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kcp_tmc.testing.errors import forbidden

Object = dict[str, Any]

SUPERUSER_GROUP = "system:masters"
AUTHENTICATED = "system:authenticated"


@dataclass(frozen=True)
class User:
    """An authenticated caller."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict, compare=False, hash=False)

    def info(self) -> dict[str, Any]:
        """``authenticationv1.UserInfo``."""
        out: dict[str, Any] = {"username": self.name}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = self.extra
        return out


ADMIN = User("admin", (SUPERUSER_GROUP, AUTHENTICATED))

TokenTable = Mapping[str, Sequence[Any]]


def user_from_entry(entry: Sequence[Any]) -> User:
    """``(user, groups)`` or ``(user, groups, uid)`` from a token table; adds system:authenticated."""
    name = str(entry[0])
    groups = [str(g) for g in (entry[1] if len(entry) > 1 else [])]
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    uid = str(entry[2]) if len(entry) > 2 else ""
    return User(name, tuple(groups), uid)


@dataclass(frozen=True)
class Attributes:
    """What is asked: ``authorizer.Attributes`` for a resource or a non-resource request."""

    user: User
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""

    @property
    def resource_request(self) -> bool:
        """True when this names a resource (not a path such as ``/healthz``)."""
        return bool(self.resource)


def _any(wanted: Iterable[str] | None, value: str) -> bool:
    items = list(wanted or [])
    return "*" in items or value in items


def rule_applies(rule: Mapping[str, Any], user: User) -> bool:
    """Whether a rule's subject (``user`` and/or ``groups``; none means everyone) covers ``user``."""
    subject_user = rule.get("user")
    subject_groups = rule.get("groups")
    if subject_user is None and subject_groups is None:
        return True
    if subject_user is not None and subject_user in ("*", user.name):
        return True
    return any(g in (subject_groups or []) for g in user.groups) or "*" in (subject_groups or [])


def rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    """Whether one rule allows the request."""
    if not rule_applies(rule, attrs.user):
        return False
    if not _any(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        paths = rule.get("nonResourceURLs")
        if paths is None:
            return False
        return any(
            p in ("*", attrs.path) or (p.endswith("*") and attrs.path.startswith(p[:-1])) for p in paths
        )
    if not _any(rule.get("apiGroups"), attrs.group):
        return False
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = list(rule.get("resources") or [])
    if not (
        "*" in resources
        or resource in resources
        or (attrs.subresource and f"*/{attrs.subresource}" in resources)
    ):
        return False
    names = rule.get("names")
    if names and attrs.name not in names:
        return False
    namespaces = rule.get("namespaces")
    return not (namespaces and attrs.namespace not in namespaces and "*" not in namespaces)


class Authorizer:
    """Decides requests from a rule list; ``None`` rules allow everything."""

    def __init__(self, rules: Sequence[Mapping[str, Any]] | None) -> None:
        self.rules = list(rules) if rules is not None else None

    def allowed(self, attrs: Attributes) -> tuple[bool, str]:
        """``(allowed, reason)``."""
        if self.rules is None:
            return True, "no authorization rules are configured"
        if SUPERUSER_GROUP in attrs.user.groups:
            return True, f"member of {SUPERUSER_GROUP}"
        if not attrs.resource_request and attrs.verb == "get" and AUTHENTICATED in attrs.user.groups:
            # Discovery, /version and health checks: what system:discovery and
            # system:public-info-viewer grant every authenticated user.
            return True, "discovery is open to authenticated users"
        for index, rule in enumerate(self.rules):
            if rule_allows(rule, attrs):
                return True, f"allowed by rule {index}"
        return False, ""

    def check(self, attrs: Attributes) -> None:
        """Raises the apiserver's 403 when the request is not allowed."""
        allowed, _ = self.allowed(attrs)
        if allowed:
            return
        raise forbidden(attrs.group, attrs.resource, attrs.name, forbidden_message(attrs))


def forbidden_message(attrs: Attributes) -> str:
    """``User "u" cannot <verb> resource "<res>" in API group "<g>" ...`` as the apiserver words it."""
    user = json.dumps(attrs.user.name)
    if not attrs.resource_request:
        return f"User {user} cannot {attrs.verb} path {json.dumps(attrs.path)}"
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f"in the namespace {json.dumps(attrs.namespace)}" if attrs.namespace else "at the cluster scope"
    group = json.dumps(attrs.group)
    return f"User {user} cannot {attrs.verb} resource {json.dumps(resource)} in API group {group} {where}"


def token_review(tokens: Mapping[str, User], review: Object) -> Object:
    """Fills ``status`` of a TokenReview from the token table."""
    token = ((review.get("spec") or {}).get("token")) or ""
    user = tokens.get(token)
    out = dict(review)
    if user is None:
        out["status"] = {"user": {}}
    else:
        out["status"] = {"authenticated": True, "user": user.info()}
        audiences = (review.get("spec") or {}).get("audiences")
        if audiences:
            out["status"]["audiences"] = list(audiences)
    return out


def access_review(authorizer: Authorizer, review: Object, requester: User | None = None) -> Object:
    """Fills ``status`` of a (Self)SubjectAccessReview; ``requester`` is set for the self variant."""
    spec = review.get("spec") or {}
    if requester is not None:
        user = requester
    else:
        user = User(str(spec.get("user", "")), tuple(spec.get("groups") or ()), str(spec.get("uid", "")))
    resource_attrs = spec.get("resourceAttributes")
    if resource_attrs is not None:
        attrs = Attributes(
            user,
            str(resource_attrs.get("verb", "")),
            str(resource_attrs.get("group", "")),
            str(resource_attrs.get("resource", "")),
            str(resource_attrs.get("subresource", "")),
            str(resource_attrs.get("name", "")),
            str(resource_attrs.get("namespace", "")),
        )
    else:
        non_resource = spec.get("nonResourceAttributes") or {}
        attrs = Attributes(user, str(non_resource.get("verb", "")), path=str(non_resource.get("path", "")))
    allowed, reason = authorizer.allowed(attrs)
    out = dict(review)
    out["status"] = {"allowed": allowed}
    if allowed and reason:
        out["status"]["reason"] = reason
    return out
