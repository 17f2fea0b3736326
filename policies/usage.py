"""The usage model of quota: what a workload uses, on which SyncTargets, and what a change costs.

Pure functions over plain dicts.  Quantities are :class:`~kcp_tmc.policies.quantities.Quantity`
throughout (exact arithmetic, never floats).  Resource names follow Kubernetes quota naming:
``requests.<r>`` and ``limits.<r>`` for container resources (``cpu``, ``memory`` and
``ephemeral-storage`` alone mean their ``requests.`` form), ``pods`` for running pods, and
``count/<plural>[.<group>]`` for objects.

A Pod uses what the kubelet reserves for it: the larger of its biggest init container and the sum
of its app containers, restartable (sidecar) init containers counted with the app containers,
plus ``spec.overhead`` (added to limits only where a limit is set).  A container request left
unset defaults to its limit, as the apiserver defaults it.  Succeeded and Failed pods use
nothing.  Deployments, ReplicaSets and StatefulSets use their pod template times ``replicas``
(default 1), Jobs times ``parallelism`` (default 1).  An object whose controller is itself a
counted workload (a ReplicaSet of a Deployment, a Pod of a ReplicaSet) uses no compute, so that
nothing is counted twice; every object still counts once in ``count/...``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kcp_tmc.policies.keys import SYNC, key_from_state_label
from kcp_tmc.policies.kinds import group_resource_of
from kcp_tmc.policies.model import labels_of, meta_of, spec_of, status_of
from kcp_tmc.policies.quantities import Quantity, parse_quantity

__all__ = [
    "WORKLOAD_KINDS",
    "Usage",
    "canonical_resource",
    "change",
    "object_count_name",
    "pod_spec_usage",
    "pod_usage",
    "sync_targets_of",
    "total",
    "usage_of",
]

ResourceUse = dict[str, Quantity]

#: ``(group, kind) -> plural`` of the workloads whose compute use is modelled.
WORKLOAD_KINDS: Final[Mapping[tuple[str, str], str]] = {
    ("", "Pod"): "pods",
    ("apps", "Deployment"): "deployments",
    ("apps", "ReplicaSet"): "replicasets",
    ("apps", "StatefulSet"): "statefulsets",
    ("batch", "Job"): "jobs",
}
_BARE_REQUESTS: Final = frozenset({"cpu", "memory", "ephemeral-storage", "storage"})
_LEGACY_COUNTS: Final = frozenset(
    {
        "services",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    }
)
_ZERO: Final = Quantity(0)


def canonical_resource(name: str) -> str:
    """The name a quota key means: ``cpu`` is ``requests.cpu``, ``services`` is ``count/services``."""
    if name in _BARE_REQUESTS:
        return f"requests.{name}"
    if name in _LEGACY_COUNTS:
        return f"count/{name}"
    return name


def object_count_name(plural: str, group: str) -> str:
    """``count/<plural>[.<group>]``."""
    return f"count/{group_resource_of(plural, group)}"


def _add(into: ResourceUse, key: str, value: Quantity) -> None:
    into[key] = into[key] + value if key in into else value


def _resources(container: Mapping[str, Any]) -> tuple[ResourceUse, ResourceUse]:
    res = container.get("resources") or {}
    limits = {str(k): parse_quantity(v) for k, v in (res.get("limits") or {}).items()}
    requests = {str(k): parse_quantity(v) for k, v in (res.get("requests") or {}).items()}
    for name, value in limits.items():
        requests.setdefault(name, value)  # the apiserver defaults a missing request to the limit
    return requests, limits


def _pod_side(spec: Mapping[str, Any], pick: int) -> ResourceUse:
    total: ResourceUse = {}
    for container in spec.get("containers") or ():
        for name, value in _resources(container)[pick].items():
            _add(total, name, value)
    sidecars: ResourceUse = {}
    init_peak: ResourceUse = {}
    for container in spec.get("initContainers") or ():
        own = _resources(container)[pick]
        if container.get("restartPolicy") == "Always":
            for name, value in own.items():
                _add(total, name, value)
                _add(sidecars, name, value)
            effective = dict(sidecars)
        else:
            effective = dict(own)
            for name, value in sidecars.items():
                _add(effective, name, value)
        for name, value in effective.items():
            if value > init_peak.get(name, _ZERO):
                init_peak[name] = value
    for name, value in init_peak.items():
        if value > total.get(name, _ZERO):
            total[name] = value
    return total


def pod_spec_usage(spec: Mapping[str, Any]) -> ResourceUse:
    """The compute use of one pod of ``spec``: ``requests.*``, ``limits.*`` and ``pods: 1``."""
    requests = _pod_side(spec, 0)
    limits = _pod_side(spec, 1)
    for name, value in (spec.get("overhead") or {}).items():
        quantity = parse_quantity(value)
        _add(requests, str(name), quantity)
        if name in limits:
            limits[name] = limits[name] + quantity
    use: ResourceUse = {"pods": Quantity(1)}
    use.update({f"requests.{k}": v for k, v in requests.items()})
    use.update({f"limits.{k}": v for k, v in limits.items()})
    return use


def pod_usage(pod: Mapping[str, Any]) -> ResourceUse:
    """A Pod's compute use; nothing once it Succeeded or Failed."""
    if status_of(pod).get("phase") in ("Succeeded", "Failed"):
        return {}
    return pod_spec_usage(spec_of(pod))


