"""Writes through the virtual workspaces: the syncer's status writes, the upsyncer's create/patch/delete."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client as k8s

from kcp_tmc.policies.keys import state_label, sync_target_key, syncer_finalizer, upsync_diff_annotation
from kcp_tmc.testing.kubectl import KubectlNotFoundError, kubectl
from tests.reconcilers.vw_env import VWEnv

KEY = sync_target_key("root", "st1")
LABEL = state_label(KEY)


def _ready(env: VWEnv) -> dict[str, Any]:
    target = env.create_target()
    env.wait_for_target()
    return target


def _upsyncer(env: VWEnv) -> str:
    target = _ready(env)
    env.accept(
        "st1", ("persistentvolumes", "PersistentVolume", "Cluster", "v1"), ("pods", "Pod", "Namespaced", "v1")
    )
    return env.base(target, service="upsyncer")


def test_status_written_through_the_vw_is_promoted_and_spec_changes_are_discarded(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    created = vw_env.namespace("ns1")
    with vw_env.client(vw_env.base(target)) as api_client:
        core = k8s.CoreV1Api(api_client)
        view = core.read_namespace("ns1")
        assert view.metadata.uid == created["metadata"]["uid"]
        assert view.status is None, "the syncer does not see upstream status it never wrote"
        assert view.metadata.finalizers == [syncer_finalizer(KEY)]
        patched = core.patch_namespace_status("ns1", {"status": {"phase": "Active", "conditions": []}})
        assert patched.status.phase == "Active"
        core.patch_namespace("ns1", {"metadata": {"labels": {"extra": "x"}}, "spec": {"finalizers": []}})
        final = core.read_namespace("ns1")
    upstream = vw_env.api.get("v1", "namespaces", "ns1")
    assert upstream["status"]["phase"] == "Active"
    annotations = upstream["metadata"]["annotations"]
    assert json.loads(annotations[f"diff.syncer.internal.kcp.io/{KEY}"]) == {"status": "##promoted##"}
    assert "extra" not in upstream["metadata"]["labels"]
    assert upstream["spec"] == created["spec"]
    assert final.metadata.resource_version == upstream["metadata"]["resourceVersion"]


def test_a_write_without_the_syncer_finalizer_is_refused_with_kcps_500(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.namespace("ns1", owned=False)
    url = vw_env.base(target) + "/api/v1/namespaces/ns1/status"
    status, body = vw_env.http(
        "PATCH", url, body={"status": {"phase": "Active"}}, content_type="application/merge-patch+json"
    )
    assert (status, body["reason"], body["message"]) == (
        500,
        "InternalError",
        "Internal error occurred: tried to write resource namespaces/status(/ns1) though it is not owning it "
        "(syncer finalizer doesn't exist)",
    )


def test_an_update_with_a_stale_resource_version_is_409(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.namespace("ns1")
    url = vw_env.base(target) + "/api/v1/namespaces/ns1"
    _, view = vw_env.http("GET", url)
    view["metadata"]["resourceVersion"] = "1"
    status, body = vw_env.http("PUT", url + "/status", body=view)
    assert (status, body["reason"], body["message"]) == (
        409,
        "Conflict",
        'Operation cannot be fulfilled on namespaces "ns1": the resource has been modified in the meantime',
    )
    view["metadata"]["name"] = "other"
    status, body = vw_env.http("PUT", url, body=view)
    assert (status, body["message"]) == (
        400,
        "the name of the object (other) does not match the name on the URL (ns1)",
    )


def test_patches_refused_with_the_apiservers_words(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.namespace("ns1")
    url = vw_env.base(target) + "/api/v1/namespaces/ns1/status"
    status, body = vw_env.http("PATCH", url, body=b"{not json", content_type="application/merge-patch+json")
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith("error decoding patch: ")
    status, body = vw_env.http("PATCH", url, body=b"a: b", content_type="application/apply-patch+yaml")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    status, body = vw_env.http(
        "PATCH", url, body=[{"op": "remove", "path": "/nope"}], content_type="application/json-patch+json"
    )
    assert (status, body["reason"]) == (422, "Invalid")
    status, body = vw_env.http("PATCH", vw_env.base(target) + "/api/v1/namespaces/absent/status", body={})
    assert (status, body["message"]) == (404, 'namespaces "absent" not found')


def _pod(name: str, state: str = "Upsync", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {LABEL: state, **labels}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1"}]},
    }


PODS = "/api/v1/namespaces/default/pods"


def test_the_upsyncer_creates_patches_and_deletes_pods(vw_env: VWEnv) -> None:
    base = _upsyncer(vw_env)
    status, body = vw_env.http("POST", base + PODS, body=_pod("p1"))
    assert status == 201, body
    assert vw_env.api.get("v1", "pods", "p1", "default")["spec"]["containers"][0]["image"] == "busybox:1"
    with vw_env.client(base) as api_client:
        core = k8s.CoreV1Api(api_client)
        assert [pod.metadata.name for pod in core.list_namespaced_pod("default").items] == ["p1"]
        core.patch_namespaced_pod(
            "p1", "default", [{"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:2"}]
        )
        assert vw_env.api.get("v1", "pods", "p1", "default")["spec"]["containers"][0]["image"] == "busybox:2"
        core.patch_namespaced_pod_status("p1", "default", {"status": {"phase": "Running"}})
        assert vw_env.api.get("v1", "pods", "p1", "default")["status"]["phase"] == "Running"
    # Raw: the answer is a Status or the Pod depending on the grace period, which the typed client
    # cannot decode both ways.
    status, body = vw_env.http("DELETE", base + PODS + "/p1")
    assert status == 200, body
    assert vw_env.api.get("v1", "pods", "p1", "default") is None


def test_the_upsyncer_applies_and_drops_the_upsync_diff_and_refuses_metadata_patches(vw_env: VWEnv) -> None:
    base = _upsyncer(vw_env)
    pod = _pod("p1")
    replace = [{"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:3"}]
    pod["metadata"]["annotations"] = {upsync_diff_annotation(KEY): json.dumps(replace)}
    assert vw_env.http("POST", base + PODS, body=pod)[0] == 201
    stored = vw_env.api.get("v1", "pods", "p1", "default")
    assert stored["spec"]["containers"][0]["image"] == "busybox:3"
    assert upsync_diff_annotation(KEY) not in (stored["metadata"].get("annotations") or {})
    pod = _pod("p2")
    pod["metadata"]["annotations"] = {
        upsync_diff_annotation(KEY): '[{"op":"add","path":"/metadata/labels/x","value":"y"}]'
    }
    status, body = vw_env.http("POST", base + PODS, body=pod)
    assert (status, body["message"]) == (
        500,
        "metadata, apiversion or kind cannot be modified by a transformation",
    )
    assert vw_env.api.get("v1", "pods", "p2", "default") is None


def test_the_upsyncer_refuses_objects_without_the_upsync_label(vw_env: VWEnv) -> None:
    base = _upsyncer(vw_env)
    url = base + PODS
    status, body = vw_env.http("POST", url, body=_pod("p1", state="notupsync", app="a"))
    assert (status, body["reason"], body["message"]) == (
        400,
        "BadRequest",
        f'label selector "{LABEL}=Upsync" does not match labels map[app:a {LABEL}:notupsync]',
    )
    assert vw_env.http("POST", url, body=_pod("p1"))[0] == 201
    status, view = vw_env.http("GET", url + "/p1")
    view["metadata"]["labels"][LABEL] = "Sync"
    status, body = vw_env.http("PUT", url + "/p1", body=view)
    assert (status, body["reason"]) == (400, "BadRequest")
    assert vw_env.api.get("v1", "pods", "p1", "default")["metadata"]["labels"][LABEL] == "Upsync"
    # Objects placed another way are not the upsyncer's to see or delete.
    vw_env.api.create(
        {
            **_pod("synced", state="Sync"),
            "metadata": {"name": "synced", "namespace": "default", "labels": {LABEL: "Sync"}},
        }
    )
    assert vw_env.http("GET", url + "/synced")[0] == 404
    assert vw_env.http("DELETE", url + "/synced")[0] == 404
    assert vw_env.api.get("v1", "pods", "synced", "default") is not None
    # Only persistent volumes and pods are served there.
    assert vw_env.http("GET", base + "/api/v1/namespaces/default/configmaps")[0] == 404


def test_discovery_through_the_vw_and_kubectl(vw_env: VWEnv, tmp_path) -> None:
    target = _ready(vw_env)
    vw_env.configmap("placed")
    with vw_env.client(vw_env.base(target)) as api_client:
        versions = k8s.CoreApi(api_client).get_api_versions()
        assert versions.versions == ["v1"]
        resources = {r.name: r.verbs for r in k8s.CoreV1Api(api_client).get_api_resources().resources}
    assert resources["configmaps"] == ["get", "list", "patch", "update", "watch"]
    assert resources["namespaces/status"] == ["get", "patch", "update"]
    assert "pods" not in resources
    status, _ = vw_env.http("GET", vw_env.base(target) + "/apis/apps/v1")
    assert status == 404
    kubeconfig = vw_env.kubeconfig(vw_env.base(target), tmp_path / "vw.kubeconfig")
    try:
        listed = kubectl(SimpleNamespace(kubeconfig_path=kubeconfig), "get", "configmaps", "-o", "name")
        names = kubectl(SimpleNamespace(kubeconfig_path=kubeconfig), "api-resources", "-o", "name")
        table = kubectl(SimpleNamespace(kubeconfig_path=kubeconfig), "get", "configmaps", "-A")
    except KubectlNotFoundError:
        pytest.skip("kubectl is not on PATH")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["configmap/placed"]
    assert names.returncode == 0, names.stderr
    assert table.returncode == 0, table.stderr
    assert [line.split()[:2] for line in table.stdout.splitlines()] == [
        ["NAMESPACE", "NAME"],
        ["default", "placed"],
    ]
    assert sorted(names.stdout.split()) == ["configmaps", "namespaces", "secrets", "serviceaccounts"]


def test_kubectl_is_refused_pods(vw_env: VWEnv, tmp_path) -> None:
    target = _ready(vw_env)
    kubeconfig = vw_env.kubeconfig(vw_env.base(target), tmp_path / "vw.kubeconfig")
    try:
        result = kubectl(SimpleNamespace(kubeconfig_path=kubeconfig), "get", "pods")
    except KubectlNotFoundError:
        pytest.skip("kubectl is not on PATH")
    assert result.returncode != 0
    assert 'the server doesn\'t have a resource type "pods"' in result.stderr


def test_an_unknown_token_gets_kubectls_unauthorized(vw_env: VWEnv, tmp_path) -> None:
    target = _ready(vw_env)
    kubeconfig = vw_env.kubeconfig(vw_env.base(target), tmp_path / "vw.kubeconfig", token="nope")
    try:
        result = kubectl(SimpleNamespace(kubeconfig_path=kubeconfig), "get", "configmaps")
    except KubectlNotFoundError:
        pytest.skip("kubectl is not on PATH")
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "provide credentials" in result.stderr


def test_a_list_shows_each_item_as_the_read_transformation_does(vw_env: VWEnv) -> None:
    target = _ready(vw_env)
    vw_env.namespace(
        "ns1",
        metadata={
            "annotations": {
                f"diff.syncer.internal.kcp.io/{KEY}": '{"status":{"phase":"Seen"}}',
                "keep": "me",
            },
            "finalizers": [syncer_finalizer(KEY), "example.com/other"],
        },
    )
    with vw_env.client(vw_env.base(target)) as api_client:
        items = k8s.CoreV1Api(api_client).list_namespace().items
    [view] = [ns for ns in items if ns.metadata.name == "ns1"]
    assert view.status.phase == "Seen"
    assert view.metadata.annotations == {"keep": "me"}
    assert view.metadata.finalizers == [syncer_finalizer(KEY)]
