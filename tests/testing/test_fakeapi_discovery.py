"""Discovery, OpenAPI, health, the kubectl smoke test and ``python -m kcp_tmc.testing.apiserver``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import yaml
from fakeapi_support import SYNC_TARGET_CRD, crd, sync_target
from kubernetes import client, config

from kcp_tmc.testing import FakeAPIServer


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(admission=False) as server:
        server.install_crd(crd(SYNC_TARGET_CRD))
        yield server


def test_core_discovery(api: FakeAPIServer) -> None:
    versions = api.http("GET", "/api").json()
    assert versions["kind"] == "APIVersions"
    assert versions["versions"] == ["v1"]
    resources = api.http("GET", "/api/v1").json()
    assert resources["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["namespaces"]["shortNames"] == ["ns"]
    assert by_name["pods"]["categories"] == ["all"]
    assert by_name["configmaps"]["verbs"] == [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ]
    assert by_name["pods/status"] == {
        "name": "pods/status",
        "singularName": "",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get", "patch", "update"],
    }


def test_group_discovery_lists_builtins_and_crds(api: FakeAPIServer) -> None:
    groups = {g["name"]: g for g in api.http("GET", "/apis").json()["groups"]}
    for name in (
        "apps",
        "batch",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "admissionregistration.k8s.io",
        "rbac.authorization.k8s.io",
        "workload.kcp.io",
    ):
        assert name in groups
    assert groups["workload.kcp.io"]["preferredVersion"] == {
        "groupVersion": "workload.kcp.io/v1alpha1",
        "version": "v1alpha1",
    }
    group = api.http("GET", "/apis/workload.kcp.io").json()
    assert group["kind"] == "APIGroup"
    resources = api.http("GET", "/apis/workload.kcp.io/v1alpha1").json()["resources"]
    assert [r["name"] for r in resources] == ["synctargets", "synctargets/status"]
    assert resources[0]["shortNames"] == ["st"]
    assert resources[0]["singularName"] == "synctarget"
    scale = {r["name"]: r for r in api.http("GET", "/apis/apps/v1").json()["resources"]}["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


def test_version_and_health(api: FakeAPIServer) -> None:
    assert api.http("GET", "/version").json()["gitVersion"] == "v1.30.0-fake"
    for path in ("/healthz", "/readyz", "/livez"):
        reply = api.http("GET", path)
        assert (reply.status, reply.body) == (200, b"ok")


def test_openapi_v3_has_crd_schemas(api: FakeAPIServer) -> None:
    index = api.http("GET", "/openapi/v3").json()["paths"]
    url = index["apis/workload.kcp.io/v1alpha1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/apis/workload.kcp.io/v1alpha1?hash=")
    document = api.http("GET", url).json()
    schema = document["components"]["schemas"]["io.kcp.workload.v1alpha1.SyncTarget"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "workload.kcp.io", "kind": "SyncTarget", "version": "v1alpha1"}
    ]
    assert schema["properties"]["spec"]["properties"]["syncMode"]["enum"] == ["Push", "Pull"]
    core = api.http("GET", "/openapi/v3/api/v1").json()
    assert "io.k8s.api.core.v1.ConfigMap" in core["components"]["schemas"]
    assert api.http("GET", "/openapi/v3/apis/nothing/v1").status == 404
    assert api.http("GET", "/openapi/v2").json()["swagger"] == "2.0"


def test_kubeconfig_works_with_the_python_client(api: FakeAPIServer) -> None:
    with open(api.kubeconfig_path, encoding="utf-8") as handle:
        kubeconfig = yaml.safe_load(handle)
    assert kubeconfig["clusters"][0]["cluster"]["server"] == api.url
    assert kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]
    configuration = client.Configuration()
    config.load_kube_config(config_file=api.kubeconfig_path, client_configuration=configuration)
    with client.ApiClient(configuration) as kube:
        assert client.VersionApi(kube).get_code().git_version == "v1.30.0-fake"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH")
def test_kubectl_smoke(api: FakeAPIServer, tmp_path: os.PathLike[str]) -> None:
    env = {**os.environ, "KUBECONFIG": api.kubeconfig_path, "HOME": str(tmp_path)}

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    assert "synctargets" in kubectl("api-resources").stdout
    created = kubectl("apply", "-f", "-", stdin=json.dumps(sync_target("from-kubectl")))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "synctarget.workload.kcp.io/from-kubectl created"
    denied = kubectl("apply", "-f", "-", stdin=json.dumps(sync_target("bad-mode", "Sideways")))
    assert denied.returncode == 1
    assert 'spec.syncMode: Unsupported value: "Sideways": supported values: "Push", "Pull"' in denied.stderr
    assert kubectl("get", "st", "from-kubectl", "-o", "jsonpath={.spec.replicas}").stdout == "1"
    scaled = kubectl("create", "deployment", "web", "--image=nginx")
    assert scaled.returncode == 0, scaled.stderr
    assert kubectl("scale", "deployment", "web", "--replicas=3").returncode == 0
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    deleted = kubectl("delete", "st", "from-kubectl")
    assert deleted.stdout.strip() == 'synctarget.workload.kcp.io "from-kubectl" deleted'


def test_module_entry_point_serves_until_terminated(tmp_path: os.PathLike[str]) -> None:
    kubeconfig = os.path.join(str(tmp_path), "kubeconfig")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kcp_tmc.testing.apiserver",
            "--port",
            "0",
            "--no-tls",
            "--kubeconfig",
            kubeconfig,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        announced = json.loads(process.stdout.readline())
        assert announced["url"].startswith("http://127.0.0.1:")
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        with client.ApiClient(configuration) as kube:
            names = [n.metadata.name for n in client.CoreV1Api(kube).list_namespace().items]
        assert "default" in names
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_module_main_in_process_with_tokens_and_rules(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import signal
    import threading

    from kcp_tmc.testing import apiserver

    rules = os.path.join(str(tmp_path), "rules.json")
    with open(rules, "w", encoding="utf-8") as handle:
        json.dump([{"user": "ops", "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}], handle)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        code = apiserver.main(["--token", "t1=ops:admins,dev", "--rules", rules, "--watch-window", "5"])
    finally:
        timer.cancel()
    assert code == 0
    announced = json.loads(capsys.readouterr().out)
    assert announced["url"].startswith("https://127.0.0.1:")
    with pytest.raises(SystemExit):
        apiserver.main(["--token", "no-user"])
