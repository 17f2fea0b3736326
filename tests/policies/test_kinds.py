"""Resource names as the apiserver prints them, for the core group and the others."""

from kcp_tmc.policies.kinds import (
    RESOURCE_QUOTA,
    SYNC_TARGET,
    api_version_of,
    group_resource_of,
)


def test_api_version_drops_the_empty_core_group() -> None:
    assert api_version_of("", "v1") == "v1"
    assert api_version_of("workload.kcp.io", "v1alpha1") == "workload.kcp.io/v1alpha1"
    assert SYNC_TARGET.api_version == "workload.kcp.io/v1alpha1"
    assert RESOURCE_QUOTA.api_version == "v1"


def test_group_resource_is_plural_dot_group() -> None:
    assert group_resource_of("configmaps", "") == "configmaps"
    assert group_resource_of("synctargets", "workload.kcp.io") == "synctargets.workload.kcp.io"
    assert SYNC_TARGET.group_resource == "synctargets.workload.kcp.io"
    assert RESOURCE_QUOTA.group_resource == "resourcequotas"


def test_matches_ignores_the_version() -> None:
    assert SYNC_TARGET.matches("workload.kcp.io", "SyncTarget")
    assert not SYNC_TARGET.matches("workload.kcp.dev", "SyncTarget")
    assert not SYNC_TARGET.matches("workload.kcp.io", "Location")
