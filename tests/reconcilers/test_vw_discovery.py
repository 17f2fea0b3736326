"""What the syncer and upsyncer virtual workspaces serve for a SyncTarget, and their discovery documents."""

import copy
import os

import pytest

from kcp_tmc.reconcilers.exports import kubernetes_export
from kcp_tmc.reconcilers.virtualworkspace.discovery import (
    AGGREGATED_DISCOVERY_MEDIA_TYPE,
    ServedResource,
    served_apis,
    wants_aggregated,
)

SYNCER_VERBS = ["get", "list", "patch", "update", "watch"]
UPSYNCER_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
STATUS_VERBS = ["get", "patch", "update"]


def schema(
    name, group, plural, kind, versions, *, scope="Namespaced", short=None, categories=None, status=True
):
    names = {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"}
    if short:
        names["shortNames"] = short
    if categories:
        names["categories"] = categories
    return {
        "apiVersion": "apis.kcp.io/v1alpha1",
        "kind": "APIResourceSchema",
        "metadata": {"name": name, "annotations": {"kcp.io/cluster": "wildwest-ws"}},
        "spec": {
            "group": group,
            "names": names,
            "scope": scope,
            "versions": [
                {
                    "name": v,
                    "served": served,
                    "storage": i == 0,
                    "schema": {"type": "object"},
                    **({"subresources": {"status": {}}} if status else {}),
                }
                for i, (v, served) in enumerate(versions)
            ],
        },
    }


COWBOYS = schema("today.cowboys.wildwest.dev", "wildwest.dev", "cowboys", "Cowboy", [("v1alpha1", True)])
HORSES = schema(
    "today.horses.wildwest.dev",
    "wildwest.dev",
    "horses",
    "Horse",
    [("v1", True), ("v1beta1", True), ("v1alpha1", False)],
    short=["hs"],
    categories=["all", "ranch"],
    status=False,
)
PODS = schema("v1.pods.core", "", "pods", "Pod", [("v1", True)], short=["po"])
PVS = schema(
    "v1.persistentvolumes.core", "", "persistentvolumes", "PersistentVolume", [("v1", True)], scope="Cluster"
)
ENDPOINTS = schema("v1.endpoints.core", "", "endpoints", "Endpoints", [("v1", True)], status=False)
CONFIGMAPS = schema("v1.configmaps.core", "", "configmaps", "ConfigMap", [("v1", True)], short=["cm"])


def export(name, schemas, cluster="wildwest-ws", identity="id-" + "w" * 8, path=None):
    annotations = {"kcp.io/cluster": cluster}
    if path:
        annotations["kcp.io/path"] = path
    return {
        "apiVersion": "apis.kcp.io/v1alpha1",
        "kind": "APIExport",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"latestResourceSchemas": [s["metadata"]["name"] for s in schemas]},
        "status": {"identityHash": identity},
    }


WILDWEST = export("wildwest", [COWBOYS, HORSES, PODS, PVS, ENDPOINTS, CONFIGMAPS])


def target(*accepted, supported=None, others=()):
    synced = [
        {"group": g, "resource": r, "versions": ["v1"], "identityHash": "h", "state": "Accepted"}
        for g, r in accepted
    ]
    synced += [
        {"group": g, "resource": r, "versions": ["v1"], "identityHash": "h", "state": s} for g, r, s in others
    ]
    spec = {
        "supportedAPIExports": supported
        if supported is not None
        else [{"export": "wildwest", "path": "wildwest-ws"}]
    }
    return {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": "us-west1", "annotations": {"kcp.io/cluster": "compute-ws"}},
        "spec": spec,
        "status": {"syncedResources": synced},
    }


def names(doc):
    return [r["name"] for r in doc["resources"]] if doc else None


def serve(
    st, service="syncer", exports=(WILDWEST,), schemas=(COWBOYS, HORSES, PODS, PVS, ENDPOINTS, CONFIGMAPS)
):
    return served_apis(st, list(exports), list(schemas), service)


# --- what is served ---------------------------------------------------------------------------------


