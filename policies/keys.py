"""Label, annotation and finalizer keys of kcp TMC, and the identifiers derived from hashes.

Upstream names (kcp v0.11, ``pkg/apis/workload/v1alpha1/types.go``) use the ``.io`` domains; the
``.dev`` spellings of v0.10 and earlier are not produced here.  Keys that carry a SyncTarget key
(``state.workload.kcp.io/<key>``) have a builder function instead of a constant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Final

__all__ = [
    "ANNOTATION_CLUSTER",
    "ANNOTATION_COMPUTE_EXPORT",
    "ANNOTATION_DELETION_PROTECTED",
    "ANNOTATION_FORCE_CLEANUP",
    "ANNOTATION_NAMESPACE_LOCATOR",
    "ANNOTATION_OWNING_CLUSTER",
    "ANNOTATION_PATH",
    "ANNOTATION_PLACEMENT",
    "ANNOTATION_PLACEMENT_SYNC_TARGET",
    "ANNOTATION_SCHEDULING_LABELS",
    "ANNOTATION_SKIP_DEFAULT_OBJECT_CREATION",
    "ANNOTATION_SUMMARIZING",
    "BASE62_ALPHABET",
    "FEATURE_GATE_ADVANCED_SCHEDULING",
    "FINALIZER_CLUSTER_CLEANUP",
    "LABEL_DOWNSTREAM_CLUSTER",
    "LABEL_SYNC_TARGET_KEY",
    "PENDING",
    "PREFIX_DELETION_ANNOTATION",
    "PREFIX_SOFT_FINALIZERS_ANNOTATION",
    "PREFIX_SPEC_DIFF_ANNOTATION",
    "PREFIX_STATE_LABEL",
    "PREFIX_STATUS_ANNOTATION",
    "PREFIX_SYNCER_DIFF_ANNOTATION",
    "PREFIX_SYNCER_FINALIZER",
    "PREFIX_UPSYNC_DIFF_ANNOTATION",
    "STATE_VALUES",
    "SYNC",
    "UPSYNC",
    "deletion_annotation",
    "dns_id",
    "downstream_namespace_name",
    "go_json",
    "key_from_state_label",
    "namespace_locator_json",
    "soft_finalizers_annotation",
    "spec_diff_annotation",
    "state_label",
    "status_annotation",
    "sync_target_key",
    "syncer_diff_annotation",
    "syncer_finalizer",
    "syncer_id",
    "upsync_diff_annotation",
]

# --- keys with a fixed name -------------------------------------------------------------------------

#: Label on a SyncTarget holding its own key; used to find a SyncTarget from a key.
LABEL_SYNC_TARGET_KEY: Final = "internal.workload.kcp.io/key"
#: Label on downstream objects holding the key of the SyncTarget that synced them.
LABEL_DOWNSTREAM_CLUSTER: Final = "internal.workload.kcp.io/cluster"
#: Annotation on a Placement naming the key of the SyncTarget it was scheduled to.
ANNOTATION_PLACEMENT_SYNC_TARGET: Final = "internal.workload.kcp.io/synctarget"
#: Annotation on APIExports/APIBindings: ``"true"`` means do not recreate the default Location/Placement.
ANNOTATION_SKIP_DEFAULT_OBJECT_CREATION: Final = "workload.kcp.io/skip-default-object-creation"
#: Annotation on APIExports/APIBindings: ``"true"`` marks a compute export.
ANNOTATION_COMPUTE_EXPORT: Final = "extra.apis.kcp.io/compute.workload.kcp.io"
#: Feature-gate key allow-listed in kcp's reserved metadata.
FEATURE_GATE_ADVANCED_SCHEDULING: Final = "featuregates.experimental.workload.kcp.io/advancedscheduling"
#: Annotation on upstream objects: a JSON array of summarizing field rules.
ANNOTATION_SUMMARIZING: Final = "experimental.summarizing.workload.kcp.io"
#: Annotation on a Namespace bound to placement(s).
ANNOTATION_PLACEMENT: Final = "scheduling.kcp.io/placement"
#: Annotation on a Location: its instance labels as ``k1=v1 k2=v2`` with keys sorted.
ANNOTATION_SCHEDULING_LABELS: Final = "scheduling.kcp.io/labels"
#: Annotation on every object naming its logical cluster.
ANNOTATION_CLUSTER: Final = "kcp.io/cluster"
#: Annotation holding the canonical workspace path of an object (Location, APIExport, WorkspaceType).
ANNOTATION_PATH: Final = "kcp.io/path"
#: Annotation on a downstream Namespace holding the JSON namespace locator.
ANNOTATION_NAMESPACE_LOCATOR: Final = "kcp.io/namespace-locator"

# --- keys of this project (not upstream) ---------------------------------------------------------

#: Annotation that makes admission refuse deletion of the object while its value is true.
ANNOTATION_DELETION_PROTECTED: Final = "tmc.kcp.io/deletion-protected"
#: Annotation naming the tmc.kcp.io Cluster that owns a generated object.
ANNOTATION_OWNING_CLUSTER: Final = "tmc.kcp.io/cluster"
#: Annotation asking the cleanup finalizer to drop what it cannot clean up instead of waiting.
ANNOTATION_FORCE_CLEANUP: Final = "tmc.kcp.io/force-cleanup"
#: Finalizer on a tmc.kcp.io Cluster; removed once its SyncTarget and secrets are cleaned up.
FINALIZER_CLUSTER_CLEANUP: Final = "tmc.kcp.io/cluster-cleanup"

# --- keys built from a SyncTarget key ------------------------------------------------------------

PREFIX_STATE_LABEL: Final = "state.workload.kcp.io/"
PREFIX_DELETION_ANNOTATION: Final = "deletion.internal.workload.kcp.io/"
PREFIX_SOFT_FINALIZERS_ANNOTATION: Final = "finalizers.workload.kcp.io/"
PREFIX_SYNCER_FINALIZER: Final = "workload.kcp.io/syncer-"
PREFIX_SYNCER_DIFF_ANNOTATION: Final = "diff.syncer.internal.kcp.io/"
PREFIX_STATUS_ANNOTATION: Final = "experimental.status.workload.kcp.io/"
PREFIX_SPEC_DIFF_ANNOTATION: Final = "experimental.spec-diff.workload.kcp.io/"
#: Upstream spells this one without a slash between prefix and key.
PREFIX_UPSYNC_DIFF_ANNOTATION: Final = "internal.workload.kcp.io/upsyncdiff"

#: State label value: assigned to the target but not yet synced (the syncer ignores it).
PENDING: Final = ""
#: State label value: synced downstream.
SYNC: Final = "Sync"
#: State label value: upsynced from downstream (exclusive with SYNC).
UPSYNC: Final = "Upsync"
#: Every legal value of a state label.
STATE_VALUES: Final = (PENDING, SYNC, UPSYNC)


def state_label(key: str) -> str:
    """``state.workload.kcp.io/<key>``: the label assigning an object to one SyncTarget."""
    return PREFIX_STATE_LABEL + key


def key_from_state_label(label: str) -> str | None:
    """The SyncTarget key of a state label, or None when ``label`` is not a state label."""
    if label.startswith(PREFIX_STATE_LABEL) and len(label) > len(PREFIX_STATE_LABEL):
        return label[len(PREFIX_STATE_LABEL) :]
    return None


def deletion_annotation(key: str) -> str:
    """``deletion.internal.workload.kcp.io/<key>``: RFC3339 time meaning "remove from this target"."""
    return PREFIX_DELETION_ANNOTATION + key


def soft_finalizers_annotation(key: str) -> str:
    """``finalizers.workload.kcp.io/<key>``: comma-separated soft finalizers for one target."""
    return PREFIX_SOFT_FINALIZERS_ANNOTATION + key


def syncer_finalizer(key: str) -> str:
    """``workload.kcp.io/syncer-<key>``: the syncer's ownership finalizer."""
    return PREFIX_SYNCER_FINALIZER + key


