"""The webhook's quota I/O on the fake API server: the cached lookup, reservations, dry runs, failures."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest
from flask import Flask

from kcp_tmc.policies.kinds import FEDERATED_QUOTA
from kcp_tmc.policies.policy import Reservation
from kcp_tmc.policies.quantities import parse_quantity
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.crds import crd
from kcp_tmc.webhook.app import EXTENSION
from kcp_tmc.webhook.config import WebhookConfigError
from kcp_tmc.webhook.lookup import AUTH_REUSE, ApiCallError, ApiLookup, ReservationTimeout


def fq(limit: str = "4", used: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "FederatedQuota",
        "metadata": {"name": "team-a", "namespace": "default"},
        "spec": {"overall": {"requests.cpu": limit}},
    }


def with_status(api: FakeAPIServer, used: str) -> dict[str, Any]:
    stored = api.get("tmc.kcp.io/v1alpha1", "federatedquotas", "team-a", "default")
    stored["status"] = {"overall": stored["spec"]["overall"], "overallUsed": {"requests.cpu": used}}
    return api.update(stored, subresource="status")


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        server.install_crd(crd("federatedquotas.tmc.kcp.io"))
        server.create(fq())
        with_status(server, "1")
        yield server


@pytest.fixture
def lookup(api: FakeAPIServer) -> Iterator[ApiLookup]:
    cache = ApiLookup.from_kubeconfig(api.kubeconfig_path, watch_timeout=5).start(wait=10)
    yield cache
    cache.close()


def used_of(api: FakeAPIServer) -> str:
    return api.get("tmc.kcp.io/v1alpha1", "federatedquotas", "team-a", "default")["status"]["overallUsed"][
        "requests.cpu"
    ]


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    return check()


def reservation(cpu: str) -> Reservation:
    return Reservation(
        "quota-enforcement",
        FEDERATED_QUOTA,
        "default",
        "team-a",
        {"requests.cpu": parse_quantity(cpu)},
        path="spec",
    )


def test_the_cache_lists_then_follows_the_watch(api: FakeAPIServer, lookup: ApiLookup) -> None:
    requests_before = api.counters.requests(resource="federatedquotas")
    assert [q["metadata"]["name"] for q in lookup.list(FEDERATED_QUOTA, "default")] == ["team-a"]
    assert lookup.list(FEDERATED_QUOTA, "other") == []
    assert lookup.get(FEDERATED_QUOTA, "team-a", "default")["kind"] == "FederatedQuota"
    assert api.counters.requests(resource="federatedquotas") == requests_before  # served from the cache
    with_status(api, "3")
    assert eventually(
        lambda: (
            lookup.get(FEDERATED_QUOTA, "team-a", "default")["status"]["overallUsed"]["requests.cpu"] == "3"
        )
    )
    api.delete("tmc.kcp.io/v1alpha1", "federatedquotas", "team-a", "default")
    assert eventually(lambda: lookup.get(FEDERATED_QUOTA, "team-a", "default") is None)


def test_uncached_types_and_a_stale_cache_read_live(api: FakeAPIServer) -> None:
    cold = ApiLookup.from_kubeconfig(api.kubeconfig_path)  # never started: never fresh
    assert [q["metadata"]["name"] for q in cold.list(FEDERATED_QUOTA, labels={"x": "y"})] == []
    assert [q["metadata"]["name"] for q in cold.list(FEDERATED_QUOTA)] == ["team-a"]
    assert cold.get(FEDERATED_QUOTA, "nope", "default") is None
    from kcp_tmc.policies.kinds import DEPLOYMENT, SYNC_TARGET

    assert cold.get(DEPLOYMENT, "web", "default") is None
    assert cold.list(SYNC_TARGET) == []  # a type that is not served: nothing of it exists
    api.faults.error_rate(1.0, code=500)
    with pytest.raises(ApiCallError, match="500"):
        cold.get(FEDERATED_QUOTA, "team-a", "default")
    with pytest.raises(ApiCallError, match="500"):
        cold.list(FEDERATED_QUOTA)


def test_a_reservation_adds_to_the_status(api: FakeAPIServer, lookup: ApiLookup) -> None:
    assert lookup.reserve(reservation("2")) is None
    assert used_of(api) == "3"
    denial = lookup.reserve(reservation("2"))
    assert denial is not None
    assert str(denial).startswith(
        "spec: exceeded quota: team-a, requested: requests.cpu=2, used: requests.cpu=3, "
        "limited: requests.cpu=4"
    )
    assert used_of(api) == "3"


def test_a_conflict_is_re_read_and_retried(api: FakeAPIServer, lookup: ApiLookup) -> None:
    api.faults.conflict_next(2, resource="federatedquotas")
    assert lookup.reserve(reservation("1")) is None
    assert lookup.conflicts == 2
    assert used_of(api) == "2"


def test_reservations_of_one_process_on_one_quota_take_turns_without_conflicts(
    api: FakeAPIServer, lookup: ApiLookup
) -> None:
    # Ten at once, as ten connections of one worker: each starts from the status the one before
    # it wrote, so none meets a conflict, and the use is exact.
    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda _: lookup.reserve(reservation("100m")), range(10)))
    assert results == [None] * 10
    assert lookup.conflicts == 0
    assert used_of(api) == "2"


def concurrently(count: int, call: Callable[[], Any]) -> list[Any]:
    """``call()`` on ``count`` threads released together: each one's result, or the exception it raised."""
    start = threading.Barrier(count)

    def run(_: int) -> Any:
        start.wait(5)
        try:
            return call()
        except Exception as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_reservations_waiting_for_one_write_are_written_together(
    api: FakeAPIServer, lookup: ApiLookup
) -> None:
    # Ten at once behind a slow apiserver: the first write takes those waiting when its turn came,
    # the next one every other: two or three writes for ten reservations, the use exact.
    patches_before = api.counters.requests(verb="patch", resource="federatedquotas")
    api.faults.latency(0.2)
    try:
        results = concurrently(10, lambda: lookup.reserve(reservation("100m"), time.monotonic() + 5))
    finally:
        api.faults.clear()
    assert results == [None] * 10
    assert lookup.conflicts == 0
    assert used_of(api) == "2"
    patches = api.counters.requests(verb="patch", resource="federatedquotas") - patches_before
    assert 1 <= patches <= 3, f"{patches} writes for 10 reservations waiting together"


