"""Which ``?fieldSelector=`` fields each served kind accepts, and the value each field has.

kube-apiserver checks every field of a selector with the kind's field-label
conversion before it lists anything.  Most built-in kinds have none and fall
back to the scheme default, which accepts ``metadata.name`` and
``metadata.namespace`` and refuses anything else with ``"<field>" is not a
known field selector: only "metadata.name", "metadata.namespace"``.  A few
kinds register their own conversion (pods, nodes, namespaces, secrets,
services, core events, batch Jobs; replication controllers too, which the fake
does not serve): it accepts the fields that kind's storage can select on and
words its refusal its own way (``field label not supported: <field>``, or
``field label "<field>" not supported for Job``).  Custom resources get
the CRD converter: ``metadata.name``, ``metadata.namespace`` when namespaced,
the version's ``selectableFields``, and ``field label not supported: <field>``
for anything else.

Matching then reads the kind's field set: a field the set lacks is ``""``, and
some values are computed (a node's ``spec.unschedulable`` is ``false`` when the
object leaves it out; a Job's ``status.successful`` is ``status.succeeded``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kcp_tmc.policies.selectors import (
    DEFAULT_FIELD_SELECTOR_FIELDS,
    FieldRequirement,
    FieldSelector,
    object_field,
)
from kcp_tmc.testing.resources import ResourceInfo

Object = dict[str, Any]
ValueOf = Callable[[Mapping[str, Any]], str]

NOT_SUPPORTED = "field label not supported: {field}"
"""How the kinds with their own conversion (and custom resources) refuse a field."""


def default_refusal(field_label: str) -> str:
    """``runtime.DefaultMetaV1FieldSelectorConversion``'s refusal, for kinds without their own conversion."""
    known = ", ".join(json.dumps(f) for f in DEFAULT_FIELD_SELECTOR_FIELDS)
    return f"{json.dumps(field_label)} is not a known field selector: only {known}"


class FieldLabelError(ValueError):
    """A field the kind cannot select on; ``str()`` is the apiserver's message (sent as 400 BadRequest)."""


@dataclass(frozen=True)
class FieldLabels:
    """The field-label conversion of one kind: the fields it accepts and how it refuses others."""

    #: Fields accepted in a selector (after ``aliases`` are applied).
    accepted: tuple[str, ...] = DEFAULT_FIELD_SELECTOR_FIELDS
    #: ``str.format`` template of the refusal (``{field}``); ``None`` is the scheme default.
    refusal: str | None = None
    #: Old names the conversion rewrites (``spec.host`` → ``spec.nodeName`` for pods).
    aliases: Mapping[str, str] = field(default_factory=dict)
    #: Fields whose value is not simply the dotted path of the object.
    values: Mapping[str, ValueOf] = field(default_factory=dict)
    #: Accepted fields that the kind's field set never fills (always ``""`` when matched).
    unset: frozenset[str] = frozenset()

    def convert(self, field_label: str) -> str:
        """The field the store selects on; raises :class:`FieldLabelError` when the kind refuses it."""
        target = self.aliases.get(field_label, field_label)
        if target in self.accepted:
            return target
        if self.refusal is None:
            raise FieldLabelError(default_refusal(field_label))
        raise FieldLabelError(self.refusal.format(field=field_label))

    def value(self, obj: Mapping[str, Any], field_label: str) -> str:
        """The value ``field_label`` has in the kind's field set for ``obj``."""
        if field_label in self.unset:
            return ""
        compute = self.values.get(field_label)
        return compute(obj) if compute is not None else object_field(obj, field_label)


@dataclass(frozen=True)
class FieldFilter:
    """A parsed and converted field selector bound to the kind whose objects it filters."""

    selector: FieldSelector
    labels: FieldLabels

    @property
    def empty(self) -> bool:
        """True when nothing is required."""
        return self.selector.empty

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` satisfies every requirement, read from the kind's field set."""
        values = {r.field: self.labels.value(obj, r.field) for r in self.selector.requirements}
        return self.selector.matches_fields(values)


def _bool(path: str) -> ValueOf:
    # Go prints a bool field with strconv.FormatBool, so an absent one is "false".
    return lambda obj: "true" if object_field(obj, path) == "true" else "false"


def _pod_ip(obj: Mapping[str, Any]) -> str:
    # The pod's field set takes the first of status.podIPs; v1 keeps status.podIP in step with it.
    status = obj.get("status") or {}
    ips = status.get("podIPs") if isinstance(status, Mapping) else None
    if isinstance(ips, list) and ips and isinstance(ips[0], Mapping):
        return str(ips[0].get("ip") or "")
    return object_field(obj, "status.podIP")


def _event_source(obj: Mapping[str, Any]) -> str:
    # An event without source.component is selected by its reporting controller.
    return object_field(obj, "source.component") or object_field(obj, "reportingComponent")


def _job_successful(obj: Mapping[str, Any]) -> str:
    succeeded = object_field(obj, "status.succeeded")
    return succeeded or "0"


_NAME = "metadata.name"
_NAMESPACE = "metadata.namespace"

#: The built-in kinds with a field-label conversion of their own, by (group, kind).
BUILTIN: Mapping[tuple[str, str], FieldLabels] = {
    ("", "Pod"): FieldLabels(
        accepted=(
            _NAME,
            _NAMESPACE,
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ),
        refusal=NOT_SUPPORTED,
        aliases={"spec.host": "spec.nodeName"},
        values={"spec.hostNetwork": _bool("spec.hostNetwork"), "status.podIP": _pod_ip},
        unset=frozenset({"status.podIPs"}),
    ),
    ("", "Node"): FieldLabels(
        accepted=(_NAME, "spec.unschedulable"),
        refusal=NOT_SUPPORTED,
        values={"spec.unschedulable": _bool("spec.unschedulable")},
    ),
    ("", "Namespace"): FieldLabels(accepted=(_NAME, "status.phase"), refusal=NOT_SUPPORTED),
    ("", "Secret"): FieldLabels(accepted=(_NAME, _NAMESPACE, "type"), refusal=NOT_SUPPORTED),
    ("", "Service"): FieldLabels(
        accepted=(_NAME, _NAMESPACE, "spec.clusterIP", "spec.type"), refusal=NOT_SUPPORTED
    ),
    ("", "Event"): FieldLabels(
        accepted=(
            _NAME,
            _NAMESPACE,
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
        refusal=NOT_SUPPORTED,
        values={"source": _event_source},
    ),
    ("batch", "Job"): FieldLabels(
        accepted=(_NAME, _NAMESPACE, "status.successful"),
        refusal='field label "{field}" not supported for Job',
        values={"status.successful": _job_successful},
    ),
}

DEFAULT = FieldLabels()
"""Every built-in kind without a conversion of its own (configmaps, deployments, leases...)."""


def field_labels(info: ResourceInfo) -> FieldLabels:
    """The field-label conversion the apiserver applies to ``info``'s kind."""
    if info.custom:
        base = (_NAME, _NAMESPACE) if info.namespaced else (_NAME,)
        return FieldLabels(accepted=base + info.field_selectors, refusal=NOT_SUPPORTED)
    return BUILTIN.get((info.group, info.kind), DEFAULT)


def field_filter(info: ResourceInfo, selector: FieldSelector) -> FieldFilter:
    """Converts each field of ``selector`` for ``info``; :class:`FieldLabelError` names the first refused."""
    labels = field_labels(info)
    converted = tuple(
        FieldRequirement(labels.convert(r.field), r.operator, r.value) for r in selector.requirements
    )
    return FieldFilter(FieldSelector(converted), labels)
