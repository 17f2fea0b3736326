"""The URL acceptance rules of the syncer and upsyncer virtual workspaces."""

from __future__ import annotations

import pytest

from kcp_tmc.policies.keys import sync_target_key
from kcp_tmc.reconcilers.virtualworkspace.paths import (
    PathRefused,
    check_target,
    not_found_status,
    parse_vw_path,
)

BASE = "/services/syncer/2t0gpaylzr6ws2i4/us-west1/uid-1"


def test_a_full_path_is_split_into_its_parts() -> None:
    parsed = parse_vw_path(f"{BASE}/clusters/*/api/v1/configmaps")
    assert (parsed.service, parsed.target_cluster, parsed.target_name, parsed.target_uid) == (
        "syncer",
        "2t0gpaylzr6ws2i4",
        "us-west1",
        "uid-1",
    )
    assert (parsed.cluster, parsed.api_path) == ("*", "/api/v1/configmaps")
    assert parsed.key == sync_target_key("2t0gpaylzr6ws2i4", "us-west1")


def test_upsyncer_and_named_clusters_and_system_names_are_accepted() -> None:
    parsed = parse_vw_path("/services/upsyncer/system:admin/st/u/clusters/abc-1/api")
    assert (parsed.service, parsed.target_cluster, parsed.cluster, parsed.api_path) == (
        "upsyncer",
        "system:admin",
        "abc-1",
        "/api",
    )


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/services/other/c/n/u/clusters/*/api", "is not under /services/syncer/ or /services/upsyncer/"),
        ("/services/syncer/c/n", "lacks the SyncTarget cluster, name or UID"),
        ("/services/syncer/c//u/clusters/*/api", "lacks the SyncTarget cluster, name or UID"),
        ("/services/syncer/root:org/n/u/clusters/*/api", "SyncTarget cluster 'root:org' is not a logical"),
        ("/services/syncer/c/n/u/api/v1", "lacks the /clusters/<cluster> segment"),
        ("/services/syncer/c/n/u", "lacks the /clusters/<cluster> segment"),
        ("/services/syncer/c/n/u/clusters/Bad_Name/api", "cluster 'Bad_Name' is neither * nor"),
        ("/services/syncer/c/n/u/clusters/root:org/api", "cluster 'root:org' is neither * nor"),
    ],
)
def test_refused_paths_say_why(path: str, message: str) -> None:
    with pytest.raises(PathRefused, match=message.replace("*", r"\*")):
        parse_vw_path(path)


def test_a_missing_or_recreated_synctarget_is_refused() -> None:
    parsed = parse_vw_path(f"{BASE}/clusters/*/api")
    with pytest.raises(PathRefused, match="SyncTarget 2t0gpaylzr6ws2i4/us-west1 does not exist"):
        check_target(parsed, None)
    with pytest.raises(PathRefused, match=r"^sync target UID mismatch: uid-2 != uid-1$"):
        check_target(parsed, {"metadata": {"uid": "uid-2"}})
    check_target(parsed, {"metadata": {"uid": "uid-1"}})


def test_refusals_are_kubernetes_status_404s() -> None:
    assert not_found_status("gone") == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "gone",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }
