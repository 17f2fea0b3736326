"""status.virtualWorkspaces vectors of kcp v0.11 synctarget_reconcile_test.go."""

import pytest

from kcp_tmc.reconcilers.virtualworkspaces import go_path_join, parse_shard, virtual_workspaces

CLUSTER = "demo:root:yourworkspace"


def urls(host: str, name: str = "test-cluster", uid: str = "") -> dict[str, str]:
    tail = f"{CLUSTER}/{name}" + (f"/{uid}" if uid else "")
    return {
        "syncerURL": f"http://{host}/services/syncer/{tail}",
        "upsyncerURL": f"http://{host}/services/upsyncer/{tail}",
    }


def test_single_shard_empty_uid_has_no_uid_segment():
    assert virtual_workspaces(["http://external-host/"], CLUSTER, "test-cluster", "") == [
        urls("external-host")
    ]


def test_uid_is_the_last_segment():
    got = virtual_workspaces(["https://vw.example:6443"], "2t0gpaylzr6ws2i4", "us-west1", "6c1d")
    assert got == [
        {
            "syncerURL": "https://vw.example:6443/services/syncer/2t0gpaylzr6ws2i4/us-west1/6c1d",
            "upsyncerURL": "https://vw.example:6443/services/upsyncer/2t0gpaylzr6ws2i4/us-west1/6c1d",
        }
    ]


def test_sorted_by_shard_url():
    shards = ["http://external-host-2/", "http://external-host-3/", "http://external-host-1/"]
    got = virtual_workspaces(shards, CLUSTER, "test-cluster", "")
    assert got == [urls("external-host-1"), urls("external-host-2"), urls("external-host-3")]


def test_duplicate_shard_urls_are_deduplicated():
    shards = ["http://external-host-1/", "http://external-host-1/", "http://external-host-3/"]
    assert virtual_workspaces(shards, CLUSTER, "test-cluster", "") == [
        urls("external-host-1"),
        urls("external-host-3"),
    ]


def test_no_shards_omits_the_field():
    assert virtual_workspaces([], CLUSTER, "test-cluster", "uid") is None
    assert virtual_workspaces([""], CLUSTER, "test-cluster", "uid") is None


def test_shard_path_is_kept_and_cleaned():
    got = virtual_workspaces(["http://host/base/"], "root", "st", "u")
    assert got == [
        {
            "syncerURL": "http://host/base/services/syncer/root/st/u",
            "upsyncerURL": "http://host/base/services/upsyncer/root/st/u",
        }
    ]


@pytest.mark.parametrize(
    ("elements", "joined"),
    [
        (("", ""), ""),
        (("/", "/services", "syncer", "", "x"), "/services/syncer/x"),
        (("//a/", "b/"), "/a/b"),
        (("a", "../b"), "b"),
    ],
)
def test_go_path_join(elements, joined):
    assert go_path_join(*elements) == joined


def test_parse_shard():
    assert parse_shard("root=https://vw:6443/") == ("root", "https://vw:6443/")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("root", "--shard must be NAME=URL, got 'root'"),
        ("=http://x", "--shard must be NAME=URL, got '=http://x'"),
        ("root=ftp://x", "--shard root: URL must be absolute http(s), got 'ftp://x'"),
        ("root=/relative", "--shard root: URL must be absolute http(s), got '/relative'"),
    ],
)
def test_parse_shard_errors(spec, message):
    with pytest.raises(ValueError) as info:
        parse_shard(spec)
    assert str(info.value) == message


def test_desired_sync_target_replaces_stale_entries_and_keeps_other_status():
    from datetime import UTC, datetime

    from kcp_tmc.reconcilers.synctarget import Inputs, desired_sync_target

    current = {
        "metadata": {"name": "test-cluster", "uid": "", "labels": {"team": "a"}},
        "status": {
            "virtualWorkspaces": [
                {"syncerURL": f"http://stale-{i}/x", "upsyncerURL": f"http://stale-{i}/y"} for i in range(3)
            ],
            "capacity": {"cpu": "1"},
        },
    }
    now = datetime(2023, 2, 22, tzinfo=UTC)
    desired, due = desired_sync_target(
        current, Inputs(cluster=CLUSTER, shard_urls=["http://external-host-1/"]), now
    )
    assert desired["status"] == {"virtualWorkspaces": [urls("external-host-1")], "capacity": {"cpu": "1"}}
    assert desired["metadata"]["labels"] == {
        "team": "a",
        "internal.workload.kcp.io/key": desired["metadata"]["labels"]["internal.workload.kcp.io/key"],
    }
    assert due is None
    # No shards: the field is removed, the label is still set.
    desired, _ = desired_sync_target(current, Inputs(cluster=CLUSTER), now)
    assert "virtualWorkspaces" not in desired["status"]
    assert "internal.workload.kcp.io/key" in desired["metadata"]["labels"]
    # The synctarget step switched off: neither the label nor the field is touched.
    desired, _ = desired_sync_target(current, Inputs(cluster=CLUSTER, shard_urls=None), now)
    assert desired == {"metadata": {}, "status": current["status"]}
