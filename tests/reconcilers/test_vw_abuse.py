"""The syncer virtual workspace under abuse: borrowed tokens, path tricks, stale UIDs, leaked
credentials and selectors that try to widen the state-label filter.

Every request here is sent byte for byte as written (``http.client``; urllib3 would clean dot
segments before they reach the server) and every answer is checked by status and message.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest

from kcp_tmc.policies.keys import state_label, sync_target_key
from kcp_tmc.reconcilers.resources import SYNCTARGETS
from tests.reconcilers.vw_env import CONFIGMAPS, SYNCER_TOKEN, VWEnv, sync_rule

KEY = state_label(sync_target_key("root", "st1"))
OTHER_KEY = state_label(sync_target_key("root", "st2"))


def raw_get(env: VWEnv, path: str, token: str = SYNCER_TOKEN) -> tuple[int, bytes]:
    """``GET path`` exactly as given, with a bearer token: the status and the body's bytes."""
    host, _, port = env.server.url.removeprefix("https://").partition(":")
    conn = http.client.HTTPSConnection(
        host, int(port), context=ssl.create_default_context(cafile=env.ca_path), timeout=10
    )
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        reply = conn.getresponse()
        return reply.status, reply.read()
    finally:
        conn.close()


def send(env: VWEnv, path: str, token: str = SYNCER_TOKEN) -> tuple[int, Any]:
    """``GET path`` exactly as given: the status and the decoded body."""
    status, data = raw_get(env, path, token)
    return status, json.loads(data) if data else None


@pytest.fixture
def targets(vw_env: VWEnv) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """st1 (the syncer's, with one placed, one pending and one foreign ConfigMap) and st2."""
    st1 = vw_env.create_target()
    st2 = vw_env.create_target("st2")
    vw_env.wait_for_target()
    vw_env.wait_for_target("st2")
    vw_env.configmap("placed")
    vw_env.configmap("pending", state="")
    vw_env.configmap("foreign", target="st2")
    yield st1, st2


def base(target: dict[str, Any], cluster: str = "*") -> str:
    meta = target["metadata"]
    return f"/services/syncer/root/{meta['name']}/{meta['uid']}/clusters/{cluster}"


def names(body: Any) -> list[str]:
    return sorted(item["metadata"]["name"] for item in body["items"])


# --- another target's token ------------------------------------------------------------------------


def test_a_token_granted_on_one_target_is_forbidden_on_anothers_path(vw_env: VWEnv, targets) -> None:
    _, st2 = targets
    for suffix, verb in ((CONFIGMAPS, "list"), (CONFIGMAPS + "/foreign", "get")):
        status, body = send(vw_env, base(st2) + suffix)
        what = 'configmaps "foreign" is forbidden' if verb == "get" else "configmaps is forbidden"
        assert (status, body["reason"], body["message"]) == (
            403,
            "Forbidden",
            f'{what}: User "syncer" cannot {verb} resource "configmaps" in API group "" '
            'in the namespace "default"',
        ), suffix


def test_one_targets_uid_on_anothers_name_is_a_uid_mismatch(vw_env: VWEnv, targets) -> None:
    st1, st2 = targets
    path = f"/services/syncer/root/st1/{st2['metadata']['uid']}/clusters/*" + CONFIGMAPS
    status, body = send(vw_env, path)
    assert (status, body["reason"], body["message"]) == (
        404,
        "NotFound",
        f"sync target UID mismatch: {st1['metadata']['uid']} != {st2['metadata']['uid']}",
    )


# --- path traversal --------------------------------------------------------------------------------

