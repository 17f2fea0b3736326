"""Benchmark of the syncer virtual workspace against the backing apiserver it fronts, in the same run.

The fake apiserver and the virtual workspace each run in a process of their own pinned to core 0
(``taskset -c 0``); the load generator (this process) runs on core 1.  Measured:

- list of 1,000 ConfigMaps placed on the SyncTarget: through the VW, and directly from the fake with
  the same label selector, the two in turn; p50 and p99 over the rounds, and the ratio of the medians
  (target <= 1.5x);
- watch event delivery with 200 concurrent watches: the time from a write's answer to each of the 200
  watchers receiving its event, through the VW and directly (target: VW p99 under 50 ms);
- the VW process's RSS before and with the 200 watches open (target: under 1 MiB per open watch).

``python -m bench.virtual_workspace [--objects 1000] [--rounds 100] [--watches 200] [--events 40]``
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import urllib3

from bench.reconciler import ServerProcess, install
from kcp_tmc.policies.keys import state_label, sync_target_key
from kcp_tmc.reconcilers.client import KubeClient, Resource
from kcp_tmc.reconcilers.resources import SYNCTARGETS

SERVER_CORE = "0"
LOAD_CORE = "1"
TARGETS = {"list_ratio": 1.5, "event_p99_ms": 50.0, "rss_per_watch_mib": 1.0}
CONFIGMAPS = Resource("", "v1", "configmaps", namespaced=True, kind="ConfigMap")
LABEL = state_label(sync_target_key("root", "st1"))


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pin(pid: int, core: str) -> None:
    subprocess.run(["taskset", "-p", "-c", core, str(pid)], check=False, capture_output=True)


def serve(kubeconfig: str, cert: str, key: str) -> int:
    """``--serve``: the virtual workspace in this process until stdin closes; prints its URL."""
    from kcp_tmc.reconcilers.virtualworkspace.server import VirtualWorkspaceServer

    with KubeClient.from_kubeconfig_file(kubeconfig) as client:
        server = VirtualWorkspaceServer(
            client.configuration, "127.0.0.1", 0, ssl_context=VirtualWorkspaceServer.tls_context(cert, key)
        )
        with server:
            server.wait_started(30)
            print(json.dumps({"url": server.url}), flush=True)
            sys.stdin.read()
    return 0


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def time_lists(
    pools: Sequence[tuple[urllib3.PoolManager, str]], token: str, rounds: int
) -> list[list[float]]:
    """Seconds per list of each ``(pool, url)``, the URLs taken in turn round after round.

    Alternating the two keeps a drift of the machine's speed (another process, the CPU's clock)
    out of their ratio: both see the same moments of the run.
    """
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    seconds: list[list[float]] = [[] for _ in pools]
    for _ in range(rounds + 2):
        for index, (pool, url) in enumerate(pools):
            started = time.perf_counter()
            reply = pool.request("GET", url, headers=headers)
            json.loads(reply.data)
            seconds[index].append(time.perf_counter() - started)
            assert reply.status == 200, reply.data[:300]
    return [each[2:] for each in seconds]  # the first two warm connections and caches


async def time_events(
    url: str, token: str, watches: int, events: int, client: KubeClient, ca: str, rss: Any
) -> tuple[list[float], float]:
    """Delivery latencies of ``events`` writes to ``watches`` watchers; and what ``rss()`` said meanwhile."""
    context = ssl.create_default_context(cafile=ca)
    sent: dict[str, float] = {}
    latencies: list[float] = []
    opened = 0
    all_open = asyncio.Event()

    async def watcher(session: aiohttp.ClientSession, rv: str) -> None:
        nonlocal opened
        query = f"?watch=true&resourceVersion={rv}&labelSelector={LABEL}%3DSync&timeoutSeconds=120"
        async with session.get(url + query, headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 200, await response.text()
            opened += 1
            if opened == watches:
                all_open.set()
            seen = 0
            while seen < events:
                line = await response.content.readline()
                if not line:
                    return
                event = json.loads(line)
                name = event["object"]["metadata"].get("name", "")
                if event["type"] == "MODIFIED" and name.startswith("cm-"):
                    latencies.append(time.perf_counter() - sent[f"{name}/{event['object']['data']['n']}"])
                    seen += 1
            # Leaving the block would wait for the server to end the stream; a watch is cut instead.
            response.close()

    _, rv = client.list(CONFIGMAPS, namespace="default", label_selector=f"{LABEL}=Sync")
    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(watcher(session, rv)) for _ in range(watches)]
        await asyncio.wait_for(all_open.wait(), 60)
        await asyncio.sleep(0.5)
        rss_open = rss()
        loop = asyncio.get_running_loop()
        for n in range(events):
            name = f"cm-{n % 100:04d}"
            # The clock starts before the write: an event may arrive before its write's answer does.
            # Each run writes values of its own: a write that changes nothing sends no event.
            value = f"{url}#{n}"
            sent[f"{name}/{value}"] = time.perf_counter()
            write = functools.partial(
                client.merge_patch, CONFIGMAPS, name, {"data": {"n": value}}, namespace="default"
            )
            await loop.run_in_executor(None, write)
            await asyncio.sleep(0.05)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return latencies, rss_open


def populate(client: KubeClient, count: int) -> None:
    def one(index: int) -> None:
        client.create(
            CONFIGMAPS,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": f"cm-{index:04d}", "labels": {LABEL: "Sync"}},
                "data": {"n": "-", "payload": "x" * 200},
            },
            namespace="default",
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(count)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.virtual_workspace", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--watches", type=int, default=200)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--serve", nargs=3, metavar=("KUBECONFIG", "CERT", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        return serve(*args.serve)
    pin(os.getpid(), LOAD_CORE)
    from kcp_tmc.testing.tls import serving_certs

    with tempfile.TemporaryDirectory() as workdir, ServerProcess(workdir) as fake:
        pin(fake.process.pid, SERVER_CORE)
        certs = serving_certs()
        paths = {name: Path(workdir) / name for name in ("vw.crt", "vw.key", "ca.crt")}
        paths["vw.crt"].write_bytes(certs.cert_pem)
        paths["vw.key"].write_bytes(certs.key_pem)
        paths["ca.crt"].write_bytes(certs.ca_pem)
        client = KubeClient.from_kubeconfig_file(fake.kubeconfig)
        install(client)
        target = client.create(
            SYNCTARGETS,
            {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "st1"}},
        )
        populate(client, args.objects)
        token = client.configuration.auth_settings()["BearerToken"]["value"].split(" ", 1)[1]
        vw = subprocess.Popen(
            [
                "taskset",
                "-c",
                SERVER_CORE,
                sys.executable,
                "-m",
                "bench.virtual_workspace",
                "--serve",
                fake.kubeconfig,
                str(paths["vw.crt"]),
                str(paths["vw.key"]),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert vw.stdout is not None
            vw_url = json.loads(vw.stdout.readline())["url"]
            base = f"{vw_url}/services/syncer/root/st1/{target['metadata']['uid']}/clusters/*"
            path = f"/api/v1/namespaces/default/configmaps?labelSelector={LABEL}%3DSync"
            fake_ca = client.configuration.ssl_ca_cert
            with (
                urllib3.PoolManager(ca_certs=fake_ca) as direct_pool,
                urllib3.PoolManager(ca_certs=str(paths["ca.crt"])) as vw_pool,
            ):
                direct, through = time_lists(
                    [(direct_pool, client.host + path), (vw_pool, base + path)], token, args.rounds
                )
            rss_idle = rss_mib(vw.pid)
            direct_events, _ = asyncio.run(
                time_events(
                    client.host + "/api/v1/namespaces/default/configmaps",
                    token,
                    args.watches,
                    args.events,
                    client,
                    fake_ca,
                    lambda: 0.0,
                )
            )
            vw_events, rss_open = asyncio.run(
                time_events(
                    base + "/api/v1/namespaces/default/configmaps",
                    token,
                    args.watches,
                    args.events,
                    client,
                    str(paths["ca.crt"]),
                    lambda: rss_mib(vw.pid),
                )
            )
        finally:
            if vw.stdin is not None:
                vw.stdin.close()
            vw.wait(timeout=30)
            client.close()

    def ms(values: Sequence[float], fraction: float) -> float:
        return percentile(values, fraction) * 1000

    list_ratio = statistics.median(through) / statistics.median(direct)
    per_watch = (rss_open - rss_idle) / args.watches
    rows = [
        (f"list {args.objects} objects p50 (ms)", direct, through, 0.5),
        (f"list {args.objects} objects p99 (ms)", direct, through, 0.99),
        (f"watch event p50, {args.watches} watches (ms)", direct_events, vw_events, 0.5),
        (f"watch event p99, {args.watches} watches (ms)", direct_events, vw_events, 0.99),
    ]
    print(f"{'':40} {'direct':>10} {'via VW':>10} {'ratio':>8}")
    for title, baseline, measured, fraction in rows:
        ratio = percentile(measured, fraction) / percentile(baseline, fraction)
        print(f"{title:40} {ms(baseline, fraction):10.1f} {ms(measured, fraction):10.1f} {ratio:7.2f}x")
    print(
        f"VW RSS idle / with {args.watches} watches (MiB): {rss_idle:.1f} / {rss_open:.1f} "
        f"({per_watch * 1024:.0f} KiB per watch)"
    )
    failures = []
    if list_ratio > TARGETS["list_ratio"]:
        failures.append(f"list through the VW is {list_ratio:.2f}x direct (target {TARGETS['list_ratio']}x)")
    if ms(vw_events, 0.99) > TARGETS["event_p99_ms"]:
        failures.append(
            f"watch event p99 {ms(vw_events, 0.99):.1f} ms (target {TARGETS['event_p99_ms']:.0f} ms)"
        )
    if per_watch > TARGETS["rss_per_watch_mib"]:
        failures.append(f"{per_watch:.2f} MiB per open watch (target {TARGETS['rss_per_watch_mib']} MiB)")
    for failure in failures:
        print(f"TARGET MISSED: {failure}")
    if not failures:
        print("all virtual workspace targets met")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
