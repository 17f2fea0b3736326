"""Every built-in policy survives arbitrary JSON: it returns None or a Verdict, never raises."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcp_tmc.policies import CLUSTER, LOCATION, SYNC_TARGET, Verdict
from kcp_tmc.policies.builtin.cluster import cluster_defaults, cluster_validation
from kcp_tmc.policies.builtin.location import location_validation
from kcp_tmc.policies.builtin.synctarget import (
    sync_target_defaults,
    sync_target_deletion_protection,
    sync_target_validation,
)
from kcp_tmc.policies.kinds import ResourceType
from tests.policies.builtin.helpers import build_request

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)

# The fields the policies read, so that the shapes reach past the first type check.
FIELDS = [
    "name", "labels", "annotations", "unschedulable", "evictAfter", "supportedAPIExports", "export", "path",
    "cells", "capacity", "allocatable", "conditions", "type", "status", "severity", "lastTransitionTime",
    "syncedResources", "group", "resource", "versions", "state", "virtualWorkspaces", "syncerURL",
    "upsyncerURL", "lastSyncerHeartbeatTime", "kubeconfigSecretRef", "namespace", "key", "syncMode",
    "syncerImage", "syncTargetName", "lastHeartbeatTime", "kubernetesVersion", "version",
    "availableSelectorLabels", "values", "instanceSelector", "matchLabels", "matchExpressions", "operator",
    "internal.workload.kcp.io/key", "tmc.kcp.io/deletion-protected", "Pull", "true", "-1", "1Gi",
    "2024-01-02T15:04:05Z", "https://h/services/syncer/a/b",
]  # fmt: skip
shaped = st.recursive(
    json_values | st.sampled_from(FIELDS),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(FIELDS), children, max_size=4)
    ),
    max_leaves=25,
)
objects = st.fixed_dictionaries(
    {},
    optional={"metadata": shaped, "spec": shaped, "status": shaped},
)

POLICIES = [
    (SYNC_TARGET, sync_target_validation),
    (SYNC_TARGET, sync_target_defaults),
    (CLUSTER, cluster_validation),
    (CLUSTER, cluster_defaults),
    (LOCATION, location_validation),
]


def check(rtype: ResourceType, func: Any, obj: Any, old: Any, sub_resource: str) -> None:
    before = copy.deepcopy((obj, old))
    verdict = func(build_request(rtype, obj, old, sub_resource=sub_resource))
    assert verdict is None or isinstance(verdict, Verdict)
    assert (obj, old) == before  # policies never modify their input


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=objects, old=st.none() | objects, sub_resource=st.sampled_from(["", "status"]))
def test_policies_never_raise_on_arbitrary_objects(obj: Any, old: Any, sub_resource: str) -> None:
    for rtype, func in POLICIES:
        check(rtype, func, obj, old, sub_resource)


@settings(max_examples=100, deadline=None)
@given(old=st.none() | objects | json_values)
def test_deletion_protection_never_raises(old: Any) -> None:
    verdict = sync_target_deletion_protection(
        build_request(SYNC_TARGET, None, old, operation="DELETE", name="x")
    )
    assert verdict is None or isinstance(verdict, Verdict)
