"""Benchmark of the aggregator and quota manager cycle: 1,000 SyncTargets and 100,000 workloads.

The fake apiserver runs in its own process (pinned to CPU 0 when there are two; this process on CPU 1)
and is filled there through its direct helpers, which is far faster than 100,000 POSTs.  The
workloads are Deployments, StatefulSets, Jobs and bare Pods, spread over 1,000 namespaces, each
placed on one or two SyncTargets; every namespace has a FederatedQuota, and there are Locations by
region, a cluster-scoped FederatedQuota and a cluster-scoped ResourceQuota counting Deployments and
ConfigMaps.

Printed: the first cycle (every status written), steady cycles (wall, of which waiting for the
apiserver, the reconciler's own time, CPU, requests, writes; medians), a cycle after 1% of the
workloads changed, and the peak RSS of this process.  Side by side, measured in the same run, the
baseline: one plain ``KubeClient.list`` of each kind the cycle reads, i.e. only fetching and parsing
the same lists, with its time and the RSS that holding them costs.  Targets: steady cycle under 5 s,
RSS under 400 MiB, requests per cycle equal to the number of kinds listed (independent of objects).

``python -m bench.quota_cycle [--targets 1000] [--workloads 100000] [--cycles 3]``; a quick smoke run:
``--targets 10 --workloads 1000``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from bench.reconciler import CRD_DIR, rss_mib
from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.reconcilers.aggregator import AggregatorController
from kcp_tmc.reconcilers.client import KubeClient, Resource
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.quota import QuotaController
from kcp_tmc.reconcilers.resources import DEPLOYMENTS, FEDERATEDQUOTAS, LOCATIONS, RESOURCEQUOTAS, SYNCTARGETS
from kcp_tmc.reconcilers.workloads import WORKLOAD_RESOURCES, WorkloadUsage

CLUSTER = "root:bench"
NAMESPACES = 1000
REGIONS = 10
TARGETS = {"wall_s": 5.0, "rss_mib": 400.0}
#: Counted by the cluster-scoped ResourceQuota, so listed too.
CONFIGMAPS = Resource("", "v1", "configmaps", namespaced=True, kind="ConfigMap")


def peak_rss_mib() -> float:
    """The highest resident set size of this process so far, in MiB."""
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _template(cpu: str, memory: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:1",
                    "resources": {
                        "requests": {"cpu": cpu, "memory": memory},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    },
                }
            ]
        },
    }


def workload(index: int, targets: int) -> dict[str, Any]:
    """Workload ``index``: 70% Deployments, 10% each StatefulSets, Jobs and Pods; on one or two targets."""
    namespace = f"ns-{index % NAMESPACES:04d}"
    first = index % targets
    placed = [first] if index % 5 else [first, (first + 1) % targets]
    meta = {
        "name": f"w-{index:06d}",
        "namespace": namespace,
        "labels": {
            f"state.workload.kcp.io/{sync_target_key(CLUSTER, f'st-{t:04d}')}": "Sync" for t in placed
        },
    }
    cpu, memory = f"{50 + index % 200}m", f"{64 + index % 64}Mi"
    kind = index % 10
    if kind < 7:
        spec = {
            "replicas": 1 + index % 3,
            "selector": {"matchLabels": {"app": "x"}},
            "template": _template(cpu, memory),
        }
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
    if kind == 7:
        spec = {
            "replicas": 2,
            "serviceName": "x",
            "selector": {"matchLabels": {"app": "x"}},
            "template": _template(cpu, memory),
        }
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta, "spec": spec}
    if kind == 8:
        template = _template(cpu, memory)
        template["spec"]["restartPolicy"] = "Never"
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": meta,
            "spec": {"parallelism": 2, "template": template},
        }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": _template(cpu, memory)["spec"]}


def serve(targets: int, workloads: int, kubeconfig: str) -> int:
    """The server process: a fake apiserver filled with the benchmark's objects, until SIGTERM."""
    import yaml

    from kcp_tmc.testing import FakeAPIServer

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with FakeAPIServer() as api:
        for path in sorted(CRD_DIR.glob("*.yaml")):
            api.install_crd(yaml.safe_load(path.read_text(encoding="utf-8")))
        for name in ["admin", *(f"ns-{n:04d}" for n in range(NAMESPACES))]:
            api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        annotations = {"kcp.io/cluster": CLUSTER}
        for t in range(targets):
            name = f"st-{t:04d}"
            api.create(
                {
                    "apiVersion": "workload.kcp.io/v1alpha1",
                    "kind": "SyncTarget",
                    "metadata": {
                        "name": name,
                        "labels": {"region": f"r{t % REGIONS}"},
                        "annotations": annotations,
                    },
                }
            )
            stored = api.get("workload.kcp.io/v1alpha1", "SyncTarget", name)
            assert stored is not None
            resources = {"cpu": "64", "memory": "256Gi", "pods": "1100"}
            stored["status"] = {
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
                ],
                "capacity": resources,
                "allocatable": resources,
            }
            api.update(stored, subresource="status")
        for r in range(REGIONS):
            api.create(
                {
                    "apiVersion": "scheduling.kcp.io/v1alpha1",
                    "kind": "Location",
                    "metadata": {"name": f"r{r}", "labels": {"region": f"r{r}"}, "annotations": annotations},
                    "spec": {
                        "resource": {
                            "group": "workload.kcp.io",
                            "version": "v1alpha1",
                            "resource": "synctargets",
                        },
                        "instanceSelector": {"matchLabels": {"region": f"r{r}"}},
                    },
                }
            )
        for n in range(NAMESPACES):
            api.create(
                {
                    "apiVersion": "tmc.kcp.io/v1alpha1",
                    "kind": "FederatedQuota",
                    "metadata": {"name": "quota", "namespace": f"ns-{n:04d}", "annotations": annotations},
                    "spec": {
                        "overall": {"cpu": "1000", "memory": "1Ti", "pods": "10000"},
                        "staticAssignments": [
                            {"syncTarget": f"st-{n % targets:04d}", "hard": {"cpu": "500"}}
                        ],
                    },
                }
            )
        cluster_scoped = {"experimental.quota.kcp.io/cluster-scoped": "true", **annotations}
        api.create(
            {
                "apiVersion": "tmc.kcp.io/v1alpha1",
                "kind": "FederatedQuota",
                "metadata": {"name": "everything", "namespace": "admin", "annotations": cluster_scoped},
                "spec": {"overall": {"requests.cpu": "100000", "count/deployments.apps": "1000000"}},
            }
        )
        api.create(
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "objects", "namespace": "admin", "annotations": cluster_scoped},
                "spec": {"hard": {"count/deployments.apps": "1000000", "count/configmaps": "100"}},
            }
        )
        for index in range(workloads):
            obj = workload(index, targets)
            obj["metadata"]["annotations"] = dict(annotations)
            api.create(obj)
        api.write_kubeconfig(kubeconfig)
        print(json.dumps({"kubeconfig": kubeconfig}), flush=True)
        stop.wait()
    return 0


