"""Where policies are registered: a decorator for our own and for third parties.

Built-in policies register on import of ``kcp_tmc.policies.builtin``; third
parties expose a module through the entry-point group ``kcp_tmc.policies``
whose import registers its policies on :data:`REGISTRY` with the same
decorators.  A name can be registered once: a second policy of the same name
is refused with an error that names both sources.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from kcp_tmc.policies.admission import Operation
from kcp_tmc.policies.kinds import ResourceType
from kcp_tmc.policies.policy import FailureMode, Mode, Policy, PolicyFunc, PolicyType


class PolicyConflictError(ValueError):
    """Two different policies were registered under one name."""


class Registry:
    """An ordered set of policies, keyed by name."""

    def __init__(self) -> None:
        self._policies: dict[str, Policy] = {}
        self._lock = threading.Lock()

    def register(self, policy: Policy) -> Policy:
        """Add ``policy``; re-registering the very same function is a no-op.

        Raises :class:`PolicyConflictError` when another policy holds the name.
        """
        with self._lock:
            held = self._policies.get(policy.name)
            if held is not None:
                if held.func is policy.func:
                    return held
                raise PolicyConflictError(
                    f"policy {policy.name!r} from {policy.source or '<unknown>'} conflicts with "
                    f"policy {policy.name!r} already registered from {held.source or '<unknown>'}; "
                    "rename one of them"
                )
            self._policies[policy.name] = policy
            return policy

    def unregister(self, name: str) -> None:
        """Remove a policy by name (tests use this; missing names are ignored)."""
        with self._lock:
            self._policies.pop(name, None)

    def get(self, name: str) -> Policy | None:
        """The policy of that name, or ``None``."""
        return self._policies.get(name)

    def __iter__(self) -> Iterator[Policy]:
        return iter(list(self._policies.values()))

    def __len__(self) -> int:
        return len(self._policies)

    def __contains__(self, name: object) -> bool:
        return name in self._policies


#: The process-wide registry the decorators use by default.
REGISTRY = Registry()


def _decorator(
    ptype: PolicyType,
    name: str,
    kinds: Iterable[ResourceType],
    operations: Iterable[Operation],
    subresources: Iterable[str],
    mode: Mode,
    failure_mode: FailureMode,
    side_effects: bool,
    description: str,
    registry: Registry | None,
    isolate: bool,
) -> Callable[[PolicyFunc], PolicyFunc]:
    def wrap(func: PolicyFunc) -> PolicyFunc:
        doc = (func.__doc__ or "").strip().splitlines()
        policy = Policy(
            name=name,
            type=ptype,
            kinds=tuple(kinds),
            operations=frozenset(operations),
            func=func,
            subresources=frozenset(subresources),
            default_mode=mode,
            failure_mode=failure_mode,
            side_effects=side_effects,
            description=description or (doc[0] if doc else ""),
            source=f"{func.__module__}.{func.__qualname__}",
            isolate=isolate,
        )
        (registry if registry is not None else REGISTRY).register(policy)
        return func

    return wrap


def validating(
    name: str,
    *,
    kinds: Iterable[ResourceType],
    operations: Iterable[Operation] = ("CREATE", "UPDATE"),
    subresources: Iterable[str] = ("",),
    mode: Mode = Mode.ENFORCE,
    failure_mode: FailureMode = FailureMode.FAIL,
    side_effects: bool = False,
    description: str = "",
    registry: Registry | None = None,
    isolate: bool = True,
) -> Callable[[PolicyFunc], PolicyFunc]:
    """Register a validating policy.

    Example::

        @validating("region-label", kinds=[SYNC_TARGET])
        def region_label(req: PolicyRequest) -> Verdict | None:
            if "region" not in labels_of(req.object):
                return Verdict.deny("metadata.labels.region", "is required; add a region label")
            return None

    ``isolate=False`` declares the policy pure and quick (no lookups that may block, running
    time bounded by the object's size): the engine then runs it on the caller's thread even
    under a deadline.  Leave it ``True`` for anything that may take long.
    """
    return _decorator(
        PolicyType.VALIDATING,
        name,
        kinds,
        operations,
        subresources,
        mode,
        failure_mode,
        side_effects,
        description,
        registry,
        isolate,
    )


def mutating(
    name: str,
    *,
    kinds: Iterable[ResourceType],
    operations: Iterable[Operation] = ("CREATE", "UPDATE"),
    subresources: Iterable[str] = ("",),
    mode: Mode = Mode.ENFORCE,
    failure_mode: FailureMode = FailureMode.FAIL,
    side_effects: bool = False,
    description: str = "",
    registry: Registry | None = None,
    isolate: bool = True,
) -> Callable[[PolicyFunc], PolicyFunc]:
    """Register a mutating policy; its verdict's ``patch`` applies to the object it received.

    The keywords are those of :func:`validating`.
    """
    return _decorator(
        PolicyType.MUTATING,
        name,
        kinds,
        operations,
        subresources,
        mode,
        failure_mode,
        side_effects,
        description,
        registry,
        isolate,
    )
