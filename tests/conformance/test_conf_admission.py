"""Admission webhooks end to end: the server calls a real TLS webhook registered through the API."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from conformance_kit import Backend, Response, configmap, deployment, failure, unique

from kcp_tmc.testing.stub_webhook import StubWebhook, allow, deny

ADMISSION = "/apis/admissionregistration.k8s.io/v1"
LABEL = "conformance.kcp.io/admission"


@pytest.fixture(scope="module")
def stub() -> Iterator[StubWebhook]:
    with StubWebhook() as hook:
        yield hook


class Scope:
    """A labelled namespace and the webhook configurations registered for it (removed afterwards)."""

    def __init__(self, backend: Backend, hook: StubWebhook) -> None:
        self.backend = backend
        self.hook = hook
        self.label = unique("adm")
        self.namespace = self.label
        body = {"metadata": {"name": self.namespace, "labels": {LABEL: self.label}}}
        assert backend.http("POST", "/api/v1/namespaces", body).status == 201
        self.configurations: list[str] = []

    def webhook(self, name: str, path: str, **overrides: Any) -> dict[str, Any]:
        rule = {
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["configmaps"],
        }
        spec: dict[str, Any] = {
            "name": name,
            "clientConfig": self.hook.client_config(path),
            "rules": [rule],
            "namespaceSelector": {"matchLabels": {LABEL: self.label}},
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }
        spec.update(overrides)
        return spec

    def register(self, kind: str, *webhooks: dict[str, Any]) -> dict[str, Any]:
        plural = f"{kind.lower()}webhookconfigurations"
        name = f"{self.label}-{kind.lower()}-{len(self.configurations)}"
        body = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": f"{kind}WebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": list(webhooks),
        }
        response = self.backend.http("POST", f"{ADMISSION}/{plural}", body)
        assert response.status == 201, response.body
        self.configurations.append(f"{ADMISSION}/{plural}/{name}")
        return dict(response.body)

    def create(self, name: str, labels: dict[str, str] | None = None, query: str = "") -> Response:
        path = f"/api/v1/namespaces/{self.namespace}/configmaps{query}"
        return self.backend.http("POST", path, configmap(name, self.namespace, labels))

    def wait_until_effective(self, path: str) -> None:
        """The real apiserver picks up configurations asynchronously: probe until the webhook is called."""
        counter = 0

        def called() -> bool:
            nonlocal counter
            counter += 1
            self.create(f"probe-{counter}", query="?dryRun=All")
            return bool(self.hook.calls_to(path))

        self.backend.wait_for(called, timeout=15, what="webhook configuration to take effect")
        self.hook.clear_calls()

    def close(self) -> None:
        for path in self.configurations:
            self.backend.http("DELETE", path)
        self.backend.http("DELETE", f"/api/v1/namespaces/{self.namespace}")


@pytest.fixture
def scope(backend: Backend, stub: StubWebhook) -> Iterator[Scope]:
    stub.reset()
    s = Scope(backend, stub)
    yield s
    s.close()
    stub.reset()


def test_validating_webhook_denies(scope: Scope) -> None:
    scope.hook.on(
        "/deny", lambda review: deny(review, "configmaps are not welcome here", code=403, reason="Forbidden")
    )
    scope.register("Validating", scope.webhook("deny.conformance.kcp.io", "/deny"))
    scope.wait_until_effective("/deny")
    response = scope.create("cm")
    assert response.status == 403
    assert response.body == failure(
        403,
        "Forbidden",
        'admission webhook "deny.conformance.kcp.io" denied the request: configmaps are not welcome here',
    )
    [call] = scope.hook.calls
    request = call.review["request"]
    assert call.review["apiVersion"] == "admission.k8s.io/v1"
    assert request["operation"] == "CREATE"
    assert request["namespace"] == scope.namespace and request["name"] == "cm"
    assert request["kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert request["object"]["metadata"]["name"] == "cm"
    assert request["oldObject"] is None and request["dryRun"] is False
    assert request["options"]["kind"] == "CreateOptions"
    assert call.query == {"timeout": "5s"}


def test_rejection_code_below_400_becomes_400(scope: Scope) -> None:
    scope.hook.on("/deny", lambda review: deny(review, "nope", code=200))
    scope.register("Validating", scope.webhook("low.conformance.kcp.io", "/deny"))
    scope.wait_until_effective("/deny")
    response = scope.create("cm")
    assert response.status == 400
    expected = failure(400, "", 'admission webhook "low.conformance.kcp.io" denied the request: nope')
    del expected["reason"]
    assert response.body == expected


def test_mutating_webhook_patches_before_validation_and_warnings_reach_the_client(scope: Scope) -> None:
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
    scope.hook.on("/mutate", lambda review: allow(review, patch=patch, warnings=["mutated by the webhook"]))
    scope.hook.on("/validate", allow)
    scope.register("Validating", scope.webhook("validate.conformance.kcp.io", "/validate"))
    scope.register(
        "Mutating", scope.webhook("mutate.conformance.kcp.io", "/mutate", reinvocationPolicy="Never")
    )
    scope.wait_until_effective("/validate")
    scope.wait_until_effective("/mutate")
    response = scope.create("cm")
    assert response.status == 201
    assert response.body["metadata"]["labels"] == {"mutated": "yes"}
    assert response.warnings == ['299 - "mutated by the webhook"']
    assert [c.path for c in scope.hook.calls] == ["/mutate", "/validate"]
    assert scope.hook.calls[1].review["request"]["object"]["metadata"]["labels"] == {"mutated": "yes"}


def test_mutation_patch_is_base64_json_patch(scope: Scope) -> None:
    def mutate(review: dict[str, Any]) -> dict[str, Any]:
        ops = [{"op": "add", "path": "/data", "value": {"injected": "1"}}]
        answer = allow(review)
        answer["response"]["patchType"] = "JSONPatch"
        answer["response"]["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        return answer

    scope.hook.on("/m", mutate)
    scope.register("Mutating", scope.webhook("inject.conformance.kcp.io", "/m"))
    scope.wait_until_effective("/m")
    created = scope.create("cm")
    assert created.status == 201 and created.body["data"] == {"injected": "1"}


def test_update_sends_the_old_object(scope: Scope) -> None:
    scope.hook.on("/v", allow)
    scope.register("Validating", scope.webhook("v.conformance.kcp.io", "/v"))
    scope.wait_until_effective("/v")
    created = scope.create("cm").body
    path = f"/api/v1/namespaces/{scope.namespace}/configmaps/cm"
    assert scope.backend.http("PUT", path, {**created, "data": {"a": "1"}}).status == 200
    update = scope.hook.calls[-1].review["request"]
    assert update["operation"] == "UPDATE"
    assert not update["oldObject"].get("data")
    assert update["object"]["data"] == {"a": "1"}
    assert update["options"]["kind"] == "UpdateOptions"


def test_a_scale_write_is_reviewed_as_an_autoscaling_scale(scope: Scope) -> None:
    scope.hook.on("/v", allow)
    rule = {
        "operations": ["UPDATE"],
        "apiGroups": ["apps"],
        "apiVersions": ["v1"],
        "resources": ["deployments/scale"],
    }
    scope.register("Validating", scope.webhook("v.conformance.kcp.io", "/v", rules=[rule]))
    apps = f"/apis/apps/v1/namespaces/{scope.namespace}/deployments"
    assert scope.backend.http("POST", apps, deployment("web", scope.namespace)).status == 201
    patch = {"spec": {"replicas": 2}}

    def reviewed() -> bool:
        reply = scope.backend.http(
            "PATCH", f"{apps}/web/scale", patch, content_type="application/merge-patch+json"
        )
        assert reply.status == 200, reply.body
        patch["spec"]["replicas"] += 1
        return bool(scope.hook.calls_to("/v"))

    scope.backend.wait_for(reviewed, timeout=15, what="webhook configuration to take effect")
    request = scope.hook.calls[-1].review["request"]
    scale = {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    deployments = {"group": "apps", "version": "v1", "resource": "deployments"}
    assert (request["kind"], request["requestKind"]) == (scale, scale)
    assert (request["resource"], request["requestResource"]) == (deployments, deployments)
    assert (request["subResource"], request["requestSubResource"]) == ("scale", "scale")
    assert request["name"] == "web" and request["operation"] == "UPDATE"
    assert (request["object"]["kind"], request["oldObject"]["kind"]) == ("Scale", "Scale")
    assert request["object"]["spec"]["replicas"] == request["oldObject"]["spec"]["replicas"] + 1


def test_dry_run_reaches_the_webhook(scope: Scope) -> None:
    scope.hook.on("/v", allow)
    scope.register("Validating", scope.webhook("v.conformance.kcp.io", "/v", sideEffects="NoneOnDryRun"))
    scope.wait_until_effective("/v")
    assert scope.create("dry", query="?dryRun=All").status == 201
    assert scope.hook.calls[-1].review["request"]["dryRun"] is True
    assert scope.backend.http("GET", f"/api/v1/namespaces/{scope.namespace}/configmaps/dry").status == 404


def test_namespace_and_object_selectors(scope: Scope) -> None:
    scope.hook.on("/v", lambda review: deny(review, "selected"))
    scope.register(
        "Validating",
        scope.webhook("sel.conformance.kcp.io", "/v", objectSelector={"matchLabels": {"guarded": "yes"}}),
    )
    scope.backend.wait_for(
        lambda: scope.create("probe", {"guarded": "yes"}, "?dryRun=All").status == 403,
        timeout=15,
        what="webhook active",
    )
    assert scope.create("free", {"guarded": "no"}).status == 201
    other = unique("other")
    scope.backend.http("POST", "/api/v1/namespaces", {"metadata": {"name": other}})
    try:
        elsewhere = configmap("guarded", other, {"guarded": "yes"})
        assert scope.backend.http("POST", f"/api/v1/namespaces/{other}/configmaps", elsewhere).status == 201
    finally:
        scope.backend.http("DELETE", f"/api/v1/namespaces/{other}")
    denied = scope.create("guarded", {"guarded": "yes"})
    assert denied.status == 403
    assert denied.body["message"] == 'admission webhook "sel.conformance.kcp.io" denied the request: selected'


def test_unreachable_webhook_fails_closed_or_open(scope: Scope) -> None:
    with StubWebhook() as dead:
        config = dead.client_config("/gone")
        port = dead.port
    scope.hook.on("/canary", allow)
    closed = scope.webhook("closed.conformance.kcp.io", "/gone", clientConfig=config, failurePolicy="Fail")
    # The canary runs first (earlier in the same configuration) and shows when the configuration is live.
    scope.register("Validating", scope.webhook("canary.conformance.kcp.io", "/canary"), closed)
    scope.backend.wait_for(
        lambda: scope.create("probe", query="?dryRun=All").status == 500, timeout=15, what="webhook active"
    )
    response = scope.create("cm")
    assert response.status == 500
    reason = (
        'failed calling webhook "closed.conformance.kcp.io": failed to call webhook: '
        f'Post "https://127.0.0.1:{port}/gone?timeout=5s": '
        f"dial tcp 127.0.0.1:{port}: connect: connection refused"
    )
    assert response.body == failure(
        500, "InternalError", f"Internal error occurred: {reason}", {"causes": [{"message": reason}]}
    )
    path = scope.configurations[0]
    current = scope.backend.http("GET", path).body
    current["webhooks"][1]["failurePolicy"] = "Ignore"
    assert scope.backend.http("PUT", path, current).status == 200
    scope.backend.wait_for(
        lambda: scope.create(unique("ok")).status == 201, timeout=15, what="fail-open to take effect"
    )


def test_webhook_configurations_are_not_sent_to_webhooks(scope: Scope) -> None:
    everything = [{"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}]
    scope.hook.on("/all", lambda review: deny(review, "everything is denied"))
    scope.hook.on("/canary", allow)
    only_ours = {"matchLabels": {LABEL: scope.label}}
    scope.register(
        "Validating",
        scope.webhook("canary.conformance.kcp.io", "/canary"),
        scope.webhook(
            "all.conformance.kcp.io", "/all", rules=everything, namespaceSelector={}, objectSelector=only_ours
        ),
    )
    scope.wait_until_effective("/canary")
    # A configuration carrying the label is still accepted: webhooks never see their own configurations.
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"{scope.label}-labelled", "labels": {LABEL: scope.label}},
        "webhooks": [scope.webhook("later.conformance.kcp.io", "/later")],
    }
    created = scope.backend.http("POST", f"{ADMISSION}/validatingwebhookconfigurations", body)
    assert created.status == 201
    scope.configurations.append(f"{ADMISSION}/validatingwebhookconfigurations/{scope.label}-labelled")
    assert not scope.hook.calls_to("/all")
