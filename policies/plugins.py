"""Loading policies: the built-in ones and third-party plug-ins from entry points.

A plug-in is an entry point in the group ``kcp_tmc.policies``, in its ``setup.cfg``::

    [options.entry_points]
    kcp_tmc.policies =
        acme = acme_policies.tmc          # a module whose import registers policies
        acme-extra = acme_policies:register  # or a callable that takes the registry

A module registers with the ``@validating``/``@mutating`` decorators on the process-wide
:data:`~kcp_tmc.policies.registry.REGISTRY`; the policies it added are then copied into the
registry being loaded (and remembered, so that loading into a second registry works although
the module is imported once).  A callable is called with the registry being loaded.

A plug-in that fails to load (import error, exception, a name already taken) is reported as a
:class:`PluginError` and skipped: the others still load.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType

from kcp_tmc.policies.policy import Policy
from kcp_tmc.policies.registry import REGISTRY, PolicyConflictError, Registry

__all__ = [
    "BUILTIN_PACKAGE",
    "ENTRY_POINT_GROUP",
    "PluginError",
    "default_registry",
    "load_builtins",
    "load_default_registry",
    "load_entry_points",
]

log = logging.getLogger("kcp_tmc.policies.plugins")

ENTRY_POINT_GROUP = "kcp_tmc.policies"
BUILTIN_PACKAGE = "kcp_tmc.policies.builtin"

_lock = threading.RLock()
#: What importing a module registered on REGISTRY, by module name (imports happen once).
_registered_by: dict[str, tuple[Policy, ...]] = {}


@dataclass(frozen=True)
class PluginError:
    """A plug-in that could not be loaded: its entry point, its distribution and why."""

    entry_point: str
    dist: str
    value: str
    error: BaseException

    def __str__(self) -> str:
        kind = "name conflict" if isinstance(self.error, PolicyConflictError) else type(self.error).__name__
        return (
            f"policy plug-in {self.entry_point!r} ({self.value}) from {self.dist} was not loaded: "
            f"{kind}: {self.error}"
        )


def _import_registering(module_name: str) -> tuple[ModuleType, tuple[Policy, ...]]:
    """Import ``module_name`` and return what its import registered on REGISTRY.

    When the import fails, what it registered before failing is taken back out of REGISTRY,
    so that a broken plug-in leaves nothing half-registered.
    """
    with _lock:
        if module_name in _registered_by:
            return importlib.import_module(module_name), _registered_by[module_name]
        imported_before = module_name in sys.modules
        before = {p.name: p for p in REGISTRY}
        try:
            module = importlib.import_module(module_name)
        except BaseException:
            for policy in REGISTRY:
                if before.get(policy.name) is not policy:
                    REGISTRY.unregister(policy.name)
            raise
        if imported_before:
            # Imported by someone else before: its registrations happened then; find them by source.
            prefix = module_name + "."
            found = tuple(p for p in REGISTRY if p.source.startswith(prefix))
        else:
            found = tuple(p for p in REGISTRY if before.get(p.name) is not p)
        _registered_by[module_name] = found
        return module, found


def _copy_into(registry: Registry, policies: tuple[Policy, ...]) -> None:
    if registry is REGISTRY:
        return
    # All or nothing: check every name first, so a conflict leaves the registry as it was.
    for policy in policies:
        held = registry.get(policy.name)
        if held is not None and held.func is not policy.func:
            registry.register(policy)  # raises PolicyConflictError naming both sources
    for policy in policies:
        registry.register(policy)


def load_builtins(registry: Registry | None = None) -> None:
    """Register the built-in policies (every module of ``kcp_tmc.policies.builtin``) on ``registry``.

    ``registry`` defaults to :data:`REGISTRY`.  Loading twice is harmless.
    """
    target = registry if registry is not None else REGISTRY
    with _lock:
        package, registered = _import_registering(BUILTIN_PACKAGE)
        found = list(registered)
        for info in pkgutil.iter_modules(package.__path__, BUILTIN_PACKAGE + "."):
            found.extend(_import_registering(info.name)[1])
        _copy_into(target, tuple(found))


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "an unknown distribution"
    return f"{dist.name} {dist.version}"


def load_entry_points(registry: Registry | None = None, group: str = ENTRY_POINT_GROUP) -> list[PluginError]:
    """Load every plug-in of the entry-point ``group`` into ``registry`` (default :data:`REGISTRY`).

    Returns the plug-ins that failed, in entry-point name order; each is also logged on
    ``kcp_tmc.policies.plugins``.  Plug-ins are loaded in name order, so a conflict between two
    is always reported on the same one.
    """
    target = registry if registry is not None else REGISTRY
    errors: list[PluginError] = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        try:
            with _lock:
                if ep.attr:
                    func: Callable[[Registry], object] = ep.load()
                    if not callable(func):
                        raise TypeError(f"{ep.value} is not a module nor a callable taking a registry")
                    func(target)
                else:
                    _copy_into(target, _import_registering(ep.module)[1])
        except Exception as exc:
            error = PluginError(ep.name, _dist_name(ep), ep.value, exc)
            log.error("%s", error, exc_info=exc)
            errors.append(error)
    return errors


def load_default_registry(group: str = ENTRY_POINT_GROUP) -> tuple[Registry, list[PluginError]]:
    """A new registry with the built-in policies and every plug-in, and the plug-ins that failed."""
    registry = Registry()
    load_builtins(registry)
    return registry, load_entry_points(registry, group)


def default_registry() -> Registry:
    """A new registry with the built-in policies and every plug-in that loads (failures are logged)."""
    return load_default_registry()[0]