def _replicas(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 1


def _scaled(use: ResourceUse, times: int) -> ResourceUse:
    return {k: Quantity(v.unscaled * times, v.scale, v.format) for k, v in use.items()} if times else {}


def _owned_by_workload(obj: Mapping[str, Any]) -> bool:
    for ref in meta_of(obj).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller"):
            group = str(ref.get("apiVersion", "")).rpartition("/")[0]
            if (group, ref.get("kind")) in WORKLOAD_KINDS:
                return True
    return False


def sync_targets_of(obj: Mapping[str, Any] | None) -> frozenset[str]:
    """The keys of the SyncTargets the object is synced to (``state.workload.kcp.io/<key>: Sync``)."""
    keys = set()
    for label, value in labels_of(obj).items():
        key = key_from_state_label(str(label))
        if key is not None and value == SYNC:
            keys.add(key)
    return frozenset(keys)


@dataclass(frozen=True)
class Usage:
    """One object's use: ``compute`` on each SyncTarget it runs on, and its object count.

    Overall, compute counts once per target it runs on, and once while it is placed nowhere
    yet (so that placing it costs nothing more); the object count counts once.
    """

    compute: ResourceUse = field(default_factory=dict)
    objects: ResourceUse = field(default_factory=dict)
    targets: frozenset[str] = frozenset()

    def overall(self) -> ResourceUse:
        """What the object uses across all its SyncTargets."""
        total = _scaled(self.compute, max(1, len(self.targets)))
        for name, value in self.objects.items():
            _add(total, name, value)
        return total

    def on(self, target: str) -> ResourceUse:
        """What the object uses on SyncTarget ``target`` (its key)."""
        if target not in self.targets:
            return {}
        total = dict(self.compute)
        for name, value in self.objects.items():
            _add(total, name, value)
        return total


def usage_of(obj: Mapping[str, Any] | None, group: str, kind: str, plural: str) -> Usage:
    """The :class:`Usage` of an object of that group, kind and plural (``None``: nothing)."""
    if obj is None:
        return Usage()
    objects = {object_count_name(plural, group): Quantity(1)}
    targets = sync_targets_of(obj)
    if (group, kind) not in WORKLOAD_KINDS or _owned_by_workload(obj):
        return Usage({}, objects, targets)
    spec = spec_of(obj)
    if kind == "Pod":
        return Usage(pod_usage(obj), objects, targets)
    if kind == "Job":
        conditions = status_of(obj).get("conditions") or ()
        if any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True" for c in conditions):
            return Usage({}, objects, targets)
        times = _replicas(spec.get("parallelism"))
    else:
        times = _replicas(spec.get("replicas"))
    template_spec = (spec.get("template") or {}).get("spec") or {}
    compute = _scaled(pod_spec_usage(template_spec), times)
    if kind == "StatefulSet":
        for claim in spec.get("volumeClaimTemplates") or ():
            storage = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get(
                "storage"
            )
            if storage is not None:
                _add(
                    compute,
                    "requests.storage",
                    _scaled({"s": parse_quantity(storage)}, times).get("s", _ZERO),
                )
    return Usage(compute, objects, targets)


def _difference(new: ResourceUse, old: ResourceUse) -> ResourceUse:
    out: ResourceUse = {}
    for name in set(new) | set(old):
        value = new.get(name, _ZERO) - old.get(name, _ZERO)
        if value:
            out[name] = value
    return out


def change(new: Usage, old: Usage) -> tuple[ResourceUse, dict[str, ResourceUse]]:
    """What going from ``old`` to ``new`` costs: overall, and per SyncTarget key (zeros left out)."""
    overall = _difference(new.overall(), old.overall())
    per_target = {}
    for target in sorted(new.targets | old.targets):
        diff = _difference(new.on(target), old.on(target))
        if diff:
            per_target[target] = diff
    return overall, per_target


def total(uses: Iterable[ResourceUse]) -> ResourceUse:
    """The sum of several uses."""
    out: ResourceUse = {}
    for use in uses:
        for name, value in use.items():
            _add(out, name, value)
    return out