def test_a_batch_admits_in_order_what_fits_and_denies_the_rest(api: FakeAPIServer, lookup: ApiLookup) -> None:
    # Room for 3 of 6: whatever batches they fall into, exactly 3 are written and 3 denied against
    # the use the others left.
    api.faults.latency(0.2)
    try:
        results = concurrently(6, lambda: lookup.reserve(reservation("1"), time.monotonic() + 5))
    finally:
        api.faults.clear()
    denials = [str(r) for r in results if r is not None]
    assert results.count(None) == 3, results
    assert len(denials) == 3
    assert all(
        d.startswith(
            "spec: exceeded quota: team-a, requested: requests.cpu=1, used: requests.cpu=4, "
            "limited: requests.cpu=4"
        )
        for d in denials
    ), denials
    assert used_of(api) == "4"
    assert lookup.conflicts == 0


def test_a_failed_batch_write_fails_its_writer_only_the_others_write_in_their_turn(
    api: FakeAPIServer, lookup: ApiLookup
) -> None:
    api.faults.latency(0.2)
    api.faults.storage_initializing(1, "federatedquotas", verbs=("patch",))
    try:
        results = concurrently(4, lambda: lookup.reserve(reservation("100m"), time.monotonic() + 5))
    finally:
        api.faults.clear()
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1, results
    assert isinstance(errors[0], ApiCallError) and errors[0].status == 429, errors
    assert results.count(None) == 3
    assert used_of(api) == "1300m"


def test_a_reservation_waiting_its_turn_past_its_deadline_times_out(
    api: FakeAPIServer, lookup: ApiLookup
) -> None:
    api.faults.latency(0.5)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(lookup.reserve, reservation("1"))
            assert eventually(lookup._turn(reservation("1")).lock.locked)  # one turn per quota, kept
            with pytest.raises(
                ReservationTimeout,
                match="deadline passed while earlier reservations on the quota were written",
            ):
                lookup.reserve(reservation("1"), deadline=time.monotonic() + 0.1)
            assert first.result() is None
    finally:
        api.faults.clear()
    assert used_of(api) == "2"  # the first written, the one that timed out not