def test_only_cowboys_accepted_is_the_builtins_and_cowboys():
    apis = serve(target(("wildwest.dev", "cowboys")))
    core = apis.resource_list("", "v1")
    assert core["kind"] == "APIResourceList"
    assert core["groupVersion"] == "v1"
    assert "apiVersion" not in core, "kube-apiserver's /api/v1 carries no apiVersion"
    assert [(r["name"], r["kind"], r["namespaced"], r["singularName"]) for r in core["resources"]] == [
        ("configmaps", "ConfigMap", True, "configmap"),
        ("namespaces", "Namespace", False, "namespace"),
        ("namespaces/status", "Namespace", False, ""),
        ("secrets", "Secret", True, "secret"),
        ("serviceaccounts", "ServiceAccount", True, "serviceaccount"),
    ]
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["namespaces"]["verbs"] == SYNCER_VERBS
    assert by_name["namespaces/status"]["verbs"] == STATUS_VERBS
    # The built-ins come from kcp's own schemas: no short names, no categories.
    assert not any("shortNames" in r or "categories" in r for r in core["resources"])
    wild = apis.resource_list("wildwest.dev", "v1alpha1")
    assert wild["apiVersion"] == "v1"
    assert wild["groupVersion"] == "wildwest.dev/v1alpha1"
    assert names(wild) == ["cowboys", "cowboys/status"]
    assert apis.api_group_list() == {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "wildwest.dev",
                "versions": [{"groupVersion": "wildwest.dev/v1alpha1", "version": "v1alpha1"}],
                "preferredVersion": {"groupVersion": "wildwest.dev/v1alpha1", "version": "v1alpha1"},
            }
        ],
    }
    assert apis.api_versions() == {"kind": "APIVersions", "versions": ["v1"]}
    assert apis.api_versions("10.0.0.1:6443")["serverAddressByClientCIDRs"] == [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}
    ]


def test_the_kubernetes_export_adds_services_deployments_and_ingresses():
    kube_export, *kube_schemas = copy.deepcopy(kubernetes_export())
    for obj in [kube_export, *kube_schemas]:
        obj["metadata"]["annotations"] = {"kcp.io/cluster": "root-compute", "kcp.io/path": "root:compute"}
    st = target(
        ("wildwest.dev", "cowboys"),
        ("", "services"),
        ("apps", "deployments"),
        ("networking.k8s.io", "ingresses"),
        supported=[
            {"export": "wildwest", "path": "wildwest-ws"},
            {"export": "kubernetes", "path": "root:compute"},
        ],
    )
    apis = serve(st, exports=(WILDWEST, kube_export), schemas=(COWBOYS, *kube_schemas))
    assert names(apis.resource_list("", "v1")) == [
        "configmaps",
        "namespaces",
        "namespaces/status",
        "secrets",
        "serviceaccounts",
        "services",
        "services/status",
    ]
    services = apis.resource_list("", "v1")["resources"][-2]
    assert (services["shortNames"], services["categories"], services["verbs"]) == (
        ["svc"],
        ["all"],
        SYNCER_VERBS,
    )
    deployments = apis.resource_list("apps", "v1")["resources"]
    assert [r["name"] for r in deployments] == ["deployments", "deployments/status"]
    assert deployments[0]["shortNames"] == ["deploy"]
    assert deployments[0]["categories"] == ["all"]
    assert names(apis.resource_list("networking.k8s.io", "v1")) == ["ingresses", "ingresses/status"]
    assert [g["name"] for g in apis.api_group_list()["groups"]] == [
        "apps",
        "networking.k8s.io",
        "wildwest.dev",
    ]
    deploy = apis.resource("apps", "v1", "deployments")
    assert deploy.identity_hash == "h"
    assert deploy.schema_cluster == "root-compute"


def test_pending_and_incompatible_resources_are_absent():
    st = target(others=[("wildwest.dev", "cowboys", "Pending"), ("wildwest.dev", "horses", "Incompatible")])
    apis = serve(st)
    assert apis.api_group_list()["groups"] == []
    assert apis.resource_list("wildwest.dev", "v1alpha1") is None
    assert apis.resource("wildwest.dev", "v1alpha1", "cowboys") is None
    assert apis.api_group("wildwest.dev") is None


