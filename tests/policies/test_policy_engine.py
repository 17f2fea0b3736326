"""The engine: selection, order, modes, exemptions, failures, deadlines and the answer it builds."""

from __future__ import annotations

import base64
import gc
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jsonpatch
import pytest

from kcp_tmc.policies import (
    LOCATION,
    SYNC_TARGET,
    FailureMode,
    FieldError,
    Mode,
    PolicyRequest,
    PolicyType,
    Registry,
    StaticLookup,
    Verdict,
    mutating,
    validating,
)
from kcp_tmc.policies.admission import AdmissionRequest, Operation
from kcp_tmc.policies.config import EngineConfig, parse_config
from kcp_tmc.policies.engine import Engine, Outcome, PolicyResult, UnknownPolicyError
from kcp_tmc.policies.exemptions import Exemptions
from kcp_tmc.policies.patches import add, remove, set_map_entry
from kcp_tmc.policies.reviews import make_request

Func = Callable[[PolicyRequest], "Verdict | None"]


def st(name: str = "east", labels: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    """A SyncTarget."""
    metadata: dict[str, Any] = {"name": name, **meta}
    if labels is not None:
        metadata["labels"] = labels
    return {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": metadata, "spec": {}}


class Policies:
    """A registry plus shortcuts to add policies to it."""

    def __init__(self) -> None:
        self.registry = Registry()

    def validating(self, name: str, func: Func, **kw: Any) -> None:
        kw.setdefault("kinds", [SYNC_TARGET])
        validating(name, registry=self.registry, **kw)(func)

    def mutating(self, name: str, func: Func, **kw: Any) -> None:
        kw.setdefault("kinds", [SYNC_TARGET])
        mutating(name, registry=self.registry, **kw)(func)

    def engine(self, config: EngineConfig | str | None = None, **kw: Any) -> Engine:
        if isinstance(config, str):
            config = parse_config(config)
        return Engine(self.registry, config, **kw)


@pytest.fixture
def policies() -> Policies:
    return Policies()


def deny(path: str, message: str) -> Func:
    return lambda req: Verdict.deny(path, message)


def allow(req: PolicyRequest) -> Verdict | None:
    return None


def boom(req: PolicyRequest) -> Verdict | None:
    raise ValueError("boom")


def note(into: list[Any], value: Any) -> None:
    """Record what a policy saw; the policy then allows."""
    into.append(value)


def decisions(outcome: Outcome) -> list[tuple[str, str]]:
    return [(r.name, r.decision) for r in outcome.results]


# --- selection -------------------------------------------------------------------------------


def test_no_policy_for_the_request_allows(policies: Policies) -> None:
    policies.validating("loc", deny("", "no"), kinds=[LOCATION])
    engine = policies.engine()
    outcome = engine.evaluate(make_request(st()))
    assert outcome == Outcome(allowed=True)
    assert outcome.to_response("u1", mutating=True) == {"uid": "u1", "allowed": True}
    obj = st()
    assert engine.evaluate(make_request(obj), want_patched=True).patched is obj


def test_selection_by_kind_operation_subresource_and_phase(policies: Policies) -> None:
    policies.validating("v-create", allow, operations=["CREATE"])
    policies.validating("v-delete", allow, operations=["DELETE"])
    policies.validating("v-status", allow, subresources=["status"])
    policies.mutating("m-both", allow, subresources=["", "status"])
    policies.validating("v-location", allow, kinds=[LOCATION])
    engine = policies.engine()

    def names(request: AdmissionRequest, phase: Any = "all") -> list[str]:
        return [p.name for p in engine.select(request, phase)]

    assert names(make_request(st())) == ["m-both", "v-create"]
    assert names(make_request(st()), "validate") == ["v-create"]
    assert names(make_request(st()), "mutate") == ["m-both"]
    assert names(make_request(st(), operation="UPDATE", sub_resource="status")) == ["m-both", "v-status"]
    assert names(make_request(None, operation="DELETE", old=st())) == ["v-delete"]
    other_group = make_request({"apiVersion": "example.io/v1", "kind": "SyncTarget", "metadata": {}})
    assert names(other_group) == []
    assert decisions(engine.evaluate(make_request(st()))) == [("m-both", "allowed"), ("v-create", "allowed")]


def test_single_policy_and_unknown_name(policies: Policies) -> None:
    policies.validating("a", deny("x", "from a"))
    policies.validating("b", deny("x", "from b"))
    engine = policies.engine()
    outcome = engine.evaluate(make_request(st()), policy="b")
    assert outcome.denials == ("[b] x: from b",)
    with pytest.raises(UnknownPolicyError) as info:
        engine.evaluate(make_request(st()), policy="c")
    assert str(info.value) == "unknown policy 'c' (known: a, b)"
    assert info.value.name == "c"
    with pytest.raises(UnknownPolicyError, match=r"^unknown policy 'x' \(known: none are registered\)$"):
        Engine(Registry()).mode_of("x")


def test_bad_phase_is_refused(policies: Policies) -> None:
    with pytest.raises(ValueError, match=r"^phase must be one of validate, mutate, all \(got 'both'\)$"):
        policies.engine().evaluate(make_request(st()), phase="both")  # type: ignore[arg-type]


def test_bad_isolation_is_refused(policies: Policies) -> None:
    with pytest.raises(ValueError, match=r"^isolation must be thread or inline \(got 'process'\)$"):
        policies.engine(isolation="process")
    with pytest.raises(ValueError, match=r"^max_threads must be at least 1 \(got 0\)$"):
        policies.engine(max_threads=0)


def test_engine_snapshot_order_and_effective_modes(policies: Policies) -> None:
    policies.validating("v2", allow, mode=Mode.WARN)
    policies.validating("v1", allow)
    policies.mutating("m2", allow, failure_mode=FailureMode.IGNORE)
    policies.mutating("m1", allow)
    engine = policies.engine("policies:\n  v1: {mode: audit, failureMode: ignore}\n")
    assert [p.name for p in engine.policies] == ["m1", "m2", "v1", "v2"]
    assert engine.mode_of("v1") is Mode.AUDIT
    assert engine.mode_of("v2") is Mode.WARN
    assert engine.failure_mode_of("v1") is FailureMode.IGNORE
    assert engine.failure_mode_of("m2") is FailureMode.IGNORE
    assert engine.failure_mode_of("m1") is FailureMode.FAIL
    assert engine.config.policies["v1"].mode is Mode.AUDIT
    policies.validating("late", deny("", "x"))
    assert "late" not in [p.name for p in engine.policies]  # a snapshot


def test_plan_cache_is_bounded(policies: Policies) -> None:
    policies.validating("v", allow)
    engine = policies.engine()
    for i in range(1100):
        request = make_request({"apiVersion": "x.io/v1", "kind": f"K{i}", "metadata": {}})
        assert engine.evaluate(request).allowed
    assert len(engine._plans) <= 1024
    assert engine.evaluate(make_request(st())).results[0].name == "v"


# --- denials, modes, warnings, annotations -------------------------------------------------------


def test_all_denials_are_aggregated_in_name_order(policies: Policies) -> None:
    policies.validating(
        "zeta",
        lambda req: Verdict(
            errors=[FieldError("spec.a", "must be set"), FieldError("", "whole request is bad")]
        ),
    )
    policies.validating("alpha", deny("metadata.labels.region", "is required; add a region label"))
    policies.validating("middle", allow)
    outcome = policies.engine().evaluate(make_request(st()))
    assert not outcome.allowed
    assert outcome.code == 403
    assert outcome.reason == "Forbidden"
    assert outcome.denials == (
        "[alpha] metadata.labels.region: is required; add a region label",
        "[zeta] spec.a: must be set",
        "[zeta] whole request is bad",
    )
    assert outcome.message == "\n".join(outcome.denials)
    assert decisions(outcome) == [("alpha", "denied"), ("middle", "allowed"), ("zeta", "denied")]
    assert outcome.results[2].messages == ("spec.a: must be set", "whole request is bad")
    assert outcome.to_response("u", mutating=False) == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 403, "reason": "Forbidden", "message": outcome.message},
    }


