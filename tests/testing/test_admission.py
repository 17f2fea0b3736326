"""WebhookDispatcher against a real TLS webhook on loopback: every path, with the apiserver's messages."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kcp_tmc.certs.generate import new_ca
from kcp_tmc.testing.admission import WebhookDispatcher, status_body
from kcp_tmc.testing.stub_webhook import RawReply, StubWebhook, allow, deny
from kcp_tmc.testing.types import AdmissionAttributes, Object

RULE_CONFIGMAPS = {"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}


class Store:
    """A StoreReader over plain dicts: ``objects[resource] = [obj, ...]``."""

    def __init__(self) -> None:
        self.objects: dict[str, list[Object]] = {}

    def add(self, resource: str, obj: Object) -> None:
        self.objects.setdefault(resource, []).append(obj)

    def get(self, group: str, version: str, resource: str, name: str, namespace: str = "") -> Object | None:
        for obj in self.objects.get(resource, []):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def list(self, group: str, version: str, resource: str, namespace: str | None = None) -> list[Object]:
        return list(self.objects.get(resource, []))


@pytest.fixture(scope="module")
def stub() -> Iterator[StubWebhook]:
    with StubWebhook(service="hooks", namespace="tmc") as hook:
        yield hook


@pytest.fixture
def hook(stub: StubWebhook) -> Iterator[StubWebhook]:
    stub.reset()
    yield stub
    stub.reset()


@pytest.fixture
def store() -> Store:
    s = Store()
    s.add("namespaces", {"metadata": {"name": "default", "labels": {"env": "dev"}}})
    s.add("namespaces", {"metadata": {"name": "prod", "labels": {"env": "prod"}}})
    return s


def webhook(hook: StubWebhook, name: str, path: str, **overrides: Any) -> Object:
    spec: Object = {
        "name": name,
        "clientConfig": hook.client_config(path),
        "rules": [RULE_CONFIGMAPS],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    }
    spec.update(overrides)
    return spec


def register(store: Store, kind: str, name: str, *webhooks: Object) -> None:
    resource = f"{kind}webhookconfigurations"
    store.add(resource, {"metadata": {"name": name}, "webhooks": list(webhooks)})


def configmap(name: str = "cm", labels: dict[str, str] | None = None, **data: str) -> Object:
    meta: Object = {"name": name, "namespace": "default"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}


def attrs(
    operation: str = "CREATE",
    obj: Object | None = None,
    old: Object | None = None,
    *,
    namespace: str = "default",
    dry_run: bool = False,
    subresource: str = "",
    **overrides: Any,
) -> AdmissionAttributes:
    fields: dict[str, Any] = {
        "operation": operation,
        "group": "",
        "version": "v1",
        "kind": "ConfigMap",
        "resource": "configmaps",
        "subresource": subresource,
        "namespace": namespace,
        "name": "cm",
        "object": configmap() if obj is None and operation != "DELETE" else obj,
        "old_object": old,
        "user": {"username": "alice", "groups": ["dev", "system:authenticated"]},
        "dry_run": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    fields.update(overrides)
    return AdmissionAttributes(**fields)


def internal(message: str) -> Object:
    return status_body(
        500, "InternalError", f"Internal error occurred: {message}", {"causes": [{"message": message}]}
    )


# --- the request the webhook sees ---


def test_review_carries_the_request_as_the_apiserver_builds_it(hook: StubWebhook, store: Store) -> None:
    register(store, "validating", "v", webhook(hook, "v.example.com", "/v"))
    result = WebhookDispatcher(store).admit(attrs(obj=configmap(a="1")))
    assert result.status is None and result.object is None and list(result.warnings) == []
    [call] = hook.calls
    assert call.path == "/v"
    assert call.query == {"timeout": "10s"}
    review = call.review
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    request = review["request"]
    uuid.UUID(request.pop("uid"))
    assert request == {
        "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": "cm",
        "namespace": "default",
        "operation": "CREATE",
        "userInfo": {"username": "alice", "groups": ["dev", "system:authenticated"]},
        "object": configmap(a="1"),
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }


def test_each_call_gets_a_fresh_uid_and_the_timeout_parameter(hook: StubWebhook, store: Store) -> None:
    register(store, "validating", "v", webhook(hook, "a", "/a", timeoutSeconds=3), webhook(hook, "b", "/b"))
    WebhookDispatcher(store).admit(attrs())
    a, b = hook.calls
    assert a.query == {"timeout": "3s"} and b.query == {"timeout": "10s"}
    assert a.review["request"]["uid"] != b.review["request"]["uid"]


def test_subresource_and_update_fields(hook: StubWebhook, store: Store) -> None:
    rule = {**RULE_CONFIGMAPS, "resources": ["configmaps/status"]}
    register(store, "validating", "v", webhook(hook, "v", "/v", rules=[rule]))
    old = configmap(a="0")
    WebhookDispatcher(store).admit(attrs("UPDATE", configmap(a="1"), old, subresource="status"))
    request = hook.calls[0].review["request"]
    assert request["subResource"] == "status" and request["requestSubResource"] == "status"
    assert request["operation"] == "UPDATE" and request["oldObject"] == old


def test_v1beta1_only_webhook_gets_a_v1beta1_review_without_uid_checks(
    hook: StubWebhook, store: Store
) -> None:
    hook.on("/b", lambda review: {"apiVersion": "whatever", "response": {"uid": "not-it", "allowed": True}})
    register(store, "validating", "v", webhook(hook, "v", "/b", admissionReviewVersions=["v2", "v1beta1"]))
    assert WebhookDispatcher(store).admit(attrs()).status is None
    assert hook.calls[0].review["apiVersion"] == "admission.k8s.io/v1beta1"


# --- decisions ---


@pytest.mark.parametrize(
    ("answer", "code", "reason", "message"),
    [
        ({"message": "nope", "code": 403, "reason": "Forbidden"}, 403, "Forbidden", "nope"),
        ({"message": "nope", "code": 200}, 400, "", "nope"),
        ({"message": "nope"}, 400, "", "nope"),
        ({"reason": "QuotaExceeded", "code": 429}, 429, "QuotaExceeded", "QuotaExceeded"),
    ],
)
def test_denial_keeps_the_webhook_status_with_prefixed_message(
    hook: StubWebhook, store: Store, answer: Object, code: int, reason: str, message: str
) -> None:
    hook.on(
        "/d",
        lambda review: {
            **allow(review),
            "response": {"uid": review["request"]["uid"], "allowed": False, "status": answer},
        },
    )
    register(store, "validating", "v", webhook(hook, "deny.example.com", "/d"))
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status == status_body(
        code, reason, f'admission webhook "deny.example.com" denied the request: {message}'
    )


def test_denial_without_status_is_without_explanation(hook: StubWebhook, store: Store) -> None:
    hook.on(
        "/d",
        lambda review: {**allow(review), "response": {"uid": review["request"]["uid"], "allowed": False}},
    )
    register(store, "validating", "v", webhook(hook, "quiet", "/d"))
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status == status_body(
        400, "", 'admission webhook "quiet" denied the request without explanation'
    )


def test_first_rejection_wins_and_warnings_are_collected(hook: StubWebhook, store: Store) -> None:
    hook.on("/w", lambda review: allow(review, warnings=["careful"]))
    hook.on("/d1", lambda review: deny(review, "first", warnings=["also this"]))
    hook.on("/d2", lambda review: deny(review, "second"))
    register(store, "validating", "b", webhook(hook, "d2", "/d2"))
    register(store, "validating", "a", webhook(hook, "w", "/w"), webhook(hook, "d1", "/d1"))
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status is not None
    assert result.status["message"] == 'admission webhook "d1" denied the request: first'
    assert list(result.warnings) == ["careful", "also this"]
    assert [c.path for c in hook.calls] == ["/w", "/d1"]


# --- mutation ---


def test_mutating_patches_apply_in_configuration_order_then_validation_sees_the_result(
    hook: StubWebhook, store: Store
) -> None:
    hook.on("/m1", lambda review: allow(review, patch=[{"op": "add", "path": "/data/first", "value": "1"}]))
    hook.on(
        "/m2",
        lambda review: allow(
            review,
            patch=[
                {"op": "add", "path": "/data/second", "value": str(len(review["request"]["object"]["data"]))}
            ],
        ),
    )
    register(store, "mutating", "b-second", webhook(hook, "m2", "/m2"))
    register(store, "mutating", "a-first", webhook(hook, "m1", "/m1"))
    register(store, "validating", "v", webhook(hook, "v", "/v"))
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status is None
    assert result.object == configmap(first="1", second="1")
    assert [c.path for c in hook.calls] == ["/m1", "/m2", "/v"]
    assert hook.calls[2].review["request"]["object"] == configmap(first="1", second="1")


def test_patch_that_changes_nothing_returns_no_object(hook: StubWebhook, store: Store) -> None:
    hook.on(
        "/m", lambda review: allow(review, patch=[{"op": "replace", "path": "/metadata/name", "value": "cm"}])
    )
    register(store, "mutating", "m", webhook(hook, "m", "/m"))
    assert WebhookDispatcher(store).admit(attrs()) == (None, None, ())


@pytest.mark.parametrize(("policy", "calls"), [("IfNeeded", ["/a", "/b", "/a"]), ("Never", ["/a", "/b"])])
def test_reinvocation_when_a_later_webhook_changes_the_object(
    hook: StubWebhook, store: Store, policy: str, calls: list[str]
) -> None:
    hook.on("/b", lambda review: allow(review, patch=[{"op": "add", "path": "/data/b", "value": "x"}]))
    register(
        store,
        "mutating",
        "m",
        webhook(hook, "a", "/a", reinvocationPolicy=policy),
        webhook(hook, "b", "/b", reinvocationPolicy="IfNeeded"),
    )
    result = WebhookDispatcher(store).admit(attrs())
    assert [c.path for c in hook.calls] == calls
    assert result.object == configmap(b="x")
    if policy == "IfNeeded":
        assert hook.calls[2].review["request"]["object"] == configmap(b="x")


def test_patch_that_cannot_apply_is_a_500_even_when_failing_open(hook: StubWebhook, store: Store) -> None:
    hook.on(
        "/m", lambda review: allow(review, patch=[{"op": "replace", "path": "/spec/missing", "value": 1}])
    )
    register(store, "mutating", "m", webhook(hook, "m", "/m", failurePolicy="Ignore"))
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status is not None
    assert result.status["code"] == 500 and result.status["reason"] == "InternalError"
    assert result.status["message"].startswith("Internal error occurred: ")


def test_patch_on_delete_is_refused(hook: StubWebhook, store: Store) -> None:
    hook.on("/m", lambda review: allow(review, patch=[{"op": "add", "path": "/x", "value": 1}]))
    register(store, "mutating", "m", webhook(hook, "m", "/m"))
    result = WebhookDispatcher(store).admit(attrs("DELETE", None, configmap()))
    assert result.status == internal(
        'admission webhook "m" attempted to modify the object, which is not supported for this operation'
    )
    assert hook.calls[0].review["request"]["object"] is None


def test_empty_patch_is_no_change(hook: StubWebhook, store: Store) -> None:
    hook.on("/m", lambda review: allow(review, patch=[]))
    register(store, "mutating", "m", webhook(hook, "m", "/m"))
    assert WebhookDispatcher(store).admit(attrs("DELETE", None, configmap())).status is None


# --- call failures and failurePolicy ---


def raw(status: int, body: Any, content_type: str = "application/json") -> Any:
    return lambda review: RawReply(status, body, content_type)


def with_uid(**response: Any) -> Any:
    return lambda review: {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": review["request"]["uid"], **response},
    }


@pytest.mark.parametrize(
    ("handler", "mutating", "reason"),
    [
        (
            raw(200, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
            False,
            "received invalid webhook response: webhook response was absent",
        ),
        (
            lambda review: {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": {"uid": "x", "allowed": True},
            },
            False,
            'received invalid webhook response: expected response.uid="{uid}", got "x"',
        ),
        (
            lambda review: {**allow(review), "apiVersion": "admission.k8s.io/v1beta1"},
            False,
            "received invalid webhook response: expected webhook response of admission.k8s.io/v1, "
            "Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview",
        ),
        (
            lambda review: {"response": {"uid": review["request"]["uid"], "allowed": True}},
            False,
            "received invalid webhook response: expected webhook response of admission.k8s.io/v1, "
            "Kind=AdmissionReview, got /, Kind=",
        ),
        (
            with_uid(allowed=True, patch="W10="),
            True,
            "received invalid webhook response: webhook returned response.patch but not response.patchType",
        ),
        (
            with_uid(allowed=True, patchType="JSONPatch"),
            True,
            "received invalid webhook response: webhook returned response.patchType but not response.patch",
        ),
        (
            with_uid(allowed=True, patch="W10=", patchType=""),
            True,
            'received invalid webhook response: webhook returned invalid response.patchType of ""',
        ),
        (
            with_uid(allowed=True, patch="W10="),
            False,
            "received invalid webhook response: validating webhook may not return response.patch",
        ),
        (
            with_uid(allowed=True, patchType="JSONPatch"),
            False,
            "received invalid webhook response: validating webhook may not return response.patchType",
        ),
        (
            with_uid(
                allowed=True,
                patch=base64.b64encode(b'[{"op":"add","path":"/a","value":1}]').decode(),
                patchType="JSONMergePatch",
            ),
            True,
            'unsupported patch type "JSONMergePatch"',
        ),
        (
            with_uid(allowed=True, patch=base64.b64encode(b"{}").decode(), patchType="JSONPatch"),
            True,
            "received undecodable patch in webhook response: "
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
        ),
        (
            raw(500, "boom", "text/plain"),
            False,
            'failed to call webhook: an error on the server ("boom") '
            "has prevented the request from succeeding",
        ),
        (raw(404, "", ""), False, "failed to call webhook: the server could not find the requested resource"),
        (
            raw(418, "teapot", "application/json"),
            False,
            "failed to call webhook: "
            "the server responded with the status code 418 but did not return more information",
        ),
        (
            raw(
                403,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "message": "go away",
                    "code": 403,
                },
            ),
            False,
            "failed to call webhook: go away",
        ),
    ],
)
def test_invalid_responses_are_call_errors_under_failure_policy(
    hook: StubWebhook, store: Store, handler: Any, mutating: bool, reason: str
) -> None:
    hook.on("/x", handler)
    kind = "mutating" if mutating else "validating"
    register(store, kind, "c", webhook(hook, "bad.example.com", "/x"))
    result = WebhookDispatcher(store).admit(attrs())
    uid = hook.calls[0].review["request"]["uid"]
    assert result.status == internal(f'failed calling webhook "bad.example.com": {reason.format(uid=uid)}')
    # The same webhook failing open lets the write through.
    store.objects[f"{kind}webhookconfigurations"][0]["webhooks"][0]["failurePolicy"] = "Ignore"
    assert WebhookDispatcher(store).admit(attrs()).status is None


def test_body_that_is_not_json(hook: StubWebhook, store: Store) -> None:
    hook.on("/x", raw(200, "<html>", "text/html"))
    register(store, "validating", "c", webhook(hook, "h", "/x"))
    status = WebhookDispatcher(store).admit(attrs()).status
    assert status is not None
    assert status["message"].startswith(
        'Internal error occurred: failed calling webhook "h": failed to call webhook: '
        "couldn't get version/kind; json parse error: "
    )


def test_connection_refused(store: Store) -> None:
    with StubWebhook() as gone:
        config = gone.client_config("/v")
        port = gone.port
    register(store, "validating", "v", {**webhook(gone, "v", "/v"), "clientConfig": config})
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status == internal(
        f'failed calling webhook "v": failed to call webhook: Post "https://127.0.0.1:{port}/v?timeout=10s": '
        f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )


def test_timeout(hook: StubWebhook, store: Store) -> None:
    hook.on("/slow", lambda review: RawReply(200, allow(review), delay=3))
    register(store, "validating", "v", webhook(hook, "slow", "/slow", timeoutSeconds=1))
    started = time.monotonic()
    result = WebhookDispatcher(store).admit(attrs())
    assert time.monotonic() - started < 2.5
    assert result.status == internal(
        f'failed calling webhook "slow": failed to call webhook: Post "{hook.url("/slow")}?timeout=1s": '
        "context deadline exceeded"
    )


def test_untrusted_certificate(hook: StubWebhook, store: Store) -> None:
    other_ca = base64.b64encode(new_ca("other").cert_pem).decode()
    config = {"url": hook.url("/v"), "caBundle": other_ca}
    register(store, "validating", "v", webhook(hook, "v", "/v", clientConfig=config))
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status == internal(
        f'failed calling webhook "v": failed to call webhook: Post "{hook.url("/v")}?timeout=10s": '
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    )


def test_certificate_for_other_names(hook: StubWebhook, store: Store) -> None:
    # The stub's certificate covers 127.0.0.1 and localhost only among loopback names.
    config = {"url": hook.url("/v", host="127.0.0.2"), "caBundle": hook.ca_bundle}
    register(store, "validating", "v", webhook(hook, "v", "/v", clientConfig=config))
    status = WebhookDispatcher(store).admit(attrs()).status
    assert status is not None
    assert status["message"] in (
        # 127.0.0.2 is loopback on Linux; elsewhere the dial fails first.
        f'Internal error occurred: failed calling webhook "v": failed to call webhook: '
        f'Post "{config["url"]}?timeout=10s": tls: failed to verify certificate: '
        "x509: certificate is valid for 127.0.0.1, not 127.0.0.2",
        f'Internal error occurred: failed calling webhook "v": failed to call webhook: '
        f'Post "{config["url"]}?timeout=10s": dial tcp 127.0.0.2:{hook.port}: connect: connection refused',
    )


def test_bad_ca_bundle_and_url(hook: StubWebhook, store: Store) -> None:
    not_pem = base64.b64encode(b"hello").decode()
    register(
        store,
        "validating",
        "a",
        webhook(hook, "a", "/a", clientConfig={"url": hook.url("/a"), "caBundle": not_pem}),
    )
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        'failed calling webhook "a": could not get REST client: unable to load root certificates: '
        "unable to parse bytes as PEM block"
    )
    store.objects.clear()
    register(store, "validating", "b", webhook(hook, "b", "/b", clientConfig={}))
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        'failed calling webhook "b": webhook configuration must have either service or URL'
    )
    store.objects.clear()
    register(store, "validating", "c", webhook(hook, "c", "/c", clientConfig={"url": "http://127.0.0.1:1/c"}))
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        'failed calling webhook "c": could not get REST client: '
        "webhook URL 'http://127.0.0.1:1/c' must use the https scheme"
    )


def test_unknown_review_versions(hook: StubWebhook, store: Store) -> None:
    register(store, "validating", "v", webhook(hook, "v", "/v", admissionReviewVersions=["v2"]))
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        'failed calling webhook "v": could not create admission objects: '
        "webhook does not accept known AdmissionReview versions (v1, v1beta1)"
    )
    assert hook.calls == []


def test_service_reference(hook: StubWebhook, store: Store) -> None:
    service = {"namespace": "tmc", "name": "hooks", "path": "/svc", "port": 8443}
    register(
        store,
        "validating",
        "v",
        webhook(hook, "v", "/svc", clientConfig={"service": service, "caBundle": hook.ca_bundle}),
    )
    result = WebhookDispatcher(store).admit(attrs())
    assert result.status == internal(
        'failed calling webhook "v": failed to call webhook: '
        'Post "https://hooks.tmc.svc:8443/svc?timeout=10s": service "hooks" not found'
    )
    routed = WebhookDispatcher(store, services={("tmc", "hooks"): hook.address})
    assert routed.admit(attrs()).status is None
    assert hook.calls[0].headers["Host"] == "hooks.tmc.svc:8443"


# --- dry run ---


@pytest.mark.parametrize("side_effects", ["Some", "Unknown"])
def test_dry_run_refused_by_webhooks_with_side_effects(
    hook: StubWebhook, store: Store, side_effects: str
) -> None:
    register(
        store, "validating", "v", webhook(hook, "fx", "/v", sideEffects=side_effects, failurePolicy="Ignore")
    )
    result = WebhookDispatcher(store).admit(attrs(dry_run=True))
    assert result.status == status_body(400, "BadRequest", 'admission webhook "fx" does not support dry run')
    assert hook.calls == []
    assert WebhookDispatcher(store).admit(attrs()).status is None


@pytest.mark.parametrize("side_effects", ["None", "NoneOnDryRun"])
def test_dry_run_reaches_webhooks_without_side_effects(
    hook: StubWebhook, store: Store, side_effects: str
) -> None:
    register(store, "validating", "v", webhook(hook, "v", "/v", sideEffects=side_effects))
    assert WebhookDispatcher(store).admit(attrs(dry_run=True)).status is None
    assert hook.calls[0].review["request"]["dryRun"] is True


def test_dry_run_with_side_effects_unset(hook: StubWebhook, store: Store) -> None:
    spec = webhook(hook, "v", "/v")
    del spec["sideEffects"]
    register(store, "validating", "v", spec)
    assert WebhookDispatcher(store).admit(attrs(dry_run=True)).status == internal(
        'failed calling webhook "v": Webhook SideEffects is nil'
    )


# --- matching ---


def called(hook: StubWebhook, store: Store, attributes: AdmissionAttributes, **overrides: Any) -> bool:
    store.objects.pop("validatingwebhookconfigurations", None)
    register(store, "validating", "v", webhook(hook, "v", "/v", **overrides))
    hook.reset()
    assert WebhookDispatcher(store).admit(attributes).status is None
    return len(hook.calls) == 1


def test_namespace_selector(hook: StubWebhook, store: Store) -> None:
    prod = {"matchLabels": {"env": "prod"}}
    assert not called(hook, store, attrs(), namespaceSelector=prod)
    assert called(hook, store, attrs(namespace="prod"), namespaceSelector=prod)
    assert called(hook, store, attrs(), namespaceSelector={})
    not_prod = {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}
    assert called(hook, store, attrs(), namespaceSelector=not_prod)


def test_namespace_selector_never_skips_cluster_scoped_objects(hook: StubWebhook, store: Store) -> None:
    node = attrs(kind="Node", resource="nodes", namespace="", namespaced=False)
    rule = {**RULE_CONFIGMAPS, "resources": ["nodes"]}
    assert called(hook, store, node, rules=[rule], namespaceSelector={"matchLabels": {"env": "nowhere"}})


def test_namespace_objects_match_their_own_labels(hook: StubWebhook, store: Store) -> None:
    rule = {**RULE_CONFIGMAPS, "resources": ["namespaces"]}
    prod = {"matchLabels": {"env": "prod"}}
    new_ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "fresh", "labels": {"env": "prod"}},
    }
    create = attrs(
        obj=new_ns, kind="Namespace", resource="namespaces", namespace="", name="fresh", namespaced=False
    )
    assert called(hook, store, create, rules=[rule], namespaceSelector=prod)
    assert "namespace" not in hook.calls[0].review["request"]
    delete = attrs(
        "DELETE",
        None,
        store.get("", "v1", "namespaces", "prod"),
        kind="Namespace",
        resource="namespaces",
        namespace="",
        name="prod",
        namespaced=False,
    )
    assert called(hook, store, delete, rules=[rule], namespaceSelector=prod)
    assert hook.calls[0].review["request"]["namespace"] == "prod"
    delete_dev = attrs(
        "DELETE",
        None,
        None,
        kind="Namespace",
        resource="namespaces",
        namespace="",
        name="default",
        namespaced=False,
    )
    assert not called(hook, store, delete_dev, rules=[rule], namespaceSelector=prod)


def test_namespace_selector_for_a_missing_namespace_is_404(hook: StubWebhook, store: Store) -> None:
    register(
        store, "validating", "v", webhook(hook, "v", "/v", namespaceSelector={"matchLabels": {"env": "prod"}})
    )
    result = WebhookDispatcher(store).admit(attrs(namespace="ghost"))
    assert result.status == status_body(
        404, "NotFound", 'namespaces "ghost" not found', {"name": "ghost", "kind": "namespaces"}
    )


def test_broken_selector_is_an_error_only_when_rules_match(hook: StubWebhook, store: Store) -> None:
    broken = {"matchExpressions": [{"key": "a", "operator": "Near"}]}
    register(store, "validating", "v", webhook(hook, "v", "/v", objectSelector=broken))
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        '"Near" is not a valid label selector operator'
    )
    secret = attrs(kind="Secret", resource="secrets")
    assert WebhookDispatcher(store).admit(secret).status is None
    store.objects.clear()
    register(store, "validating", "v", webhook(hook, "v", "/v", namespaceSelector=broken))
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        '"Near" is not a valid label selector operator'
    )


def test_object_selector_matches_new_or_old_object(hook: StubWebhook, store: Store) -> None:
    sel = {"matchLabels": {"watched": "yes"}}
    assert not called(hook, store, attrs(obj=configmap(labels={"watched": "no"})), objectSelector=sel)
    assert called(hook, store, attrs(obj=configmap(labels={"watched": "yes"})), objectSelector=sel)
    update = attrs("UPDATE", configmap(labels={}), configmap(labels={"watched": "yes"}))
    assert called(hook, store, update, objectSelector=sel)
    assert called(
        hook, store, attrs("DELETE", None, configmap(labels={"watched": "yes"})), objectSelector=sel
    )
    assert not called(hook, store, attrs("DELETE", None, configmap()), objectSelector=sel)


@pytest.mark.parametrize(
    ("rule", "attributes", "expected"),
    [
        ({"operations": ["CREATE"]}, {}, True),
        ({"operations": ["UPDATE"]}, {}, False),
        ({"operations": ["*"]}, {"operation": "DELETE", "obj": None, "old": configmap()}, True),
        ({"apiGroups": ["apps"]}, {}, False),
        ({"apiGroups": ["*"]}, {}, True),
        ({"apiVersions": ["v2"]}, {}, False),
        ({"apiVersions": ["*"]}, {}, True),
        ({"resources": ["*"]}, {}, True),
        ({"resources": ["*"]}, {"subresource": "status"}, False),
        ({"resources": ["*/*"]}, {"subresource": "status"}, True),
        ({"resources": ["configmaps/*"]}, {"subresource": "status"}, True),
        ({"resources": ["configmaps/status"]}, {"subresource": "status"}, True),
        ({"resources": ["configmaps/status"]}, {}, False),
        ({"resources": ["*/status"]}, {"subresource": "status"}, True),
        ({"resources": ["secrets"]}, {}, False),
        ({"scope": "Namespaced"}, {}, True),
        ({"scope": "Cluster"}, {}, False),
        ({"scope": "*"}, {}, True),
        ({"scope": "Weird"}, {}, False),
    ],
)
def test_rules(
    hook: StubWebhook, store: Store, rule: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    spec_rule = {**RULE_CONFIGMAPS, **rule}
    kwargs = dict(attributes)
    operation = kwargs.pop("operation", "CREATE")
    obj, old = kwargs.pop("obj", None), kwargs.pop("old", None)
    assert called(hook, store, attrs(operation, obj, old, **kwargs), rules=[spec_rule]) is expected


def test_scope_of_cluster_scoped_and_namespace_objects(hook: StubWebhook, store: Store) -> None:
    node = attrs(kind="Node", resource="nodes", namespace="", namespaced=False)
    nodes = {**RULE_CONFIGMAPS, "resources": ["nodes"]}
    assert called(hook, store, node, rules=[{**nodes, "scope": "Cluster"}])
    assert not called(hook, store, node, rules=[{**nodes, "scope": "Namespaced"}])
    ns_obj = {"metadata": {"name": "x"}}
    namespace = attrs(
        obj=ns_obj, kind="Namespace", resource="namespaces", namespace="", name="x", namespaced=False
    )
    namespaces = {**RULE_CONFIGMAPS, "resources": ["namespaces"]}
    assert called(hook, store, namespace, rules=[{**namespaces, "scope": "Cluster"}])
    assert not called(hook, store, namespace, rules=[{**namespaces, "scope": "Namespaced"}])


def test_webhook_configurations_are_never_sent_to_webhooks(hook: StubWebhook, store: Store) -> None:
    everything = {"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}
    register(store, "validating", "v", webhook(hook, "v", "/v", rules=[everything]))
    hook.on("/v", lambda review: deny(review, "no"))
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        config_attrs = attrs(
            group="admissionregistration.k8s.io",
            kind=kind,
            resource=kind.lower() + "s",
            namespace="",
            namespaced=False,
        )
        assert WebhookDispatcher(store).admit(config_attrs) == (None, None, ())
    assert hook.calls == []
    assert WebhookDispatcher(store).admit(attrs()).status is not None


def test_dispatcher_owns_nothing_it_is_given(hook: StubWebhook, store: Store) -> None:
    hook.on("/m", lambda review: allow(review, patch=[{"op": "add", "path": "/data/x", "value": "1"}]))
    register(store, "mutating", "m", webhook(hook, "m", "/m"))
    given = attrs()
    before = json.loads(json.dumps(given.object))
    result = WebhookDispatcher(store).admit(given)
    assert given.object == before
    assert result.object == configmap(x="1")


def test_v1beta1_mutating_patch_without_patch_type_is_a_json_patch(hook: StubWebhook, store: Store) -> None:
    ops = base64.b64encode(json.dumps([{"op": "add", "path": "/data/b", "value": "1"}]).encode()).decode()
    hook.on("/m", lambda review: {"response": {"uid": "ignored", "allowed": True, "patch": ops}})
    register(store, "mutating", "m", webhook(hook, "m", "/m", admissionReviewVersions=["v1beta1"]))
    assert WebhookDispatcher(store).admit(attrs()).object == configmap(b="1")


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ("!!notbase64", "illegal base64 data: "),
        (base64.b64encode(b"[not json").decode(), "Expecting value: "),
        (
            base64.b64encode(b'"text"').decode(),
            "json: cannot unmarshal string into Go value of type jsonpatch.Patch",
        ),
    ],
)
def test_undecodable_patches(hook: StubWebhook, store: Store, patch: str, reason: str) -> None:
    hook.on("/m", with_uid(allowed=True, patch=patch, patchType="JSONPatch"))
    register(store, "mutating", "m", webhook(hook, "m", "/m"))
    status = WebhookDispatcher(store).admit(attrs()).status
    assert status is not None and status["code"] == 500
    assert status["message"].startswith(
        'Internal error occurred: failed calling webhook "m": '
        f"received undecodable patch in webhook response: {reason}"
    )


def test_patch_replacing_the_whole_object_with_a_list(hook: StubWebhook, store: Store) -> None:
    hook.on("/m", lambda review: allow(review, patch=[{"op": "replace", "path": "", "value": [1]}]))
    register(store, "mutating", "m", webhook(hook, "m", "/m"))
    assert WebhookDispatcher(store).admit(attrs()).status == internal(
        "Object 'Kind' is missing in the patched object"
    )