def test_every_served_version_and_the_preferred_one_first():
    apis = serve(target(("wildwest.dev", "horses")))
    assert apis.api_group("wildwest.dev") == {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "wildwest.dev",
        "versions": [
            {"groupVersion": "wildwest.dev/v1", "version": "v1"},
            {"groupVersion": "wildwest.dev/v1beta1", "version": "v1beta1"},
        ],
        "preferredVersion": {"groupVersion": "wildwest.dev/v1", "version": "v1"},
    }
    assert apis.resource("wildwest.dev", "v1alpha1", "horses") is None, "not served by the schema"
    horses = apis.resource_list("wildwest.dev", "v1beta1")["resources"]
    assert horses == [
        {
            "name": "horses",
            "singularName": "horse",
            "namespaced": True,
            "kind": "Horse",
            "verbs": SYNCER_VERBS,
            "shortNames": ["hs"],
            "categories": ["all", "ranch"],
            "storageVersionHash": horses[0]["storageVersionHash"],
        }
    ]
    # Over the storage version (v1) whichever version lists it; the value a real kube-apiserver gives.
    assert horses[0]["storageVersionHash"] == "T5OO5hWZ0N8="
    assert apis.resource_list("wildwest.dev", "v1")["resources"][0]["storageVersionHash"] == "T5OO5hWZ0N8="


def test_the_resource_lookup_says_scope_kind_verbs_and_subresources():
    apis = serve(target(("wildwest.dev", "cowboys")))
    cowboys = apis.resource("wildwest.dev", "v1alpha1", "cowboys")
    assert cowboys == ServedResource(
        group="wildwest.dev",
        version="v1alpha1",
        plural="cowboys",
        singular="cowboy",
        kind="Cowboy",
        namespaced=True,
        verbs=tuple(SYNCER_VERBS),
        subresources=("status",),
        list_kind="CowboyList",
        identity_hash="h",
        schema_cluster="wildwest-ws",
        storage_version="v1alpha1",
    )
    assert cowboys.subresource_verbs("status") == tuple(STATUS_VERBS)
    assert cowboys.subresource_verbs("scale") == ()
    namespaces = apis.resource("", "v1", "namespaces")
    assert (namespaces.namespaced, namespaces.kind, namespaces.subresources) == (
        False,
        "Namespace",
        ("status",),
    )
    assert apis.resource("", "v1", "configmaps").subresources == ()
    assert apis.resource("", "v1", "pods") is None


def test_the_syncer_never_serves_pods_or_endpoints_and_the_builtins_win():
    apis = serve(target(("", "pods"), ("", "endpoints"), ("", "persistentvolumes"), ("", "configmaps")))
    assert names(apis.resource_list("", "v1")) == [
        "configmaps",
        "namespaces",
        "namespaces/status",
        "persistentvolumes",
        "persistentvolumes/status",
        "secrets",
        "serviceaccounts",
    ]
    # The export's configmaps schema (short name cm, a status) gives way to the built-in.
    assert apis.resource("", "v1", "configmaps").short_names == ()
    assert apis.resource("", "v1", "configmaps").identity_hash == ""


def test_the_upsyncer_serves_only_accepted_persistentvolumes_and_pods():
    apis = serve(target(("", "pods"), ("", "persistentvolumes"), ("wildwest.dev", "cowboys")), "upsyncer")
    core = apis.resource_list("", "v1")
    assert names(core) == ["persistentvolumes", "persistentvolumes/status", "pods", "pods/status"]
    assert core["resources"][0]["verbs"] == UPSYNCER_VERBS
    assert core["resources"][0]["namespaced"] is False
    assert core["resources"][1]["verbs"] == STATUS_VERBS
    assert core["resources"][2]["shortNames"] == ["po"]
    assert apis.api_group_list()["groups"] == []
    nothing = serve(target(("wildwest.dev", "cowboys")), "upsyncer")
    assert nothing.api_versions() == {"kind": "APIVersions", "versions": []}
    assert nothing.resource_list("", "v1") is None


