"""The sliced JSON decoder equals ``json.loads``, and large reviews on an event loop go through it.

The server-level check (small reviews answered in time beside 3.5 MB ones on one worker) is in
``test_webhook_abuse.py``; here the decoder's results and errors, its pauses, and the review path's
choice between the two decoders, in process.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any

import gevent
import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.webhook import review, slicedjson
from kcp_tmc.webhook.app import EXTENSION
from tests.webhook.webhook_helpers import example

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
documents = st.recursive(
    scalars, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=15
)


def outcome(decode: Callable[[Any], Any], text: Any) -> tuple[str, Any]:
    try:
        return "ok", decode(text)
    except json.JSONDecodeError as exc:
        return "error", str(exc)


@settings(max_examples=100, deadline=None)
@given(documents, st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", "\t:\r ")]), st.booleans())
def test_every_document_decodes_to_what_json_loads_gives(doc: Any, separators: Any, as_bytes: bool) -> None:
    text = json.dumps(doc, separators=separators, ensure_ascii=False)
    data = text.encode() if as_bytes else text
    assert slicedjson.loads(data) == json.loads(data)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='{}[],:" \t\n\r\\abnul0123456789.-+eEtrfsNIy', max_size=30))
def test_any_text_gives_the_same_result_or_the_same_error(text: str) -> None:
    assert outcome(slicedjson.loads, text) == outcome(json.loads, text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ('{"a":1,}', "Expecting property name enclosed in double quotes: line 1 column 8 (char 7)"),
        ('{"a" 1}', "Expecting ':' delimiter: line 1 column 6 (char 5)"),
        ('{"a":1 "b":2}', "Expecting ',' delimiter: line 1 column 8 (char 7)"),
        ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
        ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
        ('{"a":1}}', "Extra data: line 1 column 8 (char 7)"),
        ('{"a":"x', "Unterminated string starting at: line 1 column 6 (char 5)"),
        ("\ufeff{}", "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)"),
    ],
)
def test_each_malformed_document_gets_the_standard_message(text: str, message: str) -> None:
    assert outcome(slicedjson.loads, text) == ("error", message) == outcome(json.loads, text)


def test_bytes_are_decoded_as_json_loads_decodes_them() -> None:
    doc = {"é": ["x", 1.5, None, True]}
    for encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32-le"):
        data = json.dumps(doc, ensure_ascii=False).encode(encoding)
        assert slicedjson.loads(data) == doc
    with pytest.raises(UnicodeDecodeError):
        slicedjson.loads(b'{"a":"\xff"}')


def test_nesting_past_the_recursion_limit_raises_recursion_error_as_json_loads_does() -> None:
    depth = sys.getrecursionlimit() + 10
    for text in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        with pytest.raises(RecursionError):
            json.loads(text)
        with pytest.raises(RecursionError):
            slicedjson.loads(text)
    assert slicedjson.loads("[" * 500 + "]" * 500) == json.loads("[" * 500 + "]" * 500)


def test_pause_is_called_between_slices_only() -> None:
    doc = {"labels": {f"k{i}": "v" for i in range(20_000)}, "list": list(range(5_000))}
    text = json.dumps(doc)
    calls: list[int] = []
    assert slicedjson.loads(text, lambda: calls.append(1), every=0.0) == doc
    # Every 256 values once the slice is used up: 25,000 values, so about a hundred pauses.
    assert 90 <= len(calls) <= 100
    calls.clear()
    assert slicedjson.loads(text, lambda: calls.append(1), every=3600.0) == doc
    assert calls == []


def labelled(count: int) -> bytes:
    doc = example("synctarget-create.json")
    doc["request"]["object"]["metadata"]["labels"] = {f"k{i}": "v" for i in range(count)}
    return json.dumps(doc).encode()


def post(app: Flask, path: str, body: bytes) -> tuple[int, bytes]:
    reply = app.test_client().post(path, data=body, content_type="application/json")
    return reply.status_code, reply.get_data()


def test_a_large_review_on_a_greenlet_is_decoded_in_slices_and_evaluated_off_the_loop(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    body = labelled(30_000)
    assert len(body) >= review.OFFLOAD_BYTES
    engine = app.extensions[EXTENSION].engine
    evaluated_on: list[threading.Thread] = []
    evaluate = engine.evaluate

    def recording(*args: Any, **kwargs: Any) -> Any:
        evaluated_on.append(threading.current_thread())
        return evaluate(*args, **kwargs)

    pauses: list[int] = []
    monkeypatch.setattr(engine, "evaluate", recording)
    monkeypatch.setattr(review, "_yield_to_loop", lambda: pauses.append(1) or gevent.idle())
    for path in ("/validate", "/mutate"):
        inline = post(app, path, body)
        assert evaluated_on.pop() is threading.current_thread()
        assert pauses == []
        on_loop = gevent.spawn(post, app, path, body).get(timeout=30)
        assert on_loop == inline
        assert (
            json.loads(on_loop[1])["response"]["uid"] == example("synctarget-create.json")["request"]["uid"]
        )
        assert evaluated_on.pop() is not threading.current_thread()
        assert pauses, "the decoder never let the loop run"
        pauses.clear()
    # A small review on a greenlet stays on the loop, decoded in one go.
    small = json.dumps(example("synctarget-create.json")).encode()
    assert gevent.spawn(post, app, "/validate", small).get(timeout=30)[0] == 200
    assert evaluated_on.pop() is threading.current_thread()
    assert pauses == []


def test_a_large_malformed_body_on_a_greenlet_gets_the_same_400(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    body = labelled(30_000)[:-1]
    inline = post(app, "/validate", body)
    assert inline[0] == 400
    assert json.loads(inline[1])["message"].startswith("the body is not valid JSON: Expecting ',' delimiter")
    assert gevent.spawn(post, app, "/validate", body).get(timeout=30) == inline


def test_a_bug_while_evaluating_a_large_review_off_the_loop_is_a_500_denial(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    engine = app.extensions[EXTENSION].engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(engine, "evaluate", broken)
    status, body = gevent.spawn(post, app, "/validate", labelled(30_000)).get(timeout=30)
    uid = example("synctarget-create.json")["request"]["uid"]
    assert status == 200
    response = json.loads(body)["response"]
    assert (response["uid"], response["allowed"], response["status"]["code"]) == (uid, False, 500)
    assert response["status"]["message"] == (
        f"internal error in the webhook (ZeroDivisionError); its log has the details under uid {uid}"
    )
    assert f"internal error answering review {uid}" in caplog.text
