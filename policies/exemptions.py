"""Who and what a policy does not apply to: namespaces, users and groups, as shell-style globs.

Globs follow :mod:`fnmatch` (``*``, ``?``, ``[abc]``) and are case-sensitive, as Kubernetes names are.
A cluster-scoped object has no namespace, so a namespace glob never exempts it (not even ``*``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from kcp_tmc.policies.admission import AdmissionRequest

__all__ = ["Exemptions"]


def _compile(globs: Sequence[str]) -> re.Pattern[str] | None:
    # One alternation per list: a single regex match costs the same for one glob or fifty.
    if not globs:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))


@dataclass(frozen=True)
class Exemptions:
    """Namespaces, users and groups a policy (or every policy) skips.

    Build it from any iterables of globs; they are stored as tuples, so two equal lists
    give equal exemptions.
    """

    # Declared as sequences so that lists are accepted; stored as tuples.
    namespaces: Sequence[str] = ()
    users: Sequence[str] = ()
    groups: Sequence[str] = ()
    _ns: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _users: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)
    _groups: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        for name in ("namespaces", "users", "groups"):
            value: Iterable[str] = getattr(self, name)
            if isinstance(value, str):
                # A lone string would otherwise become one glob per character.
                raise TypeError(f"Exemptions.{name} must be a list of globs, not a string")
            object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "_ns", _compile(self.namespaces))
        object.__setattr__(self, "_users", _compile(self.users))
        object.__setattr__(self, "_groups", _compile(self.groups))

    def __bool__(self) -> bool:
        return bool(self.namespaces or self.users or self.groups)

    def exempt(self, request: AdmissionRequest) -> str | None:
        """Why ``request`` is exempt, e.g. ``"namespace kube-system matches kube-*"``; ``None`` if it is not.

        Namespaces are checked first, then the user name, then the groups in the order the request
        lists them.
        """
        if self._ns is not None:
            namespace = request.get("namespace") or ""
            if namespace and self._ns.match(namespace):
                return f"namespace {namespace} matches {self._first(self.namespaces, namespace)}"
        if self._users is None and self._groups is None:
            return None
        user = request.get("userInfo") or {}
        if self._users is not None:
            username = user.get("username") or ""
            if username and self._users.match(username):
                return f"user {username} matches {self._first(self.users, username)}"
        if self._groups is not None:
            for group in user.get("groups") or ():
                if isinstance(group, str) and self._groups.match(group):
                    return f"group {group} matches {self._first(self.groups, group)}"
        return None

    @staticmethod
    def _first(globs: Sequence[str], value: str) -> str:
        # Only on the exempt path: name the glob that matched, for the reason text.
        return next(g for g in globs if fnmatch.fnmatchcase(value, g))