def test_warn_mode_allows_and_warns(policies: Policies) -> None:
    policies.validating("strict", deny("spec.x", "is wrong"), mode=Mode.WARN)
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.allowed
    assert outcome.code == 200
    assert outcome.warnings == ("[strict] spec.x: is wrong",)
    assert outcome.results[0].decision == "warned"
    assert outcome.to_response("u", mutating=False) == {
        "uid": "u",
        "allowed": True,
        "warnings": ["[strict] spec.x: is wrong"],
    }


def test_audit_mode_annotates_and_logs(policies: Policies, caplog: pytest.LogCaptureFixture) -> None:
    policies.validating(
        "quota",
        lambda req: Verdict(errors=[FieldError("spec.a", "too big"), FieldError("spec.b", "too small")]),
    )
    engine = policies.engine("policies:\n  quota: {mode: audit}\n")
    with caplog.at_level(logging.INFO, logger="kcp_tmc.policies.engine"):
        outcome = engine.evaluate(make_request(st(), uid="u7"))
    assert outcome.allowed
    assert outcome.warnings == ()
    assert outcome.audit_annotations == {"quota": "spec.a: too big; spec.b: too small"}
    assert outcome.results[0].decision == "audited"
    [record] = [r for r in caplog.records if r.name == "kcp_tmc.policies.engine"]
    assert record.levelno == logging.INFO
    assert (
        record.getMessage()
        == "policy quota (audit mode) would deny SyncTarget east: spec.a: too big; spec.b: too small"
    )
    assert record.policy == "quota"  # type: ignore[attr-defined]
    assert record.uid == "u7"  # type: ignore[attr-defined]
    assert outcome.to_response("u7", mutating=False)["auditAnnotations"] == {
        "quota": "spec.a: too big; spec.b: too small"
    }


def test_config_mode_overrides_the_policy_default(policies: Policies) -> None:
    policies.validating("p", deny("a", "b"), mode=Mode.AUDIT)
    assert policies.engine().evaluate(make_request(st())).allowed
    enforced = policies.engine("policies:\n  p: {mode: enforce}\n").evaluate(make_request(st()))
    assert enforced.denials == ("[p] a: b",)


def test_verdict_warnings_and_annotations_pass_through(policies: Policies) -> None:
    policies.validating(
        "a",
        lambda req: Verdict(warnings=["deprecated field"], audit_annotations={"seen": "a", "only-a": "1"}),
    )
    policies.validating("b", lambda req: Verdict(warnings=["also"], audit_annotations={"seen": "b"}))
    policies.validating("c", lambda req: Verdict(errors=[FieldError("x", "y")], warnings=["w-c"]))
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.warnings == ("[a] deprecated field", "[b] also", "[c] w-c")
    assert outcome.audit_annotations == {"seen": "a; b", "only-a": "1"}
    assert outcome.denials == ("[c] x: y",)
    # warnings and annotations reach the client on a denial too
    response = outcome.to_response("u", mutating=True)
    assert response["warnings"] == ["[a] deprecated field", "[b] also", "[c] w-c"]
    assert response["auditAnnotations"] == {"seen": "a; b", "only-a": "1"}


# --- failures --------------------------------------------------------------------------------