class Server:
    """The server process, pinned to CPU 0 when ``taskset`` and two CPUs are there."""

    def __init__(self, workdir: str, targets: int, workloads: int) -> None:
        command = [sys.executable, "-m", "bench.quota_cycle", "--serve", "--targets", str(targets)]
        command += ["--workloads", str(workloads), "--kubeconfig", os.path.join(workdir, "kubeconfig")]
        if (os.cpu_count() or 1) >= 2 and _has_taskset():
            command = ["taskset", "-c", "0", *command]
            os.sched_setaffinity(0, {1})
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark's apiserver did not start")
        self.kubeconfig = json.loads(line)["kubeconfig"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _has_taskset() -> bool:
    return any(os.access(os.path.join(d, "taskset"), os.X_OK) for d in os.environ.get("PATH", "").split(":"))


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cycle(engine: Engine, client: KubeClient, server_pid: int) -> dict[str, float]:
    requests, waited = client.requests, client.request_seconds
    wall, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_s(server_pid)
    assert engine.run_cycle()
    wall_s = time.perf_counter() - wall
    wait_s = client.request_seconds - waited
    return {
        "wall_s": wall_s,
        "wait_s": wait_s,
        "own_s": wall_s - wait_s,
        "cpu_s": time.process_time() - cpu,
        "server_cpu_s": process_cpu_s(server_pid) - server_cpu,
        "requests": client.requests - requests,
        "writes": engine.last_cycle_writes,
    }


def _line(label: str, r: dict[str, float]) -> str:
    return (
        f"{label:<22} wall {r['wall_s']:7.2f} s (apiserver {r['wait_s']:6.2f} s, own {r['own_s']:6.2f} s), "
        f"cpu {r['cpu_s']:6.2f} s (apiserver's {r['server_cpu_s']:6.2f} s), "
        f"requests {r['requests']:>5.0f}, writes {r['writes']:>6.0f}"
    )


def churn(client: KubeClient, workloads: int, targets: int) -> int:
    """Move 1% of the Deployments to the next SyncTarget; the number changed."""
    changed = 0
    for index in range(0, workloads, 100):
        if index % 10 >= 7:
            continue
        obj = workload(index, targets)
        old = next(iter(obj["metadata"]["labels"]))
        new = f"state.workload.kcp.io/{sync_target_key(CLUSTER, f'st-{(index + 2) % targets:04d}')}"
        patch = {"metadata": {"labels": {old: None, new: "Sync"}}}
        client.merge_patch(
            DEPLOYMENTS, obj["metadata"]["name"], patch, namespace=obj["metadata"]["namespace"]
        )
        changed += 1
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.quota_cycle", description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--workloads", type=int, default=100_000)
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.targets, args.workloads, args.kubeconfig)

    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        server = Server(workdir, args.targets, args.workloads)
        filled = time.perf_counter() - started
        print(f"{args.targets} SyncTargets, {args.workloads} workloads; server filled in {filled:.0f} s")
        try:
            with KubeClient.from_kubeconfig_file(server.kubeconfig, timeout=600) as client:
                workloads = WorkloadUsage(logical_cluster=CLUSTER)
                engine = Engine(
                    client,
                    [
                        AggregatorController(logical_cluster=CLUSTER, workloads=workloads),
                        QuotaController(logical_cluster=CLUSTER, workloads=workloads),
                    ],
                )
                pid = server.process.pid
                first = _cycle(engine, client, pid)
                steady = [_cycle(engine, client, pid) for _ in range(args.cycles)]
                changed = churn(client, args.workloads, args.targets)
                after_churn = _cycle(engine, client, pid)
                settled = _cycle(engine, client, pid)
                rss_now, rss_peak = rss_mib(), peak_rss_mib()

                # Baseline, same run: only fetching and parsing the lists the cycle reads.
                kinds = [
                    SYNCTARGETS,
                    LOCATIONS,
                    *WORKLOAD_RESOURCES,
                    FEDERATEDQUOTAS,
                    RESOURCEQUOTAS,
                    CONFIGMAPS,
                ]
                requests, waited = client.requests, client.request_seconds
                wall, cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_s(pid)
                held = [client.list(kind)[0] for kind in kinds]
                base = {"wall_s": time.perf_counter() - wall, "wait_s": client.request_seconds - waited}
                base["cpu_s"] = time.process_time() - cpu
                base["server_cpu_s"] = process_cpu_s(pid) - server_cpu
                base["requests"] = client.requests - requests
                base_objects = sum(len(items) for items in held)
                base_peak = peak_rss_mib()
                del held
        finally:
            server.stop()

    median = {key: statistics.median(r[key] for r in steady) for key in steady[0]}
    print(_line("first cycle", first))
    print(_line("steady cycle (median)", median))
    print(_line(f"after {changed} moved", after_churn))
    print(_line("settled again", settled))
    print(
        f"{'baseline: lists only':<22} wall {base['wall_s']:7.2f} s (apiserver {base['wait_s']:6.2f} s), "
        f"cpu {base['cpu_s']:6.2f} s (apiserver's {base['server_cpu_s']:6.2f} s), "
        f"requests {base['requests']:>5.0f}, {base_objects} objects held"
    )
    print(
        f"steady cycle / baseline: wall x{median['wall_s'] / max(base['wall_s'], 1e-9):.2f}, "
        f"cpu x{median['cpu_s'] / max(base['cpu_s'], 1e-9):.2f}; "
        f"RSS peak {rss_peak:.0f} MiB (now {rss_now:.0f} MiB) vs {base_peak:.0f} MiB once the lists are held"
    )
    failures = []
    if median["wall_s"] > TARGETS["wall_s"]:
        failures.append(f"steady cycle {median['wall_s']:.2f} s (target {TARGETS['wall_s']:.0f} s)")
    if rss_peak > TARGETS["rss_mib"]:
        failures.append(f"RSS peak {rss_peak:.0f} MiB (target {TARGETS['rss_mib']:.0f} MiB)")
    if median["requests"] != len(kinds):
        failures.append(
            f"{median['requests']:.0f} requests per steady cycle, not one per kind ({len(kinds)})"
        )
    if median["writes"] or settled["writes"]:
        failures.append("writes at steady state")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    if not failures:
        print("all quota cycle targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
