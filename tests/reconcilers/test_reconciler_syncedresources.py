"""syncedResources and compatibility tables of kcp v0.11 synctargetexports tests."""

import pytest
from hypothesis import example, given, strategies

from kcp_tmc.reconcilers.syncedresources import (
    ExportIndex,
    desired_synced_resources,
    downstream_schemas,
    export_refs,
    go_slice_stable,
)

CLUSTER = "root:org:ws"
STRING = {"type": "string"}


def export(name="kubernetes", schemas=(), identity="id-1", cluster=CLUSTER):
    return {
        "metadata": {"name": name, "annotations": {"kcp.io/cluster": cluster}},
        "spec": {"latestResourceSchemas": list(schemas)},
        "status": {"identityHash": identity},
    }


def schema(name, group, plural, versions=(("v1", True),), body=None, cluster=CLUSTER):
    return {
        "metadata": {"name": name, "annotations": {"kcp.io/cluster": cluster}},
        "spec": {
            "group": group,
            "names": {"plural": plural},
            "versions": [{"name": v, "served": served, "schema": body or STRING} for v, served in versions],
        },
    }


SERVICE = schema("v1.service", "", "services")
DEPLOYMENT = schema("apps.v1.deployment", "apps", "deployments")
POD = schema("v1.pod", "", "pods")


def index(exports, schemas):
    from kcp_tmc.policies.clusters import cluster_of

    return ExportIndex.build(exports, schemas, lambda o: cluster_of(o, CLUSTER))


def target(synced=None, exports=None):
    st = {"metadata": {"name": "st"}, "spec": {}, "status": {}}
    if exports is not None:
        st["spec"]["supportedAPIExports"] = exports
    if synced is not None:
        st["status"]["syncedResources"] = synced
    return st


def entry(group, resource, versions=("v1",), state="Pending", identity="id-1"):
    return {
        "group": group,
        "resource": resource,
        "versions": list(versions),
        "identityHash": identity,
        "state": state,
    }


def test_export_not_found_gives_nil():
    assert desired_synced_resources(target(), CLUSTER, index([], []), None) is None


def test_schema_missing_gives_nil():
    idx = index([export(schemas=["v1.service"])], [])
    assert desired_synced_resources(target(), CLUSTER, idx, None) is None


def test_two_schemas_descending_group_order():
    idx = index([export(schemas=["v1.service", "apps.v1.deployment"])], [SERVICE, DEPLOYMENT])
    assert desired_synced_resources(target(), CLUSTER, idx, None) == [
        entry("apps", "deployments"),
        entry("", "services"),
    ]


def test_state_carried_over_for_same_group_resource_identity():
    existing = [entry("apps", "deployments", state="Accepted"), entry("", "services", state="Pending")]
    idx = index([export(schemas=["v1.pod", "apps.v1.deployment"])], [POD, DEPLOYMENT])
    assert desired_synced_resources(target(existing), CLUSTER, idx, None) == [
        entry("apps", "deployments", state="Accepted"),
        entry("", "pods"),
    ]


def test_state_not_carried_over_when_identity_changed():
    existing = [entry("apps", "deployments", state="Accepted", identity="old")]
    idx = index([export(schemas=["apps.v1.deployment"])], [DEPLOYMENT])
    assert desired_synced_resources(target(existing), CLUSTER, idx, None) == [entry("apps", "deployments")]


def test_only_served_versions_sorted():
    multi = schema(
        "apps.v1.deployment", "apps", "deployments", (("v1beta1", True), ("v1alpha1", False), ("v1", True))
    )
    idx = index([export(schemas=["apps.v1.deployment"])], [multi])
    assert desired_synced_resources(target(), CLUSTER, idx, None) == [
        entry("apps", "deployments", ("v1", "v1beta1"))
    ]


def test_export_in_another_path_and_ordering_within_groups():
    other = "root:compute"
    idx = index(
        [export("compute", ["b", "a", "c"], identity="x", cluster=other)],
        [
            schema("b", "wildwest.dev", "sheriffs", cluster=other),
            schema("a", "wildwest.dev", "cowboys", cluster=other),
            schema("c", "", "services", cluster=other),
        ],
    )
    st = target(exports=[{"export": "compute", "path": other}])
    got = desired_synced_resources(st, CLUSTER, idx, None)
    # kcp's comparator on [sheriffs, cowboys, services]: services moves before cowboys ("services" >
    # "cowboys"), not before sheriffs (neither "" > "wildwest.dev" nor "services" > "sheriffs").
    assert [(e["group"], e["resource"]) for e in got] == [
        ("wildwest.dev", "sheriffs"),
        ("", "services"),
        ("wildwest.dev", "cowboys"),
    ]


def test_export_refs_default_and_path():
    assert export_refs(target(), CLUSTER) == [(CLUSTER, "kubernetes")]
    assert export_refs(target(exports=[{"export": "a"}, {"export": "b", "path": "root:x"}, {}]), CLUSTER) == [
        (CLUSTER, "a"),
        ("root:x", "b"),
    ]


def imported(group, version, plural, body, location="st"):
    return {
        "spec": {
            "location": location,
            "groupVersion": {"group": group, "version": version},
            "plural": plural,
            "openAPIV3Schema": body,
        }
    }


