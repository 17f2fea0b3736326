"""Syncer and upsyncer virtual-workspace transformations, on plain dicts.

The first table holds kcp's own transformer vectors (key ``syncTargetKey``, API ``group/resources``,
object ``aThing``), one row each; the tests after it cover the rest of the read and write rules.
"""

import copy
import json

import pytest

from kcp_tmc.reconcilers.virtualworkspace.transforms import (
    DEFAULT_RULES,
    PROMOTED,
    SummaryField,
    TransformError,
    Write,
    from_syncer,
    plan_writes,
    summarizing_rules,
    to_syncer,
    upsyncer_from_client,
)

KEY = "syncTargetKey"
KEY2 = "syncTargetKey2"
STATE = f"state.workload.kcp.io/{KEY}"
STATE2 = f"state.workload.kcp.io/{KEY2}"
DIFF = f"diff.syncer.internal.kcp.io/{KEY}"
DIFF2 = f"diff.syncer.internal.kcp.io/{KEY2}"
DELETION = f"deletion.internal.workload.kcp.io/{KEY}"
FINALIZER = f"workload.kcp.io/syncer-{KEY}"
FINALIZER2 = f"workload.kcp.io/syncer-{KEY2}"
SUMMARIZING = "experimental.summarizing.workload.kcp.io"
WHEN = "2023-02-22T10:11:12Z"

STATUS = (SummaryField("status"),)
STATUS_AND_SPEC_FIELD = (SummaryField("status"), SummaryField("spec.field"))
STATUS_PROMOTED = (SummaryField("status", promote=True),)


def thing(*, labels=None, annotations=None, finalizers=None, rv=None, deletion=None, **fields):
    meta = {"name": "aThing"}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    if finalizers is not None:
        meta["finalizers"] = finalizers
    if rv is not None:
        meta["resourceVersion"] = rv
    if deletion is not None:
        meta["deletionTimestamp"] = deletion
    return {"apiVersion": "group/version", "kind": "Resource", "metadata": meta, **fields}


# --- kcp's transformer vectors ----------------------------------------------------------------------

READ_VECTORS = [
    pytest.param(
        thing(annotations={DIFF: '{"status":{"statusField":"new"}}'}),
        STATUS,
        thing(annotations={}, status={"statusField": "new"}),
        id="get, summarize",
    ),
    pytest.param(
        thing(labels={STATE: "Sync"}, annotations={DELETION: WHEN}),
        STATUS,
        thing(labels={STATE: "Sync"}, annotations={DELETION: WHEN}, deletion=WHEN),
        id="get, deletion requested",
    ),
]


@pytest.mark.parametrize(("upstream", "rules", "view"), READ_VECTORS)
def test_read_vectors(upstream, rules, view):
    assert to_syncer(upstream, KEY, rules=rules) == view


