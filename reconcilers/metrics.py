"""Prometheus metrics of one reconciler process, on a registry of its own (tests create many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """Cycle duration, objects reconciled, writes and errors per controller, leadership."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.cycle_duration = Histogram(
            "tmc_reconciler_cycle_duration_seconds",
            "Wall time of one full reconcile cycle.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
            registry=self.registry,
        )
        self.reconciled = Counter(
            "tmc_reconciler_objects_reconciled",
            "Objects reconciled without error.",
            ["controller"],
            registry=self.registry,
        )
        self.writes = Counter(
            "tmc_reconciler_writes",
            "Write requests sent to an apiserver.",
            ["controller"],
            registry=self.registry,
        )
        self.errors = Counter(
            "tmc_reconciler_errors", "Failed reconciles and lists.", ["controller"], registry=self.registry
        )
        self.leader = Gauge(
            "tmc_reconciler_leader",
            "1 while this replica holds at least one partition lease (always 1 without leader election).",
            registry=self.registry,
        )
        self.partitions_held = Gauge(
            "tmc_reconciler_partitions_held", "Partition leases held by this replica.", registry=self.registry
        )
        self.live_replicas = Gauge(
            "tmc_reconciler_live_replicas", "Replicas counted for the fair share.", registry=self.registry
        )

    def total_writes(self) -> float:
        """Writes of every controller so far."""
        total = 0.0
        for metric in self.writes.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
        return total
