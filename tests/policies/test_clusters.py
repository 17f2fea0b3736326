"""Logical cluster of an object and workspace paths."""

from __future__ import annotations

from typing import Any

import pytest

from kcp_tmc.policies.clusters import (
    ANNOTATION_CLUSTER,
    DEFAULT_CLUSTER,
    cluster_of,
    is_valid_cluster_name,
    is_valid_cluster_path,
    join_path,
    parent_path,
)


def test_constants() -> None:
    assert ANNOTATION_CLUSTER == "kcp.io/cluster"
    assert DEFAULT_CLUSTER == "root"


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"metadata": {"annotations": {"kcp.io/cluster": "2t0gpaylzr6ws2i4"}}}, "2t0gpaylzr6ws2i4"),
        ({"metadata": {"annotations": {"kcp.io/cluster": ""}}}, "root"),
        ({"metadata": {"annotations": {"kcp.io/cluster": 7}}}, "root"),
        ({"metadata": {"annotations": None}}, "root"),
        ({"metadata": {"annotations": {}}}, "root"),
        ({"metadata": None}, "root"),
        ({"metadata": "junk"}, "root"),
        ({}, "root"),
        (None, "root"),
    ],
)
def test_cluster_of(obj: dict[str, Any] | None, expected: str) -> None:
    assert cluster_of(obj) == expected


def test_cluster_of_custom_default() -> None:
    assert cluster_of({}, default="root:org") == "root:org"
    assert cluster_of(None, "") == ""


@pytest.mark.parametrize("path", ["root", "root:org:ws", "a", "a-b:c1", "0", "root:my-team:x9", "1-2-3:a"])
def test_valid_paths(path: str) -> None:
    assert is_valid_cluster_path(path)


@pytest.mark.parametrize(
    "path",
    ["", ":", "root:", ":root", "root::ws", "Root", "-a", "a-", "a_b", "a b", "root:ws\n", "a.b", "root:-x"],
)
def test_invalid_paths(path: str) -> None:
    assert not is_valid_cluster_path(path)


@pytest.mark.parametrize("name", ["root", "2t0gpaylzr6ws2i4", "a-b", "0", "system:admin", "system:a:b"])
def test_valid_names(name: str) -> None:
    assert is_valid_cluster_name(name)


@pytest.mark.parametrize(
    "name", ["", "root:org:ws", "root:", "system:", "Root", "-a", "a-", "a_b", "root\n", "*"]
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_cluster_name(name)


def test_join_and_parent() -> None:
    assert join_path("root:org", "ws") == "root:org:ws"
    assert join_path("", "ws") == "ws"
    assert parent_path("root:org:ws") == "root:org"
    assert parent_path("root") == ""
    assert parent_path(join_path("root", "x")) == "root"
