"""JSON Patch builders: pointers, single operations, and set_map_entry's minimal patches."""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from kcp_tmc.policies.patches import add, escape, pointer, remove, replace, set_map_entry


def _apply(obj: dict[str, Any], ops: list[Any]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    return result


def test_pointer_escapes_tilde_before_slash() -> None:
    assert escape("a~/b") == "a~0~1b"
    assert pointer("metadata", "labels", "example.com/a~b", 0) == "/metadata/labels/example.com~1a~0b/0"
    assert pointer() == ""


def test_single_operations() -> None:
    assert add("/a", 1) == {"op": "add", "path": "/a", "value": 1}
    assert replace("/a", 2) == {"op": "replace", "path": "/a", "value": 2}
    assert remove("/a") == {"op": "remove", "path": "/a"}


def test_set_map_entry_adds_one_key_to_an_existing_map() -> None:
    obj = {"metadata": {"labels": {"a": "1"}}}
    ops = set_map_entry(obj, ("metadata", "labels"), "b/c", "2")
    assert ops == [{"op": "add", "path": "/metadata/labels/b~1c", "value": "2"}]
    assert _apply(obj, ops) == {"metadata": {"labels": {"a": "1", "b/c": "2"}}}


def test_set_map_entry_creates_the_missing_chain_in_one_operation() -> None:
    obj: dict[str, Any] = {"spec": {}}
    ops = set_map_entry(obj, ("metadata", "annotations", "deep"), "k", "v")
    assert ops == [{"op": "add", "path": "/metadata", "value": {"annotations": {"deep": {"k": "v"}}}}]
    assert _apply(obj, ops) == {"spec": {}, "metadata": {"annotations": {"deep": {"k": "v"}}}}


def test_set_map_entry_replaces_a_parent_that_is_not_a_map() -> None:
    obj = {"metadata": {"labels": None}}
    ops = set_map_entry(obj, ("metadata", "labels"), "k", "v")
    assert _apply(obj, ops) == {"metadata": {"labels": {"k": "v"}}}


def test_set_map_entry_is_empty_when_the_value_is_already_there() -> None:
    assert set_map_entry({"metadata": {"labels": {"k": "v"}}}, ("metadata", "labels"), "k", "v") == []