WRITE_VECTORS = [
    pytest.param(
        thing(labels={STATE: "Sync"}, annotations={DIFF: '{"spec.field":"alreadyupdated"}'}),
        thing(finalizers=[FINALIZER], status={"statusField": "updated"}),
        "status",
        STATUS_AND_SPEC_FIELD,
        [
            Write(
                "status",
                thing(
                    labels={STATE: "Sync"},
                    annotations={DIFF: '{"spec.field":"alreadyupdated","status":{"statusField":"updated"}}'},
                    finalizers=[FINALIZER],
                ),
            )
        ],
        id="update status, no promote",
    ),
    pytest.param(
        thing(labels={STATE: "Sync"}),
        thing(finalizers=[FINALIZER], status={"statusField": "updated"}),
        "status",
        STATUS_PROMOTED,
        [
            Write(
                "status",
                thing(
                    labels={STATE: "Sync"},
                    annotations={DIFF: '{"status":"##promoted##"}'},
                    finalizers=[FINALIZER],
                    status={"statusField": "updated"},
                ),
            )
        ],
        id="update status, promote",
    ),
    pytest.param(
        thing(
            labels={STATE: "Sync", STATE2: ""},
            annotations={DIFF: '{"status":"##promoted##"}'},
            finalizers=[FINALIZER],
            status={"statusField": "updated"},
        ),
        thing(finalizers=[FINALIZER], status={"statusField": "updated"}),
        "status",
        STATUS_PROMOTED,
        [
            Write(
                "status",
                thing(
                    labels={STATE: "Sync", STATE2: ""},
                    annotations={DIFF: '{"status":{"statusField":"updated"}}'},
                    finalizers=[FINALIZER],
                    status={"statusField": "updated"},
                ),
            )
        ],
        id="update status, unpromote when a second target joins",
    ),
    pytest.param(
        thing(labels={STATE: "Sync"}, annotations={DELETION: WHEN}, finalizers=[FINALIZER]),
        thing(deletion=WHEN),
        None,
        STATUS_AND_SPEC_FIELD,
        [Write(None, thing(labels={}, annotations={}, finalizers=[]))],
        id="remove the syncer finalizer",
    ),
    pytest.param(
        thing(
            labels={STATE: "Sync", STATE2: "Sync"},
            annotations={
                DIFF: '{"status":{"statusField":"updated"}}',
                DIFF2: '{"status":{"statusField":"new"}}',
                DELETION: WHEN,
            },
            finalizers=[FINALIZER, FINALIZER2],
        ),
        thing(annotations={DELETION: WHEN}, deletion=WHEN),
        None,
        STATUS_PROMOTED,
        [
            Write(
                "status",
                thing(
                    labels={STATE: "Sync", STATE2: "Sync"},
                    annotations={
                        DIFF: '{"status":{"statusField":"updated"}}',
                        DIFF2: '{"status":"##promoted##"}',
                        DELETION: WHEN,
                    },
                    finalizers=[FINALIZER, FINALIZER2],
                    status={"statusField": "new"},
                ),
            ),
            Write(
                None,
                thing(
                    labels={STATE2: "Sync"},
                    annotations={DIFF2: '{"status":"##promoted##"}'},
                    finalizers=[FINALIZER2],
                    status={"statusField": "new"},
                ),
            ),
        ],
        id="remove the syncer finalizer, promote the remaining target's status",
    ),
]


@pytest.mark.parametrize(("upstream", "incoming", "subresource", "rules", "writes"), WRITE_VECTORS)
def test_write_vectors(upstream, incoming, subresource, rules, writes):
    before = copy.deepcopy((upstream, incoming))
    planned = plan_writes(
        upstream, incoming, KEY, subresource, resource="resources", group="group", rules=rules
    )
    assert planned == writes
    assert (
        from_syncer(upstream, incoming, KEY, subresource, resource="resources", group="group", rules=rules)
        == writes[-1].body
    )
    assert (upstream, incoming) == before, "the inputs are not modified"


ERROR_VECTORS = [
    pytest.param(
        thing(labels={STATE: "Sync"}, annotations={DIFF: '{"spec.field":"alreadyupdated"}'}),
        thing(status={"statusField": "updated"}),
        "status",
        500,
        "Internal error occurred: tried to write resource resources/status(/aThing) though it is not owning "
        "it (syncer finalizer doesn't exist)",
        id="update status, not owning",
    ),
    pytest.param(
        thing(rv="0001", labels={STATE: "Sync"}),
        thing(rv="0002", labels={STATE: "Sync"}),
        None,
        409,
        'Operation cannot be fulfilled on resources.group "aThing": the resource has been modified in the '
        "meantime",
        id="update, resourceVersion conflict",
    ),
    pytest.param(
        None,
        thing(labels={STATE: "Sync"}),
        None,
        404,
        'resources.group "aThing" not found',
        id="update, not found",
    ),
]


@pytest.mark.parametrize(("upstream", "incoming", "subresource", "code", "message"), ERROR_VECTORS)
def test_error_vectors(upstream, incoming, subresource, code, message):
    with pytest.raises(TransformError) as caught:
        from_syncer(
            upstream,
            incoming,
            KEY,
            subresource,
            resource="resources",
            group="group",
            rules=STATUS_AND_SPEC_FIELD,
        )
    assert (caught.value.code, caught.value.message) == (code, message)
    assert caught.value.status()["code"] == code
    assert caught.value.status()["message"] == message


def test_the_views_of_the_written_vectors_are_what_the_syncer_reads_back():
    # kcp's vectors also read the written object back through the transformer.
    upstream = thing(labels={STATE: "Sync"}, annotations={DIFF: '{"spec.field":"alreadyupdated"}'})
    incoming = thing(finalizers=[FINALIZER], status={"statusField": "updated"})
    written = from_syncer(
        upstream, incoming, KEY, "status", resource="resources", rules=STATUS_AND_SPEC_FIELD
    )
    assert to_syncer(written, KEY, rules=STATUS_AND_SPEC_FIELD) == thing(
        labels={STATE: "Sync"},
        annotations={},
        finalizers=[FINALIZER],
        status={"statusField": "updated"},
        spec={"field": "alreadyupdated"},
    )
    promoted = from_syncer(thing(labels={STATE: "Sync"}), incoming, KEY, "status", rules=STATUS_PROMOTED)
    assert to_syncer(promoted, KEY, rules=STATUS_PROMOTED) == thing(
        labels={STATE: "Sync"}, annotations={}, finalizers=[FINALIZER], status={"statusField": "updated"}
    )


# --- Status bodies ----------------------------------------------------------------------------------


def test_status_bodies_are_those_of_the_apiserver():
    with pytest.raises(TransformError) as conflict:
        from_syncer(thing(rv="1"), thing(rv="2"), KEY, resource="configmaps")
    assert conflict.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "aThing": the resource has been modified in '
        "the meantime",
        "reason": "Conflict",
        "details": {"name": "aThing", "kind": "configmaps"},
        "code": 409,
    }
    with pytest.raises(TransformError) as internal:
        from_syncer(thing(rv="1"), thing(rv="1"), KEY, resource="configmaps")
    message = (
        "tried to write resource configmaps(/aThing) though it is not assigned to the current SyncTarget"
    )
    assert internal.value.status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {message}",
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    }


# --- read path --------------------------------------------------------------------------------------


def test_read_clears_finalizers_deletion_and_every_targets_overrides_and_keeps_the_rest():
    upstream = thing(
        labels={STATE: "Sync", "app": "x"},
        annotations={DIFF: "{}", DIFF2: '{"status":{"a":1}}', "note": "kept"},
        finalizers=["other/finalizer"],
        deletion=WHEN,
        spec={"intent": "catch joe"},
        status={"a": 2},
    )
    assert to_syncer(upstream, KEY) == thing(
        labels={STATE: "Sync", "app": "x"}, annotations={"note": "kept"}, spec={"intent": "catch joe"}
    )
    assert upstream["metadata"]["finalizers"] == ["other/finalizer"], "the input is not modified"


def test_read_shows_the_own_syncer_finalizer_only():
    upstream = thing(labels={STATE: "Sync"}, finalizers=["z/other", FINALIZER2, FINALIZER])
    assert to_syncer(upstream, KEY)["metadata"]["finalizers"] == [FINALIZER]
    assert "finalizers" not in to_syncer(upstream, "unrelated")["metadata"]


@pytest.mark.parametrize(
    ("overrides", "upstream_status", "view_status"),
    [
        (None, {"phase": "Up"}, None),
        ('{"status":"##promoted##"}', {"phase": "Up"}, {"phase": "Up"}),
        ('{"status":"##promoted##"}', None, None),
        ('{"status":{"phase":"Mine"}}', {"phase": "Up"}, {"phase": "Mine"}),
    ],
    ids=["not written: hidden", "promoted: upstream's", "promoted but missing: hidden", "own override"],
)
def test_read_of_a_promotable_status(overrides, upstream_status, view_status):
    upstream = thing(labels={STATE: "Sync"}, annotations={DIFF: overrides} if overrides else {})
    if upstream_status is not None:
        upstream["status"] = upstream_status
    assert to_syncer(upstream, KEY).get("status") == view_status