def test_the_turn_is_waited_for_until_the_deadline_not_one_calls_timeout(api: FakeAPIServer) -> None:
    # Each write takes 0.2 s and one call may take 0.3 s: the fourth in line waits 0.6 s for its
    # turn, longer than a call's timeout but well within its review's deadline, and is written.
    lookup = ApiLookup.from_kubeconfig(api.kubeconfig_path, watch_timeout=5, request_timeout=0.3)
    lookup.start(wait=10)
    api.faults.latency(0.2)
    try:
        deadline = time.monotonic() + 5
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: lookup.reserve(reservation("500m"), deadline), range(4)))
    finally:
        api.faults.clear()
        lookup.close()
    assert results == [None] * 4
    assert used_of(api) == "3"


def test_a_stale_cache_never_admits_past_the_limit(api: FakeAPIServer, lookup: ApiLookup) -> None:
    with_status(api, "4")  # written behind the cache's back, as another replica would
    assert lookup.reserve(reservation("1"), deadline=time.monotonic() + 5) is not None
    assert used_of(api) == "4"


def test_a_deleted_quota_needs_no_reservation(api: FakeAPIServer, lookup: ApiLookup) -> None:
    api.delete("tmc.kcp.io/v1alpha1", "federatedquotas", "team-a", "default")
    assert eventually(lambda: lookup.get(FEDERATED_QUOTA, "team-a", "default") is None)
    assert lookup.reserve(reservation("1")) is None


def test_the_deadline_bounds_a_reservation(api: FakeAPIServer, lookup: ApiLookup) -> None:
    api.faults.conflict_next(1000, resource="federatedquotas")
    with pytest.raises(ReservationTimeout):
        lookup.reserve(reservation("1"), deadline=time.monotonic() + 0.3)
    api.faults.clear()
    with pytest.raises(ReservationTimeout):
        lookup.reserve(reservation("1"), deadline=time.monotonic() - 1)
    api.faults.conflict_next(1000, resource="federatedquotas")
    with pytest.raises(ReservationTimeout, match="still conflicted after 64 attempts"):
        lookup.reserve(reservation("1"))  # no deadline: the attempts are bounded


def test_a_call_the_deadline_cuts_short_is_a_reservation_timeout(
    api: FakeAPIServer, lookup: ApiLookup
) -> None:
    # The apiserver answers slower than the review has left: the read times out because of the deadline.
    api.faults.latency(0.5)
    try:
        with pytest.raises(ReservationTimeout, match="deadline passed while the quota was being written"):
            lookup.reserve(reservation("1"), deadline=time.monotonic() + 0.1)
    finally:
        api.faults.clear()


def test_a_refused_reused_token_is_asked_for_again(tmp_path: Any) -> None:
    # The credentials header is reused for AUTH_REUSE seconds; when the apiserver refuses it (the
    # token rotated), the configuration's current token is used at once, in the same call.
    now = [0.0]
    with FakeAPIServer(tokens={"old": ["admin", ["system:masters"]]}) as server:
        server.install_crd(crd("federatedquotas.tmc.kcp.io"))
        server.create(fq())
        ca = tmp_path / "ca.crt"
        ca.write_bytes(server.ca_pem)
        configuration = kubernetes.client.Configuration(
            host=server.url, api_key={"authorization": "Bearer old"}
        )
        configuration.ssl_ca_cert = str(ca)
        lookup = ApiLookup(configuration, cached=(), clock=lambda: now[0])
        try:
            assert lookup.get(FEDERATED_QUOTA, "team-a", "default") is not None
            server.tokens.pop("old")
            server.tokens["new"] = server.tokens[server.admin_token]
            configuration.api_key["authorization"] = "Bearer new"
            assert lookup.get(FEDERATED_QUOTA, "team-a", "default") is not None
            # Once the reuse has run out, a token refused on both tries is the call's error.
            configuration.api_key["authorization"] = "Bearer gone"
            now[0] += AUTH_REUSE
            path = "/apis/tmc.kcp.io/v1alpha1/namespaces/default/federatedquotas/team-a"
            with pytest.raises(ApiCallError, match=f"^GET {path}: 401 Unauthorized$"):
                lookup.get(FEDERATED_QUOTA, "team-a", "default")
        finally:
            lookup.close()