EMPTY_OR_DOT = "has an empty, '.' or '..' segment"


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        # Each of these would have widened or moved the request once the backing client cleaned it.
        ("/api/v1/namespaces/../configmaps", EMPTY_OR_DOT),
        ("/api/v1/namespaces/%2E%2E/configmaps", EMPTY_OR_DOT),
        ("/api/v1/namespaces/default/configmaps/..", EMPTY_OR_DOT),
        ("/api/v1/namespaces/default/configmaps/%2e%2e", EMPTY_OR_DOT),
        ("/api/v1/namespaces/default/configmaps/.", EMPTY_OR_DOT),
        ("/api/v1/namespaces/default/configmaps/placed/../pending", EMPTY_OR_DOT),
        ("/api/v1/namespaces/default//configmaps", EMPTY_OR_DOT),
        ("//api/v1/namespaces/default/configmaps", EMPTY_OR_DOT),
        ("/api/v1/namespaces/default/configmaps/x%2F..%2Fpending", "has an encoded slash (%2F)"),
        ("/api/v1/namespaces/default/configmaps/x%2f..%2fpending", "has an encoded slash (%2F)"),
        ("/api/v1/namespaces/default%2Fconfigmaps", "has an encoded slash (%2F)"),
    ],
)
def test_traversal_inside_the_api_path_is_refused(vw_env: VWEnv, targets, suffix: str, message: str) -> None:
    st1, _ = targets
    path = base(st1) + suffix
    status, body = send(vw_env, path)
    assert (status, body["reason"]) == (404, "NotFound"), body
    assert message in body["message"], body["message"]
    assert body["message"].startswith("path '/services/syncer/root/st1/"), body["message"]


@pytest.mark.parametrize(
    ("template", "message"),
    [
        # Out of the caller's own target into st2's.
        ("/services/syncer/root/st1/{uid1}/clusters/../../st2/{uid2}/clusters/*", EMPTY_OR_DOT),
        ("/services/syncer/root/st2/{uid2}/clusters/*/../../../st1/{uid1}/clusters/*", EMPTY_OR_DOT),
        ("/services/syncer/root/st1/{uid1}/clusters/..%2F..%2Fst2%2F{uid2}%2Fclusters%2F*", "encoded slash"),
        ("/services/syncer/root/st1%2F{uid1}/clusters/*", "has an encoded slash (%2F)"),
        ("/services/syncer/root/st1/{uid1}/clusters//api", EMPTY_OR_DOT),
        ("/services/syncer/root/st1/{uid1}/./clusters/*", EMPTY_OR_DOT),
        ("/services/syncer/root/st1/{uid1}//clusters/*", EMPTY_OR_DOT),
    ],
)
def test_traversal_across_the_workspace_prefix_is_refused(
    vw_env: VWEnv, targets, template: str, message: str
) -> None:
    st1, st2 = targets
    path = template.format(uid1=st1["metadata"]["uid"], uid2=st2["metadata"]["uid"]) + CONFIGMAPS
    status, body = send(vw_env, path)
    assert (status, body["reason"]) == (404, "NotFound"), body
    assert message in body["message"], body["message"]


def test_a_trailing_slash_and_an_escaped_wildcard_still_work(vw_env: VWEnv, targets) -> None:
    st1, _ = targets
    meta = st1["metadata"]
    for path in (
        base(st1) + CONFIGMAPS + "/",
        f"/services/syncer/root/st1/{meta['uid']}/clusters/%2A" + CONFIGMAPS,
    ):
        status, body = send(vw_env, path)
        assert (status, names(body)) == (200, ["placed"]), path


# --- a stale UID -----------------------------------------------------------------------------------


def test_a_recreated_target_refuses_its_old_uid(vw_env: VWEnv, targets) -> None:
    st1, _ = targets
    old = st1["metadata"]["uid"]
    vw_env.kube.delete(SYNCTARGETS, "st1")
    new = vw_env.create_target()["metadata"]["uid"]
    deadline = time.monotonic() + 10
    while (vw_env.server.workspace.targets.objects.get("st1") or {}).get("metadata", {}).get("uid") != new:
        assert time.monotonic() < deadline, "the recreated SyncTarget never reached the cache"
        time.sleep(0.02)
    status, body = send(vw_env, base(st1) + CONFIGMAPS)
    assert (status, body["reason"], body["message"]) == (
        404,
        "NotFound",
        f"sync target UID mismatch: {new} != {old}",
    )
    status, body = send(vw_env, base({"metadata": {"name": "st1", "uid": new}}) + CONFIGMAPS)
    assert (status, names(body)) == (200, ["placed"])


# --- the caller's credentials ----------------------------------------------------------------------


def test_the_callers_authorization_header_never_reaches_the_backing_apiserver(vw_env: VWEnv, targets) -> None:
    st1, _ = targets
    received: list[str] = []
    real = vw_env.api._authenticate

    def recording(authorization: str) -> Any:
        received.append(authorization)
        return real(authorization)

    with mock.patch.object(vw_env.api, "_authenticate", recording):
        for path in (
            base(st1) + CONFIGMAPS,
            base(st1) + CONFIGMAPS + "/placed",
            base(st1) + CONFIGMAPS + "?watch=1&timeoutSeconds=1",
            base(st1) + "/api/v1",
        ):
            assert send(vw_env, path)[0] == 200, path
        # An unknown token goes no further than the TokenReview (in its body, never as a header).
        assert send(vw_env, base(st1) + CONFIGMAPS, token="attacker-token")[0] == 401
    assert received, "the virtual workspace made no backing call"
    assert set(received) == {f"Bearer {vw_env.api.admin_token}"}