def test_read_of_a_non_promotable_field_keeps_upstream_unless_overridden():
    rules = json.dumps([{"fieldPath": "status", "promoteToUpstream": False}])
    upstream = thing(annotations={"experimental.summarizing.workload.kcp.io": rules}, status={"result": ""})
    assert to_syncer(upstream, KEY)["status"] == {"result": ""}
    upstream["metadata"]["annotations"][DIFF] = '{"status":{"result":"joe in prison"}}'
    assert to_syncer(upstream, KEY)["status"] == {"result": "joe in prison"}


def test_read_sets_nested_override_paths():
    upstream = thing(annotations={DIFF: '{"spec.field":"mine"}'}, spec={"field": "theirs", "other": 1})
    assert to_syncer(upstream, KEY, rules=STATUS_AND_SPEC_FIELD)["spec"] == {"field": "mine", "other": 1}
    assert to_syncer(thing(annotations={DIFF: '{"spec.field":"mine"}'}), KEY, rules=STATUS_AND_SPEC_FIELD)[
        "spec"
    ] == {"field": "mine"}


def test_read_applies_the_spec_diff_of_this_target_only():
    patch = json.dumps([{"op": "replace", "path": "/intent", "value": "should catch joe and averell"}])
    upstream = thing(
        labels={STATE: "Sync"},
        annotations={f"experimental.spec-diff.workload.kcp.io/{KEY}": patch},
        spec={"intent": "should catch joe"},
    )
    assert to_syncer(upstream, KEY)["spec"] == {"intent": "should catch joe and averell"}
    assert to_syncer(upstream, KEY2)["spec"] == {"intent": "should catch joe"}
    assert upstream["spec"] == {"intent": "should catch joe"}
    # Without a spec there is nothing to patch.
    del upstream["spec"]
    assert "spec" not in to_syncer(upstream, KEY)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            "not json",
            "unable to apply the experimental.spec-diff.workload.kcp.io/syncTargetKey patch to the spec",
        ),
        (
            '[{"op":"replace","path":"/missing","value":1}]',
            "unable to apply the experimental.spec-diff.workload.kcp.io/syncTargetKey patch to the spec",
        ),
        (
            '[{"op":"replace","path":"","value":1}]',
            "the experimental.spec-diff.workload.kcp.io/syncTargetKey patch must leave the spec an object",
        ),
    ],
)
def test_a_malformed_spec_diff_fails_the_read(patch, message):
    upstream = thing(annotations={f"experimental.spec-diff.workload.kcp.io/{KEY}": patch}, spec={"a": 1})
    with pytest.raises(TransformError) as caught:
        to_syncer(upstream, KEY)
    assert caught.value.code == 500
    assert caught.value.message.startswith(message)