def test_exports_resolve_by_path_annotation_or_cluster_name_and_an_empty_list_supports_nothing():
    by_path = export("wildwest", [COWBOYS], path="root:wildwest")
    accepted = ("wildwest.dev", "cowboys")
    for ref in (
        {"export": "wildwest", "path": "root:wildwest"},
        {"export": "wildwest", "path": "wildwest-ws"},
    ):
        apis = serve(target(accepted, supported=[ref]), exports=(by_path,), schemas=(COWBOYS,))
        assert apis.resource("wildwest.dev", "v1alpha1", "cowboys") is not None, ref
    # No path: the SyncTarget's own workspace, where this export is not.
    apis = serve(target(accepted, supported=[{"export": "wildwest"}]), exports=(by_path,), schemas=(COWBOYS,))
    assert apis.resource("wildwest.dev", "v1alpha1", "cowboys") is None
    only_builtins = serve(target(accepted, supported=[]))
    assert sorted(only_builtins.resources) == [
        ("", "v1", "configmaps"),
        ("", "v1", "namespaces"),
        ("", "v1", "secrets"),
        ("", "v1", "serviceaccounts"),
    ]
    # A schema the export names but that is missing is skipped.
    assert serve(target(accepted), schemas=()).resource("wildwest.dev", "v1alpha1", "cowboys") is None


def test_an_absent_supported_list_means_the_kubernetes_export_of_the_targets_workspace():
    kube_export, *kube_schemas = copy.deepcopy(kubernetes_export())
    for obj in [kube_export, *kube_schemas]:
        obj["metadata"]["annotations"] = {"kcp.io/cluster": "compute-ws"}
    st = target(("apps", "deployments"))
    del st["spec"]["supportedAPIExports"]
    apis = serve(st, exports=(kube_export,), schemas=kube_schemas)
    assert apis.resource("apps", "v1", "deployments") is not None


def test_an_unknown_workspace_is_refused():
    with pytest.raises(
        ValueError, match=r"unknown virtual workspace 'tunneler': expected one of \['syncer', 'upsyncer'\]"
    ):
        serve(target(), "tunneler")


# --- aggregated discovery ---------------------------------------------------------------------------


def test_aggregated_discovery_of_api_and_apis():
    apis = serve(target(("wildwest.dev", "cowboys"), ("wildwest.dev", "horses")))
    core = apis.aggregated(core=True)
    assert core["kind"] == "APIGroupDiscoveryList"
    assert core["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert core["metadata"] == {}
    [item] = core["items"]
    assert item["metadata"] == {}
    [v1] = item["versions"]
    assert (v1["version"], v1["freshness"]) == ("v1", "Current")
    assert [r["resource"] for r in v1["resources"]] == [
        "configmaps",
        "namespaces",
        "secrets",
        "serviceaccounts",
    ]
    assert v1["resources"][1] == {
        "resource": "namespaces",
        "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
        "scope": "Cluster",
        "singularResource": "namespace",
        "verbs": SYNCER_VERBS,
        "subresources": [
            {
                "subresource": "status",
                "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
                "verbs": STATUS_VERBS,
            }
        ],
    }
    [group] = apis.aggregated(core=False)["items"]
    assert group["metadata"] == {"name": "wildwest.dev"}
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1", "v1alpha1"]
    assert [r["resource"] for r in group["versions"][2]["resources"]] == ["cowboys"]
    horses = group["versions"][0]["resources"][0]
    assert (horses["shortNames"], horses["categories"], "subresources" in horses) == (
        ["hs"],
        ["all", "ranch"],
        False,
    )


@pytest.mark.parametrize(
    ("accept", "aggregated"),
    [
        (f"{AGGREGATED_DISCOVERY_MEDIA_TYPE},application/json", True),
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", True),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json;q=0.9",
            False,
        ),
        ("application/json", False),
        ("application/json, " + AGGREGATED_DISCOVERY_MEDIA_TYPE, False),
        ("", False),
        ("application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList", False),
        ("application/yaml", False),
    ],
)
def test_aggregated_discovery_is_given_when_accept_prefers_it(accept, aggregated):
    assert wants_aggregated(accept) is aggregated


# --- the shapes a real kube-apiserver answers with ----------------------------------------------------


