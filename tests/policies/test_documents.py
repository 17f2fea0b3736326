"""Reading objects from JSON and YAML files as kubectl does: JSON values only, faults with file and line."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from kcp_tmc.policies.documents import DocumentError, describe, load_documents, parse_documents, read_text


def test_yaml_gives_json_values_only() -> None:
    assert parse_documents("a: 2024-01-02T15:04:05Z\nb: 2024-01-02\nc: yes\nd: [1, 2.5, null]\n", "x") == [
        {"a": "2024-01-02T15:04:05Z", "b": "2024-01-02", "c": True, "d": [1, 2.5, None]}
    ]


@pytest.mark.parametrize(
    "tag", ["!!timestamp 2024-01-02", "!!binary aGk=", "!!set {a: null}", "!!omap [a: 1]"]
)
def test_non_json_tags_are_refused(tag: str) -> None:
    with pytest.raises(DocumentError) as info:
        parse_documents(f"a: {tag}\n", "f.yaml")
    assert info.value.line == 1
    assert str(info.value).startswith(
        "f.yaml:1: not valid JSON or YAML: could not determine a constructor for the tag"
    )


def test_json_with_tabs_is_read_as_json() -> None:
    assert parse_documents('{\n\t"a": 1\n}', "x") == [{"a": 1}]


def test_yaml_flow_style_that_is_not_json() -> None:
    assert parse_documents("{a: 1, b: [x]}", "x") == [{"a": 1, "b": ["x"]}]


def test_several_documents_and_empty_ones() -> None:
    assert parse_documents("---\na: 1\n---\n---\nb: 2\n", "x") == [{"a": 1}, {"b": 2}]
    assert parse_documents("# only a comment\n", "x") == []


def test_a_stream_error_without_a_mark() -> None:
    with pytest.raises(DocumentError) as info:
        parse_documents("a: \x00", "f.yaml")
    assert info.value.line is None
    assert str(info.value).startswith("f.yaml: not valid JSON or YAML: unacceptable character #x0000")


def test_read_text_reports_the_fault(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"^missing.yaml: no such file$"):
        read_text("missing.yaml")
    with pytest.raises(DocumentError, match=r": is a directory, not a file$"):
        read_text(tmp_path)
    (tmp_path / "latin1").write_bytes(b"caf\xe9 au lait")
    with pytest.raises(DocumentError, match=r"latin1: not UTF-8 text: invalid continuation byte$"):
        read_text(tmp_path / "latin1")
    with pytest.raises(DocumentError, match=r"^nul\x00: cannot read the file: embedded null byte$"):
        read_text("nul\x00")
    with pytest.raises(DocumentError, match=r"latin1/x: cannot read the file: Not a directory$"):
        read_text(tmp_path / "latin1" / "x")


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("a: 1\n"))
    assert load_documents("-") == ([{"a": 1}], "<stdin>")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff"), encoding="utf-8"))
    with pytest.raises(DocumentError, match=r"^<stdin>: not UTF-8 text: invalid start byte$"):
        read_text("-")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "a boolean"),
        ("x", "a string"),
        (1.5, "a number"),
        ([], "a list"),
        ({}, "a mapping"),
        (b"x", "bytes"),
    ],
)
def test_describe(value: object, text: str) -> None:
    assert describe(value) == text
