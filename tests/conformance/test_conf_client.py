"""The official ``kubernetes`` client, configured from the backend's kubeconfig, works unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import pytest
from conformance_kit import Backend, synctarget, unique
from kubernetes.client.exceptions import ApiException


@pytest.fixture
def client(backend: Backend) -> Iterator[kubernetes.client.ApiClient]:
    api_client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=backend.server.kubeconfig_path
    )
    yield api_client
    api_client.close()  # type: ignore[no-untyped-call]


def test_typed_client_round_trip(client: kubernetes.client.ApiClient, namespace: str) -> None:
    core: Any = kubernetes.client.CoreV1Api(client)
    body = kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(name="cm", labels={"app": "x"}), data={"k": "v"}
    )
    created = core.create_namespaced_config_map(namespace, body)
    assert created.metadata.uid and created.data == {"k": "v"}
    listed = core.list_namespaced_config_map(namespace, label_selector="app=x")
    assert [i.metadata.name for i in listed.items] == ["cm"]
    created.data["k"] = "w"
    replaced = core.replace_namespaced_config_map("cm", namespace, created)
    assert replaced.data == {"k": "w"}
    patched = core.patch_namespaced_config_map("cm", namespace, {"metadata": {"labels": {"b": "c"}}})
    assert patched.metadata.labels == {"app": "x", "b": "c"}
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("cm", namespace, created)
    assert caught.value.status == 409
    core.delete_namespaced_config_map("cm", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("cm", namespace)
    assert missing.value.status == 404 and missing.value.reason == "Not Found"


def test_watch_helper(client: kubernetes.client.ApiClient, namespace: str) -> None:
    core: Any = kubernetes.client.CoreV1Api(client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}})
    stream = kubernetes.watch.Watch().stream(  # type: ignore[no-untyped-call]
        core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=5
    )
    event = next(stream)
    assert event["type"] == "ADDED" and event["object"].metadata.name == "w"
    stream.close()


def test_custom_objects_client(client: kubernetes.client.ApiClient, synctargets: str) -> None:
    custom: Any = kubernetes.client.CustomObjectsApi(client)
    name = unique("st")
    created = custom.create_cluster_custom_object(
        "workload.kcp.io", "v1alpha1", "synctargets", synctarget(name)
    )
    assert created["metadata"]["name"] == name
    status = {"status": {"lastSyncerHeartbeatTime": "2024-01-01T00:00:00Z"}}
    patched = custom.patch_cluster_custom_object_status(
        "workload.kcp.io", "v1alpha1", "synctargets", name, status
    )
    assert patched["status"]["lastSyncerHeartbeatTime"] == "2024-01-01T00:00:00Z"
    listed = custom.list_cluster_custom_object(
        "workload.kcp.io", "v1alpha1", "synctargets", field_selector=f"metadata.name={name}"
    )
    assert [i["metadata"]["name"] for i in listed["items"]] == [name]
    custom.delete_cluster_custom_object("workload.kcp.io", "v1alpha1", "synctargets", name)
