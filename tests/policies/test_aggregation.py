"""Location status (kcp's unit vectors and our quantity sums) and exact Totals."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.policies.aggregation import (
    LOCATION_LABELS_ANNOTATION,
    Totals,
    compact,
    is_available,
    location_labels,
    location_status,
    node_requests,
)
from kcp_tmc.policies.quantities import Format, Quantity, ResourceListError, parse_quantity
from kcp_tmc.policies.selectors import SelectorError

WS = "root:org:ws"


def location(selector=None, labels=None, cluster=WS, **spec):
    loc = {
        "apiVersion": "scheduling.kcp.io/v1alpha1",
        "kind": "Location",
        "metadata": {
            "name": "us-east1",
            "labels": {"continent": "north-america", "country": "usa"} if labels is None else labels,
            "annotations": {"kcp.io/cluster": cluster},
        },
        "spec": {"resource": {"group": "workload.kcp.io", "version": "v1alpha1", "resource": "synctargets"}},
    }
    if selector is not ...:
        loc["spec"]["instanceSelector"] = selector
    loc["spec"].update(spec)
    return loc


def target(name, region, ready=None, unschedulable=False, cluster=WS, **status):
    st_ = {
        "metadata": {"name": name, "labels": {"region": region}, "annotations": {"kcp.io/cluster": cluster}},
        "spec": {"unschedulable": unschedulable},
        "status": dict(status),
    }
    if ready is not None:
        st_["status"]["conditions"] = [{"type": "Ready", "status": ready}]
    return st_


US_EAST1 = {"matchLabels": {"region": "us-east1"}}


def kcp_targets():
    return [
        target("us-east1-1", "us-east1"),
        target("us-east1-2", "us-east1", ready="False"),
        target("us-east1-3", "us-east1", ready="True"),
        target("us-east1-4", "us-east1", ready="True", unschedulable=True),
        target("us-west1-1", "us-west1", ready="True"),
        target("us-west1-2", "us-west1", ready="True"),
        target("us-east1-1", "us-east1", ready="True", cluster="root:other"),
        target("us-east1-9", "us-east1", ready="True", cluster="root:other"),
    ]


# --- kcp's unit vectors (location_reconcile_test.go) ---------------------------------------------------


def test_kcp_vector_no_sync_targets():
    view = location_status(location(US_EAST1), [])
    assert (view.available, view.instances) == (0, 0)
    assert view.labels == "continent=north-america country=usa"
    assert view.status() == {"instances": 0, "availableInstances": 0}


def test_kcp_vector_annotation_missing_gives_the_label_string():
    loc = location(US_EAST1)
    assert LOCATION_LABELS_ANNOTATION not in loc["metadata"]["annotations"]
    view = location_status(loc, [])
    assert view.labels == "continent=north-america country=usa"


def test_kcp_vector_mixed_targets_instances_4_available_1():
    view = location_status(location(US_EAST1), kcp_targets())
    assert (view.instances, view.available) == (4, 1)
    assert view.matched == ("us-east1-1", "us-east1-2", "us-east1-3", "us-east1-4")


# --- selectors, clusters, labels -------------------------------------------------------------------------


def test_nil_selector_matches_nothing_and_empty_matches_all():
    assert location_status(location(...), kcp_targets()).instances == 0
    assert location_status(location(None), kcp_targets()).instances == 0
    everything = location_status(location({}), kcp_targets())
    assert (everything.instances, everything.available) == (6, 3)


def test_match_expressions_select():
    selector = {"matchExpressions": [{"key": "region", "operator": "In", "values": ["us-west1"]}]}
    view = location_status(location(selector), kcp_targets())
    assert (view.instances, view.available) == (2, 2)


def test_only_targets_of_the_locations_own_cluster_count():
    view = location_status(location(US_EAST1, cluster="root:other"), kcp_targets())
    assert view.matched == ("us-east1-1", "us-east1-9")
    assert view.available == 2


def test_objects_without_cluster_annotation_use_the_default_cluster():
    loc = location(US_EAST1)
    del loc["metadata"]["annotations"]
    bare = target("a", "us-east1", ready="True")
    del bare["metadata"]["annotations"]
    assert location_status(loc, [bare], default_cluster="root").instances == 1
    assert location_status(loc, [bare, *kcp_targets()], default_cluster=WS).instances == 5


def test_invalid_selector_raises():
    with pytest.raises(SelectorError, match="not a valid label selector operator"):
        location_status(location({"matchExpressions": [{"key": "a", "operator": "Near"}]}), [])


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({}, ""),
        (None, ""),
        ({"b": "2", "a": "1"}, "a=1 b=2"),
        ({"z": "", "kcp.io/x": "y"}, "kcp.io/x=y z="),
    ],
)
def test_location_labels_sorted_space_joined(labels, expected):
    assert location_labels(labels) == expected


@pytest.mark.parametrize(
    ("obj", "available"),
    [
        ({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, True),
        ({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}, False),
        (
            {
                "spec": {"unschedulable": True},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
            False,
        ),
        # evictAfter is not considered, as in kcp
        (
            {
                "spec": {"evictAfter": "2000-01-01T00:00:00Z"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
            True,
        ),
        ({}, False),
    ],
)
def test_is_available(obj, available):
    assert is_available(obj) is available


# --- quantity sums (our extension) ----------------------------------------------------------------------


def test_capacity_allocatable_used_summed_over_available_instances_only():
    targets = [
        target("a", "us-east1", ready="True", capacity={"cpu": "4", "memory": "8Gi"}, used={"cpu": "500m"}),
        target(
            "b",
            "us-east1",
            ready="True",
            capacity={"cpu": "2", "memory": "4Gi", "pods": "110"},
            allocatable={"cpu": "1900m"},
            used={"cpu": "1", "memory": "1Gi"},
        ),
        target("c", "us-east1", ready="False", capacity={"cpu": "100"}),
        target("d", "us-east1", ready="True", unschedulable=True, capacity={"cpu": "100"}),
        target("e", "us-west1", ready="True", capacity={"cpu": "100"}),
    ]
    view = location_status(location(US_EAST1), targets)
    assert view.status() == {
        "instances": 4,
        "availableInstances": 2,
        "capacity": {"cpu": "6", "memory": "12Gi", "pods": "110"},
        "allocatable": {"cpu": "1900m"},
        "used": {"cpu": "1500m", "memory": "1Gi"},
    }


def test_bad_quantity_on_a_target_raises_naming_it():
    with pytest.raises(ResourceListError, match="cpu"):
        location_status(location({}), [target("a", "x", ready="True", capacity={"cpu": "lots"})])


def test_node_requests_keeps_what_nodes_pay_for():
    use = {
        name: parse_quantity(value)
        for name, value in {
            "pods": "2",
            "requests.cpu": "200m",
            "requests.memory": "1Gi",
            "requests.nvidia.com/gpu": "1",
            "requests.storage": "10Gi",
            "limits.cpu": "1",
            "count/deployments.apps": "1",
        }.items()
    }
    assert {k: str(v) for k, v in node_requests(use).items()} == {
        "pods": "2",
        "cpu": "200m",
        "memory": "1Gi",
        "nvidia.com/gpu": "1",
    }


def test_totals_follow_quantity_add_format_rule():
    totals = Totals()
    totals.add(compact({"memory": Quantity(0, 0, Format.DECIMAL_SI)}))
    totals.add(compact({"memory": parse_quantity("1Gi")}))
    totals.add(compact({"memory": parse_quantity("1M"), "cpu": parse_quantity("100m")}))
    assert totals.resource_list() == {"cpu": "100m", "memory": "1074741824"}
    other = Totals()
    other.add_totals(totals)
    assert other.quantities() == totals.quantities()


QUANTITY_TEXT = st.one_of(
    st.integers(0, 10**6).map(str),
    st.tuples(st.integers(0, 10**6), st.sampled_from(["m", "k", "M", "G", "Ki", "Mi", "Gi", "n", "u"])).map(
        lambda t: f"{t[0]}{t[1]}"
    ),
    st.tuples(st.integers(0, 999), st.integers(0, 999)).map(lambda t: f"{t[0]}.{t[1]}"),
)
USES = st.lists(
    st.dictionaries(st.sampled_from(["cpu", "memory", "pods", "nvidia.com/gpu"]), QUANTITY_TEXT, max_size=4),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(USES)
def test_property_totals_equal_quantity_addition(uses):
    """Aggregation equals the sum of its parts, added one by one with Quantity arithmetic."""
    parsed = [{k: parse_quantity(v) for k, v in use.items()} for use in uses]
    totals = Totals()
    for use in parsed:
        totals.add(compact(use))
    expected: dict[str, Quantity] = {}
    for use in parsed:
        for name, value in use.items():
            expected[name] = expected[name] + value if name in expected else value
    # Canonical form: a lone addend is printed canonically too, not as it was written.
    assert totals.resource_list() == {k: expected[k].canonical() for k in sorted(expected)}


@settings(max_examples=100, deadline=None)
@given(USES, st.integers(0, 12))
def test_property_totals_of_parts_add_up(uses, cut):
    """Summing two halves and adding the halves gives the total of the whole."""
    parts = [compact({k: parse_quantity(v) for k, v in use.items()}) for use in uses]
    whole, left, right = Totals(), Totals(), Totals()
    for part in parts:
        whole.add(part)
    for part in parts[:cut]:
        left.add(part)
    for part in parts[cut:]:
        right.add(part)
    left.add_totals(right)
    assert {k: v.to_fraction() for k, v in left.quantities().items()} == {
        k: v.to_fraction() for k, v in whole.quantities().items()
    }
    assert reduce(lambda a, b: a + len(b), parts, 0) >= len(whole.nanos)