def test_deletion_request_is_hidden_while_soft_finalizers_remain_and_is_shown_in_utc():
    upstream = thing(
        labels={STATE: "Sync"},
        annotations={DELETION: "2023-02-22T12:11:12.5+02:00", f"finalizers.workload.kcp.io/{KEY}": "a,b"},
    )
    assert "deletionTimestamp" not in to_syncer(upstream, KEY)["metadata"]
    upstream["metadata"]["annotations"][f"finalizers.workload.kcp.io/{KEY}"] = ""
    assert to_syncer(upstream, KEY)["metadata"]["deletionTimestamp"] == "2023-02-22T10:11:12Z"
    # A deletion annotation without the state label means nothing for the target.
    del upstream["metadata"]["labels"][STATE]
    assert "deletionTimestamp" not in to_syncer(upstream, KEY)["metadata"]


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        (
            {DELETION: "yesterday"},
            'Internal error occurred: parsing of the deletion annotation for sync target "syncTargetKey" '
            "failed: invalid RFC 3339 time 'yesterday': expected YYYY-MM-DDTHH:MM:SS[.fraction] "
            "followed by Z or ±HH:MM",
        ),
        (
            {DIFF: "{"},
            "Internal error occurred: unable to get syncer view fields from upstream resource "
            "root:ws|ns/aThing for SyncTarget syncTargetKey: ",
        ),
        (
            {DIFF: "[1]"},
            "Internal error occurred: unable to get syncer view fields from upstream resource "
            "root:ws|ns/aThing for SyncTarget syncTargetKey: the annotation must hold a JSON object",
        ),
        (
            {"experimental.summarizing.workload.kcp.io": '{"fieldPath":"status"}'},
            "Internal error occurred: unable to get summarizing rules from object upstream resource "
            "root:ws|ns/aThing for SyncTarget syncTargetKey: the annotation must hold a JSON array",
        ),
        (
            {SUMMARIZING: '[{"fieldPath":"status","promoteToUpstream":"yes"}]'},
            "Internal error occurred: unable to get summarizing rules from object upstream resource "
            "root:ws|ns/aThing for SyncTarget syncTargetKey: promoteToUpstream must be a boolean",
        ),
        (
            {"experimental.summarizing.workload.kcp.io": "[1]"},
            "Internal error occurred: unable to get summarizing rules from object upstream resource "
            "root:ws|ns/aThing for SyncTarget syncTargetKey: each rule must be an object",
        ),
        (
            {"experimental.summarizing.workload.kcp.io": '[{"fieldPath":7}]'},
            "Internal error occurred: unable to get summarizing rules from object upstream resource "
            "root:ws|ns/aThing for SyncTarget syncTargetKey: fieldPath must be a string",
        ),
    ],
    ids=[
        "deletion time",
        "overrides not JSON",
        "overrides not an object",
        "rules not an array",
        "promote not a boolean",
        "rule not an object",
        "path not a string",
    ],
)
def test_broken_annotations_fail_reads_and_writes_with_a_500(annotations, message):
    upstream = thing(labels={STATE: "Sync"}, annotations={"kcp.io/cluster": "root:ws", **annotations})
    upstream["metadata"]["namespace"] = "ns"
    for call in (
        lambda: to_syncer(upstream, KEY),
        lambda: from_syncer(upstream, thing(finalizers=[FINALIZER]), KEY),
    ):
        with pytest.raises(TransformError) as caught:
            call()
        assert caught.value.code == 500
        assert caught.value.reason == "InternalError"
        assert caught.value.message.startswith(message)


def test_an_override_through_a_non_object_is_a_500():
    upstream = thing(annotations={DIFF: '{"spec.field":"x"}'}, spec="not an object")
    with pytest.raises(TransformError) as caught:
        to_syncer(upstream, KEY, rules=STATUS_AND_SPEC_FIELD)
    assert caught.value.message == (
        "Internal error occurred: unable to override field spec.field on resource |/aThing: "
        "spec is not an object"
    )
    promoted = thing(annotations={DIFF: '{"spec.field":"##promoted##"}'}, spec="flat")
    with pytest.raises(TransformError, match=r"unable to get promoted syncer view field spec\.field"):
        to_syncer(promoted, KEY, rules=(SummaryField("spec.field", promote=True),))


# --- summarizing rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "rules"),
    [
        (None, DEFAULT_RULES),
        ("", DEFAULT_RULES),
        ("null", ()),
        ('[{"fieldPath":"status","promoteToUpstream":true}]', (SummaryField("status", True),)),
        ('[{"FIELDPATH":"spec.x","PromoteToUpstream":false}]', (SummaryField("spec.x", False),)),
        ('[{"fieldPath":"a","fieldpath":"b","promoteToUpstream":null}]', (SummaryField("b", False),)),
        ("[null]", (SummaryField(""),)),
    ],
)
def test_summarizing_rules_are_read_as_go_decodes_them(annotation, rules):
    obj = thing(
        annotations={} if annotation is None else {"experimental.summarizing.workload.kcp.io": annotation}
    )
    assert summarizing_rules(obj) == rules