def test_a_raising_policy_with_failure_mode_fail_denies_with_500(
    policies: Policies, caplog: pytest.LogCaptureFixture
) -> None:
    policies.validating("broken", boom)
    policies.validating("picky", deny("spec", "no"))
    with caplog.at_level(logging.ERROR, logger="kcp_tmc.policies.engine"):
        outcome = policies.engine().evaluate(make_request(st()))
    assert not outcome.allowed
    assert outcome.code == 500
    assert outcome.reason == "InternalError"
    assert outcome.denials == ("[broken] policy failed: ValueError: boom", "[picky] spec: no")
    assert outcome.results[0] == PolicyResult(
        "broken",
        PolicyType.VALIDATING,
        "errored",
        outcome.results[0].duration,
        error="ValueError: boom",
    )
    [record] = caplog.records
    assert record.getMessage() == "policy broken failed: ValueError: boom"
    assert record.exc_info is not None
    assert outcome.to_response("u", mutating=True)["status"] == {
        "code": 500,
        "reason": "InternalError",
        "message": "[broken] policy failed: ValueError: boom\n[picky] spec: no",
    }


def test_a_raising_policy_with_failure_mode_ignore_warns(policies: Policies) -> None:
    policies.validating("broken", boom, failure_mode=FailureMode.IGNORE)
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.allowed
    assert outcome.warnings == ("[broken] policy failed and was ignored: ValueError: boom",)
    assert outcome.results[0].decision == "errored"


def test_failure_mode_from_config_and_exception_without_message(policies: Policies) -> None:
    def raises_bare(req: PolicyRequest) -> Verdict | None:
        raise KeyError

    policies.validating("bare", raises_bare)
    outcome = policies.engine("policies:\n  bare: {failureMode: ignore}\n").evaluate(make_request(st()))
    assert outcome.warnings == ("[bare] policy failed and was ignored: KeyError",)


def test_failure_mode_applies_whatever_the_mode(policies: Policies) -> None:
    policies.validating("audited", boom, mode=Mode.AUDIT)
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.denials == ("[audited] policy failed: ValueError: boom",)


def test_a_bad_return_value_is_a_policy_failure(policies: Policies) -> None:
    policies.validating("sloppy", lambda req: "ok")  # type: ignore[arg-type,return-value]
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.denials == (
        "[sloppy] policy failed: PolicyError: returned str; a policy returns a Verdict or None",
    )


def test_a_validating_policy_may_not_patch(policies: Policies) -> None:
    policies.validating("sneaky", lambda req: Verdict.mutate(add("/metadata/labels", {"a": "b"})))
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.denials == (
        "[sneaky] policy failed: PolicyError: a validating policy may not return a patch; "
        "register it with @mutating",
    )
    assert outcome.patch == []


def test_a_patch_that_does_not_apply_is_a_failure_and_is_rolled_back(policies: Policies) -> None:
    seen: list[dict[str, Any]] = []
    policies.mutating("a-good", lambda req: Verdict.mutate(add("/metadata/labels", {"a": "1"})))
    policies.mutating(
        "b-bad",
        lambda req: Verdict.mutate(add("/metadata/labels/b", "2"), remove("/spec/missing")),
        failure_mode=FailureMode.IGNORE,
    )
    policies.mutating("c-bad-pointer", lambda req: Verdict.mutate(add("/spec/x/y", 1)))
    policies.validating("d-look", lambda req: note(seen, json.loads(json.dumps(req.object))))
    original = st()
    outcome = policies.engine().evaluate(make_request(original), want_patched=True)
    assert outcome.warnings == (
        "[b-bad] policy failed and was ignored: PolicyError: its patch does not apply: "
        "operation 1 (remove /spec/missing): can't remove a non-existent object 'missing'",
    )
    assert outcome.denials == (
        "[c-bad-pointer] policy failed: PolicyError: its patch does not apply: "
        "operation 0 (add /spec/x/y): member 'x' not found",
    )
    # b-bad's first operation was undone: later policies and the result see only a-good's patch
    assert seen == [{**original, "metadata": {"name": "east", "labels": {"a": "1"}}}]
    assert outcome.patch == [add("/metadata/labels", {"a": "1"})]
    assert outcome.patched == seen[0]
    assert original == st()


def test_malformed_operations_are_reported(policies: Policies) -> None:
    policies.mutating("m", lambda req: Verdict(patch=[{"path": "/a"}]))
    policies.mutating("n", lambda req: Verdict(patch=["add"]))  # type: ignore[list-item]
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.denials == (
        "[m] policy failed: PolicyError: its patch does not apply: operation 0 (? /a): "
        "Operation does not contain 'op' member",
        "[n] policy failed: PolicyError: its patch does not apply: operation 0 ('add'): "
        "Document is expected to be sequence of operations, got a sequence of strings.",
    )


def test_a_patch_without_an_object_is_a_failure(policies: Policies) -> None:
    policies.mutating("m", lambda req: Verdict.mutate(add("/x", 1)), operations=["DELETE"])
    outcome = policies.engine().evaluate(make_request(None, operation="DELETE", old=st()))
    assert outcome.denials == (
        "[m] policy failed: PolicyError: returned a patch but the request has no object to patch",
    )


# --- mutation ----------------------------------------------------------------------------------


def test_mutations_run_in_name_order_each_on_the_previous_result(policies: Policies) -> None:
    seen: dict[str, Any] = {}

    def labeller(key: str, value: str) -> Func:
        def mutate(req: PolicyRequest) -> Verdict:
            assert req.object is not None
            seen[value] = dict(req.object["metadata"].get("labels") or {})
            return Verdict(patch=set_map_entry(req.object, ("metadata", "labels"), key, value))

        return mutate

    policies.mutating("20-second", labeller("second", "2"))
    policies.mutating("10-first", labeller("first", "1"))
    policies.mutating("30-third", labeller("first", "3"))  # overrides 10-first
    policies.validating(
        "check",
        lambda req: (
            None if (req.object or {})["metadata"]["labels"] == {"first": "3", "second": "2"} else boom(req)
        ),
    )
    original = st()
    request = make_request(original)
    outcome = policies.engine().evaluate(request, want_patched=True)
    assert outcome.allowed, outcome.message
    assert seen == {"1": {}, "2": {"first": "1"}, "3": {"first": "1", "second": "2"}}
    assert outcome.patch == [
        {"op": "add", "path": "/metadata/labels", "value": {"first": "1"}},
        {"op": "add", "path": "/metadata/labels/second", "value": "2"},
        {"op": "add", "path": "/metadata/labels/first", "value": "3"},
    ]
    # the combined patch applies to the original object, which is left untouched
    assert original == st()
    assert jsonpatch.apply_patch(original, outcome.patch) == outcome.patched
    assert outcome.patched == st(labels={"first": "3", "second": "2"})
    response = outcome.to_response("u", mutating=True)
    assert response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == outcome.patch
    # validating answers never carry a patch
    assert "patch" not in outcome.to_response("u", mutating=False)
    assert "patchType" not in outcome.to_response("u", mutating=False)


