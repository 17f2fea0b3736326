"""End to end through an API server that calls ``tmc-webhook`` over TLS.

The webhooks are registered as an apiserver would be told in production: a
Validating- and a MutatingWebhookConfiguration with ``clientConfig.url`` and ``caBundle``.
Two backends: the project's fake API server (always), and a real etcd + kube-apiserver from
``KUBEBUILDER_ASSETS`` (opt-in; skipped with the reason when unset).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.policies.keys import LABEL_SYNC_TARGET_KEY, sync_target_key
from tests.webhook.webhook_helpers import NAMESPACE, ROOT, SERVICE, Server, start_server, stop_server

kubernetes = pytest.importorskip("kubernetes")
from kubernetes.client import AdmissionregistrationV1Api, CustomObjectsApi  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

pytestmark = pytest.mark.slow

CRD = yaml.safe_load((ROOT / "charts" / "kcp-tmc" / "crds" / "workload.kcp.io_synctargets.yaml").read_text())
GROUP, VERSION, PLURAL = "workload.kcp.io", "v1alpha1", "synctargets"


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("e2e")
    certs = tmp / "certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, ips=["127.0.0.1"])
    server = start_server(tmp, certs, "--workers", "1")
    yield server
    stop_server(server)


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.realapi)], scope="module")
def api(request: pytest.FixtureRequest, webhook: Server) -> Iterator[Any]:
    if request.param == "fake":
        from kcp_tmc.testing import FakeAPIServer

        server: Any = FakeAPIServer()
    else:
        from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer

        try:
            server = RealAPIServer()
        except EnvtestUnavailable as exc:
            pytest.skip(str(exc))
    with server:
        server.install_crd(CRD)
        _register(server, webhook)
        yield server


def _register(api: Any, webhook: Server) -> None:
    ca = base64.b64encode((webhook.certs / "ca.crt").read_bytes()).decode()
    rule = {
        "apiGroups": [GROUP],
        "apiVersions": [VERSION],
        "operations": ["CREATE", "UPDATE", "DELETE"],
        "resources": [PLURAL, f"{PLURAL}/status"],
        "scope": "*",
    }

    def hook(name: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "clientConfig": {"url": f"{webhook.url}{path}", "caBundle": ca},
            "rules": [rule],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1", "v1beta1"],
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
        }

    client: Any = AdmissionregistrationV1Api(api.api_client())
    client.create_mutating_webhook_configuration(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "tmc-webhook"},
            "webhooks": [hook("mutate.tmc.kcp.io", "/mutate")],
        }
    )
    client.create_validating_webhook_configuration(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "tmc-webhook"},
            "webhooks": [hook("validate.tmc.kcp.io", "/validate")],
        }
    )
    # A real apiserver picks new configurations up asynchronously: wait until a bad object is denied.
    objects: Any = CustomObjectsApi(api.api_client())
    deadline = time.monotonic() + 30
    while True:
        try:
            objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, _bad("probe"), dry_run="All")
        except ApiException as exc:
            if exc.status == 403:
                return
        if time.monotonic() > deadline:
            raise AssertionError("the webhooks were not called within 30 s")
        time.sleep(0.2)


def _bad(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncTarget",
        "metadata": {"name": name},
        "spec": {"cells": {"zone": "not a label value!"}},
    }


def _good(name: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SyncTarget", "metadata": {"name": name}}


def test_bad_sync_target_denied_with_our_message(api: Any) -> None:
    objects: Any = CustomObjectsApi(api.api_client())
    with pytest.raises(ApiException) as err:
        objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, _bad("bad-one"))
    assert err.value.status == 403
    status = json.loads(err.value.body or "{}")
    assert status["message"].startswith(
        'admission webhook "validate.tmc.kcp.io" denied the request: '
        '[synctarget-validation] spec.cells[zone]: Invalid value: "not a label value!"'
    )


def test_defaults_and_key_label_on_the_stored_object(api: Any) -> None:
    objects: Any = CustomObjectsApi(api.api_client())
    objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, _good("stored-one"))
    stored = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, "stored-one")
    assert stored["spec"] == {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]}
    assert stored["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] == sync_target_key("root", "stored-one")


def test_dry_run_create_works_and_stores_nothing(api: Any) -> None:
    objects: Any = CustomObjectsApi(api.api_client())
    created = objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, _good("dry-one"), dry_run="All")
    assert created["spec"]["unschedulable"] is False
    assert created["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] == sync_target_key("root", "dry-one")
    with pytest.raises(ApiException) as err:
        objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, "dry-one")
    assert err.value.status == 404


def test_status_update_with_a_future_heartbeat_is_denied(api: Any) -> None:
    objects: Any = CustomObjectsApi(api.api_client())
    objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, _good("status-one"))
    current = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, "status-one")
    current["status"] = {"lastSyncerHeartbeatTime": "2999-01-01T00:00:00Z"}
    with pytest.raises(ApiException) as err:
        objects.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, "status-one", current)
    assert err.value.status == 403
    message = json.loads(err.value.body or "{}")["message"]
    assert message.startswith(
        'admission webhook "validate.tmc.kcp.io" denied the request: [synctarget-validation] '
        'status.lastSyncerHeartbeatTime: Invalid value: "2999-01-01T00:00:00Z": is '
    )


def test_protected_sync_target_cannot_be_deleted(api: Any) -> None:
    objects: Any = CustomObjectsApi(api.api_client())
    obj = _good("protected-one")
    obj["metadata"]["annotations"] = {"tmc.kcp.io/deletion-protected": "true"}
    objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, obj)
    with pytest.raises(ApiException) as err:
        objects.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "protected-one")
    assert err.value.status == 403
    assert "[synctarget-deletion-protection]" in json.loads(err.value.body or "{}")["message"]