# --- write path -------------------------------------------------------------------------------------


def test_every_non_status_change_of_the_syncer_is_discarded():
    upstream = thing(
        rv="7", labels={STATE: "Sync"}, spec={"intent": "should catch joe"}, status={"result": ""}
    )
    incoming = thing(
        rv="7",
        labels={STATE: "Sync", "added": "by-syncer"},
        annotations={"sneaky": "yes"},
        finalizers=[FINALIZER],
        spec={"intent": "catch nobody"},
        status={"result": "joe in prison"},
    )
    written = from_syncer(upstream, incoming, KEY, "status", resource="cowboys", group="wildwest.dev")
    assert written == thing(
        rv="7",
        labels={STATE: "Sync"},
        annotations={DIFF: '{"status":"##promoted##"}'},
        finalizers=[FINALIZER],
        spec={"intent": "should catch joe"},
        status={"result": "joe in prison"},
    )
    # A main-resource update does not carry status: the earlier override stands, nothing is promoted.
    again = from_syncer(written, {**incoming, "status": {"result": "other"}}, KEY, resource="cowboys")
    assert again["status"] == {"result": "joe in prison"}
    assert again["spec"] == {"intent": "should catch joe"}
    assert again["metadata"]["annotations"][DIFF] == '{"status":"##promoted##"}'


def test_with_two_targets_status_is_kept_as_an_override_and_never_promoted():
    upstream = thing(labels={STATE: "Sync", STATE2: "Sync"}, finalizers=[FINALIZER, FINALIZER2], status={})
    incoming = thing(finalizers=[FINALIZER], status={"result": "<mine> & yours"})
    written = from_syncer(upstream, incoming, KEY, "status")
    assert written["status"] == {}
    # Go's encoding/json escapes HTML characters.
    assert (
        written["metadata"]["annotations"][DIFF] == '{"status":{"result":"\\u003cmine\\u003e \\u0026 yours"}}'
    )
    assert to_syncer(written, KEY)["status"] == {"result": "<mine> & yours"}
    assert "status" not in to_syncer(written, KEY2)


def test_a_status_write_without_status_keeps_no_override():
    upstream = thing(labels={STATE: "Sync"}, annotations={DIFF: '{"status":{"old":1}}'})
    written = from_syncer(upstream, thing(finalizers=[FINALIZER]), KEY, "status")
    assert written["metadata"]["annotations"][DIFF] == "{}"


@pytest.mark.parametrize(
    ("labels", "subresource", "where"),
    [
        ({}, None, "cowboys(default/aThing)"),
        ({STATE: ""}, "status", "cowboys/status(default/aThing)"),
        ({STATE: "Upsync"}, None, "cowboys(default/aThing)"),
    ],
)
def test_writing_an_object_not_synced_to_the_target_is_a_500(labels, subresource, where):
    upstream = thing(labels=labels)
    upstream["metadata"]["namespace"] = "default"
    with pytest.raises(TransformError) as caught:
        from_syncer(upstream, thing(finalizers=[FINALIZER]), KEY, subresource, resource="cowboys")
    assert caught.value.message == (
        f"Internal error occurred: tried to write resource {where} though it is not assigned to the current "
        "SyncTarget"
    )


def test_removal_is_only_for_the_main_resource():
    # A status write with a deletion timestamp and no finalizer is an ordinary (refused) write.
    upstream = thing(labels={STATE: "Sync"}, annotations={DELETION: WHEN}, finalizers=[FINALIZER])
    with pytest.raises(TransformError, match="not owning it"):
        from_syncer(upstream, thing(deletion=WHEN), KEY, "status", resource="resources")


def test_removal_removes_the_bare_spec_diff_key_and_keeps_the_keyed_one():
    spec_diff = f"experimental.spec-diff.workload.kcp.io/{KEY}"
    upstream = thing(
        labels={STATE: "Sync", "app": "a"},
        annotations={spec_diff: "[]", "experimental.spec-diff.workload.kcp.io/": "[]", DIFF: "{}"},
        finalizers=["other", FINALIZER],
    )
    [write] = plan_writes(upstream, thing(deletion=WHEN), KEY)
    assert write == Write(
        None, thing(labels={"app": "a"}, annotations={spec_diff: "[]"}, finalizers=["other"])
    )


