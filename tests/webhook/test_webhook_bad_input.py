"""Every bad-input path of the review routes: exact status codes and messages."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kcp_tmc.policies.reviews import make_review
from tests.webhook.webhook_helpers import post, sync_target


def refused(resp: Any, code: int, message: str) -> None:
    assert resp.status_code == code, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"] == "application/json"
    body = resp.get_json()
    assert body["kind"] == "Status"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["message"] == message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is not valid JSON: Expecting value: line 1 column 1 (char 0)"),
        (
            b"{not json",
            "the body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            b"\xff\xfe\x00",
            "the body is not valid JSON: 'utf-16-le' codec can't decode byte 0x00 in position 2: "
            "truncated data",
        ),
        (b"[]", "an AdmissionReview must be a JSON object, got a list"),
        (b'{"kind": "Pod"}', "kind must be AdmissionReview, got 'Pod'"),
        (b'{"apiVersion": "admission.k8s.io/v1"}', "kind must be AdmissionReview, it is missing"),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "v1"}',
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got 'v1'",
        ),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}',
            "request is missing: an AdmissionReview from the apiserver carries one",
        ),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {}}',
            "request.uid is missing",
        ),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": ""}}',
            "request.uid must be a non-empty string, got an empty one",
        ),
        (
            b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {"uid": 7}}',
            "request.uid must be a non-empty string, got a number",
        ),
    ],
)
def test_bodies_that_are_not_reviews_get_400(client: FlaskClient, body: bytes, message: str) -> None:
    for path in ("/validate", "/mutate/synctarget-defaults"):
        refused(post(client, path, body), 400, message)


def test_bad_field_with_a_readable_uid_is_answered_as_a_review(client: FlaskClient) -> None:
    review = make_review(sync_target(), uid="u-7")
    review["request"]["operation"] = "PATCH"  # type: ignore[typeddict-item]
    resp = post(client, "/validate", review)
    assert resp.status_code == 200
    assert resp.get_json() == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": "u-7",
            "allowed": False,
            "status": {
                "code": 400,
                "reason": "BadRequest",
                "message": "request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, got 'PATCH'",
            },
        },
    }


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("text/plain", "Content-Type must be application/json, got 'text/plain'"),
        ("application/yaml", "Content-Type must be application/json, got 'application/yaml'"),
        ("", "Content-Type must be application/json, it is missing"),
    ],
)
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str, message: str) -> None:
    body = json.dumps(make_review(sync_target()))
    resp = client.post("/validate", data=body, headers={"Content-Type": content_type} if content_type else {})
    refused(resp, 415, message)


def test_content_type_parameters_are_accepted(client: FlaskClient) -> None:
    body = json.dumps(make_review(sync_target(), uid="p"))
    resp = client.post("/validate", data=body, content_type="Application/JSON; charset=utf-8")
    assert resp.status_code == 200
    assert resp.get_json()["response"]["uid"] == "p"


class Unreadable(io.RawIOBase):
    """A body stream that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("the body was read")

    def readinto(self, buf: Any) -> int:
        raise AssertionError("the body was read")


def test_oversized_body_is_413_without_reading_it(make_app: Callable[..., Flask]) -> None:
    for fast in (True, False):
        client = make_app(max_body_bytes=1000, fast_path=fast).test_client()
        resp = client.post(
            "/validate",
            content_type="application/json",
            environ_overrides={"wsgi.input": Unreadable(), "CONTENT_LENGTH": "5000000"},
        )
        refused(resp, 413, "the body is 5000000 bytes, over the limit of 1000 bytes")


class Counting(io.RawIOBase):
    """An endless stream of spaces that counts what was read (a chunked body without length)."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = 65536 if size is None or size < 0 else size
        self.read_bytes += size
        return b" " * size


def test_body_without_length_is_cut_at_the_limit(make_app: Callable[..., Flask]) -> None:
    app = make_app(max_body_bytes=100_000)
    stream = Counting()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/validate",
        "CONTENT_TYPE": "application/json",
        "wsgi.input": stream,
    }
    status, _headers, body = app.extensions["kcp_tmc.webhook"].service.serve(
        environ, __import__("kcp_tmc.webhook.review", fromlist=["Route"]).Route(False, None)
    )
    assert status == "413 Content Too Large"
    assert json.loads(body)["message"] == "the body is over the limit of 100000 bytes"
    assert stream.read_bytes == 100_001


def test_body_shorter_than_its_length_is_400(client: FlaskClient) -> None:
    resp = client.post(
        "/validate",
        content_type="application/json",
        environ_overrides={"wsgi.input": io.BytesIO(b'{"kind":'), "CONTENT_LENGTH": "100"},
    )
    refused(resp, 400, "the body ended after 8 of 100 bytes")


def test_unreadable_body_is_400(make_app: Callable[..., Flask]) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            raise ConnectionResetError(104, "Connection reset by peer")

    from kcp_tmc.webhook.review import Route

    service = make_app().extensions["kcp_tmc.webhook"].service
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": "10",
        "wsgi.input": Broken(),
    }
    status, _, body = service.serve(environ, Route(False, None))
    assert status == "400 Bad Request"
    assert json.loads(body)["message"] == "cannot read the body: [Errno 104] Connection reset by peer"


@pytest.mark.parametrize("length", ["ten", "-1"])
def test_bad_content_length_is_400(make_app: Callable[..., Flask], length: str) -> None:
    from kcp_tmc.webhook.review import Route

    service = make_app().extensions["kcp_tmc.webhook"].service
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": length,
        "wsgi.input": io.BytesIO(b"{}"),
    }
    status, _, body = service.serve(environ, Route(False, None))
    assert status == "400 Bad Request"
    assert json.loads(body)["message"] == f"Content-Length must be a number of bytes, got {length!r}"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(client: FlaskClient, method: str) -> None:
    resp = client.open("/validate", method=method)
    refused(resp, 405, "send AdmissionReviews with POST")
    assert resp.headers["Allow"] == "POST"


@pytest.mark.parametrize("path", ["/validate/", "/validate/a/b", "/validatex", "/nothing"])
def test_unknown_paths_are_404_json(client: FlaskClient, path: str) -> None:
    resp = post(client, path, make_review(sync_target()))
    assert resp.status_code == 404
    assert resp.get_json()["reason"] == "NotFound"


def test_bad_input_is_counted_as_invalid(client: FlaskClient) -> None:
    post(client, "/validate", b"nope")
    client.post("/validate", data="{}", content_type="text/plain")
    text = client.get("/metrics").get_data(as_text=True)
    assert (
        'tmc_admission_requests_total{kind="other",operation="other",outcome="invalid",'
        'webhook="/validate"} 2.0' in text
    )


def test_deeply_nested_json_is_400(client: FlaskClient) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    refused(post(client, "/validate", body), 400, "the body is not valid JSON: it is nested too deeply")


def test_a_broken_environ_is_still_answered(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    from kcp_tmc.webhook.review import Route

    service = make_app().extensions["kcp_tmc.webhook"].service
    status, headers, body = service.serve(
        {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json"}, Route(False, None)
    )
    assert status == "400 Bad Request"
    assert ("Connection", "close") in headers
    assert json.loads(body)["message"] == "cannot handle the request: KeyError"
    assert "cannot answer a request on /validate" in caplog.text
