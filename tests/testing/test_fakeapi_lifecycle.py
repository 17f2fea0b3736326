"""Status and scale subresources, finalizers, namespace deletion and CRD lifecycle on the fake server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fakeapi_support import GROUP, PLURAL, SYNC_TARGET_CRD, VERSION, WIDGET_CRD, crd, sync_target
from kubernetes import client
from kubernetes.client.rest import ApiException

from kcp_tmc.testing import FakeAPIServer

ST = f"{GROUP}/{VERSION}"
ST_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"


@pytest.fixture
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(admission=False) as server:
        server.install_crd(crd(SYNC_TARGET_CRD))
        yield server


def _wait_gone(api: FakeAPIServer, api_version: str, kind: str, name: str, namespace: str = "") -> None:
    deadline = time.monotonic() + 5
    while api.get(api_version, kind, name, namespace) is not None:
        assert time.monotonic() < deadline, f"{kind} {name} is still there"
        time.sleep(0.02)


def test_main_resource_write_ignores_status(api: FakeAPIServer) -> None:
    created = api.http("POST", ST_PATH, {**sync_target("st"), "status": {"phase": "Forged"}}).json()
    assert "status" not in created
    api.http("PATCH", f"{ST_PATH}/st/status", {"status": {"phase": "Ready"}}, "application/merge-patch+json")
    patched = api.http(
        "PATCH",
        f"{ST_PATH}/st",
        {"status": {"phase": "Forged"}, "spec": {"syncMode": "Pull"}},
        "application/merge-patch+json",
    ).json()
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["syncMode"] == "Pull"


def test_status_write_ignores_everything_else(api: FakeAPIServer) -> None:
    api.create(sync_target("st2"))
    current = api.http("GET", f"{ST_PATH}/st2").json()
    current["spec"]["syncMode"] = "Pull"
    current["metadata"]["labels"] = {"sneaky": "yes"}
    current["status"] = {"phase": "Ready"}
    updated = api.http("PUT", f"{ST_PATH}/st2/status", current).json()
    assert updated["status"] == {"phase": "Ready"}
    assert updated["spec"]["syncMode"] == "Push"
    assert "labels" not in updated["metadata"]
    assert updated["metadata"]["generation"] == 1


def test_status_of_resource_without_status_subresource_is_404(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain"}})
    reply = api.http("GET", "/api/v1/namespaces/default/configmaps/plain/status")
    assert reply.status == 404


def test_deployment_scale_subresource(api: FakeAPIServer) -> None:
    with api.api_client() as kube:
        apps = client.AppsV1Api(kube)
        apps.create_namespaced_deployment(
            "default",
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            },
        )
        scale = apps.read_namespaced_deployment_scale("web", "default")
        assert scale.spec.replicas == 2
        assert scale.status.selector == "app=web"
        apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 5}})
        assert apps.read_namespaced_deployment("web", "default").spec.replicas == 5
        deployment = apps.read_namespaced_deployment("web", "default")
        assert deployment.metadata.generation == 2
    bad = api.http(
        "PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", {"spec": {"replicas": -1}}
    )
    assert bad.status == 422
    assert bad.json()["message"] == (
        'Scale.autoscaling "web" is invalid: '
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    )


def test_custom_scale_subresource(api: FakeAPIServer) -> None:
    api.install_crd(crd(WIDGET_CRD))
    api.create(
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    )
    reply = api.http(
        "PATCH",
        "/apis/example.com/v1/namespaces/default/widgets/w/scale",
        {"spec": {"replicas": 3}},
        "application/merge-patch+json",
    )
    assert reply.status == 200
    assert reply.json()["spec"] == {"replicas": 3}
    assert api.get("example.com/v1", "Widget", "w", "default")["spec"]["size"] == 3


def test_finalizers_keep_the_object_until_removed(api: FakeAPIServer) -> None:
    api.create({**sync_target("fin"), "metadata": {"name": "fin", "finalizers": ["example.com/cleanup"]}})
    reply = api.http("DELETE", f"{ST_PATH}/fin")
    assert reply.status == 200
    marked = reply.json()
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["deletionGracePeriodSeconds"] == 0
    assert api.get(ST, "SyncTarget", "fin") is not None
    again = api.http("DELETE", f"{ST_PATH}/fin").json()
    assert again["metadata"]["resourceVersion"] == marked["metadata"]["resourceVersion"]
    refused = api.http(
        "PATCH",
        f"{ST_PATH}/fin",
        {"metadata": {"finalizers": ["example.com/cleanup", "x.io/new"]}},
        "application/merge-patch+json",
    )
    assert refused.status == 422
    assert refused.json()["message"] == (
        'SyncTarget.workload.kcp.io "fin" is invalid: metadata.finalizers: Forbidden: '
        "no new finalizers can be added if the object is being deleted"
    )
    done = api.http(
        "PATCH", f"{ST_PATH}/fin", {"metadata": {"finalizers": None}}, "application/merge-patch+json"
    )
    assert done.status == 200
    assert api.get(ST, "SyncTarget", "fin") is None


def test_namespace_deletion_terminates_then_removes_contents(api: FakeAPIServer) -> None:
    with api.api_client() as kube:
        core = client.CoreV1Api(kube)
        core.create_namespace({"metadata": {"name": "doomed"}})
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "a"}})
        core.create_namespaced_config_map(
            "doomed", {"metadata": {"name": "held", "finalizers": ["x.io/hold"]}}
        )
        ns = core.read_namespace("doomed")
        assert ns.status.phase == "Active"
        assert ns.metadata.labels == {"kubernetes.io/metadata.name": "doomed"}
        core.delete_namespace("doomed")
        assert core.read_namespace("doomed").status.phase == "Terminating"
        with pytest.raises(ApiException) as exc:
            core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
        assert exc.value.status == 403
        assert json.loads(exc.value.body)["message"] == (
            'configmaps "late" is forbidden: unable to create new content in namespace doomed '
            "because it is being terminated"
        )
        _wait_gone(api, "v1", "ConfigMap", "a", "doomed")
        held = core.read_namespaced_config_map("held", "doomed")
        assert held.metadata.deletion_timestamp is not None
        core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
        _wait_gone(api, "v1", "Namespace", "doomed")


def test_protected_namespaces_cannot_be_deleted(api: FakeAPIServer) -> None:
    reply = api.http("DELETE", "/api/v1/namespaces/kube-system")
    assert reply.status == 403
    assert (
        reply.json()["message"] == 'namespaces "kube-system" is forbidden: this namespace may not be deleted'
    )


def test_crd_is_established_and_served_at_once(api: FakeAPIServer) -> None:
    created = api.http(
        "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd(WIDGET_CRD)
    ).json()
    conditions = {c["type"]: c for c in created["status"]["conditions"]}
    assert conditions["Established"]["status"] == "True"
    assert conditions["NamesAccepted"]["status"] == "True"
    assert created["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert created["status"]["storedVersions"] == ["v1"]
    reply = api.http(
        "POST",
        "/apis/example.com/v1/namespaces/default/widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}},
    )
    assert reply.status == 201


def test_crd_deletion_removes_objects_and_stops_serving(api: FakeAPIServer) -> None:
    api.create(sync_target("gone-with-crd"))
    reply = api.http(
        "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/synctargets.workload.kcp.io"
    )
    assert reply.status == 200
    assert api.http("GET", ST_PATH).status == 404
    api.install_crd(crd(SYNC_TARGET_CRD))
    assert api.http("GET", ST_PATH).json()["items"] == []


def test_crd_name_must_match_its_names(api: FakeAPIServer) -> None:
    bad = crd(WIDGET_CRD)
    bad["metadata"]["name"] = "wrong.example.com"
    reply = api.http("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", bad)
    assert reply.status == 422
    assert reply.json()["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "wrong.example.com" is invalid: '
        'metadata.name: Invalid value: "wrong.example.com": must be spec.names.plural+"."+spec.group'
    )