def syncer_diff_annotation(key: str) -> str:
    """``diff.syncer.internal.kcp.io/<key>``: the syncer-view field overrides."""
    return PREFIX_SYNCER_DIFF_ANNOTATION + key


def status_annotation(key: str) -> str:
    """``experimental.status.workload.kcp.io/<key>``: legacy per-target status JSON."""
    return PREFIX_STATUS_ANNOTATION + key


def spec_diff_annotation(key: str) -> str:
    """``experimental.spec-diff.workload.kcp.io/<key>``: JSON Patch for ``.spec`` in the syncer view."""
    return PREFIX_SPEC_DIFF_ANNOTATION + key


def upsync_diff_annotation(key: str) -> str:
    """``internal.workload.kcp.io/upsyncdiff<key>`` (no slash, as upstream)."""
    return PREFIX_UPSYNC_DIFF_ANNOTATION + key


# --- hashes ---------------------------------------------------------------------------------------

BASE62_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _int_text(value: int, base: int) -> str:
    """``value`` in ``base`` with Go ``big.Int.Text`` digits (0-9, a-z, A-Z), no padding."""
    if value == 0:
        return "0"
    digits: list[str] = []
    while value:
        value, rem = divmod(value, base)
        digits.append(BASE62_ALPHABET[rem])
    return "".join(reversed(digits))


