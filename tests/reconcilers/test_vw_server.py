"""The syncer virtual workspace through the real ``kubernetes`` client: paths, auth, reads."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from kcp_tmc.policies.keys import sync_target_key
from tests.reconcilers.reconciler_processes import crds
from tests.reconcilers.vw_env import CONFIGMAPS, OTHER_TOKEN, VWEnv, sync_rule

KEY = sync_target_key("root", "st1")


def _status(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_list_shows_only_objects_synced_to_the_target(vw_env: VWEnv) -> None:
    target = vw_env.create_target()
    vw_env.wait_for_target()
    vw_env.configmap("placed")
    vw_env.configmap("pending", state="")
    vw_env.configmap("elsewhere", target="st2")
    vw_env.configmap("unlabelled", state=None)
    with vw_env.client(vw_env.base(target)) as api_client:
        core = k8s.CoreV1Api(api_client)
        names = [cm.metadata.name for cm in core.list_namespaced_config_map("default").items]
        assert names == ["placed"]
        assert [cm.metadata.name for cm in core.list_config_map_for_all_namespaces().items] == ["placed"]


def _ready(vw_env: VWEnv) -> dict:
    target = vw_env.create_target()
    vw_env.wait_for_target()
    return target


def test_a_list_through_the_vw_ands_the_callers_selector(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.configmap("a", labels={"app": "a"})
    vw_env.configmap("b", labels={"app": "b"})
    vw_env.configmap("c", state="", labels={"app": "a"})
    with vw_env.client(vw_env.base(target)) as api_client:
        items = k8s.CoreV1Api(api_client).list_namespaced_config_map("default", label_selector="app=a").items
        assert [cm.metadata.name for cm in items] == ["a"]


def test_get_returns_a_synced_object_and_404_for_any_other(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    placed = vw_env.configmap("placed", data={"k": "v"})
    vw_env.configmap("pending", state="")
    with vw_env.client(vw_env.base(target)) as api_client:
        core = k8s.CoreV1Api(api_client)
        got = core.read_namespaced_config_map("placed", "default")
        assert (got.metadata.uid, got.data) == (placed["metadata"]["uid"], {"k": "v"})
        for name in ("pending", "absent"):
            with pytest.raises(ApiException) as caught:
                core.read_namespaced_config_map(name, "default")
            assert caught.value.status == 404
            assert _status(caught.value) == {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f'configmaps "{name}" not found',
                "reason": "NotFound",
                "details": {"name": name, "kind": "configmaps"},
                "code": 404,
            }


def test_a_named_cluster_segment_shows_only_that_clusters_objects(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.configmap("in-root")
    other = vw_env.configmap("in-other")
    other["metadata"].setdefault("annotations", {})["kcp.io/cluster"] = "other"
    vw_env.api.update(other)
    for cluster, names in (("root", ["in-root"]), ("other", ["in-other"]), ("*", ["in-other", "in-root"])):
        with vw_env.client(vw_env.base(target, cluster=cluster)) as api_client:
            items = k8s.CoreV1Api(api_client).list_namespaced_config_map("default").items
            assert sorted(cm.metadata.name for cm in items) == names, cluster
    status, body = vw_env.http("GET", vw_env.base(target, cluster="other") + CONFIGMAPS + "/in-root")
    assert (status, body["message"]) == (404, 'configmaps "in-root" not found')


def test_pods_and_endpoints_are_not_served_and_there_is_no_create_or_delete(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.configmap("placed")
    base = vw_env.base(target)
    for path in (
        "/api/v1/namespaces/default/pods",
        "/api/v1/endpoints",
        "/apis/apps/v1/deployments",
        "/healthz",
    ):
        status, body = vw_env.http("GET", base + path)
        assert (status, body["message"], body["reason"]) == (
            404,
            "the server could not find the requested resource",
            "NotFound",
        ), path
    new = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}}
    for method, path, body in (
        ("POST", CONFIGMAPS, new),
        ("DELETE", CONFIGMAPS + "/placed", None),
        ("DELETE", CONFIGMAPS, None),
    ):
        status, answer = vw_env.http(method, base + path, body=body)
        assert (status, answer["reason"], answer["message"]) == (
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        ), (method, path)
    assert vw_env.api.get("v1", "configmaps", "placed", "default") is not None
    assert vw_env.api.get("v1", "configmaps", "new", "default") is None


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("/services/syncer/root/st1", "lacks the SyncTarget cluster, name or UID"),
        ("/services/syncer/root/st1/{uid}/api/v1/configmaps", "lacks the /clusters/<cluster> segment"),
        (
            "/services/syncer/root/st1/stale-uid/clusters/*/api/v1/configmaps",
            "sync target UID mismatch: {uid} != stale-uid",
        ),
        ("/services/syncer/root/st9/x/clusters/*/api/v1/configmaps", "SyncTarget root/st9 does not exist"),
        (
            "/services/syncer/other/st1/{uid}/clusters/*/api/v1/configmaps",
            "SyncTarget other/st1 does not exist",
        ),
        (
            "/services/syncer/root:org/st1/{uid}/clusters/*/api",
            "SyncTarget cluster 'root:org' is not a logical",
        ),
        ("/services/syncer/root/st1/{uid}/clusters/a:b/api", "cluster 'a:b' is neither * nor"),
        ("/services/nothing/root/st1/{uid}/clusters/*/api", "is not under /services/syncer/"),
    ],
)
def test_refused_paths_get_a_404_status_saying_why(vw_env: VWEnv, suffix: str, message: str) -> None:
    target = _ready(vw_env)
    uid = target["metadata"]["uid"]
    status, body = vw_env.http("GET", vw_env.server.url + suffix.format(uid=uid))
    assert status == 404
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)
    assert message.format(uid=uid) in body["message"]


def test_no_token_or_an_unknown_token_is_401(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    for token in (None, "not-a-token"):
        status, body = vw_env.http("GET", vw_env.base(target) + CONFIGMAPS, token=token)
        assert status == 401
        assert body == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }


def test_a_caller_without_the_sync_grant_is_forbidden_until_granted(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.configmap("placed")
    with vw_env.client(vw_env.base(target), token=OTHER_TOKEN) as api_client:
        core = k8s.CoreV1Api(api_client)
        with pytest.raises(ApiException) as caught:
            core.list_namespaced_config_map("default")
        assert caught.value.status == 403
        body = _status(caught.value)
        assert (body["reason"], body["message"]) == (
            "Forbidden",
            'configmaps is forbidden: User "other" cannot list resource "configmaps" in API group "" '
            'in the namespace "default"',
        )
        with pytest.raises(ApiException) as caught:
            core.read_namespaced_config_map("placed", "default")
        assert _status(caught.value)["message"] == (
            'configmaps "placed" is forbidden: User "other" cannot get resource "configmaps" in API group "" '
            'in the namespace "default"'
        )
        vw_env.api.authorizer.rules.append(sync_rule("other", "st1"))
        deadline = time.monotonic() + 5
        while True:
            try:
                items = core.list_namespaced_config_map("default").items
                break
            except ApiException as exc:
                assert exc.status == 403 and time.monotonic() < deadline
                time.sleep(0.05)
        assert [cm.metadata.name for cm in items] == ["placed"]


def test_a_grant_on_another_synctarget_does_not_let_the_caller_in(vw_env: VWEnv) -> None:
    _ready(vw_env)
    other_target = vw_env.create_target("st2")
    vw_env.wait_for_target("st2")
    status, body = vw_env.http("GET", vw_env.base(other_target) + CONFIGMAPS)
    assert (status, body["reason"]) == (403, "Forbidden")


def test_a_revoked_grant_takes_effect_within_the_ttl(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    url = vw_env.base(target) + CONFIGMAPS
    assert vw_env.http("GET", url)[0] == 200
    reviews = vw_env.server.workspace.authorizer.reviews
    assert vw_env.http("GET", url)[0] == 200
    assert vw_env.server.workspace.authorizer.reviews == reviews, "a cached answer sends no review"
    vw_env.api.authorizer.rules.clear()
    time.sleep(0.6)
    assert vw_env.http("GET", url)[0] == 403


def test_the_callers_credentials_never_reach_the_backing_apiserver(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.namespace("placed")
    vw_env.api.write_log.reset()
    status, body = vw_env.http(
        "PATCH",
        vw_env.base(target) + "/api/v1/namespaces/placed/status",
        body={"status": {"phase": "Active", "conditions": [{"type": "Synced", "status": "True"}]}},
        content_type="application/merge-patch+json",
    )
    assert status == 200, body
    users = [record.user for record in vw_env.api.write_log]
    assert users and set(users) == {"admin"}


def test_503_until_the_first_synctarget_list_is_read(tmp_path) -> None:
    with VWEnv.running(tmp_path, install_crds=False) as env:
        url = f"{env.server.url}/services/syncer/root/st1/u/clusters/*/api/v1/configmaps"
        status, body = env.http("GET", url)
        assert (status, body["reason"], body["message"]) == (
            503,
            "ServiceUnavailable",
            "syncer virtual workspace controllers are not started",
        )
        env.api.install_crd(next(crd for crd in crds() if crd["spec"]["group"] == "workload.kcp.io"))
        assert env.server.wait_started(10)
        assert env.http("GET", url)[0] == 404