def test_an_unusable_kubeconfig_is_named(tmp_path: Any) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("clusters: 7\n")
    with pytest.raises(ValueError, match=f"kubeconfig {bad}"):
        ApiLookup.from_kubeconfig(str(bad))
    with pytest.raises(ValueError, match="in-cluster configuration"):
        ApiLookup.in_cluster()


# --- through the app --------------------------------------------------------------------------------


def pod_review(uid: str, cpu: str, *, dry_run: bool = False) -> dict[str, Any]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p-{uid}", "namespace": "default"},
        "spec": {"containers": [{"name": "app", "image": "nginx", "resources": {"requests": {"cpu": cpu}}}]},
    }
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE",
            "namespace": "default",
            "name": pod["metadata"]["name"],
            "object": pod,
            "oldObject": None,
            "dryRun": dry_run,
            "userInfo": {"username": "alice"},
        },
    }


def review(app: Flask, body: dict[str, Any]) -> dict[str, Any]:
    response = app.test_client().post("/validate", json=body)
    assert response.status_code == 200
    answer: dict[str, Any] = response.get_json()["response"]
    return answer


def test_the_app_reserves_admitted_use_and_skips_dry_runs(
    api: FakeAPIServer, make_app: Callable[..., Flask]
) -> None:
    app = make_app(kubeconfig=api.kubeconfig_path)
    assert review(app, pod_review("a", "2"))["allowed"] is True
    assert used_of(api) == "3"
    assert review(app, pod_review("b", "1", dry_run=True))["allowed"] is True
    assert used_of(api) == "3"
    denied = review(app, pod_review("c", "2"))
    assert denied["allowed"] is False
    assert denied["status"]["code"] == 403
    assert denied["status"]["reason"] == "QuotaExceeded"
    assert denied["status"]["message"].startswith(
        "[quota-enforcement] spec.containers: exceeded quota: team-a, requested: requests.cpu=2, "
        "used: requests.cpu=3, limited: requests.cpu=4"
    )


def test_a_reservation_that_lost_the_race_is_denied(
    api: FakeAPIServer, make_app: Callable[..., Flask]
) -> None:
    cache = ApiLookup.from_kubeconfig(api.kubeconfig_path).start(wait=10)
    try:
        app = make_app(lookup=cache)
        cache.close()  # the cache keeps what it holds: used 1 of 4
        with_status(api, "3")  # another replica admitted 2 meanwhile
        denied = review(app, pod_review("d", "2"))
        assert denied["status"]["reason"] == "QuotaExceeded"
        assert "used: requests.cpu=3, limited: requests.cpu=4" in denied["status"]["message"]
    finally:
        cache.close()


@pytest.mark.parametrize(
    ("failure_mode", "allowed"), [("fail", False), ("ignore", True)], ids=["fail-closed", "fail-open"]
)
def test_a_reservation_that_cannot_be_written_follows_the_failure_mode(
    api: FakeAPIServer, make_app: Callable[..., Flask], tmp_path: Any, failure_mode: str, allowed: bool
) -> None:
    config = tmp_path / "policies.yaml"
    config.write_text(f"policies:\n  quota-enforcement: {{failureMode: {failure_mode}}}\n")
    app = make_app(kubeconfig=api.kubeconfig_path, engine_config=str(config))
    cache = app.extensions["kcp_tmc.webhook"].service.lookup
    assert isinstance(cache, ApiLookup)
    original = cache.http.json

    def failing(method: str, path: str, **kwargs: Any) -> Any:
        if method == "PATCH":
            raise ApiCallError(f"PATCH {path}: 503 unavailable", 503)
        return original(method, path, **kwargs)

    cache.http.json = failing  # type: ignore[method-assign]
    answer = review(app, pod_review("e", "1"))
    assert answer["allowed"] is allowed
    error = (
        "cannot reserve quota default/team-a: ApiCallError: PATCH "
        "/apis/tmc.kcp.io/v1alpha1/namespaces/default/federatedquotas/team-a/status: 503 unavailable"
    )
    if allowed:
        assert answer["warnings"] == [f"[quota-enforcement] policy failed and was ignored: {error}"]
    else:
        assert answer["status"] == {
            "code": 500,
            "reason": "InternalError",
            "message": f"[quota-enforcement] policy failed: {error}",
        }
    assert used_of(api) == "1"


