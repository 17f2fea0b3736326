"""Built-in policies for ``tmc.kcp.io/v1alpha1`` Cluster, this project's handle on a physical cluster.

A Cluster names the Secret holding the cluster's kubeconfig, how its syncer runs (``Push``: in the
reconciler; ``Pull``: installed in the cluster from ``syncerImage``) and the SyncTarget it is
published as (``syncTargetName``, by default the Cluster's own name).

* ``cluster-validation``: the spec rules above and the shared status rules.
* ``cluster-defaults``: ``syncMode: Push``, ``unschedulable: false``, ``syncTargetName: <name>``
  and ``kubeconfigSecretRef.key: kubeconfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from kcp_tmc.policies import patches
from kcp_tmc.policies.admission import JsonPatchOperation
from kcp_tmc.policies.builtin.status import changed, validate_status_section, validate_time
from kcp_tmc.policies.builtin.synctarget import sync_target_name_errors
from kcp_tmc.policies.kinds import CLUSTER
from kcp_tmc.policies.model import DEFAULT_KUBECONFIG_KEY, DEFAULT_SYNC_MODE, SYNC_MODE_PULL, SYNC_MODES
from kcp_tmc.policies.policy import FieldError, PolicyRequest, Verdict
from kcp_tmc.policies.registry import mutating, validating
from kcp_tmc.policies.validation import (
    as_bool,
    as_map,
    as_str,
    forbidden,
    invalid,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    not_supported,
    required,
    type_invalid,
)

__all__ = ["cluster_defaults", "cluster_validation"]

_REF: Final = "spec.kubeconfigSecretRef"
_IMAGE_EXAMPLE: Final = "ghcr.io/kcp-dev/kcp/syncer:v0.11.0"


@validating(
    "cluster-validation",
    kinds=[CLUSTER],
    operations=["CREATE", "UPDATE"],
    subresources=["", "status"],
    isolate=False,
)
def cluster_validation(req: PolicyRequest) -> Verdict | None:
    """Validate a Cluster's name, kubeconfig reference, sync mode, SyncTarget name and status."""
    obj = req.object
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        return Verdict(errors=[type_invalid("", obj, "a Cluster object")])
    errs: list[FieldError] = []
    old = req.old_object if req.operation == "UPDATE" and isinstance(req.old_object, Mapping) else None
    if req.sub_resource == "":
        name = _validate_name(obj, errs)
        spec = as_map(obj.get("spec"), "spec", errs)
        if spec is not None or obj.get("spec") is None:
            _validate_spec(spec or {}, name, old, errs)
    _validate_status(obj, old, errs)
    return Verdict(errors=errs) if errs else None


def _validate_name(obj: Mapping[str, Any], errs: list[FieldError]) -> str | None:
    raw_meta = obj.get("metadata")
    meta = as_map(raw_meta, "metadata", errs) if raw_meta is not None else {}
    if meta is None:
        return None
    raw = meta.get("name")
    if raw is None or raw == "":
        errs.append(required("metadata.name", "name the Cluster"))
        return None
    name = as_str(raw, "metadata.name", errs)
    if name is not None:
        # The name is also the default SyncTarget name and part of generated namespace names.
        errs.extend(invalid("metadata.name", name, msg) for msg in is_dns1123_label(name))
    return name


def _effective_sync_target_name(obj: Mapping[str, Any]) -> object:
    """``spec.syncTargetName`` with its default (the Cluster's name) applied."""
    spec = obj.get("spec")
    explicit = spec.get("syncTargetName") if isinstance(spec, Mapping) else None
    if explicit is not None and explicit != "":
        return explicit
    meta = obj.get("metadata")
    return meta.get("name") if isinstance(meta, Mapping) else None


