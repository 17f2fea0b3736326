"""Protobuf request bodies (what kubectl 1.35 sends for built-in kinds) and body media types.

The kubectl cases compare two routes on the same server: ``kubectl create ... --dry-run=server``
(a protobuf POST) against the JSON kubectl prints for ``--dry-run=client`` POSTed as JSON, so the
fake's decoder is held to what the real apiserver does with the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conformance_kit import Backend, configmap, failure, unique

from kcp_tmc.testing.protobuf import MEDIA_TYPE, envelope, field

# A ConfigMap message: metadata {name}, data {k: v}.
CONFIGMAP = field(1, field(1, "pb")) + field(2, field(1, "k") + field(2, "v"))
BODY_TYPES = "application/json, application/yaml, application/vnd.kubernetes.protobuf"


def post(backend: Backend, path: str, body: bytes, content_type: str = MEDIA_TYPE) -> Any:
    return backend.http("POST", path, body, content_type=content_type)


def test_protobuf_configmap_is_created(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = post(backend, path, envelope("v1", "ConfigMap", CONFIGMAP))
    assert created.status == 201, created.body
    assert created.body["metadata"]["name"] == "pb"
    assert created.body["data"] == {"k": "v"}
    assert backend.http("GET", f"{path}/pb").body["data"] == {"k": "v"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the object provided is unrecognized (must be of type ConfigMap): empty data (<empty>)"),
        (
            b"notmagic",
            "the object provided is unrecognized (must be of type ConfigMap): provided data does not "
            "appear to be a protobuf message, expected prefix [107 56 115 0] (6e6f746d61676963)",
        ),
        (
            b"k8s\x00\xff\xff",
            "the object provided is unrecognized (must be of type ConfigMap): unexpected EOF (6b387300ffff)",
        ),
        (
            envelope("v1", "Secret", CONFIGMAP),
            'Secret in version "v1" cannot be handled as a ConfigMap: converting (v1.Secret) to '
            "(core.ConfigMap): unknown conversion",
        ),
        (
            envelope("apps/v1", "Deployment", field(1, field(1, "d"))),
            'Deployment in version "v1" cannot be handled as a ConfigMap: converting (v1.Deployment) to '
            "(core.ConfigMap): unknown conversion",
        ),
        (
            envelope("v1", "Nope", CONFIGMAP),
            'Nope in version "v1" cannot be handled as a ConfigMap: no kind "Nope" is registered for '
            'version "v1" in scheme "pkg/api/legacyscheme/scheme.go:30"',
        ),
        (
            envelope("v1", "ConfigMap", b"\xff\xff\xff"),
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: unexpected EOF',
        ),
    ],
    ids=[
        "empty",
        "no-magic",
        "truncated-envelope",
        "other-kind",
        "other-group",
        "unknown-kind",
        "bad-object",
    ],
)
def test_protobuf_refusals(backend: Backend, namespace: str, body: bytes, message: str) -> None:
    refused = post(backend, f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert refused.status == 400
    assert refused.body == failure(400, "BadRequest", message)


@pytest.mark.parametrize("collection", ["configmaps", "synctargets"])
def test_unknown_body_media_type_is_415(
    backend: Backend, namespace: str, synctargets: str, collection: str
) -> None:
    path = synctargets if collection == "synctargets" else f"/api/v1/namespaces/{namespace}/configmaps"
    refused = post(backend, path, b"{}", content_type="application/x-whatever")
    assert refused.status == 415
    message = f"the body of the request was in an unknown format - accepted media types include: {BODY_TYPES}"
    assert refused.body == failure(415, "UnsupportedMediaType", message)


def test_yaml_body_still_reads(backend: Backend, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    text = json.dumps(configmap("from-yaml", namespace, a="1")).encode()
    assert post(backend, path, text, content_type="application/yaml").status == 201


def venv_kubectl() -> Path:
    """The project's kubectl (``make kube-tools``), the one that sends protobuf."""
    binary = Path(sys.executable).parent / "kubectl"
    if not binary.exists():
        pytest.skip(f"no kubectl beside {sys.executable}: run `make kube-tools`")
    return binary


