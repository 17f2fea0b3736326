"""The shared readers of YAML files: errors naming file and line, node descriptions, mapping checks."""

from __future__ import annotations

import pytest
import yaml

from kcp_tmc.policies.config import ConfigError
from kcp_tmc.policies.documents import DocumentError
from kcp_tmc.policies.suites import SuiteError
from kcp_tmc.policies.yamlfiles import SourceError, describe_node, node_line, read_mapping, yaml_problem


def _node(text: str) -> yaml.Node:
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    assert node is not None
    return node


@pytest.mark.parametrize("cls", [SourceError, DocumentError, ConfigError, SuiteError])
def test_errors_name_the_source_and_the_line_when_there_is_one(cls: type[SourceError]) -> None:
    with_line = cls("a.yaml", 3, "bad")
    assert (str(with_line), with_line.source, with_line.line, with_line.reason) == (
        "a.yaml:3: bad",
        "a.yaml",
        3,
        "bad",
    )
    assert str(cls("a.yaml", None, "bad")) == "a.yaml: bad"
    assert isinstance(with_line, ValueError)


def test_describe_node_and_node_line() -> None:
    root = _node("a: {x: 1}\nb: [1]\nc: null\nd: text\ne: 3\n")
    shown = {key.value: describe_node(value) for key, value in root.value}
    assert shown == {"a": "a mapping", "b": "a list", "c": "null", "d": "'text'", "e": "3"}
    assert [node_line(key) for key, _ in root.value] == [1, 2, 3, 4, 5]


def test_yaml_problem_gives_the_line_and_the_fault() -> None:
    with pytest.raises(yaml.MarkedYAMLError) as caught:
        yaml.safe_load("a: 1\nb: [1\n")
    assert yaml_problem(caught.value) == (
        3,
        "while parsing a flow sequence, expected ',' or ']', but got '<stream end>'",
    )


def _error(node: yaml.Node, reason: str) -> SourceError:
    return SourceError("f.yaml", node_line(node), reason)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "f.yaml:1: spec must be a mapping (got a list)"),
        ("1: x", "f.yaml:1: spec: keys must be strings (got 1)"),
        ("a: 1\na: 2", "f.yaml:2: spec: duplicate key 'a'"),
        ("a: 1\nc: 2", "f.yaml:2: spec: unknown key 'c' (expected one of a, b)"),
    ],
)
def test_read_mapping_refuses(text: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        read_mapping(_node(text), "spec", ("a", "b"), _error, prefix="spec: ")
    assert str(caught.value) == message


def test_read_mapping_returns_the_value_nodes_by_key() -> None:
    found = read_mapping(_node("a: 1\nz: 2"), "spec", (), _error, prefix="")
    assert {key: node.value for key, node in found.items()} == {"a": "1", "z": "2"}