def _validate_spec(
    spec: Mapping[str, Any], name: str | None, old: Mapping[str, Any] | None, errs: list[FieldError]
) -> None:
    _validate_secret_ref(spec.get("kubeconfigSecretRef"), errs)

    mode = spec.get("syncMode")
    if mode is not None and mode not in SYNC_MODES:
        errs.append(not_supported("spec.syncMode", mode, SYNC_MODES))
    image = as_str(spec.get("syncerImage"), "spec.syncerImage", errs)
    if not image:
        if mode == SYNC_MODE_PULL and (image == "" or spec.get("syncerImage") is None):
            errs.append(
                required(
                    "spec.syncerImage",
                    "Pull mode installs the syncer in the cluster; set the syncer's image, "
                    f"e.g. {_IMAGE_EXAMPLE}, or use syncMode Push",
                )
            )
    elif any(c.isspace() for c in image):
        errs.append(
            invalid(
                "spec.syncerImage",
                image,
                f"must not contain whitespace; use an image reference such as {_IMAGE_EXAMPLE}",
            )
        )

    raw_target = spec.get("syncTargetName")
    target = as_str(raw_target, "spec.syncTargetName", errs)
    if target:
        errs.extend(sync_target_name_errors(target, "spec.syncTargetName"))
    if old is not None and (target is not None or raw_target is None):
        # Compare effective names, so that writing out the default is not a change.
        before, after = _effective_sync_target_name(old), target or name
        if before and after and before != after:
            errs.append(
                forbidden(
                    "spec.syncTargetName",
                    f'may not be changed from "{before}" to "{after}" after the Cluster is created; '
                    "to publish the cluster under another name, delete and re-create the Cluster",
                )
            )
    validate_time(spec.get("evictAfter"), "spec.evictAfter", errs)
    as_bool(spec.get("unschedulable"), "spec.unschedulable", errs)


def _validate_secret_ref(value: object, errs: list[FieldError]) -> None:
    if value is None:
        errs.append(
            required(
                _REF,
                "name the Secret that holds the cluster's kubeconfig: "
                "{namespace: <namespace>, name: <secret>, key: kubeconfig}",
            )
        )
        return
    ref = as_map(value, _REF, errs)
    if ref is None:
        return
    for field, check, what in (
        ("namespace", is_dns1123_label, "the namespace of the kubeconfig Secret"),
        ("name", is_dns1123_subdomain, "the name of the kubeconfig Secret"),
    ):
        path = f"{_REF}.{field}"
        raw = ref.get(field)
        if raw is None or raw == "":
            errs.append(required(path, f"set {what}"))
            continue
        text = as_str(raw, path, errs)
        if text is not None:
            errs.extend(invalid(path, text, msg) for msg in check(text))
    secret_key = as_str(ref.get("key"), f"{_REF}.key", errs)
    if secret_key is not None:
        errs.extend(invalid(f"{_REF}.key", secret_key, msg) for msg in is_config_map_key(secret_key))


def _validate_status(obj: Mapping[str, Any], old: Mapping[str, Any] | None, errs: list[FieldError]) -> None:
    section = validate_status_section(obj, old, errs)
    if section is None:
        return
    status, old_status = section
    if changed(status, old_status, "lastHeartbeatTime"):
        validate_time(status.get("lastHeartbeatTime"), "status.lastHeartbeatTime", errs)
    if changed(status, old_status, "kubernetesVersion"):
        as_str(status.get("kubernetesVersion"), "status.kubernetesVersion", errs)


@mutating("cluster-defaults", kinds=[CLUSTER], operations=["CREATE", "UPDATE"], isolate=False)
def cluster_defaults(req: PolicyRequest) -> Verdict | None:
    """Default ``syncMode``, ``unschedulable``, ``syncTargetName`` and ``kubeconfigSecretRef.key``."""
    obj = req.object
    if not isinstance(obj, dict):
        return None
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    defaults: dict[str, Any] = {"syncMode": DEFAULT_SYNC_MODE, "unschedulable": False}
    if isinstance(name, str) and name:
        defaults["syncTargetName"] = name
    spec = obj.get("spec")
    if spec is None:
        return Verdict.mutate(patches.add("/spec", defaults))
    if not isinstance(spec, dict):
        return None
    # Only absent (or null) fields are defaulted: a value the user wrote stays as written.
    ops: list[JsonPatchOperation] = [
        patches.add(patches.pointer("spec", field), value)
        for field, value in defaults.items()
        if spec.get(field) is None
    ]
    ref = spec.get("kubeconfigSecretRef")
    if isinstance(ref, dict) and ref.get("key") is None:
        ops.append(patches.add("/spec/kubeconfigSecretRef/key", DEFAULT_KUBECONFIG_KEY))
    return Verdict(patch=ops) if ops else None