@pytest.mark.parametrize(
    ("remaining_state", "remaining_finalizer", "remaining_diff"),
    [("", True, '{"status":{"a":1}}'), ("Sync", False, '{"status":{"a":1}}'), ("Sync", True, None)],
    ids=["remaining target pending", "remaining target not owning", "remaining target without overrides"],
)
def test_removal_promotes_nothing_unless_the_remaining_target_syncs_and_owns(
    remaining_state, remaining_finalizer, remaining_diff
):
    annotations = {DELETION: WHEN}
    if remaining_diff:
        annotations[DIFF2] = remaining_diff
    upstream = thing(
        labels={STATE: "Sync", STATE2: remaining_state},
        annotations=annotations,
        finalizers=[FINALIZER, FINALIZER2] if remaining_finalizer else [FINALIZER],
    )
    [write] = plan_writes(upstream, thing(deletion=WHEN), KEY)
    assert "status" not in write.body
    assert write.body["metadata"]["labels"] == {STATE2: remaining_state}


def test_removal_promotes_a_non_status_field_in_the_main_write_only():
    rules = (SummaryField("spec.replicas", promote=True), SummaryField("status", promote=True))
    upstream = thing(
        labels={STATE: "Sync", STATE2: "Sync"},
        annotations={DELETION: WHEN, DIFF2: '{"spec.replicas":3,"status":"##promoted##"}'},
        finalizers=[FINALIZER, FINALIZER2],
        spec={"replicas": 1},
        status={"ok": True},
    )
    [write] = plan_writes(upstream, thing(deletion=WHEN), KEY, rules=rules)
    assert write.body["spec"] == {"replicas": 3}
    assert write.body["status"] == {"ok": True}
    assert write.body["metadata"]["annotations"] == {
        DIFF2: '{"spec.replicas":"##promoted##","status":"##promoted##"}'
    }


def test_unpromote_happens_for_the_single_owner_when_another_target_writes():
    upstream = thing(
        labels={STATE: "Sync", STATE2: "Sync"},
        annotations={DIFF2: json.dumps({"status": PROMOTED})},
        finalizers=[FINALIZER2],
        status={"owner": 2},
    )
    written = from_syncer(upstream, thing(finalizers=[FINALIZER], status={"mine": 1}), KEY, "status")
    assert written["metadata"]["annotations"] == {
        DIFF2: '{"status":{"owner":2}}',
        DIFF: '{"status":{"mine":1}}',
    }
    assert written["metadata"]["finalizers"] == [FINALIZER, FINALIZER2]
    assert written["status"] == {"owner": 2}


def test_unpromote_skips_a_promoted_field_missing_upstream():
    upstream = thing(
        labels={STATE: "Sync", STATE2: "Sync"},
        annotations={DIFF2: '{"status":"##promoted##"}'},
        finalizers=[FINALIZER2],
    )
    written = from_syncer(upstream, thing(finalizers=[FINALIZER]), KEY, "status")
    assert written["metadata"]["annotations"][DIFF2] == '{"status":"##promoted##"}'


@pytest.mark.parametrize(
    ("incoming", "upstream", "message"),
    [
        (
            thing(finalizers=[FINALIZER], spec="flat"),
            thing(labels={STATE: "Sync"}),
            "unable to get syncer view field spec.field on resource |/aThing: spec is not an object",
        ),
        (
            thing(finalizers=[FINALIZER], spec={"field": 1}),
            thing(labels={STATE: "Sync"}, spec="flat"),
            "unable to promote syncer view field spec.field on resource |/aThing: spec is not an object",
        ),
    ],
)
def test_field_errors_on_write_are_500s(incoming, upstream, message):
    with pytest.raises(TransformError) as caught:
        from_syncer(upstream, incoming, KEY, rules=(SummaryField("spec.field", promote=True),))
    assert caught.value.message == f"Internal error occurred: {message}"


