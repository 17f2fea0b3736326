"""Hypothesis fuzzing of request bodies: never a 5xx, the uid echoed whenever it could be read."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcp_tmc.webhook import create_app
from kcp_tmc.webhook.app import EXTENSION
from tests.webhook.webhook_helpers import example

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
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


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(body=st.binary(max_size=200))
def test_random_bytes(fuzz_client: FlaskClient, body: bytes) -> None:
    check(fuzz_client, body)


@FUZZ
@given(value=JSON)
def test_random_json(fuzz_client: FlaskClient, value: Any) -> None:
    check(fuzz_client, json.dumps(value).encode())


@FUZZ
@given(review=mutated_reviews())
def test_mutated_reviews(fuzz_client: FlaskClient, review: Any) -> None:
    check(fuzz_client, json.dumps(review).encode())


@FUZZ
@given(review=mutated_reviews(), uid=JSON, version=st.sampled_from(["admission.k8s.io/v1", "x", 3]))
def test_mutated_envelopes(fuzz_client: FlaskClient, review: Any, uid: Any, version: Any) -> None:
    review["request"]["uid"] = uid
    review["apiVersion"] = version
    check(fuzz_client, json.dumps(review).encode())
