"""Merge patches: only differences, split between the main resource and /status."""

from kcp_tmc.reconcilers.diff import merge_patch, split_patches


def test_merge_patch():
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}}, {"a": 1, "b": {"c": 2}}) == {"b": {"c": 2, "d": None}}
    assert merge_patch({"a": [1]}, {"a": [1, 2], "n": None}) == {"a": [1, 2], "n": None}
    assert merge_patch({"a": {"x": 1}}, {"a": 3}) == {"a": 3}
    assert merge_patch(1, {"a": 1}) == {"a": 1}
    assert merge_patch({"a": 1}, {"a": 1}) == {}


CURRENT = {
    "metadata": {"name": "x", "resourceVersion": "7", "labels": {"a": "1"}, "uid": "u"},
    "spec": {"unschedulable": False},
    "status": {"conditions": [{"type": "Ready"}], "lastSyncerHeartbeatTime": "t"},
}


def test_no_change_no_patch():
    desired = {
        "metadata": {"labels": {"a": "1"}},
        "spec": {"unschedulable": False},
        "status": dict(CURRENT["status"]),
    }
    assert split_patches(CURRENT, desired) == (None, None)


def test_label_and_status_changes_are_split_with_resource_version():
    desired = {
        "metadata": {"labels": {"a": "1", "k": "v"}},
        "status": {"conditions": [], "lastSyncerHeartbeatTime": "t"},
    }
    main, status = split_patches(CURRENT, desired)
    assert main == {"metadata": {"labels": {"k": "v"}, "resourceVersion": "7"}}
    assert status == {"status": {"conditions": []}, "metadata": {"resourceVersion": "7"}}


def test_spec_annotations_and_finalizers():
    desired = {
        "metadata": {"annotations": {"x": "y"}, "finalizers": ["f"]},
        "spec": {"unschedulable": True},
    }
    main, status = split_patches(CURRENT, desired)
    assert main == {
        "metadata": {"annotations": {"x": "y"}, "finalizers": ["f"], "resourceVersion": "7"},
        "spec": {"unschedulable": True},
    }
    assert status is None
    cur = {"metadata": {"finalizers": ["f"]}}
    assert split_patches(cur, {"metadata": {"finalizers": []}}) == ({"metadata": {"finalizers": None}}, None)