# --- selectors that try to widen the state-label filter --------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (f"{KEY}!=Sync", []),
        (f"{KEY} in (Sync,Upsync)", ["placed"]),
        (f"{KEY} notin (Sync)", []),
        (f"!{KEY}", []),
        (f"{KEY}", ["placed"]),
        (f"{KEY}=", []),
        (f"{OTHER_KEY}=Sync", []),
        (f"{OTHER_KEY}", []),
        (f"{KEY}=Sync,{OTHER_KEY}=Sync", []),
        # "OR" by a comma: a comma ANDs, so the workspace's own requirement still holds.
        (f"{KEY}!=Sync,{KEY}=Sync", []),
    ],
)
def test_a_label_selector_never_widens_the_filter(
    vw_env: VWEnv, targets, selector: str, expected: list[str]
) -> None:
    st1, _ = targets
    status, body = send(vw_env, base(st1) + CONFIGMAPS + "?labelSelector=" + quote(selector, safe=""))
    assert (status, names(body)) == (200, expected), selector


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("app in (a),(b)", "found '(', expected: identifier after ','"),
        (
            f"app=x&labelSelector={KEY}!=Sync",  # an ampersand smuggled inside the value stays in it
            'unable to parse requirement: values[0][app]: Invalid value: "x&labelSelector": a valid label '
            "must be an empty string or consist of alphanumeric characters",
        ),
    ],
)
def test_a_malformed_selector_is_the_apiservers_bad_request(
    vw_env: VWEnv, targets, selector: str, message: str
) -> None:
    st1, _ = targets
    status, body = send(vw_env, base(st1) + CONFIGMAPS + "?labelSelector=" + quote(selector, safe=""))
    assert (status, body["reason"]) == (400, "BadRequest")
    assert body["message"].startswith(message), body["message"]


def test_a_second_label_selector_parameter_is_ignored_as_the_apiserver_does(vw_env: VWEnv, targets) -> None:
    st1, _ = targets
    # The first value counts (as Go's url.Values.Get); the second alone would show "placed".
    query = f"?labelSelector=app%3Dx&labelSelector={quote(KEY, safe='')}"
    status, body = send(vw_env, base(st1) + CONFIGMAPS + query)
    assert (status, names(body)) == (200, [])


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("metadata.name=pending", []),
        ("metadata.name!=placed", []),
        ("metadata.namespace=default", ["placed"]),
    ],
)
def test_a_field_selector_only_narrows(vw_env: VWEnv, targets, selector: str, expected: list[str]) -> None:
    st1, _ = targets
    status, body = send(vw_env, base(st1) + CONFIGMAPS + "?fieldSelector=" + quote(selector, safe=""))
    assert (status, names(body)) == (200, expected)


def test_a_watch_with_a_widening_selector_sees_only_the_targets_objects(vw_env: VWEnv, targets) -> None:
    st1, _ = targets
    query = "?watch=1&timeoutSeconds=1&labelSelector=" + quote(f"{KEY} in (Sync,Upsync)", safe="")
    status, data = raw_get(vw_env, base(st1) + CONFIGMAPS + query)
    events = [json.loads(line) for line in data.splitlines() if line.strip()]
    assert status == 200
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "placed")]


def test_granting_st2_lets_the_same_token_in_but_still_only_to_st2s_objects(tmp_path) -> None:
    with VWEnv.running(tmp_path) as env:
        env.api.authorizer.rules.append(sync_rule("syncer", "st2"))
        st2 = env.create_target("st2")
        env.wait_for_target("st2")
        env.configmap("mine", target="st1")
        env.configmap("theirs", target="st2")
        status, body = send(env, base(st2) + CONFIGMAPS + "?labelSelector=" + quote(f"{KEY}=Sync", safe=""))
        assert (status, names(body)) == (200, [])
        status, body = send(env, base(st2) + CONFIGMAPS)
        assert (status, names(body)) == (200, ["theirs"])
