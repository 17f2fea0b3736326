"""kcp_tmc.testing.protobuf: protobuf bodies read as the JSON kubectl would have sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeapi_support import SYNC_TARGET_CRD, crd

from kcp_tmc.testing import FakeAPIServer, errors, protobuf
from kcp_tmc.testing.errors import StatusError
from kcp_tmc.testing.protobuf import MEDIA_TYPE, decode, envelope, field, go_duration
from kcp_tmc.testing.resources import BUILTINS

KUBECTL = Path(sys.executable).parent / "kubectl"
needs_kubectl = pytest.mark.skipif(
    not KUBECTL.exists(), reason="no kubectl beside python: run `make kube-tools`"
)


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(admission=False) as server:
        yield server


def refusal(body: bytes, api_version: str = "v1", kind: str = "ConfigMap") -> str:
    with pytest.raises(StatusError) as caught:
        decode(body, api_version, kind)
    assert caught.value.code == 400
    return str(caught.value)


def test_every_served_builtin_kind_has_a_protobuf_layout() -> None:
    # A kind added to the fake without rerunning tools/gen_protobuf_schema.py fails here.
    served = {
        f"{info.group + '/' if info.group else ''}{info.version}/{info.kind}"
        for info in BUILTINS
        if info.group != "apiextensions.k8s.io"
    }
    assert served - protobuf.known_kinds() == set()
    assert {"autoscaling/v1/Scale", "v1/DeleteOptions"} <= protobuf.known_kinds()


@pytest.mark.parametrize(
    ("nanoseconds", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90 * 10**9, "1m30s"),
        (3600 * 10**9, "1h0m0s"),
        (-(5 * 10**9), "-5s"),
        (26 * 3600 * 10**9 + 10**6, "26h0m0.001s"),
    ],
)
def test_go_duration(nanoseconds: int, text: str) -> None:
    assert go_duration(nanoseconds) == text


def test_special_types_print_like_their_json() -> None:
    # Pod with deletionTimestamp (Time), a container port by name (IntOrString) and limits (Quantity).
    probe = field(1, field(2, field(2, field(1, 1) + field(3, "http"))))  # httpGet.port = "http"
    container = (
        field(1, "c")
        + field(8, field(1, field(1, "cpu") + field(2, field(1, "500m"))))
        + field(10, probe)
        + field(11, probe)
    )
    meta = field(1, "p") + field(9, field(1, 1_700_000_000)) + field(10, -1 & (2**64 - 1))
    pod = field(1, meta) + field(2, field(2, container))
    obj = decode(envelope("v1", "Pod", pod), "v1", "Pod")
    assert obj["metadata"] == {
        "name": "p",
        "deletionTimestamp": "2023-11-14T22:13:20Z",
        "deletionGracePeriodSeconds": -1,
    }
    (decoded,) = obj["spec"]["containers"]
    assert decoded["resources"] == {"limits": {"cpu": "500m"}}
    assert decoded["livenessProbe"] == {"httpGet": {"port": "http"}}
    assert decoded["readinessProbe"] == decoded["livenessProbe"]


def test_int_or_string_int_micro_time_and_raw_json() -> None:
    port = field(1, 0) + field(2, 8080)
    service = field(1, field(1, "s")) + field(2, field(1, field(3, 80) + field(4, port)))
    assert decode(envelope("v1", "Service", service), "v1", "Service")["spec"]["ports"] == [
        {"port": 80, "targetPort": 8080}
    ]
    lease = field(1, field(1, "l")) + field(2, field(3, field(1, 1_700_000_000) + field(2, 123_456_000)))
    spec = decode(envelope("coordination.k8s.io/v1", "Lease", lease), "coordination.k8s.io/v1", "Lease")[
        "spec"
    ]
    assert spec == {"acquireTime": "2023-11-14T22:13:20.123456Z"}
    fields = field(17, field(1, "kubectl") + field(6, "FieldsV1") + field(7, field(1, b'{"f:data":{}}')))
    meta = decode(envelope("v1", "ConfigMap", field(1, fields)), "v1", "ConfigMap")["metadata"]
    assert meta["managedFields"] == [
        {"manager": "kubectl", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}
    ]


def test_bytes_maps_wrappers_packed_and_unknown_fields() -> None:
    secret = field(1, field(1, "s")) + field(2, field(1, "k") + field(2, b"\x00\xff")) + field(99, "ignored")
    assert decode(envelope("v1", "Secret", secret), "v1", "Secret") == {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {"name": "s"},
        "data": {"k": "AP8="},
    }
    extra = field(5, field(1, "scopes") + field(2, field(1, "a") + field(1, "b")))
    review = field(2, field(3, "alice") + extra)
    version = "authorization.k8s.io/v1"
    obj = decode(envelope(version, "SubjectAccessReview", review), version, "SubjectAccessReview")
    assert obj["spec"] == {"user": "alice", "extra": {"scopes": ["a", "b"]}}
    # Pod securityContext.supplementalGroups (repeated int64), packed on the wire.
    groups = field(4, bytes([1, 2, 0x80, 0x01]))
    pod = decode(envelope("v1", "Pod", field(2, field(14, groups))), "v1", "Pod")
    assert pod["spec"]["securityContext"]["supplementalGroups"] == [1, 2, 128]


def test_omitempty_rules() -> None:
    # DeploymentSpec: replicas (pointer) 0 stays, minReadySeconds (omitempty) 0 goes, template (struct) stays.
    spec = field(1, 0) + field(3, b"") + field(5, 0) + field(7, 0)
    obj = decode(envelope("apps/v1", "Deployment", field(2, spec)), "apps/v1", "Deployment")
    assert obj["spec"] == {"replicas": 0, "template": {}}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x0a\x05ab", "unexpected EOF"),
        (b"\x0b", "proto: illegal wireType 3"),
        (b"\x00", "proto: illegal tag 0 (wire type 0)"),
        (b"\x08" + b"\xff" * 10, "proto: integer overflow"),
        (b"\x0d\x00", "unexpected EOF"),
        (b"\x0a\x02\x08\x01", "proto: wrong wireType = 0 for field"),
    ],
)
def test_malformed_objects(raw: bytes, reason: str) -> None:
    message = refusal(envelope("v1", "ConfigMap", raw))
    assert message == f'ConfigMap in version "v1" cannot be handled as a ConfigMap: {reason}'


def test_long_bodies_are_summarised() -> None:
    body = b"x" * 40
    assert refusal(body).endswith(f"({body[:30].hex()} ...)")
    text = b'{"kind": "ConfigMap", "apiVersion": "v1"}'
    assert refusal(text).endswith('({"kind": "ConfigMap", "apiVers ...)')


def test_delete_options_in_either_group() -> None:
    options = field(1, 5)  # gracePeriodSeconds
    for version in ("v1", "meta.k8s.io/v1"):
        assert decode(envelope(version, "DeleteOptions", options), "v1", "DeleteOptions") == {
            "kind": "DeleteOptions",
            "apiVersion": version,
            "gracePeriodSeconds": 5,
        }


def test_server_reads_protobuf_scale_and_delete_bodies(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "pb"}})
    api.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "pb"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c"}]}},
            },
        }
    )
    path = "/apis/apps/v1/namespaces/pb/deployments/web"
    scale = field(1, field(1, "web") + field(3, "pb")) + field(2, field(1, 4))
    scaled = api.http(
        "PUT", f"{path}/scale", envelope("autoscaling/v1", "Scale", scale), content_type=MEDIA_TYPE
    )
    assert scaled.status == 200, scaled.body
    assert scaled.json()["spec"] == {"replicas": 4}
    assert api.get("apps/v1", "deployments", "web", "pb")["spec"]["replicas"] == 4
    policy = field(4, "Orphan")  # propagationPolicy
    deleted = api.http("DELETE", path, envelope("v1", "DeleteOptions", policy), content_type=MEDIA_TYPE)
    assert deleted.status == 200, deleted.body


def test_custom_resources_refuse_protobuf(api: FakeAPIServer) -> None:
    api.install_crd(crd(SYNC_TARGET_CRD))
    body = envelope("workload.kcp.io/v1alpha1", "SyncTarget", field(1, field(1, "s")))
    refused = api.http("POST", "/apis/workload.kcp.io/v1alpha1/synctargets", body, content_type=MEDIA_TYPE)
    assert refused.status == 415
    assert refused.json()["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml"
    )


GENERATED = [
    ["deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
    ["configmap", "cfg", "--from-literal=a=1"],
    ["secret", "generic", "sec", "--from-literal=token=s3cr3t"],
    ["service", "nodeport", "svc", "--tcp=80:8080"],
    ["job", "once", "--image=busybox", "--", "date"],
    ["cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *"],
    ["clusterrole", "pb-reader", "--verb=get", "--resource=pods", "--resource-name=a"],
    ["clusterrole", "pb-agg", "--aggregation-rule=x.example.com/agg=true"],  # "rules": null
    ["clusterrolebinding", "pb-bind", "--clusterrole=view", "--user=alice", "--serviceaccount=default:x"],
]


@needs_kubectl
@pytest.mark.parametrize("args", GENERATED, ids=lambda args: f"{args[0]}-{args[1]}")
def test_decoded_kubectl_bodies_equal_kubectl_json(
    api: FakeAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """What the fake reads from kubectl's protobuf is exactly the JSON kubectl prints for the object."""
    seen: list[dict[str, Any]] = []
    real_decode = protobuf.decode

    def recording(body: bytes, api_version: str, kind: str) -> dict[str, Any]:
        decoded = real_decode(body, api_version, kind)
        seen.append(json.loads(json.dumps(decoded)))  # the server goes on to change its copy
        return decoded

    monkeypatch.setattr(protobuf, "decode", recording)
    env = {**os.environ, "KUBECONFIG": api.kubeconfig_path, "HOME": str(tmp_path)}

    def kubectl(*extra: str) -> str:
        done = subprocess.run(
            [str(KUBECTL), "create", *extra, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    printed = json.loads(kubectl("--dry-run=client", "-o", "json"))
    kubectl("--dry-run=server", "-o", "name")
    assert seen == [printed]


@needs_kubectl
def test_kubectl_never_retries_protobuf_as_json_after_415(
    api: FakeAPIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why the fake must read protobuf: client-go's only 415 fallback is for CBOR, not protobuf."""

    def refuse(body: bytes, api_version: str, kind: str) -> dict[str, Any]:
        raise errors.unsupported_media_type(["application/json", "application/yaml"])

    monkeypatch.setattr(protobuf, "decode", refuse)
    api.counters.reset()
    env = {**os.environ, "KUBECONFIG": api.kubeconfig_path, "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(KUBECTL), "create", "configmap", "refused", "--from-literal=a=1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "the body of the request was in an unknown format" in done.stderr
    assert api.counters.requests(verb="create", resource="configmaps") == 1
    assert api.get("v1", "configmaps", "refused", "default") is None