def run_kubectl(backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="kcp-tmc-kubectl-") as home:
        env = {**os.environ, "KUBECONFIG": str(backend.server.kubeconfig_path), "HOME": home}
        return subprocess.run(
            [str(venv_kubectl()), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )


GENERATORS = {
    "deployment": (
        ["deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
        "apps/v1",
        "deployments",
    ),
    "configmap": (["configmap", "cfg", "--from-literal=a=1", "--from-literal=b=two"], "v1", "configmaps"),
    "secret": (["secret", "generic", "sec", "--from-literal=token=s3cr3t"], "v1", "secrets"),
    "service": (["service", "clusterip", "svc", "--tcp=80:8080"], "v1", "services"),
    "job": (["job", "once", "--image=busybox", "--", "date"], "batch/v1", "jobs"),
    "cronjob": (["cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *"], "batch/v1", "cronjobs"),
    "serviceaccount": (["serviceaccount", "robot"], "v1", "serviceaccounts"),
    "role": (
        ["role", "reader", "--verb=get,list", "--resource=pods"],
        "rbac.authorization.k8s.io/v1",
        "roles",
    ),
    "quota": (["quota", "q", "--hard=pods=10,requests.cpu=2"], "v1", "resourcequotas"),
}
SERVER_SET = ("uid", "creationTimestamp", "managedFields", "resourceVersion")


def comparable(obj: dict[str, Any]) -> Any:
    """``obj`` without what differs between two creates: its uid (also in Job labels), times."""
    text = json.dumps(obj).replace(obj["metadata"]["uid"], "<uid>")
    copy = json.loads(text)
    for key in SERVER_SET:
        copy["metadata"].pop(key, None)
    return prune(copy)


def prune(value: Any) -> Any:
    # kubectl prints typed objects, whose empty structs show as {} (``"status": {}``); the server's
    # JSON answer may leave them out.
    if isinstance(value, dict):
        kept = {key: prune(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item != {}}
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_kubectl_protobuf_create_matches_json_create(
    backend: Backend, namespace: str, generator: str
) -> None:
    args, api_version, plural = GENERATORS[generator]
    printed = run_kubectl(backend, "create", "-n", namespace, "--dry-run=client", "-o", "json", *args)
    assert printed.returncode == 0, printed.stderr
    prefix = "/api" if api_version == "v1" else "/apis"
    as_json = backend.http(
        "POST",
        f"{prefix}/{api_version}/namespaces/{namespace}/{plural}?dryRun=All",
        json.loads(printed.stdout),
    )
    assert as_json.status == 201, as_json.body
    as_protobuf = run_kubectl(backend, "create", "-n", namespace, "--dry-run=server", "-o", "json", *args)
    assert as_protobuf.returncode == 0, as_protobuf.stderr
    assert comparable(json.loads(as_protobuf.stdout)) == comparable(as_json.body)


def test_kubectl_protobuf_writes(backend: Backend, namespace: str) -> None:
    name = unique("ns")
    created = run_kubectl(backend, "create", "namespace", name)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == f"namespace/{name} created"
    can = run_kubectl(backend, "auth", "can-i", "create", "pods", "-n", namespace)
    assert (can.returncode, can.stdout.strip()) == (0, "yes")
    deploy = run_kubectl(backend, "create", "deployment", "web", "--image=nginx", "-n", namespace)
    assert deploy.returncode == 0, deploy.stderr
    scaled = run_kubectl(backend, "scale", "deployment", "web", "--replicas=3", "-n", namespace)
    assert scaled.returncode == 0, scaled.stderr
    assert (
        backend.http("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/web").body["spec"]["replicas"]
        == 3
    )
    backend.http("DELETE", f"/api/v1/namespaces/{name}")
