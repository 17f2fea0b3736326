"""The small pure parts of the virtual workspaces: the review cache, API path parsing, patching."""

from __future__ import annotations

import pytest

from kcp_tmc.reconcilers.virtualworkspace.auth import Caller, TTLCache
from kcp_tmc.reconcilers.virtualworkspace.errors import StatusError
from kcp_tmc.reconcilers.virtualworkspace.patching import apply_merge_patch, apply_patch
from kcp_tmc.reconcilers.virtualworkspace.requestinfo import (
    Discovery,
    ResourceRequest,
    parse_api_path,
    verb_of,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_entries_expire_after_their_ttl_and_the_least_recent_go_first() -> None:
    clock = Clock()
    cache: TTLCache[str] = TTLCache(2, clock)
    cache.put("a", "A", 10)
    cache.put("b", "B", 1)
    assert cache.get("a") == "A"
    clock.now = 1.0
    assert cache.get("b") is None, "expired at its own TTL"
    cache.put("b", "B", 10)
    cache.get("a")
    cache.put("c", "C", 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    assert len(cache) == 2
    cache.put("d", "D", 0)
    assert cache.get("d") is None, "a zero TTL stores nothing"
    with pytest.raises(ValueError, match=r"cache size must be >= 0 \(-1\)"):
        TTLCache(-1)


def test_caller_from_user_info_keeps_groups_uid_and_extra() -> None:
    caller = Caller.from_user_info({"username": "u", "uid": "1", "groups": ["g"], "extra": {"k": ["v"]}})
    assert caller == Caller("u", "1", ("g",), (("k", ("v",)),))


@pytest.mark.parametrize(
    ("path", "parsed"),
    [
        ("/api", Discovery(legacy=True)),
        ("/api/v1", Discovery(legacy=True, version="v1")),
        ("/apis", Discovery(legacy=False)),
        ("/apis/apps", Discovery(legacy=False, group="apps")),
        ("/apis/apps/v1", Discovery(legacy=False, group="apps", version="v1")),
        ("/api/v1/namespaces", ResourceRequest("", "v1", "namespaces")),
        ("/api/v1/namespaces/ns", ResourceRequest("", "v1", "namespaces", "", "ns")),
        ("/api/v1/namespaces/ns/status", ResourceRequest("", "v1", "namespaces", "", "ns", "status")),
        ("/api/v1/namespaces/ns/configmaps/c", ResourceRequest("", "v1", "configmaps", "ns", "c")),
        ("/apis/a.io/v1/namespaces/ns/xs/x/status", ResourceRequest("a.io", "v1", "xs", "ns", "x", "status")),
        ("/apis/a.io/v1/xs", ResourceRequest("a.io", "v1", "xs")),
        ("/", None),
        ("/healthz", None),
        ("/api/v1/configmaps/a/b/c", None),
        ("/api/v1/namespaces/ns/configmaps//x", None),
    ],
)
def test_api_paths_are_read_as_the_apiserver_reads_them(path, parsed) -> None:
    assert parse_api_path(path) == parsed


def test_backing_paths_and_verbs() -> None:
    request = ResourceRequest("a.io", "v1", "xs", "ns", "x", "status")
    assert request.backing_path() == "/apis/a.io/v1/namespaces/ns/xs/x/status"
    collection = ResourceRequest("", "v1", "configmaps")
    assert collection.backing_path() == "/api/v1/configmaps"
    assert [verb_of(m, collection, False) for m in ("GET", "POST", "DELETE", "OPTIONS")] == [
        "list",
        "create",
        "deletecollection",
        "",
    ]
    assert verb_of("GET", collection, True) == "watch"
    assert [verb_of(m, request, False) for m in ("GET", "PUT", "PATCH", "DELETE")] == [
        "get",
        "update",
        "patch",
        "delete",
    ]


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": {"b": 1, "c": 2}, "d": [1]}
    assert apply_merge_patch(target, {"a": {"b": None, "e": 3}, "d": [2]}) == {
        "a": {"c": 2, "e": 3},
        "d": [2],
    }
    assert apply_merge_patch(target, [1]) == [1]
    assert target == {"a": {"b": 1, "c": 2}, "d": [1]}, "the target is not changed"


@pytest.mark.parametrize(
    ("body", "content_type", "builtin", "code", "message"),
    [
        (b"{}", "application/strategic-merge-patch+json", False, 415, "accepted media types include"),
        (b'{"a": 1}', "application/json-patch+json", True, 400, "cannot unmarshal object"),
        (b"[1]", "application/merge-patch+json", True, 400, "cannot unmarshal array"),
    ],
)
def test_bad_patches_are_refused(body, content_type, builtin, code, message) -> None:
    with pytest.raises(StatusError) as refused:
        apply_patch({}, body, content_type, builtin=builtin)
    assert refused.value.code == code
    assert message in refused.value.body["message"]


def test_a_strategic_merge_patch_of_a_builtin_applies_as_a_merge_patch() -> None:
    patched = apply_patch(
        {"metadata": {"labels": {"a": "1"}}},
        b'{"metadata":{"labels":{"b":"2"}}}',
        "application/strategic-merge-patch+json",
        builtin=True,
    )
    assert patched == {"metadata": {"labels": {"a": "1", "b": "2"}}}