def test_a_bad_kubeconfig_setting_is_refused(make_app: Callable[..., Flask], tmp_path: Any) -> None:
    with pytest.raises(WebhookConfigError, match="kubeconfig: kubeconfig"):
        make_app(kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(WebhookConfigError, match="lookup_staleness must be more than 0"):
        make_app(lookup_staleness=0)


def test_the_app_starts_without_waiting_for_a_slow_apiserver(
    api: FakeAPIServer, make_app: Callable[..., Flask]
) -> None:
    api.faults.latency(3.0)
    started = time.monotonic()
    app = make_app(kubeconfig=api.kubeconfig_path)
    took = time.monotonic() - started
    api.faults.latency(0)
    # The caches' first lists are still in flight (3 s each); the app was ready long before.
    assert took < 2.0, f"create_app waited {took:.1f} s for the caches"
    assert app.test_client().get("/healthz").status_code == 200
    # Let the delayed first lists finish before the server goes away.
    lookup = app.extensions[EXTENSION].service.lookup
    assert eventually(lambda: all(i.synced.is_set() for i in lookup.informers.values()))


def create_web_deployment(api: FakeAPIServer) -> None:
    """Deployment ``default/web``: one replica of one container requesting one CPU."""
    container = {"name": "app", "image": "nginx", "resources": {"requests": {"cpu": "1"}}}
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
            },
        }
    )


def test_a_scale_write_reads_its_workload_live_and_reserves_the_difference(
    api: FakeAPIServer, make_app: Callable[..., Flask]
) -> None:
    create_web_deployment(api)
    app = make_app(kubeconfig=api.kubeconfig_path)

    def scale(replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "web"},
            "spec": {"replicas": replicas},
        }

    def scale_review(uid: str, new: int, old: int) -> dict[str, Any]:
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "subResource": "scale",
                "operation": "UPDATE",
                "namespace": "default",
                "name": "web",
                "object": scale(new),
                "oldObject": scale(old),
                "userInfo": {"username": "alice"},
            },
        }

    assert review(app, scale_review("s1", 3, 1))["allowed"] is True  # +2 of 3 left
    assert used_of(api) == "3"
    denied = review(app, scale_review("s2", 3, 1))
    assert denied["status"]["reason"] == "QuotaExceeded"
    assert denied["status"]["message"].startswith(
        "[quota-enforcement] spec.replicas: exceeded quota: team-a, requested: requests.cpu=2, "
        "used: requests.cpu=3, limited: requests.cpu=4"
    )


def test_a_lookup_that_fails_follows_the_failure_mode(
    api: FakeAPIServer, make_app: Callable[..., Flask]
) -> None:
    cold = ApiLookup.from_kubeconfig(api.kubeconfig_path)  # never started: every read is live
    app = make_app(lookup=cold)
    api.faults.error_rate(1.0, code=500)
    answer = review(app, pod_review("f", "1"))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 500
    assert answer["status"]["message"].startswith("[quota-enforcement] policy failed: ApiCallError: GET ")


def test_a_slow_lookup_is_cut_off_at_the_review_deadline(
    api: FakeAPIServer, make_app: Callable[..., Flask]
) -> None:
    cold = ApiLookup.from_kubeconfig(api.kubeconfig_path, request_timeout=5.0)
    app = make_app(lookup=cold)
    api.faults.latency(3.0)
    started = time.monotonic()
    response = app.test_client().post("/validate?timeout=1s", json=pod_review("g", "1"))
    elapsed = time.monotonic() - started
    answer = response.get_json()["response"]
    assert elapsed < 2.9  # answered before the 3 s lookup could have returned
    assert answer["status"]["code"] == 500
    assert (
        "[quota-enforcement] policy failed: TimeoutError: still running when the deadline passed"
        in (answer["status"]["message"])
    )
    api.faults.clear()