@pytest.mark.parametrize(
    ("upstream_body", "imports", "existing", "state"),
    [
        pytest.param(None, [], "Accepted", "Pending", id="missing-upstream"),
        pytest.param(STRING, [], "Pending", "Incompatible", id="no-import"),
        pytest.param(
            STRING, [imported("apps", "v1", "deployments", STRING)], "Pending", "Accepted", id="same"
        ),
        pytest.param(
            {"type": "integer"},
            [imported("apps", "v1", "deployments", STRING)],
            "Pending",
            "Incompatible",
            id="mismatch",
        ),
        pytest.param(
            STRING,
            [imported("apps", "v1", "deployments", STRING, location="other")],
            "Pending",
            "Incompatible",
            id="import-of-another-target",
        ),
    ],
)
def test_compatibility_table(upstream_body, imports, existing, state):
    dep = schema("apps.v1.deployment", "apps", "deployments", body=upstream_body or STRING)
    if upstream_body is None:
        dep["spec"]["versions"][0]["schema"] = None
    idx = index([export(schemas=["apps.v1.deployment"])], [dep])
    st = target([entry("apps", "deployments", state=existing)])
    got = desired_synced_resources(st, CLUSTER, idx, downstream_schemas(imports, "st"))
    assert got == [entry("apps", "deployments", state=state)]


def test_any_compatible_version_is_accepted():
    dep = schema("apps.v1.deployment", "apps", "deployments", (("v1", True), ("v1beta1", True)))
    idx = index([export(schemas=["apps.v1.deployment"])], [dep])
    down = downstream_schemas([imported("apps", "v1", "deployments", STRING)], "st")
    assert desired_synced_resources(target(), CLUSTER, idx, down)[0]["state"] == "Accepted"


def test_last_version_decides_when_none_fits():
    dep = schema("apps.v1.deployment", "apps", "deployments", (("v1", True), ("v1beta1", True)))
    idx = index([export(schemas=["apps.v1.deployment"])], [dep])
    down = downstream_schemas([imported("apps", "v1", "deployments", {"type": "object"})], "st")
    assert desired_synced_resources(target(), CLUSTER, idx, down)[0]["state"] == "Incompatible"


def test_explicit_empty_supported_exports_yield_nothing():
    idx = index([export(schemas=["v1.service"])], [SERVICE])
    assert desired_synced_resources(target(exports=[]), CLUSTER, idx, None) is None
    assert export_refs(target(exports=[]), CLUSTER) == []
    # Only an absent field defaults to the workspace's own ``kubernetes`` export.
    assert desired_synced_resources(target(), CLUSTER, idx, None) == [entry("", "services")]


def test_export_path_resolves_through_the_kcp_path_annotation():
    # kcp cluster names are hashes; the path a user writes is the kcp.io/path annotation.
    hashed = "2x7nkqm3vzq0"
    exp = export(name="compute", schemas=["v1.service"], cluster=hashed)
    exp["metadata"]["annotations"]["kcp.io/path"] = "root:compute"
    idx = index([exp], [schema("v1.service", "", "services", cluster=hashed)])
    for path in ("root:compute", hashed):
        st = target(exports=[{"export": "compute", "path": path}])
        assert desired_synced_resources(st, CLUSTER, idx, None) == [entry("", "services")], path
    st = target(exports=[{"export": "compute", "path": "root:other"}])
    assert desired_synced_resources(st, CLUSTER, idx, None) is None


# --- the order kcp writes: Go's sort.SliceStable with kcp's comparator --------------------------------


def kcp_less(i, j):
    return i[0] > j[0] or i[1] > j[1]


@pytest.mark.parametrize(
    ("given_order", "kcp_order"),
    [
        pytest.param(
            [("", "services"), ("apps", "deployments")],
            [("apps", "deployments"), ("", "services")],
            id="kcp unit",
        ),
        pytest.param(
            [("", "services"), ("wildwest.dev", "cowboys")],
            [("wildwest.dev", "cowboys"), ("", "services")],
            id="kcp e2e",
        ),
        pytest.param(
            [("g", "a"), ("g", "c"), ("g", "b")],
            [("g", "c"), ("g", "b"), ("g", "a")],
            id="one group: descending",
        ),
        pytest.param(
            [("", "services"), ("apps", "deployments"), ("networking.k8s.io", "ingresses")],
            [("networking.k8s.io", "ingresses"), ("apps", "deployments"), ("", "services")],
            id="the kubernetes export",
        ),
        pytest.param(
            [("a", "z"), ("b", "a")],
            [("b", "a"), ("a", "z")],
            id="each less than the other: the later one moves first",
        ),
    ],
)
def test_order_is_the_one_kcp_writes(given_order, kcp_order):
    items = list(given_order)
    go_slice_stable(items, kcp_less)
    assert items == kcp_order


def test_order_within_one_group_is_resource_descending_through_the_stack():
    idx = index(
        [export(schemas=["a", "b", "c"])],
        [schema("a", "g.io", "alphas"), schema("b", "g.io", "gammas"), schema("c", "g.io", "betas")],
    )
    got = desired_synced_resources(target(), CLUSTER, idx, None)
    assert [e["resource"] for e in got] == ["gammas", "betas", "alphas"]


@given(
    strategies.lists(strategies.tuples(strategies.integers(0, 5), strategies.integers(0, 1000)), max_size=90)
)
@example([(i % 3, -i) for i in range(90)])
def test_with_a_strict_comparator_it_is_a_stable_sort(pairs):
    # Over 20 items the merge rounds run; a stable sort is the only correct outcome for a strict order.
    items = list(pairs)
    go_slice_stable(items, lambda x, y: x[0] < y[0])
    assert items == sorted(pairs, key=lambda x: x[0])


@given(
    strategies.lists(
        strategies.tuples(strategies.sampled_from(["", "apps", "x.io"]), strategies.sampled_from("abcdef")),
        max_size=70,
    )
)
def test_with_kcp_comparator_it_permutes_without_losing_entries(pairs):
    items = list(pairs)
    go_slice_stable(items, kcp_less)
    assert sorted(items) == sorted(pairs)
