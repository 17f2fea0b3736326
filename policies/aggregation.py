"""Aggregation across SyncTargets: Location status and exact sums of resource use.

Pure functions over plain dicts.  :func:`location_status` is kcp's Location status (instances,
available instances, the labels annotation) plus this project's extension: the capacity, allocatable
and used quantities of the available instances, summed.  :class:`Totals` sums many resource uses
exactly and fast: a quantity's value is held as an integer count of nano-units (quantities never carry
more precision than that), and the printed format follows Kubernetes' ``Quantity.Add``, so the
result is what adding the quantities one by one would give, at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kcp_tmc.policies.clusters import DEFAULT_CLUSTER, cluster_of
from kcp_tmc.policies.conditions import READY, is_true
from kcp_tmc.policies.model import labels_of, name_of, spec_of, status_of
from kcp_tmc.policies.quantities import Format, Quantity, parse_resource_list
from kcp_tmc.policies.selectors import label_selector_from_dict

__all__ = [
    "LOCATION_LABELS_ANNOTATION",
    "LocationView",
    "Totals",
    "compact",
    "is_available",
    "location_labels",
    "location_status",
    "node_requests",
]

#: The annotation kcp writes on a Location: its own labels as ``k=v``, sorted by key, space-joined.
LOCATION_LABELS_ANNOTATION: Final = "scheduling.kcp.io/labels"

_NANO: Final = -9
_REQUESTS: Final = "requests."
#: Requested, but not from a node: a PersistentVolumeClaim's storage is not part of allocatable.
_NOT_ON_NODES: Final = frozenset({"requests.storage"})

#: One resource use in compact form: ``(name, nano-units, format)`` triples.
Compact = tuple[tuple[str, int, Format], ...]


def compact(use: Mapping[str, Quantity]) -> Compact:
    """``use`` as ``(name, nano-units, format)`` triples, the form :class:`Totals` adds fastest."""
    return tuple((name, q.scaled_value(_NANO), q.format) for name, q in use.items())


@dataclass
class Totals:
    """Exact per-resource sums; ``add`` in any order gives the value ``Quantity`` addition gives."""

    nanos: dict[str, int] = field(default_factory=dict)
    formats: dict[str, Format] = field(default_factory=dict)

    def add(self, items: Compact) -> None:
        """Add one use (from :func:`compact`)."""
        nanos, formats = self.nanos, self.formats
        for name, value, fmt in items:
            before = nanos.get(name, 0)
            if before == 0:
                # Quantity.Add: a zero receiver takes the format of what is added to it.
                formats[name] = fmt
            nanos[name] = before + value

    def add_totals(self, other: Totals) -> None:
        """Add everything ``other`` holds."""
        self.add(tuple((name, value, other.formats[name]) for name, value in other.nanos.items()))

    def quantities(self) -> dict[str, Quantity]:
        """The sums as quantities."""
        return {name: Quantity(value, _NANO, self.formats[name]) for name, value in self.nanos.items()}

    def resource_list(self) -> dict[str, str]:
        """The sums in wire form, keys sorted."""
        return {
            name: str(Quantity(self.nanos[name], _NANO, self.formats[name])) for name in sorted(self.nanos)
        }


def node_requests(use: Mapping[str, Quantity]) -> dict[str, Quantity]:
    """What of ``use`` a node's allocatable pays for, under the node's names.

    ``requests.cpu`` becomes ``cpu`` (and so on for memory, ephemeral storage and extended resources),
    ``pods`` stays ``pods``; limits, object counts and claimed storage are left out.
    """
    out: dict[str, Quantity] = {}
    for name, value in use.items():
        if name == "pods":
            out[name] = value
        elif name.startswith(_REQUESTS) and name not in _NOT_ON_NODES:
            out[name[len(_REQUESTS) :]] = value
    return out


def location_labels(labels: Mapping[str, Any] | None) -> str:
    """The ``scheduling.kcp.io/labels`` value: ``k=v`` pairs sorted by key, space-joined."""
    labels = labels or {}
    return " ".join(f"{key}={labels[key]}" for key in sorted(labels))


def is_available(sync_target: Mapping[str, Any]) -> bool:
    """A SyncTarget counts as available when Ready is True and it is not unschedulable.

    ``evictAfter`` plays no part here, as in kcp.
    """
    conditions = status_of(sync_target).get("conditions")
    return is_true(conditions, READY) and not spec_of(sync_target).get("unschedulable")


@dataclass(frozen=True)
class LocationView:
    """What :func:`location_status` computes for one Location."""

    instances: int
    available: int
    #: The value of the ``scheduling.kcp.io/labels`` annotation.
    labels: str
    capacity: dict[str, str]
    allocatable: dict[str, str]
    used: dict[str, str]
    #: Names of the matching SyncTargets, sorted (for tests and logs).
    matched: tuple[str, ...] = ()

    def status(self) -> dict[str, Any]:
        """The Location status: counts always, the quantity lists only when not empty."""
        out: dict[str, Any] = {"instances": self.instances, "availableInstances": self.available}
        for key, value in (
            ("capacity", self.capacity),
            ("allocatable", self.allocatable),
            ("used", self.used),
        ):
            if value:
                out[key] = value
        return out


def location_status(
    location: Mapping[str, Any],
    sync_targets: Iterable[Mapping[str, Any]],
    default_cluster: str = DEFAULT_CLUSTER,
) -> LocationView:
    """kcp's Location status over ``sync_targets``, plus the summed quantities of the available ones.

    Only SyncTargets of the Location's own logical cluster count.  A missing ``instanceSelector``
    selects nothing and ``{}`` selects all.  An invalid selector raises
    :class:`~kcp_tmc.policies.selectors.SelectorError`; a quantity that does not parse raises
    :class:`~kcp_tmc.policies.quantities.ResourceListError`.
    """
    cluster = cluster_of(location, default_cluster)
    selector = label_selector_from_dict(spec_of(location).get("instanceSelector"))
    matched: list[str] = []
    available = 0
    sums = {"capacity": Totals(), "allocatable": Totals(), "used": Totals()}
    for target in sync_targets:
        if cluster_of(target, default_cluster) != cluster:
            continue
        if not selector.matches({str(k): str(v) for k, v in labels_of(target).items()}):
            continue
        matched.append(name_of(target))
        if not is_available(target):
            continue
        available += 1
        status = status_of(target)
        for key, totals in sums.items():
            totals.add(compact(parse_resource_list(status.get(key))))
    return LocationView(
        instances=len(matched),
        available=available,
        labels=location_labels(labels_of(location)),
        capacity=sums["capacity"].resource_list(),
        allocatable=sums["allocatable"].resource_list(),
        used=sums["used"].resource_list(),
        matched=tuple(sorted(matched)),
    )
