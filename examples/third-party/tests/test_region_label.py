"""The region-label policy, tested through kcp-tmc's pytest plugin (fixtures ``review`` and ``evaluate``).

Install the package first (``pip install -e .``); the plugin finds the policy through its entry point.
"""

import pytest

ST = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "a"}}


def labelled(**labels):
    return {**ST, "metadata": {"name": "a", "labels": labels}}


def test_region_is_required(review, evaluate):
    result = evaluate(review(ST), policies=["region-label"])
    assert not result.allowed
    assert result.messages == [
        "[region-label] metadata.labels.region: is required; add a label such as region=us-east1"
    ]


def test_labelled_target_is_allowed(review, evaluate):
    st = labelled(region="eu")
    assert evaluate(review(st, operation="UPDATE", old=st), policies=["region-label"]).allowed


def test_empty_region_is_denied(review, evaluate):
    result = evaluate(review(labelled(region="")), policies=["region-label"])
    assert result.messages == [
        "[region-label] metadata.labels.region: must not be empty; "
        "set it to the SyncTarget's region, e.g. region=us-east1"
    ]


def test_region_must_be_a_label_value(review, evaluate):
    result = evaluate(review(labelled(region="US East")), policies=["region-label"])
    assert result.messages == [
        '[region-label] metadata.labels.region: Invalid value: "US East": '
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
        "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?'); "
        "use a region name such as us-east1"
    ]


def test_region_must_be_a_string(review, evaluate):
    result = evaluate(review(labelled(region=1)), policies=["region-label"])
    assert result.messages == [
        "[region-label] metadata.labels.region: Invalid value: 1: must be a string, e.g. region=us-east1, "
        "not a number"
    ]


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_with_every_policy_a_labelled_target_is_defaulted_and_allowed(review, evaluate, operation):
    st = labelled(region="us-east1")
    result = evaluate(review(st, operation=operation, old=st if operation == "UPDATE" else None))
    assert result.allowed, result.messages
    assert result.patched["metadata"]["labels"]["region"] == "us-east1"
    assert "internal.workload.kcp.io/key" in result.patched["metadata"]["labels"]


def test_status_writes_are_not_checked(review, evaluate):
    status_write = review(ST, operation="UPDATE", old=ST, sub_resource="status")
    assert evaluate(status_write, policies=["region-label"]).allowed