def test_field_errors_while_unpromoting_and_promoting_on_removal_are_500s():
    rules = (SummaryField("spec.field", promote=True),)
    joined = thing(
        labels={STATE: "Sync", STATE2: "Sync"},
        annotations={DIFF2: '{"spec.field":"##promoted##"}'},
        finalizers=[FINALIZER2],
        spec="flat",
    )
    with pytest.raises(TransformError, match=r"unable to get promoted syncer view field spec\.field"):
        from_syncer(joined, thing(finalizers=[FINALIZER]), KEY, rules=rules)
    leaving = thing(
        labels={STATE: "Sync", STATE2: "Sync"},
        annotations={DIFF2: '{"spec.field":1}'},
        finalizers=[FINALIZER, FINALIZER2],
        spec="flat",
    )
    with pytest.raises(TransformError, match=r"unable to set promoted syncer view field spec\.field"):
        from_syncer(leaving, thing(deletion=WHEN), KEY, rules=rules)


def test_an_update_without_a_resource_version_is_a_conflict_as_upstream():
    with pytest.raises(TransformError) as caught:
        from_syncer(
            thing(rv="3", labels={STATE: "Sync"}), thing(finalizers=[FINALIZER]), KEY, resource="secrets"
        )
    assert caught.value.code == 409


# --- upsyncer ---------------------------------------------------------------------------------------

UPSYNC_DIFF = f"internal.workload.kcp.io/upsyncdiff{KEY}"


def pv(patch=None):
    annotations = {"keep": "me"}
    if patch is not None:
        annotations[UPSYNC_DIFF] = patch if isinstance(patch, str) else json.dumps(patch)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pv", "labels": {STATE: "Upsync"}, "annotations": annotations},
        "spec": {"capacity": {"storage": "1Gi"}},
    }


def test_upsyncer_applies_its_diff_and_drops_the_annotation():
    written = upsyncer_from_client(
        pv([{"op": "replace", "path": "/spec/capacity/storage", "value": "2Gi"}]), KEY
    )
    assert written["spec"] == {"capacity": {"storage": "2Gi"}}
    assert written["metadata"]["annotations"] == {"keep": "me"}


def test_upsyncer_writes_an_object_without_a_diff_unchanged():
    assert upsyncer_from_client(pv(), KEY) == pv()
    assert upsyncer_from_client(pv(""), KEY) == pv("")
    # Another target's diff is not this target's.
    assert upsyncer_from_client(pv([{"op": "remove", "path": "/spec"}]), "otherKey")["spec"]


@pytest.mark.parametrize(
    "path", ["/metadata/labels/x", "/apiVersion", "/kind", "/METADATA", "/spec/kindness", "/spec/metadataRef"]
)
def test_upsyncer_refuses_patches_mentioning_metadata_apiversion_or_kind(path):
    with pytest.raises(TransformError) as caught:
        upsyncer_from_client(pv([{"op": "add", "path": path, "value": "x"}]), KEY)
    assert caught.value.code == 500
    assert caught.value.message == "metadata, apiversion or kind cannot be modified by a transformation"
    assert "reason" not in caught.value.status()


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ("{not json", "unable to apply the internal.workload.kcp.io/upsyncdiffsyncTargetKey patch: "),
        ([{"op": "replace", "path": "/spec/nothing", "value": 1}], "unable to apply the "),
        (
            [{"op": "replace", "path": "", "value": 1}],
            "the internal.workload.kcp.io/upsyncdiffsyncTargetKey patch must leave the object an object",
        ),
    ],
)
def test_upsyncer_refuses_a_patch_it_cannot_apply(patch, message):
    with pytest.raises(TransformError) as caught:
        upsyncer_from_client(pv(patch), KEY)
    assert caught.value.code == 500
    assert caught.value.message.startswith(message)
