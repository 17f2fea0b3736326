"""Hypothesis fuzzing of the review endpoint and of every built-in policy behind it.

Never a 5xx, never an uncaught exception (no ``code: 500`` denial, no policy ``errored``), the uid
echoed whenever it could be read.  Two settings profiles: ``fuzz`` (300 examples a test, in
``make test``) and ``fuzz-chaos`` (10,000 a test, in ``make chaos``: with three routes per body
and one request per policy example that is well over 100,000 requests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcp_tmc.policies.policy import PolicyType
from kcp_tmc.policies.reviews import ReviewError, parse_review
from kcp_tmc.webhook import create_app
from kcp_tmc.webhook.app import EXTENSION
from tests.policies.builtin.test_builtin_robustness import objects
from tests.webhook.webhook_helpers import example

settings.register_profile(
    "fuzz",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # The nested test functions of both profiles share a name: no replay of one into the other.
    database=None,
)
settings.register_profile("fuzz-chaos", settings.get_profile("fuzz"), max_examples=10_000)
# Per policy: generating a whole object tree costs more than answering it, so fewer, in both runs.
settings.register_profile("fuzz-policy", settings.get_profile("fuzz"), max_examples=100)
settings.register_profile("fuzz-policy-chaos", settings.get_profile("fuzz"), max_examples=5_000)


def profiles(quick: str, long: str) -> pytest.MarkDecorator:
    """Run a fuzz test once with the quick profile and, under ``make chaos``, with the long one."""
    # The long run takes minutes: past the suite's 120 s per-test timeout, which would interrupt it.
    long_run = pytest.param(long, marks=[pytest.mark.chaos, pytest.mark.timeout(3600)])
    return pytest.mark.parametrize("profile", [quick, long_run])


PROFILES = profiles("fuzz", "fuzz-chaos")

_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)


def _nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return _LEAF | st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)


# Three levels, spelled out: as deep as the envelope checks need, and cheap to generate.
JSON = _nest(_nest(_nest(_LEAF)))
FIELDS = (
    "kind",
    "operation",
    "subResource",
    "namespace",
    "name",
    "userInfo",
    "object",
    "oldObject",
    "dryRun",
)


@pytest.fixture(scope="module")
def fuzz_client() -> Iterator[FlaskClient]:
    app = create_app({"log_reviews": False})
    yield app.test_client()
    app.extensions[EXTENSION].close()


@st.composite
def mutated_reviews(draw: st.DrawFn) -> Any:
    """A real review with some fields replaced by arbitrary JSON."""
    review = example(
        draw(st.sampled_from(["synctarget-create.json", "synctarget-status-update-future-heartbeat.json"]))
    )
    request = review["request"]
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        request[field] = draw(JSON)
    if draw(st.booleans()):
        obj = request.get("object")
        if isinstance(obj, dict):
            obj[draw(st.sampled_from(["metadata", "spec", "status"]))] = draw(JSON)
    return review


def readable_uid(body: bytes) -> str | None:
    """The uid an answer must echo: a review envelope of a known version with a string uid."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") != "AdmissionReview":
        return None
    if data.get("apiVersion") not in ("admission.k8s.io/v1", "admission.k8s.io/v1beta1"):
        return None
    request = data.get("request")
    uid = request.get("uid") if isinstance(request, dict) else None
    return uid if isinstance(uid, str) and uid else None


def check(client: FlaskClient, body: bytes) -> None:
    for path in ("/validate", "/mutate", "/mutate/synctarget-defaults"):
        resp = client.post(path, data=body, content_type="application/json")
        assert resp.status_code < 500, resp.get_data(as_text=True)
        answer = resp.get_json()
        uid = readable_uid(body)
        if uid is not None:
            assert resp.status_code == 200
            assert answer["response"]["uid"] == uid
            assert answer["kind"] == "AdmissionReview"
        else:
            assert resp.status_code == 400
            assert answer["kind"] == "Status"


@PROFILES
def test_random_bytes(fuzz_client: FlaskClient, profile: str) -> None:
    @settings(settings.get_profile(profile))
    @given(body=st.binary(max_size=200))
    def run(body: bytes) -> None:
        check(fuzz_client, body)

    run()


