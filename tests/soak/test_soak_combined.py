"""Combined soak: the webhook, the reconciler and the syncer virtual workspace under load together.

One fake kcp apiserver (in this process) backs all of it.  At the same time:

* ``tmc-webhook`` (2 workers, its quota lookups watching the fake kcp) answers the mixed reviews of
  three keep-alive clients and a fourth client's refused bodies, ``/metrics`` and ``/readyz``;
* ``tmc-reconciler`` (every controller, the virtual workspace served) cycles at a 1 s poll over
  SyncTargets whose syncers beat every 5 s, churned SyncTargets and Push-mode member clusters;
* syncers watch ConfigMaps through the virtual workspace, one watch per SyncTarget, renewed when
  the server ends it (``timeoutSeconds``), while placed ConfigMaps are created, changed and deleted.

Every sample period (a minute by default) one table row per process is printed: RSS, open fds and
threads of the webhook master, each worker and the reconciler.  After the warm-up none of the three
may trend upwards by more than 10% in any process (a least-squares line through the later samples
rises by at most a tenth of their mean); no review, heartbeat or watch may fail.

Environment: ``TMC_SOAK_SECONDS`` (default 1800), ``TMC_SOAK_SAMPLE_SECONDS`` (default 60),
``TMC_SOAK_WARMUP_SECONDS`` (default 300).  A short try: ``TMC_SOAK_SECONDS=120
TMC_SOAK_SAMPLE_SECONDS=10 TMC_SOAK_WARMUP_SECONDS=30 make soak``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import urllib3

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.policies.keys import state_label, sync_target_key
from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.tls import serving_certs
from tests.procstats import Usage, children, usage
from tests.reconcilers.reconciler_processes import Reconciler, add_member_cluster, crds, wait_for
from tests.reconcilers.vw_env import CONFIGMAPS, SYNCER_TOKEN, sync_rule
from tests.soak.soakkit import HeartbeatLoad, bad_input_loop, create_targets, rise, seconds, still_reconciling
from tests.webhook.load import Load
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, free_port, start_server, stop_server

pytestmark = [pytest.mark.soak, pytest.mark.timeout(seconds("TMC_SOAK_SECONDS", 1800) + 300)]

TARGETS = 20
WATCHED = 3
MEMBERS = 3
GROWTH = 0.10


class Watches:
    """One syncer watch per watched SyncTarget through the virtual workspace, renewed when it ends,
    and a thread that creates, changes and deletes a placed ConfigMap per target every 2 s."""

    def __init__(self, api: FakeAPIServer, urls: dict[str, str], ca: str, until: float) -> None:
        self.api, self.urls, self.until = api, urls, until
        self.pool = urllib3.PoolManager(ca_certs=ca, retries=False, maxsize=len(urls))
        self.events = 0
        self.watches = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._watch, args=(url,), daemon=True) for url in urls.values()
        ] + [threading.Thread(target=self._churn, daemon=True)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        for thread in self.threads:
            thread.join(60)
        self.pool.clear()

    def _watch(self, url: str) -> None:
        while time.monotonic() < self.until:
            try:
                reply = self.pool.request(
                    "GET",
                    url + CONFIGMAPS + "?watch=true&timeoutSeconds=20",
                    headers={"Authorization": f"Bearer {SYNCER_TOKEN}"},
                    preload_content=False,
                    timeout=urllib3.Timeout(connect=10, read=40),
                )
                with self.lock:
                    self.watches += 1
                if reply.status != 200:
                    self.errors.append(f"watch answered {reply.status}: {reply.data[:200]!r}")
                    time.sleep(1)
                    continue
                buffer = b""
                for chunk in reply.stream(4096):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            self.errors.append(f"watch error event: {event['object']}")
                        with self.lock:
                            self.events += 1
                reply.release_conn()
            except Exception as exc:  # kept and asserted on at the end
                self.errors.append(f"watch: {type(exc).__name__}: {exc}")
                time.sleep(1)

    def _churn(self) -> None:
        step = 0
        while time.monotonic() < self.until:
            for target in self.urls:
                name = f"cm-{target}"
                labels = {state_label(sync_target_key("root", target)): "Sync"}
                try:
                    if step % 3 == 0:
                        self.api.create(
                            {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "metadata": {"name": name, "namespace": "default", "labels": labels},
                                "data": {"step": str(step)},
                            }
                        )
                    elif step % 3 == 1:
                        obj = self.api.get("v1", "configmaps", name, "default")
                        assert obj is not None, name
                        self.api.update({**obj, "data": {"step": str(step)}})
                    else:
                        self.api.delete("v1", "configmaps", name, "default")
                except Exception as exc:  # kept and asserted on at the end
                    self.errors.append(f"churn: {type(exc).__name__}: {exc}")
            step += 1
            time.sleep(2.0)


def _syncer_urls(kube: KubeClient, names: list[str]) -> dict[str, str]:
    """The virtual-workspace URL the reconciler wrote into each SyncTarget, with the cluster part."""

    def written() -> dict[str, str] | None:
        urls = {}
        for name in names:
            workspaces = (kube.get(SYNCTARGETS, name).get("status") or {}).get("virtualWorkspaces") or []
            if not workspaces:
                return None
            urls[name] = workspaces[0]["syncerURL"] + "/clusters/*"
        return urls

    urls: dict[str, str] = wait_for(written, 30, "the reconciler never wrote status.virtualWorkspaces")
    return urls


def _processes(webhook: int, reconciler: int) -> dict[str, int]:
    named = {"webhook-master": webhook, "reconciler": reconciler}
    for i, pid in enumerate(children(webhook)):
        named[f"webhook-worker-{i}"] = pid
    return named


def _figures(named: dict[str, int]) -> dict[str, Usage]:
    # usage() sums a process and its children: the master's own share is its total minus the workers'.
    out: dict[str, Usage] = {}
    for name, pid in named.items():
        out[name] = usage(pid) if name != "webhook-master" else _own(pid)
    return out


def _own(pid: int) -> Usage:
    total = usage(pid)
    for child in children(pid):
        each = usage(child)
        total = Usage(total.rss - each.rss, total.fds - each.fds, total.threads - each.threads)
    return total


def test_combined_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    duration = seconds("TMC_SOAK_SECONDS", 1800)
    every = seconds("TMC_SOAK_SAMPLE_SECONDS", 60)
    warmup = seconds("TMC_SOAK_WARMUP_SECONDS", 300)
    assert duration > warmup + 2 * every, "the run must hold at least three samples after the warm-up"
    vw_certs = serving_certs()
    for name, pem in (
        ("vw.crt", vw_certs.cert_pem),
        ("vw.key", vw_certs.key_pem),
        ("vw-ca.crt", vw_certs.ca_pem),
    ):
        (tmp_path / name).write_bytes(pem)
    certs = tmp_path / "certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"])
    watched = [f"st-{i:02d}" for i in range(WATCHED)]
    tokens = {SYNCER_TOKEN: ("syncer", ["syncers"])}
    rules: list[dict[str, Any]] = [sync_rule("syncer", name) for name in watched]
    rows: list[tuple[float, dict[str, Usage]]] = []
    with ExitStack() as stack:
        kcp = stack.enter_context(FakeAPIServer(tokens=tokens, rules=rules))
        for crd in crds():
            kcp.install_crd(crd)
        kube = stack.enter_context(KubeClient.from_kubeconfig_file(kcp.kubeconfig_path, timeout=10.0))
        create_targets(kube, TARGETS)
        for i in range(MEMBERS):
            add_member_cluster(kube, stack.enter_context(FakeAPIServer()), tmp_path, f"member-{i}")
        vw_port = free_port()
        reconciler = Reconciler(
            str(kcp.kubeconfig_path),
            tmp_path / "reconciler.log",
            f"--vw-bind=127.0.0.1:{vw_port}",
            f"--vw-cert-file={tmp_path / 'vw.crt'}",
            f"--vw-key-file={tmp_path / 'vw.key'}",
            f"--shard=root=https://127.0.0.1:{vw_port}",
            "--poll-interval=1s",
            "--syncer-heartbeat-interval=5s",
        )
        webhook = start_server(
            tmp_path,
            certs,
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--kubeconfig",
            str(kcp.kubeconfig_path),
        )
        stop = threading.Event()
        bad_errors: list[str] = []
        bad = threading.Thread(
            target=bad_input_loop, args=(webhook, stop, bad_errors, duration + 60), daemon=True
        )
        try:
            reconciler.metrics_port()
            urls = _syncer_urls(kube, watched)
            started = time.monotonic()
            beats = HeartbeatLoad(kube, started + duration, TARGETS)
            watches = Watches(kcp, urls, str(tmp_path / "vw-ca.crt"), started + duration)
            # A steady load, not a flood: the fake apiservers and these clients share one interpreter.
            reviews = Load(
                webhook.port,
                webhook.context,
                threads=3,
                duration=duration + 60,
                reconnect_every=50,
                pause=0.01,
            )
            with reviews:
                beats.thread.start()
                watches.start()
                bad.start()
                named = _processes(webhook.proc.pid, reconciler.process.pid)
                with capsys.disabled():
                    print("\n| minute | process | RSS MiB | fds | threads | reviews | watch events |")
                    print("| --- | --- | --- | --- | --- | --- | --- |")
                while (elapsed := time.monotonic() - started) < duration:
                    time.sleep(min(every, max(0.0, duration - elapsed)))
                    now = time.monotonic() - started
                    assert reconciler.process.poll() is None, "the reconciler exited"
                    assert webhook.proc.poll() is None, "the webhook exited"
                    figures = _figures(named)
                    rows.append((now, figures))
                    with capsys.disabled():
                        for name, each in figures.items():
                            print(
                                f"| {now / 60:.1f} | {name} | {each.rss_mib:.1f} | {each.fds} "
                                f"| {each.threads} | {len(reviews.shots)} | {watches.events} |",
                                flush=True,
                            )
                stop.set()
            beats.until = watches.until = 0
            beats.thread.join(30)
            watches.join()
            bad.join(30)
            still_reconciling(kube)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                stop_server(webhook)
            code = reconciler.stop("TERM")
        assert code == 0
        assert reviews.failures() == [], reviews.failures()[:5]
        assert bad_errors == [], bad_errors[:5]
        assert beats.errors == [], beats.errors[:5]
        assert watches.errors == [], watches.errors[:5]
        assert watches.events > 0 and watches.watches > WATCHED
    later = [(t, figures) for t, figures in rows if t >= warmup]
    assert len(later) >= 3
    report = []
    for process in named:
        for field in ("rss", "fds", "threads"):
            series = [(t, float(getattr(figures[process], field))) for t, figures in later]
            mean = sum(v for _, v in series) / len(series)
            trend = rise(series)
            report.append((process, field, mean, trend))
    with capsys.disabled():
        print(
            f"[soak] {len(reviews.shots)} reviews, {beats.rounds} heartbeat rounds, {watches.watches} watches"
        )
        for process, field, mean, trend in report:
            scale = 1024 * 1024 if field == "rss" else 1
            print(
                f"[soak] {process} {field}: mean {mean / scale:.1f}, trend {trend / scale:+.2f} "
                f"({trend / mean:+.1%})"
            )
    for process, field, mean, trend in report:
        assert trend <= GROWTH * mean, f"{process} {field} trends up by {trend / mean:.1%} after the warm-up"
