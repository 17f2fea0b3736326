"""Issue 6's user story: a policy tested end to end against the fake API server.

The first test is the README's example, line for line: CRDs installed, our webhook
served and registered, ``kubectl apply`` denied with our message, and a good SyncTarget stored
with the defaults and the key label our mutating policy sets.  The tests after it tell the same
story through the ``kubernetes`` client (never skipped), against the fake and, opt-in, against a
real kube-apiserver from ``KUBEBUILDER_ASSETS``.
"""

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from kcp_tmc.policies.keys import LABEL_SYNC_TARGET_KEY, sync_target_key
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.crds import install_tmc_crds
from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer
from kcp_tmc.testing.kubectl import kubectl
from kcp_tmc.testing.webhook import serve_webhook

ST = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "eu-1"}}
BAD = {**ST, "spec": {"supportedAPIExports": [{"export": "kubernetes"}, {"export": "kubernetes"}]}}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kubectl_apply_goes_through_our_policies():
    with FakeAPIServer() as api, serve_webhook() as webhook:
        install_tmc_crds(api)
        webhook.register(api)
        denied = kubectl(api, "apply", "-f", "-", input=json.dumps(BAD))
        created = kubectl(api, "apply", "-f", "-", input=json.dumps(ST))
        stored = json.loads(kubectl(api, "get", "synctarget", "eu-1", "-o", "json").stdout)
    assert (denied.returncode, created.returncode) == (1, 0)
    assert denied.stderr == (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook "validate.tmc.kcp.io" '
        "denied the request: [synctarget-validation] spec.supportedAPIExports[1]: Duplicate value: "
        '{"export":"kubernetes"}: each (path, export) pair may be listed once; remove this entry\n'
    )
    assert stored["spec"] == {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]}
    assert stored["metadata"]["labels"]["internal.workload.kcp.io/key"] == sync_target_key("root", "eu-1")


# --- the same story through the kubernetes client ------------------------------------------------

DENIAL = (
    'admission webhook "validate.tmc.kcp.io" denied the request: [synctarget-validation] '
    'spec.supportedAPIExports[1]: Duplicate value: {"export":"kubernetes"}: '
    "each (path, export) pair may be listed once; remove this entry"
)
GROUP, VERSION, PLURAL = "workload.kcp.io", "v1alpha1", "synctargets"


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.realapi)])
def api(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "fake":
        server: Any = FakeAPIServer()
    else:
        try:
            server = RealAPIServer()
        except EnvtestUnavailable as exc:
            pytest.skip(str(exc))
    with server:
        yield server


def test_client_create_goes_through_our_policies(api: Any) -> None:
    with serve_webhook() as webhook:
        install_tmc_crds(api)
        webhook.register(api)
        with api.api_client() as kube:
            objects = CustomObjectsApi(kube)
            with pytest.raises(ApiException) as denied:
                objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, BAD)
            objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, ST)
            stored = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, "eu-1")
        calls = [(c.path, c.operation, c.name) for c in webhook.calls]
    assert denied.value.status == 403
    body = json.loads(denied.value.body)
    assert (body["kind"], body["status"], body["code"], body["message"]) == ("Status", "Failure", 403, DENIAL)
    assert stored["spec"] == {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]}
    assert stored["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] == sync_target_key("root", "eu-1")
    # Mutating first, then validating, for each write; the denied one never reached storage.
    assert calls == [
        ("/mutate", "CREATE", "eu-1"),
        ("/validate", "CREATE", "eu-1"),
        ("/mutate", "CREATE", "eu-1"),
        ("/validate", "CREATE", "eu-1"),
    ]
