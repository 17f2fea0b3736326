"""Capacity and allocatable of a physical cluster: exact sums over its Ready, schedulable Nodes.

kcp itself never computes these; this is the project's extension, using Kubernetes
quantity arithmetic (no floats) and the filter kcp uses for ``availableInstances``: a Node counts when
its ``Ready`` condition is True and ``spec.unschedulable`` is not set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kcp_tmc.policies.quantities import Quantity, add_lists, format_list

__all__ = ["node_counts", "sum_node_resources"]


def node_counts(node: Mapping[str, Any]) -> bool:
    """True for a Node whose Ready condition is True and that is not cordoned."""
    if (node.get("spec") or {}).get("unschedulable"):
        return False
    for condition in (node.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def sum_node_resources(nodes: Iterable[Mapping[str, Any]]) -> tuple[dict[str, str], dict[str, str]]:
    """``(capacity, allocatable)`` summed over the Nodes that count, in canonical quantity form.

    A quantity that does not parse raises :class:`~kcp_tmc.policies.quantities.QuantityError` naming
    the resource; the caller reports it rather than publishing a wrong sum.
    """
    capacity: dict[str, Quantity] = {}
    allocatable: dict[str, Quantity] = {}
    for node in nodes:
        if not node_counts(node):
            continue
        status = node.get("status") or {}
        capacity = add_lists(capacity, status.get("capacity") or {})
        allocatable = add_lists(allocatable, status.get("allocatable") or {})
    return format_list(capacity), format_list(allocatable)
