"""Small pure parts: capacity sums, import naming and schema inlining, syncer manifests, logs, client."""

from __future__ import annotations

import io
import json
import logging

import pytest

from kcp_tmc.policies.jsonlog import JsonFormatter
from kcp_tmc.policies.quantities import QuantityError
from kcp_tmc.reconcilers.capacity import node_counts, sum_node_resources
from kcp_tmc.reconcilers.client import ApiError, Conflict, InvalidKubeconfig, KubeClient, NotFound, Resource
from kcp_tmc.reconcilers.imports import desired_imports, import_name, inline_schema, wanted_group_versions
from kcp_tmc.reconcilers.syncer_install import deployment_available, desired_install, syncer_namespace


def node(cpu, memory, ready="True", unschedulable=False, extra=None):
    status = {"capacity": {"cpu": cpu, "memory": memory, **(extra or {})}, "allocatable": {"cpu": cpu}}
    status["conditions"] = [{"type": "Ready", "status": ready}] if ready else []
    return {"spec": {"unschedulable": unschedulable}, "status": status}


def test_capacity_sums_ready_schedulable_nodes_exactly():
    nodes = [
        node("1500m", "1Gi", extra={"nvidia.com/gpu": "1"}),
        node("0.5", "512Mi"),
        node("100", "1Ti", ready="False"),
        node("100", "1Ti", ready=""),
        node("100", "1Ti", unschedulable=True),
    ]
    assert sum_node_resources(nodes) == (
        {"cpu": "2", "memory": "1536Mi", "nvidia.com/gpu": "1"},
        {"cpu": "2"},
    )
    assert sum_node_resources([]) == ({}, {})
    assert not node_counts({"status": {}})


def test_capacity_refuses_a_bad_quantity():
    with pytest.raises(QuantityError, match=r"^cpu: "):
        sum_node_resources([node("two", "1Gi")])


def test_import_names_and_wanted_group_versions():
    assert import_name("deployments", "us-west1", "v1", "apps") == "deployments.us-west1.v1.apps"
    assert import_name("services", "us-west1", "v1", "") == "services.us-west1.v1.core"
    st = {
        "status": {
            "syncedResources": [
                {"group": "apps", "resource": "deployments", "versions": ["v1", "v1beta1"]},
                {"group": "", "resource": "services", "versions": ["v1"]},
                {"group": "", "resource": "configmaps", "versions": ["v1"]},
                {"bad": True},
            ]
        }
    }
    assert wanted_group_versions(st) == {
        ("apps", "v1"): {"deployments"},
        ("apps", "v1beta1"): {"deployments"},
        ("", "v1"): {"services", "configmaps"},
    }


def test_inline_schema_resolves_refs_allof_and_cycles():
    components = {
        "Deployment": {
            "type": "object",
            "description": "dropped",
            "properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/Spec"}], "default": {}},
                "props": {"$ref": "#/components/schemas/Props"},
                "missing": {"$ref": "#/components/schemas/Nowhere"},
            },
        },
        "Spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        "Props": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Props"}},
    }
    assert inline_schema(components["Deployment"], components) == {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}, "default": {}},
            "props": {
                "type": "object",
                "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True},
            },
            "missing": {"x-kubernetes-preserve-unknown-fields": True},
        },
    }


def test_desired_imports_skip_resources_without_schema():
    st = {"metadata": {"name": "st", "uid": "u1"}}
    found = [
        {
            "group": "apps",
            "version": "v1",
            "plural": "deployments",
            "singular": "deployment",
            "kind": "Deployment",
            "namespaced": True,
            "schema": {"type": "object"},
        },
        {
            "group": "",
            "version": "v1",
            "plural": "nodes",
            "singular": "node",
            "kind": "Node",
            "namespaced": False,
            "schema": None,
        },
    ]
    out = desired_imports(found, st, "east")
    assert list(out) == ["deployments.st.v1.apps"]
    spec = out["deployments.st.v1.apps"]["spec"]
    assert (spec["scope"], spec["listKind"], spec["location"]) == ("Namespaced", "DeploymentList", "st")


def test_syncer_namespace_is_a_dns_label():
    assert syncer_namespace("west", "6ohB8yeXhwqTQ") == "kcp-syncer-west-6ohb8yex"
    long = syncer_namespace("x" * 63, "ABCDEFGHIJ")
    assert len(long) == 63 and long.endswith("-abcdefgh")
    assert syncer_namespace("a" * 42 + "-b", "KEYKEYKE") == "kcp-syncer-" + "a" * 42 + "-keykeyke"


