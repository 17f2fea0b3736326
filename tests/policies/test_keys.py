"""SyncTarget keys, derived identifiers and the label/annotation key builders."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.policies import keys
from kcp_tmc.policies.keys import (
    BASE62_ALPHABET,
    deletion_annotation,
    dns_id,
    downstream_namespace_name,
    key_from_state_label,
    namespace_locator_json,
    soft_finalizers_annotation,
    spec_diff_annotation,
    state_label,
    status_annotation,
    sync_target_key,
    syncer_diff_annotation,
    syncer_finalizer,
    syncer_id,
    upsync_diff_annotation,
)


def _decode62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + BASE62_ALPHABET.index(char)
    return value


@pytest.mark.parametrize(
    ("cluster", "name", "expected"),
    [
        # kcp v0.11 pkg/syncer/spec/spec_process_test.go
        ("root:org:ws", "us-west1", "6ohB8yeXhwqTQVuBzJRgqcRJTpRjX7yTZu5g5g"),
        # the SyncTarget key label kcp sets
        ("root:default:testing", "syncTargetName", "R2DPbwTUto2c2O2rBBEW57W11oOL5ALodAyMo"),
    ],
)
def test_sync_target_key_vectors(cluster: str, name: str, expected: str) -> None:
    assert sync_target_key(cluster, name) == expected


def test_sync_target_key_empty_cluster_hashes_the_name_alone() -> None:
    digest = int.from_bytes(hashlib.sha224(b"us-west1").digest(), "big")
    assert _decode62(sync_target_key("", "us-west1")) == digest
    assert sync_target_key("", "us-west1") != sync_target_key("root", "us-west1")


def test_sync_target_key_uses_a_colon_separator_unlike_kcp_v010() -> None:
    # v0.10 hashed cluster+name with no separator; v0.11 joins with ":".
    digest = int.from_bytes(hashlib.sha224(b"root:orgws").digest(), "big")
    assert _decode62(sync_target_key("root:org", "ws")) != digest


def test_base62_of_zero_is_a_single_digit() -> None:
    assert keys._int_text(0, 62) == "0"
    assert keys._int_text(61, 62) == "Z"
    assert keys._int_text(62, 62) == "10"


@settings(max_examples=200, deadline=None)
@given(cluster=st.text(max_size=40), name=st.text(min_size=1, max_size=40))
def test_sync_target_key_properties(cluster: str, name: str) -> None:
    key = sync_target_key(cluster, name)
    assert set(key) <= set(BASE62_ALPHABET)
    assert key == sync_target_key(cluster, name)
    joined = f"{cluster}:{name}" if cluster else name
    assert _decode62(key) == int.from_bytes(hashlib.sha224(joined.encode()).digest(), "big")
    # No padding: as many digits as the digest needs (at most 38, as 62^38 > 2^224; 37 or 38 on all
    # but about 1 in 800 inputs).
    assert len(key) <= 38
    assert not key.startswith("0")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=10), st.text(min_size=1, max_size=10)), min_size=2, max_size=30))
def test_sync_target_key_is_injective_on_samples(pairs: list[tuple[str, str]]) -> None:
    joined = {f"{c}:{n}" if c else n for c, n in pairs}
    assert len({sync_target_key(c, n) for c, n in pairs}) == len(joined)


def test_key_lengths_on_a_real_sample() -> None:
    lengths = {len(sync_target_key("root:org", f"target-{i}")) for i in range(300)}
    assert lengths <= {37, 38}
    assert 38 in lengths


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (state_label, "state.workload.kcp.io/K"),
        (deletion_annotation, "deletion.internal.workload.kcp.io/K"),
        (soft_finalizers_annotation, "finalizers.workload.kcp.io/K"),
        (syncer_finalizer, "workload.kcp.io/syncer-K"),
        (syncer_diff_annotation, "diff.syncer.internal.kcp.io/K"),
        (status_annotation, "experimental.status.workload.kcp.io/K"),
        (spec_diff_annotation, "experimental.spec-diff.workload.kcp.io/K"),
        (upsync_diff_annotation, "internal.workload.kcp.io/upsyncdiffK"),
    ],
)
def test_keyed_builders(builder: object, expected: str) -> None:
    assert callable(builder)
    assert builder("K") == expected


def test_fixed_keys_match_reference_table() -> None:
    assert keys.LABEL_SYNC_TARGET_KEY == "internal.workload.kcp.io/key"
    assert keys.LABEL_DOWNSTREAM_CLUSTER == "internal.workload.kcp.io/cluster"
    assert keys.ANNOTATION_PLACEMENT_SYNC_TARGET == "internal.workload.kcp.io/synctarget"
    assert keys.ANNOTATION_SKIP_DEFAULT_OBJECT_CREATION == "workload.kcp.io/skip-default-object-creation"
    assert keys.ANNOTATION_COMPUTE_EXPORT == "extra.apis.kcp.io/compute.workload.kcp.io"
    assert (
        keys.FEATURE_GATE_ADVANCED_SCHEDULING
        == "featuregates.experimental.workload.kcp.io/advancedscheduling"
    )
    assert keys.ANNOTATION_SUMMARIZING == "experimental.summarizing.workload.kcp.io"
    assert keys.ANNOTATION_PLACEMENT == "scheduling.kcp.io/placement"
    assert keys.ANNOTATION_SCHEDULING_LABELS == "scheduling.kcp.io/labels"
    assert keys.ANNOTATION_CLUSTER == "kcp.io/cluster"
    assert keys.ANNOTATION_PATH == "kcp.io/path"
    assert keys.ANNOTATION_NAMESPACE_LOCATOR == "kcp.io/namespace-locator"
    assert keys.ANNOTATION_DELETION_PROTECTED == "tmc.kcp.io/deletion-protected"
    assert keys.ANNOTATION_OWNING_CLUSTER == "tmc.kcp.io/cluster"
    assert keys.ANNOTATION_FORCE_CLEANUP == "tmc.kcp.io/force-cleanup"
    assert keys.FINALIZER_CLUSTER_CLEANUP == "tmc.kcp.io/cluster-cleanup"
    assert (keys.PENDING, keys.SYNC, keys.UPSYNC) == ("", "Sync", "Upsync")
    assert keys.STATE_VALUES == ("", "Sync", "Upsync")


def test_every_public_name_exists() -> None:
    for name in keys.__all__:
        assert hasattr(keys, name), name


def test_key_from_state_label() -> None:
    assert key_from_state_label("state.workload.kcp.io/abc") == "abc"
    assert key_from_state_label("state.workload.kcp.io/") is None
    assert key_from_state_label("internal.workload.kcp.io/key") is None


def test_syncer_id_matches_kcp_formula() -> None:
    digest = hashlib.sha224(b"uid-1").digest()
    value = int.from_bytes(digest, "big")
    base36 = ""
    while value:
        value, rem = divmod(value, 36)
        base36 = "0123456789abcdefghijklmnopqrstuvwxyz"[rem] + base36
    assert syncer_id("us-west1", "uid-1") == f"kcp-syncer-us-west1-{base36[:8]}"
    assert syncer_id("us-west1", "uid-1") == "kcp-syncer-us-west1-" + keys._hash36("uid-1", 8)


def test_dns_id_combines_uid_and_cluster_hashes() -> None:
    got = dns_id("st", "uid-1", "root:org:ws")
    assert got == f"kcp-dns-st-{keys._hash36('uid-1', 8)}-{keys._hash36('root:org:ws', 8)}"
    assert len(got) == len("kcp-dns-st-") + 8 + 1 + 8


def test_base36_keeps_one_zero_per_leading_zero_byte() -> None:
    # martinlindhe/base36.EncodeBytes prefixes a "0" for every leading zero byte.
    assert keys._base36_bytes(b"\x00\x00\x01") == "001"
    assert keys._base36_bytes(b"\x01\x02\x03\x04") == "a2f44"
    assert keys._base36_bytes(b"\x00") == "0"


def test_downstream_namespace_name_vector_from_kcp() -> None:
    # kcp v0.11 pkg/syncer/status/status_process_test.go: this locator maps to kcp-33jbiactwhg0.
    locator = namespace_locator_json(
        {"cluster": "root:org:ws", "name": "us-west1", "uid": "syncTargetUID"}, "root:org:ws", "test"
    )
    assert locator == (
        '{"syncTarget":{"cluster":"root:org:ws","name":"us-west1","uid":"syncTargetUID"},'
        '"cluster":"root:org:ws","namespace":"test"}'
    )
    assert downstream_namespace_name(locator) == "kcp-33jbiactwhg0"


def test_namespace_locator_escapes_like_go() -> None:
    locator = namespace_locator_json({"name": "a<b>&c\u2028"}, "", "ns")
    assert locator == (
        '{"syncTarget":{"cluster":"","name":"a\\u003cb\\u003e\\u0026c\\u2028","uid":""},'
        '"cluster":"","namespace":"ns"}'
    )
