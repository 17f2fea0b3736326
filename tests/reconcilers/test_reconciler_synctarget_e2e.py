"""The SyncTarget controller end to end on the fake apiserver: registration, Ready, zero writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.reconcilers.engine import Engine
from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.resources import APIEXPORTS, APIRESOURCEIMPORTS, APIRESOURCESCHEMAS, SYNCTARGETS
from kcp_tmc.reconcilers.synctarget import SyncTargetController


def now_text(delta: timedelta = timedelta(0)) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_engine(kube, **kwargs) -> Engine:
    controller = SyncTargetController(
        logical_cluster="root:org:ws",
        shard_urls=kwargs.pop("shards", ["https://shard-1.example:6443/"]),
        heartbeat_threshold=kwargs.pop("threshold", timedelta(minutes=1)),
    )
    return Engine(kube, [controller], poll_interval=kwargs.pop("poll_interval", 30.0), **kwargs)


def create_target(kube, name: str, heartbeat: str | None = None) -> dict:
    st = kube.create(
        SYNCTARGETS,
        {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": name}},
    )
    if heartbeat:
        st = kube.merge_patch(
            SYNCTARGETS, name, {"status": {"lastSyncerHeartbeatTime": heartbeat}}, subresource="status"
        )
    return st


def test_registration_sets_key_workspaces_and_ready(api, kube):
    created = create_target(kube, "us-west1", heartbeat=now_text())
    engine = make_engine(kube)
    assert engine.run_cycle()
    st = kube.get(SYNCTARGETS, "us-west1")
    assert st["metadata"]["labels"]["internal.workload.kcp.io/key"] == sync_target_key(
        "root:org:ws", "us-west1"
    )
    assert (
        st["metadata"]["labels"]["internal.workload.kcp.io/key"] == "6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g"
    )
    uid = created["metadata"]["uid"]
    assert st["status"]["virtualWorkspaces"] == [
        {
            "syncerURL": f"https://shard-1.example:6443/services/syncer/root:org:ws/us-west1/{uid}",
            "upsyncerURL": f"https://shard-1.example:6443/services/upsyncer/root:org:ws/us-west1/{uid}",
        }
    ]
    ready = st["status"]["conditions"][0]
    assert (ready["type"], ready["status"]) == ("Ready", "True")
    assert [c["type"] for c in st["status"]["conditions"]] == ["Ready", "HeartbeatHealthy"]


def test_no_heartbeat_is_not_ready_with_kcp_message(api, kube):
    create_target(kube, "quiet")
    assert make_engine(kube).run_cycle()
    ready = kube.get(SYNCTARGETS, "quiet")["status"]["conditions"][0]
    assert ready == {
        "type": "Ready",
        "status": "False",
        "severity": "Warning",
        "reason": "ErrorHeartbeat",
        "message": "No heartbeat yet seen",
        "lastTransitionTime": ready["lastTransitionTime"],
    }


def test_steady_state_cycle_makes_zero_writes_and_one_list_per_kind(api, kube):
    for i in range(20):
        create_target(kube, f"st-{i}", heartbeat=now_text())
    engine = make_engine(kube)
    assert engine.run_cycle()
    assert (
        api.counters.writes(resource="synctargets") == 20 + 20 + 20 * 2
    )  # creates, heartbeats, label+status
    api.counters.reset()
    assert engine.run_cycle()
    assert api.counters.writes() == 0
    assert api.counters.requests(verb="list", resource="synctargets") == 1
    assert api.counters.requests(verb="get") == 0
    assert api.counters.requests() == 4  # synctargets, apiexports, apiresourceschemas, apiresourceimports


def test_stale_heartbeat_is_evaluated_when_due_not_at_the_next_tick(api, kube):
    # The heartbeat (second precision, so 0-1 s old) goes stale within 3 s; the poll interval is an hour.
    create_target(kube, "due", heartbeat=now_text())
    engine = make_engine(kube, threshold=timedelta(seconds=3), poll_interval=3600.0)
    assert engine.run_cycle()
    assert kube.get(SYNCTARGETS, "due")["status"]["conditions"][0]["status"] == "True"
    due = engine.next_due()
    assert due is not None and 1.5 < due - datetime.now(UTC).timestamp() <= 3.1
    api.counters.reset()
    import threading
    import time

    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            ready = kube.get(SYNCTARGETS, "due")["status"]["conditions"][0]
            if ready["status"] == "False" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert ready["message"].startswith("No heartbeat since ")
    finally:
        engine.stop()
        runner.join(timeout=5)
    # The full cycle at start-up lists once; the due evaluation is one GET, not another list.
    assert api.counters.requests(verb="list", resource="synctargets") == 1


def test_conflict_is_reread_and_retried(api, kube):
    create_target(kube, "c1", heartbeat=now_text())
    api.faults.conflict_next(1, resource="synctargets")
    engine = make_engine(kube)
    assert engine.run_cycle()
    st = kube.get(SYNCTARGETS, "c1")
    assert st["status"]["conditions"][0]["status"] == "True"
    assert "internal.workload.kcp.io/key" in st["metadata"]["labels"]
    assert engine.backoff.failures == {}


def test_synced_resources_from_the_shipped_kubernetes_export(api, kube):
    for obj in kubernetes_export():
        resource = APIEXPORTS if obj["kind"] == "APIExport" else APIRESOURCESCHEMAS
        kube.create(resource, obj)
    create_target(kube, "st", heartbeat=now_text())
    engine = make_engine(kube)
    assert engine.run_cycle()
    synced = kube.get(SYNCTARGETS, "st")["status"]["syncedResources"]
    assert [(e["group"], e["resource"], e["versions"], e["state"]) for e in synced] == [
        ("networking.k8s.io", "ingresses", ["v1"], "Incompatible"),
        ("apps", "deployments", ["v1"], "Incompatible"),
        ("", "services", ["v1"], "Incompatible"),
    ]
    # An import of a compatible schema accepts deployments.
    [deployments] = [o for o in kubernetes_export() if o["metadata"]["name"] == "v124.deployments.apps"]
    kube.create(
        APIRESOURCEIMPORTS,
        {
            "apiVersion": "apiresource.kcp.io/v1alpha1",
            "kind": "APIResourceImport",
            "metadata": {"name": "deployments.st.v1.apps"},
            "spec": {
                "location": "st",
                "groupVersion": {"group": "apps", "version": "v1"},
                "scope": "Namespaced",
                "plural": "deployments",
                "kind": "Deployment",
                "openAPIV3Schema": deployments["spec"]["versions"][0]["schema"],
            },
        },
    )
    assert engine.run_cycle()
    states = {e["resource"]: e["state"] for e in kube.get(SYNCTARGETS, "st")["status"]["syncedResources"]}
    assert states == {"ingresses": "Incompatible", "deployments": "Accepted", "services": "Incompatible"}


def test_outage_is_survived_and_caught_up(api, kube):
    import threading
    import time

    create_target(kube, "before-outage", heartbeat=now_text())
    engine = make_engine(kube, poll_interval=0.2)
    api.faults.down_for(2.0)
    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        # The apiserver listens again no earlier than down_until, so whatever is read before then was
        # read during the outage (the margin keeps a slow machine from seeing the outage end first).
        while engine.metrics.errors.labels("synctarget")._value.get() < 2:
            assert time.monotonic() < api.faults.down_until, "fewer than two failed cycles during the outage"
            time.sleep(0.02)
        ready_during_outage = engine.ready
        assert time.monotonic() < api.faults.down_until, "the outage ended before readiness was read"
        assert not ready_during_outage
        deadline = api.faults.down_until + 5
        while True:
            try:
                st = kube.get(SYNCTARGETS, "before-outage")
            except Exception:
                st = {}
            if (st.get("status") or {}).get("conditions"):
                break
            assert time.monotonic() < deadline, "not caught up after the outage"
            time.sleep(0.05)
        assert st["status"]["conditions"][0]["status"] == "True"
        # Readiness is set when the whole cycle has finished, a moment after its status write shows.
        while not engine.ready:
            assert time.monotonic() < deadline, "not ready again after catching up"
            time.sleep(0.02)
    finally:
        engine.stop()
        runner.join(timeout=5)


def test_health_stays_live_but_not_ready_during_an_outage(api, kube):
    import threading
    import time

    engine = make_engine(kube, poll_interval=0.1)
    runner = threading.Thread(target=engine.run)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not engine.ready:
            assert time.monotonic() < deadline, "never ready before the outage"
            time.sleep(0.02)
        api.faults.down_for(1.0)
        deadline = api.faults.down_until
        while engine.ready:
            assert time.monotonic() < deadline, "still ready while the apiserver is down"
            time.sleep(0.02)
        # The loop keeps going round while the apiserver is down: liveness holds.
        live_since = engine.healthy_at
        while engine.healthy_at <= live_since:
            assert time.monotonic() < api.faults.down_until, "the loop stopped going round during the outage"
            time.sleep(0.02)
        while not engine.ready:
            assert time.monotonic() < api.faults.down_until + 5, "not ready again after the outage"
            time.sleep(0.02)
    finally:
        engine.stop()
        runner.join(timeout=5)


def test_object_deleted_between_list_and_write_is_not_an_error(api, kube):
    create_target(kube, "ephemeral", heartbeat=now_text())
    engine = make_engine(kube)
    controller = engine.controllers[0]
    from kcp_tmc.reconcilers.engine import Context, Snapshot

    snapshot = Snapshot(kube)
    ctx = Context(engine, snapshot, datetime.now(UTC))
    work = controller.refs(ctx)
    kube.delete(SYNCTARGETS, "ephemeral")
    ref, obj, partition = work[0]
    assert engine._reconcile(ctx, controller, ref, obj, partition) == 0
    assert engine.backoff.failures == {}
    assert engine.metrics.errors.labels("synctarget")._value.get() == 0