def _sha224_int(text: str) -> int:
    return int.from_bytes(hashlib.sha224(text.encode("utf-8")).digest(), "big")


def sync_target_key(cluster: str, name: str) -> str:
    """The SyncTarget key: base62 of SHA-224 over ``<cluster>:<name>`` (``<name>`` when cluster is empty).

    Matches kcp v0.11 ``ToSyncTargetKey``; keys are 37-38 characters for real input.
    """
    path = f"{cluster}:{name}" if cluster else name
    return _int_text(_sha224_int(path), 62)


def _base36_bytes(digest: bytes) -> str:
    """Lowercase base36 of ``digest`` as kcp computes it (``martinlindhe/base36.EncodeBytes``).

    The digest is read as a big-endian integer; each leading zero byte adds one leading ``0`` digit.
    """
    value = int.from_bytes(digest, "big")
    digits = _int_text(value, 36) if value else ""
    zeros = len(digest) - len(digest.lstrip(b"\0"))
    return "0" * zeros + digits


def _hash36(text: str, length: int) -> str:
    return _base36_bytes(hashlib.sha224(text.encode("utf-8")).digest())[:length]


def syncer_id(name: str, uid: str) -> str:
    """``kcp-syncer-<name>-<8 chars of base36(SHA-224(uid))>``: the syncer's Deployment/identity name."""
    return f"kcp-syncer-{name}-{_hash36(uid, 8)}"


def dns_id(name: str, uid: str, cluster: str) -> str:
    """``kcp-dns-<name>-<8 of base36 sha224(uid)>-<8 of base36 sha224(cluster)>``."""
    return f"kcp-dns-{name}-{_hash36(uid, 8)}-{_hash36(cluster, 8)}"


def namespace_locator_json(sync_target: Mapping[str, str], cluster: str, namespace: str) -> str:
    """The JSON namespace locator as the syncer writes it (Go field order, no spaces).

    ``sync_target`` holds ``cluster``, ``name`` and ``uid`` of the SyncTarget.
    """
    locator = {
        "syncTarget": {
            "cluster": sync_target.get("cluster", ""),
            "name": sync_target.get("name", ""),
            "uid": sync_target.get("uid", ""),
        },
        "cluster": cluster,
        "namespace": namespace,
    }
    return go_json(locator)


def go_json(value: object, *, sort_keys: bool = False) -> str:
    """``value`` as Go's ``encoding/json`` writes it (``sort_keys``: as it writes a map, keys sorted)."""
    # Go escapes HTML characters and the JS line separators; hashes and stored annotations depend on it.
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def downstream_namespace_name(locator_json: str) -> str:
    """``kcp-<12 chars of base36(SHA-224(locator JSON))>``: the downstream namespace of a locator."""
    return "kcp-" + _hash36(locator_json, 12)