@pytest.mark.realapi
@pytest.mark.skipif(
    not os.environ.get("KUBEBUILDER_ASSETS"),
    reason="KUBEBUILDER_ASSETS is not set: the real kube-apiserver tests are skipped",
)
def test_documents_have_the_shapes_of_a_real_kube_apiserver():
    from kcp_tmc.testing.envtest import RealAPIServer

    spec = HORSES["spec"]
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "horses.wildwest.dev"},
        "spec": {
            "group": spec["group"],
            "names": spec["names"],
            "scope": spec["scope"],
            "versions": [
                {
                    **v,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
                for v in spec["versions"]
            ],
        },
    }
    ours = serve(target(("wildwest.dev", "horses")))
    with RealAPIServer() as real:
        real.install_crd(crd)
        real_list = real.request_json("GET", "/apis/wildwest.dev/v1beta1")
        real_group = real.request_json("GET", "/apis/wildwest.dev")
        real_core = real.request_json("GET", "/api/v1")
        real_api = real.request_json("GET", "/api")
        real_aggregated = aggregated_from(real, "/apis")
    mine = ours.resource_list("wildwest.dev", "v1beta1")
    assert mine.keys() == real_list.keys()
    [real_horses] = real_list["resources"]
    # Same entry but for the verbs, which the virtual workspace narrows.
    assert {**real_horses, "verbs": sorted(real_horses["verbs"])} == {
        **mine["resources"][0],
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    }
    assert ours.api_group("wildwest.dev") == real_group
    core = ours.resource_list("", "v1")
    assert core.keys() == real_core.keys()
    real_by_name = {r["name"]: r for r in real_core["resources"]}
    for entry in core["resources"]:
        real_entry = real_by_name[entry["name"]]
        assert {k: v for k, v in entry.items() if k != "verbs"} == {
            k: v for k, v in real_entry.items() if k not in ("verbs", "shortNames")
        }
    assert ours.api_versions().keys() <= real_api.keys()
    [real_group_doc] = [i for i in real_aggregated["items"] if i["metadata"]["name"] == "wildwest.dev"]
    [our_group_doc] = ours.aggregated(core=False)["items"]
    assert {k: v for k, v in real_aggregated.items() if k != "items"} == {
        k: v for k, v in ours.aggregated(core=False).items() if k != "items"
    }
    for real_version, our_version in zip(real_group_doc["versions"], our_group_doc["versions"], strict=True):
        [real_entry] = real_version["resources"]
        [our_entry] = our_version["resources"]
        assert {**real_entry, "verbs": []} == {**our_entry, "verbs": []}
        assert real_version.keys() == our_version.keys()


def aggregated_from(real, path):
    import json
    import ssl
    import urllib.request

    request = urllib.request.Request(real.url + path)
    request.add_header("Authorization", f"Bearer {real.admin_token}")
    request.add_header("Accept", f"{AGGREGATED_DISCOVERY_MEDIA_TYPE},application/json")
    context = ssl.create_default_context(cadata=real.ca_pem.decode())
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.headers["Content-Type"] == AGGREGATED_DISCOVERY_MEDIA_TYPE
        return json.loads(response.read())


def test_discovery_before_and_after_the_reconciler_accepts_a_resource():
    from kcp_tmc.policies.clusters import cluster_of
    from kcp_tmc.reconcilers.syncedresources import ExportIndex, desired_synced_resources

    kube_export, *kube_schemas = copy.deepcopy(kubernetes_export())
    for obj in [kube_export, *kube_schemas]:
        obj["metadata"]["annotations"] = {"kcp.io/cluster": "compute-ws"}
    st = target(supported=[{"export": "kubernetes"}])
    index = ExportIndex.build([kube_export], kube_schemas, lambda o: cluster_of(o, "root"))
    deployments = next(s for s in kube_schemas if s["spec"]["names"]["plural"] == "deployments")
    imported = {("apps", "v1", "deployments"): deployments["spec"]["versions"][0]["schema"]}

    st["status"]["syncedResources"] = desired_synced_resources(st, "compute-ws", index, {})
    before = serve(st, exports=(kube_export,), schemas=kube_schemas)
    assert before.api_group_list()["groups"] == []
    assert names(before.resource_list("", "v1")) == [
        "configmaps",
        "namespaces",
        "namespaces/status",
        "secrets",
        "serviceaccounts",
    ]

    st["status"]["syncedResources"] = desired_synced_resources(st, "compute-ws", index, imported)
    assert {e["resource"]: e["state"] for e in st["status"]["syncedResources"]} == {
        "ingresses": "Incompatible",
        "deployments": "Accepted",
        "services": "Incompatible",
    }
    after = serve(st, exports=(kube_export,), schemas=kube_schemas)
    assert [g["name"] for g in after.api_group_list()["groups"]] == ["apps"]
    assert names(after.resource_list("apps", "v1")) == ["deployments", "deployments/status"]
    assert after.resource("", "v1", "services") is None