def test_syncer_install_rules_and_hash():
    st = {"metadata": {"name": "west", "uid": "u"}}
    common = {
        "cluster_name": "west",
        "sync_target": st,
        "key": "KEY12345",
        "logical_cluster": "root",
        "image": "img:1",
        "syncer_url": "https://vw/services/syncer/root/west/u",
    }
    install = desired_install(resources=[("apps", "deployments"), ("", "services")], **common)
    kinds = [obj["kind"] for _, obj in install.objects]
    assert kinds == [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Secret",
        "Deployment",
    ]
    role = install.objects[2][1]
    assert {
        "apiGroups": ["apps"],
        "resources": ["deployments/status"],
        "verbs": ["get", "patch", "update"],
    } in role["rules"]
    assert {
        "apiGroups": [""],
        "resources": ["configmaps", "secrets", "services"],
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
    } in role["rules"]
    other = desired_install(resources=[("apps", "deployments")], **common)
    assert other.digest != install.digest
    assert (
        desired_install(resources=[("", "services"), ("apps", "deployments")], **common).digest
        == install.digest
    )


@pytest.mark.parametrize(
    ("deployment", "available"),
    [
        (None, False),
        ({"status": {}}, False),
        ({"status": {"availableReplicas": 1}}, True),
        (
            {"status": {"availableReplicas": 1, "conditions": [{"type": "Available", "status": "False"}]}},
            False,
        ),
        ({"status": {"conditions": [{"type": "Available", "status": "True"}]}}, True),
    ],
)
def test_deployment_available(deployment, available):
    assert deployment_available(deployment) is available


def test_json_log_lines_carry_extras():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kcp_tmc.test.jsonlog")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("write %s", "x", extra={"controller": "synctarget", "object": "st", "skipped": None})
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: first[k] for k in ("level", "logger", "message", "controller", "object")} == {
        "level": "warning",
        "logger": "kcp_tmc.test.jsonlog",
        "message": "write x",
        "controller": "synctarget",
        "object": "st",
    }
    assert "skipped" not in first and first["time"].endswith("Z")
    assert "ValueError: bad" in second["exception"]


def test_resource_paths():
    st = Resource("workload.kcp.io", "v1alpha1", "synctargets")
    assert st.path("a b", subresource="status") == "/apis/workload.kcp.io/v1alpha1/synctargets/a%20b/status"
    secrets = Resource("", "v1", "secrets", namespaced=True)
    assert secrets.path("s", "ns") == "/api/v1/namespaces/ns/secrets/s"
    assert secrets.path(namespace="ns") == "/api/v1/namespaces/ns/secrets"
    assert (st.api_version, secrets.api_version, st.group_resource, secrets.group_resource) == (
        "workload.kcp.io/v1alpha1",
        "v1",
        "synctargets.workload.kcp.io",
        "secrets",
    )


def test_client_errors_map_to_types(api, kube):
    st = Resource("workload.kcp.io", "v1alpha1", "synctargets", kind="SyncTarget")
    with pytest.raises(NotFound) as missing:
        kube.get(st, "nope")
    assert missing.value.status == 404
    assert missing.value.message == 'synctargets.workload.kcp.io "nope" not found'
    kube.create(
        st, {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "a"}}
    )
    with pytest.raises(Conflict) as exists:
        kube.create(
            st, {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "a"}}
        )
    assert exists.value.reason == "AlreadyExists"
    with pytest.raises(ApiError) as invalid:
        kube.create(
            st,
            {
                "apiVersion": "workload.kcp.io/v1alpha1",
                "kind": "SyncTarget",
                "metadata": {"name": "b"},
                "spec": {"unschedulable": "yes"},
            },
        )
    assert invalid.value.status == 422
    kube.delete(st, "nope")  # a missing object is not an error
    assert kube.get_text("/readyz") == "ok"
    assert kube.get_json("/version")["gitVersion"].startswith("v1.")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "cannot parse kubeconfig"),
        ("- a", "kubeconfig is not a mapping"),
        ("apiVersion: v1\nkind: Config\nclusters: []\n", ""),
    ],
)
def test_invalid_kubeconfig_text(text, message):
    with pytest.raises(InvalidKubeconfig) as info:
        KubeClient.from_kubeconfig_text(text)
    assert message in str(info.value)


def test_invalid_kubeconfig_file(tmp_path):
    with pytest.raises(InvalidKubeconfig, match="No such file"):
        KubeClient.from_kubeconfig_file(str(tmp_path / "missing"))
    (tmp_path / "list").write_text("- 1\n")
    with pytest.raises(InvalidKubeconfig, match="not a kubeconfig mapping"):
        KubeClient.from_kubeconfig_file(str(tmp_path / "list"))
    with pytest.raises(InvalidKubeconfig):
        KubeClient.in_cluster()