def test_a_later_patch_does_not_change_an_earlier_operation(policies: Policies) -> None:
    policies.mutating("a", lambda req: Verdict.mutate(add("/metadata/labels", {"x": "1"})))
    policies.mutating("b", lambda req: Verdict.mutate(add("/metadata/labels/y", "2")))
    outcome = policies.engine().evaluate(make_request(st()), want_patched=True)
    assert outcome.patch[0] == {"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}
    assert jsonpatch.apply_patch(st(), outcome.patch) == outcome.patched


def test_no_copy_without_a_patch_and_validate_phase_sees_the_request_object(policies: Policies) -> None:
    received: list[object] = []
    policies.mutating("m", lambda req: note(received, req.object))
    policies.validating("v", lambda req: note(received, req.object))
    obj = st()
    outcome = policies.engine().evaluate(make_request(obj), want_patched=True)
    assert received == [obj, obj]
    assert all(r is obj for r in received)
    assert outcome.patched is obj
    assert outcome.patch == []
    assert "patch" not in outcome.to_response("u", mutating=True)


def test_validate_phase_does_not_run_mutations(policies: Policies) -> None:
    policies.mutating("m", lambda req: Verdict.mutate(add("/metadata/labels", {"a": "b"})))
    policies.validating(
        "v",
        lambda req: (
            Verdict.deny("metadata.labels", "missing")
            if "labels" not in (req.object or {})["metadata"]
            else None
        ),
    )
    engine = policies.engine()
    assert engine.evaluate(make_request(st()), phase="validate").denials == ("[v] metadata.labels: missing",)
    assert engine.evaluate(make_request(st())).allowed
    mutate_only = engine.evaluate(make_request(st()), phase="mutate")
    assert decisions(mutate_only) == [("m", "allowed")]
    assert mutate_only.patched is None


def test_a_denied_mutation_carries_no_patch_in_the_response(policies: Policies) -> None:
    policies.mutating(
        "m",
        lambda req: Verdict(errors=[FieldError("spec", "bad")], patch=[add("/metadata/labels", {"a": "b"})]),
    )
    outcome = policies.engine().evaluate(make_request(st()))
    assert outcome.patch == [add("/metadata/labels", {"a": "b"})]
    response = outcome.to_response("u", mutating=True)
    assert "patch" not in response
    assert response["allowed"] is False


# --- what a policy receives --------------------------------------------------------------------


def test_policy_request_fields(policies: Policies) -> None:
    got: list[PolicyRequest] = []
    policies.validating("p", lambda req: note(got, req), operations=["UPDATE"], subresources=["status"])
    lookup = StaticLookup([st("other")])
    engine = policies.engine("policies:\n  p:\n    settings: {heartbeatSkew: 60s}\n")
    old = st(annotations={"kcp.io/cluster": "root:org:ws"})
    request = make_request(
        st(), operation="UPDATE", old=old, user="bob", groups=["g"], dry_run=True, sub_resource="status"
    )
    engine.evaluate(request, lookup=lookup)
    [req] = got
    assert req.request is request
    assert req.old_object is old
    assert req.operation == "UPDATE"
    assert req.sub_resource == "status"
    assert req.dry_run is True
    assert req.user == {"username": "bob", "groups": ["g"]}
    assert req.cluster == "root"  # from the new object, which carries no annotation
    assert req.lookup is lookup
    assert req.settings == {"heartbeatSkew": "60s"}
    assert req.name == "east"


@pytest.mark.parametrize(
    ("obj", "old", "operation", "default", "cluster"),
    [
        (st(annotations={"kcp.io/cluster": "root:org"}), None, "CREATE", "root", "root:org"),
        (st(), None, "CREATE", "root", "root"),
        (st(), None, "CREATE", "root:team", "root:team"),
        (None, st(annotations={"kcp.io/cluster": "abc"}), "DELETE", "root", "abc"),
    ],
)
def test_logical_cluster(
    policies: Policies, obj: Any, old: Any, operation: Operation, default: str, cluster: str
) -> None:
    got: list[str] = []
    policies.validating("p", lambda req: note(got, req.cluster), operations=[operation])
    engine = policies.engine(EngineConfig(default_cluster=default))
    engine.evaluate(make_request(obj, old=old, operation=operation))
    assert got == [cluster]


def test_default_lookup_is_empty(policies: Policies) -> None:
    got: list[object] = []
    policies.validating("p", lambda req: note(got, req.lookup.get(SYNC_TARGET, "east")))
    policies.engine().evaluate(make_request(st()))
    assert got == [None]


# --- exemptions and disabled policies ----------------------------------------------------------


def test_global_exemptions_exempt_every_policy(policies: Policies) -> None:
    policies.validating("a", deny("x", "no"))
    policies.mutating("m", boom)
    engine = policies.engine(EngineConfig(exemptions=Exemptions(groups=["system:masters"])))
    outcome = engine.evaluate(make_request(st(), groups=["system:masters"]))
    assert outcome.allowed
    assert decisions(outcome) == [("m", "exempted"), ("a", "exempted")]
    assert outcome.results[0].note == "group system:masters matches system:masters"
    assert not engine.evaluate(make_request(st())).allowed


def test_per_policy_exemptions(policies: Policies) -> None:
    policies.validating("a", deny("x", "from a"), kinds=[SYNC_TARGET], operations=["CREATE"])
    policies.validating("b", deny("x", "from b"))
    engine = policies.engine("policies:\n  a:\n    exemptions: {users: ['ci-*']}\n")
    outcome = engine.evaluate(make_request(st(), user="ci-bot"))
    assert outcome.denials == ("[b] x: from b",)
    assert outcome.results[0] == PolicyResult(
        "a", PolicyType.VALIDATING, "exempted", 0.0, note="user ci-bot matches ci-*"
    )


def test_disabled_policies_are_skipped_even_when_named(policies: Policies) -> None:
    policies.validating("a", deny("x", "from a"))
    policies.validating("b", deny("x", "from b"))
    engine = policies.engine("disabled: [a]\npolicies:\n  b: {enabled: false}\n")
    outcome = engine.evaluate(make_request(st()))
    assert outcome.allowed
    assert decisions(outcome) == [("a", "skipped"), ("b", "skipped")]
    assert outcome.results[0].note == "disabled in the configuration"
    assert decisions(engine.evaluate(make_request(st()), policy="a")) == [("a", "skipped")]


# --- deadlines ---------------------------------------------------------------------------------


class Gate:
    """A policy that blocks until released (or 5 s), to play a hung policy."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, req: PolicyRequest) -> Verdict | None:
        self.entered.set()
        self.release.wait(5)
        self.finished.set()
        return Verdict.deny("late", "this verdict must be dropped")


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.release.set()


TIMEOUT_LINE = re.compile(
    r"^\[slow\] policy failed: TimeoutError: still running when the deadline passed, after 0\.\d{3}s$"
)


def test_a_policy_still_running_at_the_deadline_fails_and_evaluate_returns_in_time(
    policies: Policies, gate: Gate
) -> None:
    policies.mutating("fast", lambda req: Verdict.mutate(add("/metadata/labels", {"a": "b"})))
    policies.validating("slow", gate.__call__)
    policies.validating("zz-after", deny("x", "never run"))
    policies.validating("zz-ignored", allow, failure_mode=FailureMode.IGNORE)
    with policies.engine() as engine:
        start = time.monotonic()
        outcome = engine.evaluate(make_request(st()), deadline=start + 0.2, want_patched=True)
        elapsed = time.monotonic() - start
        assert 0.19 <= elapsed < 1.0
        assert gate.entered.is_set()
        assert not outcome.allowed
        assert outcome.code == 500
        assert len(outcome.denials) == 2
        assert TIMEOUT_LINE.match(outcome.denials[0]), outcome.denials[0]
        assert (
            outcome.denials[1] == "[zz-after] policy failed: TimeoutError: not run: the deadline had passed"
        )
        assert outcome.warnings == (
            "[zz-ignored] policy failed and was ignored: TimeoutError: not run: the deadline had passed",
        )
        assert decisions(outcome) == [
            ("fast", "allowed"),
            ("slow", "errored"),
            ("zz-after", "errored"),
            ("zz-ignored", "errored"),
        ]
        assert outcome.patch == [add("/metadata/labels", {"a": "b"})]
        # the late verdict is dropped; the thread goes back to the pool and is reused
        gate.release.set()
        assert gate.finished.wait(5)
        assert outcome.denials[0].startswith("[slow] policy failed: TimeoutError")
        for _ in range(200):
            if engine._pool().threads == 1 and engine._pool()._idle:
                break
            time.sleep(0.01)
        fast = engine.evaluate(make_request(st()), deadline=time.monotonic() + 5, policy="fast")
        assert fast.allowed
        assert engine._pool().threads == 1


def test_a_late_policy_that_then_raises_is_still_reported_as_timed_out(
    policies: Policies, gate: Gate
) -> None:
    def late_raise(req: PolicyRequest) -> Verdict | None:
        gate(req)
        raise ValueError("too late to matter")

    policies.validating("slow", late_raise)
    with policies.engine() as engine:
        outcome = engine.evaluate(make_request(st()), deadline=time.monotonic() + 0.05)
        gate.release.set()
        assert gate.finished.wait(5)
    assert TIMEOUT_LINE.match(outcome.denials[0]), outcome.denials


def test_timeout_with_failure_mode_ignore_allows(policies: Policies, gate: Gate) -> None:
    policies.validating("slow", gate.__call__, failure_mode=FailureMode.IGNORE)
    with policies.engine() as engine:
        outcome = engine.evaluate(make_request(st()), deadline=time.monotonic() + 0.05)
    assert outcome.allowed
    [warning] = outcome.warnings
    assert warning.startswith(
        "[slow] policy failed and was ignored: TimeoutError: still running when the deadline passed, after 0."
    )


def test_a_spent_deadline_runs_nothing(policies: Policies) -> None:
    ran: list[str] = []
    policies.validating("a", lambda req: note(ran, "a"))
    policies.validating("b", lambda req: note(ran, "b"), failure_mode=FailureMode.IGNORE)
    policies.validating("c", allow)
    with policies.engine("disabled: [c]\n") as engine:
        outcome = engine.evaluate(make_request(st()), deadline=time.monotonic() - 1)
    assert ran == []
    assert outcome.denials == ("[a] policy failed: TimeoutError: not run: the deadline had passed",)
    assert outcome.warnings == (
        "[b] policy failed and was ignored: TimeoutError: not run: the deadline had passed",
    )
    assert decisions(outcome) == [("a", "errored"), ("b", "errored"), ("c", "skipped")]


def test_a_deadline_that_is_met_gives_the_same_outcome_as_none(policies: Policies) -> None:
    policies.mutating("m", lambda req: Verdict.mutate(add("/metadata/labels", {"a": "b"})))
    policies.validating("v", deny("spec", "no"), mode=Mode.WARN)
    policies.validating("w", boom, failure_mode=FailureMode.IGNORE)
    with policies.engine() as engine:
        with_deadline = engine.evaluate(make_request(st(), uid="1"), deadline=time.monotonic() + 5)
        without = engine.evaluate(make_request(st(), uid="1"))
    assert with_deadline.to_response("1", mutating=True) == without.to_response("1", mutating=True)
    assert decisions(with_deadline) == decisions(without)


def test_when_every_thread_is_held_by_a_late_policy_requests_fail_fast(
    policies: Policies, gate: Gate, caplog: pytest.LogCaptureFixture
) -> None:
    policies.validating("slow", gate.__call__)
    with policies.engine(max_threads=1) as engine:
        engine.evaluate(make_request(st()), deadline=time.monotonic() + 0.02)
        start = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="kcp_tmc.policies.engine"):
            outcome = engine.evaluate(make_request(st()), deadline=time.monotonic() + 5)
        assert time.monotonic() - start < 1
        assert outcome.denials == ("[slow] policy failed: TimeoutError: not run: the deadline had passed",)
        assert (
            "no thread free to evaluate a request: all 1 are held by policies running late" in caplog.messages
        )


def test_the_engine_is_usable_after_close(policies: Policies) -> None:
    policies.validating("v", deny("a", "b"))
    engine = policies.engine()
    engine.close()  # nothing started yet
    assert not engine.evaluate(make_request(st()), deadline=time.monotonic() + 5).allowed
    engine.close()
    assert not engine.evaluate(make_request(st()), deadline=time.monotonic() + 5).allowed
    engine.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_inline_isolation_checks_the_deadline_between_policies(policies: Policies) -> None:
    clock = FakeClock()

    def slow(req: PolicyRequest) -> Verdict | None:
        clock.now += 2  # "takes" two seconds
        return None

    def slow_raise(req: PolicyRequest) -> Verdict | None:
        clock.now += 2
        raise ValueError("late and broken")

    policies.validating("a-fast", allow)
    policies.validating("b-slow", slow)
    policies.validating("c-next", allow)
    engine = policies.engine(clock=clock, isolation="inline")
    outcome = engine.evaluate(make_request(st()), deadline=101.0)
    assert outcome.denials == (
        "[b-slow] policy failed: TimeoutError: still running when the deadline passed, after 2.000s",
        "[c-next] policy failed: TimeoutError: not run: the deadline had passed",
    )
    assert outcome.results[1].duration == 2.0
    assert decisions(outcome)[0] == ("a-fast", "allowed")
    # no thread was started
    assert engine._workers is None
    # the deadline is spent before the first policy
    assert len(engine.evaluate(make_request(st()), deadline=clock.now).denials) == 3
    policies.registry.unregister("b-slow")
    policies.validating("b-slow", slow_raise)
    outcome = policies.engine(clock=clock, isolation="inline").evaluate(
        make_request(st()), deadline=clock.now + 1
    )
    assert outcome.denials[0] == (
        "[b-slow] policy failed: TimeoutError: still running when the deadline passed, after 2.000s"
    )
    # a deadline that is met changes nothing
    assert engine.evaluate(make_request(st()), deadline=clock.now + 10, policy="a-fast").allowed


def test_policies_that_do_not_isolate_run_on_the_callers_thread(policies: Policies) -> None:
    seen: list[str] = []

    def where(req: PolicyRequest) -> Verdict | None:
        seen.append(threading.current_thread().name)
        return None

    policies.validating("quick", where, isolate=False)
    engine = policies.engine()
    assert engine.policies[0].isolate is False
    assert engine.evaluate(make_request(st()), deadline=time.monotonic() + 5).allowed
    # pure, quick policies skip the hand-over even under a deadline: no pool was started
    assert seen == [threading.current_thread().name]
    assert engine._workers is None
    # one isolating policy in the run is enough to move the whole run to a pool thread
    policies.validating("careful", where)
    engine = policies.engine()
    assert engine.evaluate(make_request(st()), deadline=time.monotonic() + 5).allowed
    assert len(seen) == 3 and seen[1] == seen[2] and seen[1].startswith("kcp-tmc-policy-")
    engine.close()


def test_the_built_ins_are_pure_and_quick_except_the_lookup_one() -> None:
    from kcp_tmc.policies.plugins import load_builtins

    registry = Registry()
    load_builtins(registry)
    assert {p.name for p in registry if p.isolate} == {"synctarget-deletion-protection", "quota-enforcement"}


def test_durations_come_from_the_clock(policies: Policies) -> None:
    clock = FakeClock()

    def slow(req: PolicyRequest) -> Verdict | None:
        clock.now += 0.25
        return None

    policies.validating("v", slow)
    outcome = policies.engine(clock=clock).evaluate(make_request(st()))
    assert outcome.results[0].duration == 0.25


# --- the response --------------------------------------------------------------------------------


def test_to_response_field_presence() -> None:
    allowed = Outcome(allowed=True, patch=[add("/a", 1)], warnings=("w",), audit_annotations={"k": "v"})
    assert allowed.to_response("u", mutating=True) == {
        "uid": "u",
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": base64.b64encode(b'[{"op":"add","path":"/a","value":1}]').decode(),
        "warnings": ["w"],
        "auditAnnotations": {"k": "v"},
    }
    assert allowed.to_response("u", mutating=False) == {
        "uid": "u",
        "allowed": True,
        "warnings": ["w"],
        "auditAnnotations": {"k": "v"},
    }


# --- property: any mix of verdicts and modes gives a well-formed answer --------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

BEHAVIOURS = ("allow", "deny", "deny2", "warn", "raise", "patch", "badpatch", "none")


@hs.composite
def policy_specs(draw: hs.DrawFn) -> list[tuple[str, bool, str, Mode, FailureMode]]:
    count = draw(hs.integers(min_value=0, max_value=6))
    specs = []
    for i in range(count):
        is_mutating = draw(hs.booleans())
        behaviour = draw(
            hs.sampled_from(BEHAVIOURS if is_mutating else [b for b in BEHAVIOURS if "patch" not in b])
        )
        specs.append(
            (f"p{i}", is_mutating, behaviour, draw(hs.sampled_from(Mode)), draw(hs.sampled_from(FailureMode)))
        )
    return specs


def _behaviour(name: str, behaviour: str) -> Func:
    def func(req: PolicyRequest) -> Verdict | None:
        if behaviour == "deny":
            return Verdict.deny(f"spec.{name}", "is wrong")
        if behaviour == "deny2":
            return Verdict(errors=[FieldError("a", name), FieldError("", "whole")], warnings=[f"w-{name}"])
        if behaviour == "warn":
            return Verdict.allow(f"careful-{name}")
        if behaviour == "raise":
            raise RuntimeError(name)
        if behaviour == "patch":
            assert req.object is not None
            return Verdict(patch=set_map_entry(req.object, ("metadata", "labels"), name, "x"))
        if behaviour == "badpatch":
            return Verdict.mutate(add(f"/metadata/labels/{name}", "y"), remove("/nope"))
        return Verdict() if behaviour == "allow" else None

    return func


@settings(max_examples=150, deadline=None)
@given(specs=policy_specs(), mutating_answer=hs.booleans(), uid=hs.text(min_size=1, max_size=8))
def test_any_mix_of_verdicts_gives_a_well_formed_response(
    specs: list[tuple[str, bool, str, Mode, FailureMode]], mutating_answer: bool, uid: str
) -> None:
    registry = Registry()
    for name, is_mutating, behaviour, mode, failure_mode in specs:
        decorator = mutating if is_mutating else validating
        decorator(name, kinds=[SYNC_TARGET], mode=mode, failure_mode=failure_mode, registry=registry)(
            _behaviour(name, behaviour)
        )
    original = st()
    outcome = Engine(registry).evaluate(make_request(original, uid=uid), want_patched=True)
    response = outcome.to_response(uid, mutating=mutating_answer)

    # A model of the rules, written independently of the engine.
    expected_denials: list[str] = []
    expected_warnings: list[str] = []
    failed = False
    for name, _, behaviour, mode, failure_mode in sorted(specs, key=lambda s: (not s[1], s[0])):
        if behaviour in ("raise", "badpatch"):
            if failure_mode is FailureMode.FAIL:
                failed = True
                expected_denials.append(f"[{name}] policy failed: ")
            else:
                expected_warnings.append(f"[{name}] policy failed and was ignored: ")
            continue
        lines = {
            "deny": [f"[{name}] spec.{name}: is wrong"],
            "deny2": [f"[{name}] a: {name}", f"[{name}] whole"],
        }
        if behaviour == "deny2":
            expected_warnings.append(f"[{name}] w-{name}")
        if behaviour == "warn":
            expected_warnings.append(f"[{name}] careful-{name}")
        for line in lines.get(behaviour, []):
            if mode is Mode.ENFORCE:
                expected_denials.append(line)
            elif mode is Mode.WARN:
                expected_warnings.append(line)

    assert response["uid"] == uid
    assert response["allowed"] is outcome.allowed is (not expected_denials)
    assert len(outcome.denials) == len(expected_denials)
    for got, want in zip(outcome.denials, expected_denials, strict=True):
        assert got.startswith(want)
    assert len(outcome.warnings) == len(expected_warnings)
    for got, want in zip(outcome.warnings, expected_warnings, strict=True):
        assert got.startswith(want)
    if outcome.allowed:
        assert outcome.code == 200
        assert "status" not in response
    else:
        assert outcome.code == (500 if failed else 403)
        assert response["status"] == {
            "code": outcome.code,
            "reason": "InternalError" if failed else "Forbidden",
            "message": "\n".join(outcome.denials),
        }
        for line in outcome.denials:
            assert line in response["status"]["message"]
    has_patch = mutating_answer and outcome.allowed and bool(outcome.patch)
    assert ("patch" in response) is has_patch
    assert ("patchType" in response) is has_patch
    if has_patch:
        assert json.loads(base64.b64decode(response["patch"])) == outcome.patch
    # the combined patch applies to the original object and gives the patched one
    assert original == st()
    assert jsonpatch.apply_patch(original, list(outcome.patch)) == outcome.patched
    patched_names = {s[0] for s in specs if s[2] == "patch"}
    assert set((outcome.patched or {}).get("metadata", {}).get("labels", {})) == patched_names
    assert ("warnings" in response) is bool(expected_warnings)
    audited = [s[0] for s in specs if s[2] in ("deny", "deny2") and s[3] is Mode.AUDIT]
    assert sorted(outcome.audit_annotations) == sorted(audited)


# --- copy-on-write -------------------------------------------------------------------------------


def test_patches_copy_only_what_they_change(policies: Policies) -> None:
    policies.mutating("a", lambda req: Verdict.mutate(add("/metadata/labels/x", "1")))
    policies.mutating("b", lambda req: Verdict.mutate(add("/metadata/labels/y", "2")))
    original = st(labels={"keep": "me"})
    original["spec"] = {"cells": {"region": "eu"}, "list": [{"a": 1}, {"b": 2}]}
    snapshot = json.loads(json.dumps(original))
    outcome = policies.engine().evaluate(make_request(original), want_patched=True)
    patched = outcome.patched
    assert patched is not None
    assert original == snapshot
    assert patched["metadata"]["labels"] == {"keep": "me", "x": "1", "y": "2"}
    assert patched["spec"] is original["spec"]  # shared, not copied
    assert patched["metadata"] is not original["metadata"]


def test_copy_on_write_with_lists_moves_copies_and_removes(policies: Policies) -> None:
    def edit(req: PolicyRequest) -> Verdict:
        return Verdict(
            patch=[
                {"op": "move", "from": "/spec/old", "path": "/spec/new"},  # type: ignore[typeddict-unknown-key]
                add("/spec/new/added", True),
                {"op": "copy", "from": "/spec/list/0", "path": "/spec/list/-"},  # type: ignore[typeddict-unknown-key]
                add("/spec/list/2/z", 3),
                remove("/spec/list/0/a"),
                {"op": "test", "path": "/spec/list/1", "value": {"b": 2}},
                {"op": "replace", "path": "/spec/list/1/b", "value": 5},
            ]
        )

    policies.mutating("edit", edit)
    policies.mutating("later", lambda req: Verdict.mutate(add("/spec/new/again", 1)))
    original = st()
    original["spec"] = {"old": {"k": "v"}, "list": [{"a": 1}, {"b": 2}]}
    snapshot = json.loads(json.dumps(original))
    outcome = policies.engine().evaluate(make_request(original), want_patched=True)
    assert outcome.allowed, outcome.message
    assert original == snapshot
    assert outcome.patched == {
        **snapshot,
        "spec": {"new": {"k": "v", "added": True, "again": 1}, "list": [{}, {"b": 5}, {"a": 1, "z": 3}]},
    }
    assert jsonpatch.apply_patch(snapshot, list(outcome.patch)) == outcome.patched


def test_a_failed_patch_leaves_the_shared_parts_alone(policies: Policies) -> None:
    policies.mutating("a", lambda req: Verdict.mutate(add("/spec/cells/x", "1"), remove("/spec/nope")))
    policies.mutating(
        "b", lambda req: Verdict.mutate(add("/spec/cells/y", "2")), failure_mode=FailureMode.IGNORE
    )
    original = st()
    original["spec"] = {"cells": {"region": "eu"}}
    outcome = policies.engine("policies:\n  a: {failureMode: ignore}\n").evaluate(
        make_request(original), want_patched=True
    )
    assert original["spec"] == {"cells": {"region": "eu"}}
    assert outcome.patched is not None
    assert outcome.patched["spec"] == {"cells": {"region": "eu", "y": "2"}}
    assert outcome.patch == [add("/spec/cells/y", "2")]


def test_replacing_the_whole_document(policies: Policies) -> None:
    replacement = st("other")
    policies.mutating("root", lambda req: Verdict.mutate({"op": "replace", "path": "", "value": replacement}))
    policies.mutating("then", lambda req: Verdict.mutate(add("/metadata/labels", {"a": "b"})))
    original = st()
    outcome = policies.engine().evaluate(make_request(original), want_patched=True)
    assert outcome.patched == st("other", labels={"a": "b"})
    assert replacement == st("other")
    assert original == st()


def test_a_patch_into_a_missing_list_index(policies: Policies) -> None:
    policies.mutating("m", lambda req: Verdict.mutate(add("/spec/list/9/x", 1)))
    original = st()
    original["spec"] = {"list": [{"a": 1}]}
    outcome = policies.engine().evaluate(make_request(original))
    assert outcome.denials == (
        "[m] policy failed: PolicyError: its patch does not apply: operation 0 (add /spec/list/9/x): "
        "index '9' is out of bounds",
    )
    assert original["spec"] == {"list": [{"a": 1}]}


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        (
            {"op": "replace", "path": "/metadata/labels/nope", "value": "x"},
            "can't replace a non-existent object 'nope'",
        ),
        ({"op": "remove", "path": "/metadata/labels/nope"}, "can't remove a non-existent object 'nope'"),
        ({"op": "add", "path": "/metadata/labels/x"}, "The operation does not contain a 'value' member"),
        ({"op": "frobnicate", "path": "/metadata/labels/x"}, "Unknown operation 'frobnicate'"),
        ({"op": "add", "path": "metadata", "value": 1}, "Location must start with /"),
        (
            {"op": "test", "path": "/metadata/name", "value": "west"},
            "east (<class 'str'>) is not equal to tested value west (<class 'str'>)",
        ),
    ],
)
def test_member_operations_that_do_not_apply(policies: Policies, op: dict[str, Any], reason: str) -> None:
    policies.mutating("m", lambda req: Verdict(patch=[op]))  # type: ignore[list-item]
    original = st(labels={"a": "b"})
    outcome = policies.engine().evaluate(make_request(original))
    label = f"{op['op']} {op['path']}"
    assert outcome.denials == (
        f"[m] policy failed: PolicyError: its patch does not apply: operation 0 ({label}): {reason}",
    )
    assert original == st(labels={"a": "b"})


def test_an_engine_dropped_without_close_stops_its_threads(policies: Policies) -> None:
    policies.validating("v", allow)
    engine = policies.engine()
    assert engine.evaluate(make_request(st()), deadline=time.monotonic() + 5).allowed
    pool = engine._pool()
    [worker] = pool._all
    del engine
    gc.collect()
    worker.thread.join(5)
    assert not worker.thread.is_alive()


def test_the_caller_waits_for_the_pool_thread_through_its_waiter(policies: Policies, gate: Gate) -> None:
    waits: list[float] = []

    def waiter(done: Any, timeout: float) -> bool:
        waits.append(timeout)
        return bool(done.acquire(timeout=timeout))

    policies.validating("quick", deny("spec", "no"))
    policies.validating("slow", gate.__call__)
    with policies.engine(waiter=waiter) as engine:
        outcome = engine.evaluate(make_request(st()), deadline=time.monotonic() + 5, policy="quick")
        assert outcome.denials == ("[quick] spec: no",)
        assert len(waits) == 1
        assert 4 < waits[0] <= 5
        # A waiter that gives up is the deadline passing: the running policy failed.
        engine.waiter = lambda done, timeout: gate.entered.wait(5) and False
        outcome = engine.evaluate(make_request(st()), deadline=time.monotonic() + 5, policy="slow")
    assert TIMEOUT_LINE.match(outcome.denials[0]), outcome.denials