@PROFILES
def test_random_json(fuzz_client: FlaskClient, profile: str) -> None:
    @settings(settings.get_profile(profile))
    @given(value=JSON)
    def run(value: Any) -> None:
        check(fuzz_client, json.dumps(value).encode())

    run()


@PROFILES
def test_mutated_reviews(fuzz_client: FlaskClient, profile: str) -> None:
    @settings(settings.get_profile(profile))
    @given(review=mutated_reviews())
    def run(review: Any) -> None:
        check(fuzz_client, json.dumps(review).encode())

    run()


@PROFILES
def test_mutated_envelopes(fuzz_client: FlaskClient, profile: str) -> None:
    @settings(settings.get_profile(profile))
    @given(review=mutated_reviews(), uid=JSON, version=st.sampled_from(["admission.k8s.io/v1", "x", 3]))
    def run(review: Any, uid: Any, version: Any) -> None:
        review["request"]["uid"] = uid
        review["apiVersion"] = version
        check(fuzz_client, json.dumps(review).encode())

    run()


# --- every policy, through its own route ----------------------------------------------------------


def _policies() -> list[Any]:
    app = create_app({"log_reviews": False})
    try:
        return list(app.extensions[EXTENSION].engine.policies)
    finally:
        app.extensions[EXTENSION].close()


POLICIES = _policies()


@st.composite
def policy_reviews(draw: st.DrawFn, policy: Any) -> dict[str, Any]:
    """An AdmissionReview of one of ``policy``'s kinds with an arbitrary object, operation and subresource."""
    rtype = draw(st.sampled_from(list(policy.kinds)))
    operation = draw(st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]))
    obj = draw(objects)
    old = draw(objects) if operation in ("UPDATE", "DELETE") else {}
    if draw(st.booleans()) and isinstance(obj.get("metadata"), dict):
        obj["metadata"].setdefault("name", draw(st.text(max_size=70)))
    request: dict[str, Any] = {
        "uid": draw(st.text(min_size=1, max_size=40)),
        "kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "resource": {"group": rtype.group, "version": rtype.version, "resource": rtype.plural},
        "subResource": draw(st.sampled_from(["", "status", "scale", draw(st.text(max_size=8))])),
        "name": draw(st.text(max_size=70)),
        "namespace": draw(st.sampled_from(["", "default"])) if rtype.namespaced else "",
        "operation": operation,
        "userInfo": {"username": draw(st.text(max_size=20)), "groups": ["system:authenticated"]},
        "object": None
        if operation == "DELETE"
        else {"apiVersion": rtype.api_version, "kind": rtype.kind, **obj},
        "oldObject": {"apiVersion": rtype.api_version, "kind": rtype.kind, **old}
        if operation in ("UPDATE", "DELETE")
        else None,
        "dryRun": draw(st.booleans()),
    }
    version = draw(st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"]))
    return {"apiVersion": version, "kind": "AdmissionReview", "request": request}


@profiles("fuzz-policy", "fuzz-policy-chaos")
@pytest.mark.parametrize("policy", POLICIES, ids=[p.name for p in POLICIES])
def test_every_policy_answers_arbitrary_objects(fuzz_client: FlaskClient, policy: Any, profile: str) -> None:
    mutating = policy.type is PolicyType.MUTATING
    route = f"/{'mutate' if mutating else 'validate'}/{policy.name}"
    engine = fuzz_client.application.extensions[EXTENSION].engine

    @settings(settings.get_profile(profile))
    @given(review=policy_reviews(policy))
    def run(review: dict[str, Any]) -> None:
        resp = fuzz_client.post(route, data=json.dumps(review), content_type="application/json")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        answer = resp.get_json()
        assert answer["apiVersion"] == review["apiVersion"]
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"]
        assert isinstance(response["allowed"], bool)
        if not response["allowed"]:
            assert response["status"]["code"] != 500, response
            assert response["status"]["message"], response
        # The policy itself never raised (an errored policy may be hidden by failure mode Ignore).
        try:
            _, request = parse_review(review)
        except ReviewError:
            return  # refused before any policy ran: answered above with code 400
        outcome = engine.evaluate(request, phase="mutate" if mutating else "validate", policy=policy.name)
        errored = [(r.name, r.error) for r in outcome.results if r.decision == "errored"]
        assert errored == []

    run()
