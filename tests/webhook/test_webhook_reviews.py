"""Reviews answered through ``app.test_client()``: protocol, mutation, modes, exemptions, deadlines."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kcp_tmc.policies.keys import LABEL_SYNC_TARGET_KEY, sync_target_key
from kcp_tmc.policies.kinds import SYNC_TARGET
from kcp_tmc.policies.policy import FailureMode, Mode, PolicyRequest, Verdict
from kcp_tmc.policies.registry import Registry, mutating, validating
from kcp_tmc.policies.reviews import make_review
from kcp_tmc.webhook.app import EXTENSION
from tests.webhook.webhook_helpers import apply_patch, example, post, sync_target


def answer(resp: Any) -> dict[str, Any]:
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "application/json"
    review = resp.get_json()
    assert review["kind"] == "AdmissionReview"
    response: dict[str, Any] = review["response"]
    return response


@pytest.mark.parametrize("version", ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
def test_both_versions_answered_in_their_own_version(client: FlaskClient, version: str) -> None:
    review = make_review(sync_target(), api_version=version, uid="uid-1")
    for path in ("/validate", "/mutate"):
        resp = post(client, path, review)
        assert resp.status_code == 200
        body = resp.get_json()
        assert body["apiVersion"] == version
        assert body["kind"] == "AdmissionReview"
        assert body["response"]["uid"] == "uid-1"
        assert body["response"]["allowed"] is True


def test_validating_answer_never_carries_a_patch(client: FlaskClient) -> None:
    response = answer(post(client, "/validate", example("synctarget-create.json")))
    assert response == {"uid": "5b3c6ee6-1f0a-4d2b-9d59-5f6c3a9a0001", "allowed": True}


def test_mutation_patch_gives_the_defaulted_object(client: FlaskClient) -> None:
    review = example("synctarget-create.json")
    obj = review["request"]["object"]
    response = answer(post(client, "/mutate", review))
    assert response["allowed"] is True
    patched = apply_patch(obj, response)
    expected = json.loads(json.dumps(obj))
    expected["spec"]["unschedulable"] = False
    expected["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] = sync_target_key(
        "root:org:team-a", "eu-central-1a"
    )
    assert patched == expected


def test_mutation_of_a_bare_object_adds_spec_and_labels(client: FlaskClient) -> None:
    obj = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "west"}}
    response = answer(post(client, "/mutate", make_review(obj)))
    assert apply_patch(obj, response) == {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": "west", "labels": {LABEL_SYNC_TARGET_KEY: sync_target_key("root", "west")}},
        "spec": {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]},
    }


def test_no_patch_when_nothing_changes(client: FlaskClient) -> None:
    obj = sync_target("west", unschedulable=True, supportedAPIExports=[{"export": "kubernetes"}])
    obj["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] = sync_target_key("root", "west")
    response = answer(post(client, "/mutate", make_review(obj, uid="u")))
    assert response == {"uid": "u", "allowed": True}


def test_mutation_warning_passed_through(client: FlaskClient) -> None:
    obj = sync_target("west")
    obj["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] = "wrong"
    response = answer(post(client, "/mutate", make_review(obj)))
    key = sync_target_key("root", "west")
    assert response["warnings"] == [
        f'[synctarget-defaults] metadata.labels[{LABEL_SYNC_TARGET_KEY}]: replaced "wrong" with "{key}", '
        'the key of SyncTarget "west" in logical cluster "root"'
    ]
    assert apply_patch(obj, response)["metadata"]["labels"][LABEL_SYNC_TARGET_KEY] == key


def test_denial_has_code_403_and_the_aggregated_message(client: FlaskClient) -> None:
    response = answer(post(client, "/validate", example("synctarget-create-invalid.json")))
    assert response["allowed"] is False
    assert "patch" not in response
    status = response["status"]
    assert status["code"] == 403
    assert status["reason"] == "Forbidden"
    lines = status["message"].split("\n")
    assert len(lines) == 2
    assert lines[0].startswith('[synctarget-validation] metadata.name: Invalid value: "EU_Central": ')
    assert lines[1].startswith(
        f"[synctarget-validation] metadata.labels[{LABEL_SYNC_TARGET_KEY}]: Invalid value"
    )


def test_denied_delete_and_status_update(client: FlaskClient) -> None:
    response = answer(post(client, "/validate", example("synctarget-delete-protected.json")))
    assert response["status"]["message"] == (
        "[synctarget-deletion-protection] metadata.annotations[tmc.kcp.io/deletion-protected]: Forbidden: "
        'SyncTarget "eu-central-1a" is protected from deletion; to delete it, first remove the protection: '
        "kubectl annotate synctarget eu-central-1a tmc.kcp.io/deletion-protected-"
    )
    response = answer(post(client, "/validate", example("synctarget-status-update-future-heartbeat.json")))
    assert response["allowed"] is False
    assert response["status"]["message"].startswith(
        '[synctarget-validation] status.lastSyncerHeartbeatTime: Invalid value: "2999-01-01T00:00:00Z": is '
    )


def test_unknown_kind_allowed_unchanged_and_counted(client: FlaskClient) -> None:
    review = example("service-create-unknown-kind.json")
    for path in ("/validate", "/mutate"):
        assert answer(post(client, path, review)) == {
            "uid": "5b3c6ee6-1f0a-4d2b-9d59-5f6c3a9a0007",
            "allowed": True,
        }
    text = client.get("/metrics").get_data(as_text=True)
    for webhook in ("/validate", "/mutate"):
        assert (
            f'tmc_admission_requests_total{{kind="other",operation="CREATE",outcome="unknown_kind",'
            f'webhook="{webhook}"}} 1.0' in text
        )


def test_single_policy_routes(client: FlaskClient) -> None:
    review = example("synctarget-create-invalid.json")
    response = answer(post(client, "/validate/synctarget-validation", review))
    assert response["status"]["message"].startswith("[synctarget-validation] ")
    # The deletion policy does not handle CREATE: allowed.
    assert answer(post(client, "/validate/synctarget-deletion-protection", review))["allowed"] is True
    response = answer(post(client, "/mutate/synctarget-defaults", review))
    assert response["patchType"] == "JSONPatch"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'outcome="denied",webhook="/validate/synctarget-validation"} 1.0' in text


def test_unknown_policy_is_404_with_a_reason(client: FlaskClient) -> None:
    resp = post(client, "/validate/no-such-policy", make_review(sync_target()))
    assert resp.status_code == 404
    body = resp.get_json()
    assert body["code"] == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == (
        "unknown policy 'no-such-policy' (known: cluster-defaults, cluster-validation, "
        "federatedquota-validation, location-validation, quota-enforcement, resourcequota-validation, "
        "synctarget-defaults, synctarget-deletion-protection, synctarget-validation)"
    )


def test_policy_on_the_wrong_route_is_404(client: FlaskClient) -> None:
    resp = post(client, "/validate/synctarget-defaults", make_review(sync_target()))
    assert resp.status_code == 404
    assert resp.get_json()["message"] == (
        "policy 'synctarget-defaults' is a mutating policy: send its reviews to /mutate/synctarget-defaults"
    )
    resp = post(client, "/mutate/synctarget-validation", make_review(sync_target()))
    assert resp.get_json()["message"] == (
        "policy 'synctarget-validation' is a validating policy: "
        "send its reviews to /validate/synctarget-validation"
    )


# --- modes and exemptions, end to end through the engine configuration ------------------------------


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "engine.yaml"
    path.write_text(text)
    return str(path)


def test_warn_mode_turns_the_denial_into_a_warning(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    cfg = _config(tmp_path, "policies:\n  synctarget-validation:\n    mode: warn\n")
    client = make_app(engine_config=cfg).test_client()
    response = answer(post(client, "/validate", example("synctarget-create-invalid.json")))
    assert response["allowed"] is True
    assert len(response["warnings"]) == 2
    assert response["warnings"][0].startswith(
        '[synctarget-validation] metadata.name: Invalid value: "EU_Central"'
    )


def test_audit_mode_gives_an_audit_annotation(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    cfg = _config(tmp_path, "policies:\n  synctarget-validation:\n    mode: audit\n")
    client = make_app(engine_config=cfg).test_client()
    response = answer(post(client, "/validate", example("synctarget-create-invalid.json")))
    assert response["allowed"] is True
    assert "warnings" not in response
    (key, value), *_ = response["auditAnnotations"].items()
    assert key == "synctarget-validation"
    assert 'metadata.name: Invalid value: "EU_Central"' in value


def test_exempt_user_is_allowed(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    cfg = _config(tmp_path, 'exemptions:\n  users: ["system:serviceaccount:tmc-system:*"]\n')
    client = make_app(engine_config=cfg).test_client()
    response = answer(post(client, "/validate", example("synctarget-create-invalid.json")))
    assert response == {"uid": "5b3c6ee6-1f0a-4d2b-9d59-5f6c3a9a0004", "allowed": True}


def test_disabled_policies_make_their_kinds_unknown(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    cfg = _config(
        tmp_path, "disabled: [synctarget-validation, synctarget-deletion-protection, synctarget-defaults]\n"
    )
    client = make_app(engine_config=cfg).test_client()
    assert answer(post(client, "/validate", example("synctarget-create-invalid.json")))["allowed"] is True
    assert 'outcome="unknown_kind"' in client.get("/metrics").get_data(as_text=True)


# --- custom policies: dry run, deadlines, failures ----------------------------------------------------


def _registry(*funcs: Callable[[Registry], None]) -> Registry:
    reg = Registry()
    for func in funcs:
        func(reg)
    return reg


def test_dry_run_reaches_the_policies(make_app: Callable[..., Flask]) -> None:
    seen: list[bool] = []

    def register(reg: Registry) -> None:
        @validating("record", kinds=[SYNC_TARGET], registry=reg)
        def record(req: PolicyRequest) -> Verdict | None:
            seen.append(req.dry_run)
            return None

    client = make_app(registry=_registry(register)).test_client()
    post(client, "/validate", example("synctarget-create-dry-run.json"))
    post(client, "/validate", example("synctarget-create.json"))
    assert seen == [True, False]


def _slow(reg: Registry, failure_mode: FailureMode) -> None:
    @validating("slow", kinds=[SYNC_TARGET], failure_mode=failure_mode, registry=reg)
    def slow(req: PolicyRequest) -> Verdict | None:
        time.sleep(3)
        return None


@pytest.mark.parametrize("failure_mode", [FailureMode.FAIL, FailureMode.IGNORE])
def test_timeout_budget_is_kept(make_app: Callable[..., Flask], failure_mode: FailureMode) -> None:
    client = make_app(
        registry=_registry(lambda r: _slow(r, failure_mode)), deadline_margin=0.05
    ).test_client()
    started = time.monotonic()
    response = answer(post(client, "/validate?timeout=1s", make_review(sync_target(), uid="t")))
    elapsed = time.monotonic() - started
    # Answered at the budget (less the margin), long before the policy would have finished.
    assert 0.9 <= elapsed < 2.0, elapsed
    assert response["uid"] == "t"
    if failure_mode is FailureMode.FAIL:
        assert response["allowed"] is False
        assert response["status"]["code"] == 500
        assert response["status"]["message"].startswith("[slow] policy failed: TimeoutError")
    else:
        assert response["allowed"] is True
        assert response["warnings"][0].startswith("[slow] policy failed and was ignored: TimeoutError")
    assert 'tmc_policy_errors_total{policy="slow"} 1.0' in client.get("/metrics").get_data(as_text=True)


def test_failing_policy_in_fail_mode_is_a_500_denial(make_app: Callable[..., Flask]) -> None:
    def register(reg: Registry) -> None:
        @mutating("boom", kinds=[SYNC_TARGET], mode=Mode.ENFORCE, registry=reg)
        def boom(req: PolicyRequest) -> Verdict | None:
            raise RuntimeError("no luck")

    client = make_app(registry=_registry(register)).test_client()
    response = answer(post(client, "/mutate", make_review(sync_target(), uid="b")))
    assert response == {
        "uid": "b",
        "allowed": False,
        "status": {
            "code": 500,
            "reason": "InternalError",
            "message": "[boom] policy failed: RuntimeError: no luck",
        },
    }
    text = client.get("/metrics").get_data(as_text=True)
    assert 'kind="SyncTarget",operation="CREATE",outcome="error",webhook="/mutate"} 1.0' in text


def test_a_bug_of_the_server_still_answers_the_review(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    engine = app.extensions[EXTENSION].engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(engine, "evaluate", broken)
    response = answer(post(app.test_client(), "/validate", make_review(sync_target(), uid="bug-1")))
    assert response == {
        "uid": "bug-1",
        "allowed": False,
        "status": {
            "code": 500,
            "reason": "InternalError",
            "message": "internal error in the webhook (ZeroDivisionError); "
            "its log has the details under uid bug-1",
        },
    }
    assert "internal error answering review bug-1" in caplog.text


def test_fast_path_and_flask_routes_answer_byte_for_byte_the_same(make_app: Callable[..., Flask]) -> None:
    fast = make_app().test_client()
    slow = make_app(fast_path=False).test_client()
    for name in (
        "synctarget-create.json",
        "synctarget-create-invalid.json",
        "synctarget-create-v1beta1.json",
    ):
        body = json.dumps(example(name))
        for path in ("/validate", "/mutate", "/validate/x"):
            a = post(fast, path, body)
            b = post(slow, path, body)
            assert (a.status_code, a.get_data()) == (b.status_code, b.get_data())


def test_patch_is_base64_of_a_json_patch(client: FlaskClient) -> None:
    response = answer(post(client, "/mutate", make_review(sync_target("w"))))
    ops = json.loads(base64.b64decode(response["patch"]))
    assert isinstance(ops, list)
    assert all(op["op"] == "add" for op in ops)
