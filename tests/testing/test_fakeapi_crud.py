"""Objects on the fake API server: create/get/list/update/patch/delete and their exact failures."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fakeapi_support import GROUP, PLURAL, SYNC_TARGET_CRD, VERSION, crd, failure, sync_target
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from kcp_tmc.testing import FakeAPIServer

ST_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer(admission=False) as server:
        server.install_crd(crd(SYNC_TARGET_CRD))
        yield server


@pytest.fixture(scope="module")
def kube(api: FakeAPIServer) -> Iterator[client.ApiClient]:
    with api.api_client() as api_client:
        yield api_client


def _error(exc: pytest.ExceptionInfo[ApiException]) -> dict:
    return json.loads(exc.value.body)


def test_default_namespaces_exist(kube: client.ApiClient) -> None:
    names = {ns.metadata.name for ns in client.CoreV1Api(kube).list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= names


def test_create_sets_server_fields(kube: client.ApiClient, api: FakeAPIServer) -> None:
    core = client.CoreV1Api(kube)
    before = api.store.resource_version
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "fields"}, "data": {"a": "b"}})
    assert re.fullmatch(r"[0-9a-f-]{36}", cm.metadata.uid)
    assert cm.metadata.creation_timestamp is not None
    assert int(cm.metadata.resource_version) == before + 1
    assert cm.metadata.managed_fields is None
    assert cm.metadata.generation is None  # configmaps have no generation, as in kube-apiserver
    assert cm.metadata.namespace == "default"


def test_generate_name_adds_five_characters(kube: client.ApiClient) -> None:
    cm = client.CoreV1Api(kube).create_namespaced_config_map(
        "default", {"metadata": {"generateName": "gen-"}}
    )
    assert re.fullmatch(r"gen-[bcdfghjklmnpqrstvwxz2456789]{5}", cm.metadata.name)


def test_missing_name_is_invalid(api: FakeAPIServer) -> None:
    reply = api.http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {}})
    assert reply.status == 422
    assert (
        reply.json()["message"]
        == 'ConfigMap "" is invalid: metadata.name: Required value: name or generateName is required'
    )


def test_invalid_name_is_refused_with_the_dns_message(api: FakeAPIServer) -> None:
    reply = api.http("POST", "/api/v1/namespaces/default/configmaps", {"metadata": {"name": "Bad_Name"}})
    assert reply.status == 422
    assert reply.json()["message"].startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain"
    )


def test_already_exists_exact_body(api: FakeAPIServer) -> None:
    api.create(sync_target("dup"))
    reply = api.http("POST", ST_PATH, sync_target("dup"))
    assert reply.status == 409
    assert reply.json() == failure(
        409,
        "AlreadyExists",
        'synctargets.workload.kcp.io "dup" already exists',
        {"name": "dup", "group": "workload.kcp.io", "kind": "synctargets"},
    )


def test_not_found_exact_body(api: FakeAPIServer) -> None:
    reply = api.http("GET", f"{ST_PATH}/missing")
    assert reply.status == 404
    assert reply.json() == failure(
        404,
        "NotFound",
        'synctargets.workload.kcp.io "missing" not found',
        {"name": "missing", "group": "workload.kcp.io", "kind": "synctargets"},
    )


def test_core_not_found_has_no_group(api: FakeAPIServer) -> None:
    body = api.http("GET", "/api/v1/namespaces/default/secrets/nope").json()
    assert body["message"] == 'secrets "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "secrets"}


def test_unknown_path_is_plain_not_found(api: FakeAPIServer) -> None:
    reply = api.http("GET", "/apis/nothing.example.com/v1/things")
    assert reply.status == 404
    assert reply.json() == failure(404, "NotFound", "the server could not find the requested resource", {})


def test_namespace_must_exist(api: FakeAPIServer) -> None:
    reply = api.http("POST", "/api/v1/namespaces/ghost/configmaps", {"metadata": {"name": "x"}})
    assert reply.status == 404
    assert reply.json()["message"] == 'namespaces "ghost" not found'


def test_stale_update_conflicts_with_exact_message(kube: client.ApiClient, api: FakeAPIServer) -> None:
    objects = client.CustomObjectsApi(kube)
    created = objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("conflict"))
    created["spec"]["syncMode"] = "Pull"
    objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "conflict", created)
    with pytest.raises(ApiException) as exc:
        objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "conflict", created)
    assert exc.value.status == 409
    assert _error(exc) == failure(
        409,
        "Conflict",
        'Operation cannot be fulfilled on synctargets.workload.kcp.io "conflict": '
        "the object has been "
        "modified; please apply your changes to the latest version and try again",
        {"name": "conflict", "group": "workload.kcp.io", "kind": "synctargets"},
    )


def test_custom_resource_update_needs_resource_version(api: FakeAPIServer) -> None:
    api.create(sync_target("needs-rv"))
    reply = api.http("PUT", f"{ST_PATH}/needs-rv", sync_target("needs-rv", "Pull"))
    assert reply.status == 422
    # The registry names the resource, not the kind (unlike schema errors, which name the kind).
    assert reply.json()["message"] == (
        'synctargets.workload.kcp.io "needs-rv" is invalid: metadata.resourceVersion: Invalid value: 0: '
        "must be specified for an update"
    )
    assert reply.json()["details"]["kind"] == "synctargets"
    assert reply.json()["details"]["group"] == "workload.kcp.io"


def test_builtin_update_without_resource_version_is_unconditional(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespaced_config_map("default", {"metadata": {"name": "uncond"}, "data": {"a": "1"}})
    updated = core.replace_namespaced_config_map(
        "uncond", "default", {"metadata": {"name": "uncond"}, "data": {"a": "2"}}
    )
    assert updated.data == {"a": "2"}


def test_update_name_mismatch_is_bad_request(api: FakeAPIServer) -> None:
    api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "right", "namespace": "default"}}
    )
    reply = api.http("PUT", "/api/v1/namespaces/default/configmaps/right", {"metadata": {"name": "wrong"}})
    assert reply.status == 400
    assert (
        reply.json()["message"] == "the name of the object (wrong) does not match the name on the URL (right)"
    )
    assert reply.json()["reason"] == "BadRequest"


def test_create_with_resource_version_is_refused(api: FakeAPIServer) -> None:
    reply = api.http(
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "with-rv", "resourceVersion": "3"}},
    )
    assert reply.status == 500
    assert reply.json()["message"] == "resourceVersion should not be set on objects to be created"


def test_bad_json_is_bad_request(api: FakeAPIServer) -> None:
    reply = api.http("POST", "/api/v1/namespaces/default/configmaps", b"{not json")
    assert reply.status == 400
    assert reply.json()["reason"] == "BadRequest"


def test_generation_bumps_on_spec_changes_only(kube: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(kube)
    obj = objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("gen"))
    assert obj["metadata"]["generation"] == 1
    obj = objects.patch_cluster_custom_object(
        GROUP, VERSION, PLURAL, "gen", {"metadata": {"labels": {"a": "b"}}}
    )
    assert obj["metadata"]["generation"] == 1
    obj = objects.patch_cluster_custom_object_status(
        GROUP, VERSION, PLURAL, "gen", {"status": {"phase": "Ready"}}
    )
    assert obj["metadata"]["generation"] == 1
    obj = objects.patch_cluster_custom_object(GROUP, VERSION, PLURAL, "gen", {"spec": {"syncMode": "Pull"}})
    assert obj["metadata"]["generation"] == 2


def test_unchanged_update_keeps_resource_version(kube: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(kube)
    obj = objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("noop"))
    again = objects.replace_cluster_custom_object(GROUP, VERSION, PLURAL, "noop", obj)
    assert again["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_resource_version_is_one_global_counter(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "rv-a"}})
    b = core.create_namespaced_secret("default", {"metadata": {"name": "rv-b"}})
    c = core.patch_namespaced_config_map("rv-a", "default", {"data": {"k": "v"}})
    assert (
        int(a.metadata.resource_version) < int(b.metadata.resource_version) < int(c.metadata.resource_version)
    )


def test_dry_run_writes_nothing(kube: client.ApiClient, api: FakeAPIServer) -> None:
    core = client.CoreV1Api(kube)
    before = api.store.resource_version
    would = core.create_namespaced_config_map("default", {"metadata": {"name": "dry"}}, dry_run="All")
    assert would.metadata.name == "dry"
    assert would.metadata.uid
    assert api.get("v1", "ConfigMap", "dry", "default") is None
    assert api.store.resource_version == before


def test_dry_run_delete_keeps_the_object(api: FakeAPIServer) -> None:
    api.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry-del", "namespace": "default"}}
    )
    reply = api.http("DELETE", "/api/v1/namespaces/default/configmaps/dry-del?dryRun=All")
    assert reply.status == 200
    assert api.get("v1", "configmaps", "dry-del", "default") is not None


def test_secret_string_data_is_encoded(kube: client.ApiClient) -> None:
    secret = client.CoreV1Api(kube).create_namespaced_secret(
        "default", {"metadata": {"name": "sd"}, "stringData": {"user": "admin"}}
    )
    assert secret.data == {"user": "YWRtaW4="}
    assert secret.type == "Opaque"
    assert secret.string_data is None


def test_delete_returns_success_status(api: FakeAPIServer) -> None:
    created = api.create(sync_target("to-delete"))
    reply = api.http("DELETE", f"{ST_PATH}/to-delete")
    assert reply.status == 200
    assert reply.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "to-delete",
            "group": "workload.kcp.io",
            "kind": "synctargets",
            "uid": created["metadata"]["uid"],
        },
    }
    assert api.get(f"{GROUP}/{VERSION}", "SyncTarget", "to-delete") is None


def test_delete_precondition_failure(api: FakeAPIServer) -> None:
    api.create(sync_target("precond"))
    reply = api.http("DELETE", f"{ST_PATH}/precond", {"preconditions": {"uid": "other"}})
    assert reply.status == 409
    uid = api.get(f"{GROUP}/{VERSION}", "SyncTarget", "precond")["metadata"]["uid"]
    assert reply.json()["message"] == (
        'Operation cannot be fulfilled on SyncTarget.workload.kcp.io "precond": the UID in the precondition '
        f"(other) does not match the UID in record ({uid}). "
        "The object might have been deleted and then recreated"
    )
    assert reply.json()["details"] == {"name": "precond", "group": "workload.kcp.io", "kind": "SyncTarget"}


def test_method_not_allowed(api: FakeAPIServer) -> None:
    reply = api.http("GET", "/apis/authentication.k8s.io/v1/tokenreviews")
    assert reply.status == 405
    assert (
        reply.json()["message"]
        == 'list is not supported on resources of kind "tokenreviews.authentication.k8s.io"'
    )
    assert reply.json()["reason"] == "MethodNotAllowed"


def test_list_with_label_and_field_selectors(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": "sel"}})
    for name, tier in (("one", "web"), ("two", "db"), ("three", "web")):
        core.create_namespaced_config_map("sel", {"metadata": {"name": name, "labels": {"tier": tier}}})
    core.create_namespaced_config_map("sel", {"metadata": {"name": "bare"}})

    def names(**kw: str) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map("sel", **kw).items]

    assert names(label_selector="tier=web") == ["one", "three"]
    assert names(label_selector="tier==web") == ["one", "three"]
    assert names(label_selector="tier!=web") == ["bare", "two"]
    assert names(label_selector="tier in (db,web)") == ["one", "three", "two"]
    assert names(label_selector="tier notin (web)") == ["bare", "two"]
    assert names(label_selector="tier") == ["one", "three", "two"]
    assert names(label_selector="!tier") == ["bare"]
    assert names(field_selector="metadata.name=two") == ["two"]
    assert names(field_selector="metadata.name!=two,metadata.namespace=sel") == ["bare", "one", "three"]


def test_bad_selectors_are_bad_requests(api: FakeAPIServer) -> None:
    # ConfigMaps have no field-label conversion of their own: the scheme default words the refusal.
    reply = api.http("GET", "/api/v1/configmaps?fieldSelector=spec.foo%3Dx")
    assert reply.status == 400
    assert (
        reply.json()["message"]
        == '"spec.foo" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )
    # Custom resources get the CRD converter's wording.
    reply = api.http("GET", f"{ST_PATH}?fieldSelector=spec.foo%3Dx")
    assert reply.status == 400
    assert reply.json()["message"] == "field label not supported: spec.foo"
    reply = api.http("GET", "/api/v1/configmaps?labelSelector=a%20in%20b")
    assert reply.status == 400
    assert reply.json()["reason"] == "BadRequest"


def test_pagination_with_limit_and_continue(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": "pages"}})
    for index in range(5):
        core.create_namespaced_config_map("pages", {"metadata": {"name": f"cm-{index}"}})
    first = core.list_namespaced_config_map("pages", limit=2)
    assert [i.metadata.name for i in first.items] == ["cm-0", "cm-1"]
    assert first.metadata.remaining_item_count == 3
    second = core.list_namespaced_config_map("pages", limit=2, _continue=first.metadata._continue)
    assert [i.metadata.name for i in second.items] == ["cm-2", "cm-3"]
    third = core.list_namespaced_config_map("pages", limit=2, _continue=second.metadata._continue)
    assert [i.metadata.name for i in third.items] == ["cm-4"]
    assert third.metadata._continue is None
    assert int(first.metadata.resource_version) > 0


def test_bad_continue_token(api: FakeAPIServer) -> None:
    reply = api.http("GET", "/api/v1/configmaps?limit=1&continue=%%%")
    assert reply.status == 400
    assert reply.json()["message"].startswith("continue key is not valid: ")


def test_list_items_of_builtins_have_no_kind_but_custom_ones_do(api: FakeAPIServer) -> None:
    api.create(sync_target("listed"))
    builtin = api.http("GET", "/api/v1/namespaces").json()
    assert builtin["kind"] == "NamespaceList"
    assert "kind" not in builtin["items"][0]
    custom = api.http("GET", ST_PATH).json()
    assert custom["kind"] == "SyncTargetList"
    assert custom["items"][0]["kind"] == "SyncTarget"


def test_delete_collection(kube: client.ApiClient, api: FakeAPIServer) -> None:
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": "dc"}})
    for name, keep in (("a", "no"), ("b", "no"), ("c", "yes")):
        core.create_namespaced_config_map("dc", {"metadata": {"name": name, "labels": {"keep": keep}}})
    reply = api.http("DELETE", "/api/v1/namespaces/dc/configmaps?labelSelector=keep%3Dno")
    assert reply.status == 200
    assert [i["metadata"]["name"] for i in reply.json()["items"]] == ["a", "b"]
    assert [o["metadata"]["name"] for o in api.objects("v1", "ConfigMap", "dc")] == ["c"]


# --- patches ---


def test_merge_patch_removes_with_null(kube: client.ApiClient, api: FakeAPIServer) -> None:
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "mp", "namespace": "default"},
            "data": {"a": "1", "b": "2"},
        }
    )
    reply = api.http(
        "PATCH",
        "/api/v1/namespaces/default/configmaps/mp",
        {"data": {"a": None, "c": "3"}},
        "application/merge-patch+json",
    )
    assert reply.status == 200
    assert reply.json()["data"] == {"b": "2", "c": "3"}


def test_json_patch_and_its_failure(api: FakeAPIServer) -> None:
    api.create(sync_target("jp"))
    ok = api.http(
        "PATCH",
        f"{ST_PATH}/jp",
        [{"op": "replace", "path": "/spec/syncMode", "value": "Pull"}],
        "application/json-patch+json",
    )
    assert ok.json()["spec"]["syncMode"] == "Pull"
    bad = api.http(
        "PATCH", f"{ST_PATH}/jp", [{"op": "remove", "path": "/spec/nothing"}], "application/json-patch+json"
    )
    assert bad.status == 422
    assert bad.json() == failure(
        422, "Invalid", "the server rejected our request due to an error in our request", {}
    )


def test_json_patch_test_op_with_resource_version(api: FakeAPIServer) -> None:
    obj = api.create(sync_target("jp-rv"))
    stale = [{"op": "replace", "path": "/metadata/resourceVersion", "value": "1"}]
    reply = api.http("PATCH", f"{ST_PATH}/jp-rv", stale, "application/json-patch+json")
    assert reply.status == 409
    assert reply.json()["reason"] == "Conflict"
    assert (
        api.get(f"{GROUP}/{VERSION}", PLURAL, "jp-rv")["metadata"]["resourceVersion"]
        == obj["metadata"]["resourceVersion"]
    )


def test_strategic_merge_patch_on_custom_resource_is_415(api: FakeAPIServer) -> None:
    api.create(sync_target("smp"))
    reply = api.http("PATCH", f"{ST_PATH}/smp", {"spec": {}}, "application/strategic-merge-patch+json")
    assert reply.status == 415
    assert reply.json() == failure(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )


def test_strategic_merge_patch_merges_containers_by_name(kube: client.ApiClient) -> None:
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "smp-deploy", "finalizers": ["a.example.com/x"]},
            "spec": {
                "selector": {"matchLabels": {"app": "x"}},
                "template": {
                    "metadata": {"labels": {"app": "x"}},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                            {"name": "side", "image": "side:1"},
                        ]
                    },
                },
            },
        },
    )
    patched = apps.patch_namespaced_deployment(
        "smp-deploy",
        "default",
        {
            "metadata": {"finalizers": ["b.example.com/y"]},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
                            {"name": "side", "$patch": "delete"},
                        ]
                    }
                }
            },
        },
    )
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("app", "app:2")]
    # Without $setElementOrder the patch's entries come first, then those only the server had.
    assert [(e.name, e.value) for e in containers[0].env] == [("B", "2"), ("A", "1")]
    assert patched.metadata.finalizers == ["b.example.com/y", "a.example.com/x"]
    assert patched.spec.replicas == 1  # defaulted like kube-apiserver


def test_unsupported_patch_content_type(api: FakeAPIServer) -> None:
    reply = api.http("PATCH", "/api/v1/namespaces/default/configmaps/whatever", {}, "text/plain")
    assert reply.status == 415


def test_server_side_apply_creates_then_merges(api: FakeAPIServer) -> None:
    path = "/api/v1/namespaces/default/configmaps/ssa?fieldManager=test"
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n"
    created = api.http("PATCH", path, body, "application/apply-patch+yaml")
    assert created.status == 201
    merged = api.http("PATCH", path, body.replace("a: '1'", "b: '2'"), "application/apply-patch+yaml")
    assert merged.json()["data"] == {"a": "1", "b": "2"}
    refused = api.http("PATCH", path.split("?", maxsplit=1)[0], body, "application/apply-patch+yaml")
    assert refused.status == 422
    assert refused.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )


def test_leases_follow_the_same_conflict_rules(kube: client.ApiClient) -> None:
    leases = client.CoordinationV1Api(kube)
    lease = leases.create_namespaced_lease(
        "kube-system",
        {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}},
    )
    lease.spec.holder_identity = "b"
    leases.replace_namespaced_lease("leader", "kube-system", lease)
    lease.spec.holder_identity = "c"
    with pytest.raises(ApiException) as exc:
        leases.replace_namespaced_lease("leader", "kube-system", lease)
    assert exc.value.status == 409
    assert _error(exc)["message"].startswith(
        'Operation cannot be fulfilled on leases.coordination.k8s.io "leader"'
    )


def test_dynamic_client_round_trip(kube: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(kube)
    resource = dyn.resources.get(api_version=f"{GROUP}/{VERSION}", kind="SyncTarget")
    resource.create(body=sync_target("dyn"))
    fetched = resource.get(name="dyn")
    assert fetched.spec.syncMode == "Push"
    assert fetched.spec.replicas == 1


def test_direct_helpers(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "helper"}, "data": {"x": "1"}})
    stored = api.get("v1", "configmaps", "helper", "default")
    assert stored is not None
    stored["data"]["x"] = "2"
    api.update(stored)
    assert api.get("v1", "ConfigMap", "helper", "default")["data"] == {"x": "2"}
    assert [o["kind"] for o in api.objects("v1", "ConfigMap", "default", label_selector="")][:1] == [
        "ConfigMap"
    ]
    api.delete("v1", "ConfigMap", "helper", "default")
    assert api.get("v1", "ConfigMap", "helper", "default") is None


def test_pages_are_a_snapshot_of_the_first_page(api: FakeAPIServer) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "snap"}})
    for name in ("a", "b", "c"):
        api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "snap"}})
    first = api.http("GET", "/api/v1/namespaces/snap/configmaps?limit=1").json()
    api.delete("v1", "ConfigMap", "b", "snap")
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bb", "namespace": "snap"}})
    current = api.get("v1", "ConfigMap", "c", "snap")
    current["data"] = {"changed": "yes"}
    api.update(current)
    token = first["metadata"]["continue"]
    rest = api.http("GET", f"/api/v1/namespaces/snap/configmaps?limit=5&continue={token}").json()
    assert [(i["metadata"]["name"], i.get("data")) for i in rest["items"]] == [("b", None), ("c", None)]
    assert rest["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_expired_continue_token_is_410() -> None:
    with FakeAPIServer(admission=False, watch_window=2) as server:
        for name in ("a", "b"):
            server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
        first = server.http("GET", "/api/v1/namespaces/default/configmaps?limit=1").json()
        for name in ("c", "d", "e"):
            server.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
        token = first["metadata"]["continue"]
        reply = server.http("GET", f"/api/v1/namespaces/default/configmaps?limit=1&continue={token}")
        assert reply.status == 410
        assert reply.json()["reason"] == "Expired"
        assert reply.json()["message"] == (
            "The provided continue parameter is too old to display a consistent list result. "
            "You can start a new list without the continue parameter."
        )


def test_unknown_dry_run_value_is_invalid(api: FakeAPIServer) -> None:
    reply = api.http("POST", "/api/v1/namespaces/default/configmaps?dryRun=Some", {"metadata": {"name": "x"}})
    assert reply.status == 422
    assert reply.json()["message"] == (
        'CreateOptions.meta.k8s.io "" is invalid: '
        'dryRun: Unsupported value: ["Some"]: supported values: "All"'
    )


def test_unknown_fields_warn_by_default_and_fail_when_strict(api: FakeAPIServer) -> None:
    body = sync_target("fields", junk=1)
    warned = api.http("POST", ST_PATH, body)
    assert warned.status == 201
    assert warned.header_values("warning") == ['299 - "unknown field \\"spec.junk\\""']
    assert "junk" not in warned.json()["spec"]
    strict = api.http("POST", f"{ST_PATH}?fieldValidation=Strict", sync_target("fields-2", junk=1))
    assert strict.status == 400
    assert strict.json()["message"] == 'strict decoding error: unknown field "spec.junk"'
    quiet = api.http("POST", f"{ST_PATH}?fieldValidation=Ignore", sync_target("fields-3", junk=1))
    assert quiet.header_values("warning") == []


def test_status_writes_get_schema_defaults(api: FakeAPIServer) -> None:
    api.create(sync_target("status-defaults"))
    reply = api.http(
        "PATCH",
        f"{ST_PATH}/status-defaults/status",
        {"status": {"x": 1}, "spec": {"replicas": 5}},
        "application/merge-patch+json",
    )
    assert reply.json()["spec"]["replicas"] == 1
    assert reply.json()["status"] == {"x": 1}


def test_a_list_shows_each_object_as_stored_now_though_item_encodings_are_reused(api: FakeAPIServer) -> None:
    """List items are encoded once per stored object; an update or a delete is never answered from
    a stale encoding."""
    path = "/api/v1/namespaces/default/configmaps"

    def listed() -> dict[str, dict]:
        reply = api.http("GET", path + "?labelSelector=cache%3Dtest")
        assert reply.status == 200
        assert reply.header("Content-Type") == "application/json"
        return {item["metadata"]["name"]: item for item in reply.json()["items"]}

    for name in ("a", "b"):
        meta = {"name": name, "namespace": "default", "labels": {"cache": "test"}}
        api.create({"apiVersion": "v1", "kind": "ConfigMap", "data": {"v": "1"}, "metadata": meta})
    first = listed()
    assert {name: item["data"] for name, item in first.items()} == {"a": {"v": "1"}, "b": {"v": "1"}}
    assert "kind" not in first["a"] and "apiVersion" not in first["a"]  # built-in items, as upstream
    changed = api.http(
        "PATCH", f"{path}/a", {"data": {"v": "2"}}, content_type="application/merge-patch+json"
    )
    assert changed.status == 200
    api.delete("v1", "ConfigMap", "b", "default")
    again = listed()
    assert list(again) == ["a"]
    assert again["a"]["data"] == {"v": "2"}
    assert again["a"]["metadata"]["resourceVersion"] == changed.json()["metadata"]["resourceVersion"]
    # As a single read shows it, less the kind and apiVersion a list item of a built-in kind omits.
    single = api.http("GET", f"{path}/a").json()
    assert again["a"] == {k: v for k, v in single.items() if k not in ("kind", "apiVersion")}
