"""The fake server's field-label conversions: accepted fields, refusals, and field-set values."""

from __future__ import annotations

from typing import Any

import pytest

from kcp_tmc.policies.selectors import parse_field_selector
from kcp_tmc.testing.fieldlabels import FieldLabelError, field_filter, field_labels
from kcp_tmc.testing.resources import BUILTINS, ResourceInfo, infos_from_crd

BY_PLURAL = {(info.group, info.plural): info for info in BUILTINS}
DEFAULT_REFUSAL = '"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'


def builtin(plural: str, group: str = "") -> ResourceInfo:
    return BY_PLURAL[(group, plural)]


def selects(info: ResourceInfo, selector: str, obj: dict[str, Any]) -> bool:
    return field_filter(info, parse_field_selector(selector, None)).matches(obj)


def refusal(info: ResourceInfo, selector: str) -> str:
    with pytest.raises(FieldLabelError) as caught:
        field_filter(info, parse_field_selector(selector, None))
    return str(caught.value)


def widget_info(scope: str, selectable: list[str]) -> ResourceInfo:
    crd = {
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "kind": "Widget"},
            "scope": scope,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "selectableFields": [{"jsonPath": f".{path}"} for path in selectable],
                }
            ],
        }
    }
    (info,) = infos_from_crd(crd)
    return info


@pytest.mark.parametrize(
    ("plural", "group", "field", "message"),
    [
        ("configmaps", "", "spec.color", DEFAULT_REFUSAL.format(field="spec.color")),
        ("deployments", "apps", "spec.paused", DEFAULT_REFUSAL.format(field="spec.paused")),
        ("cronjobs", "batch", "spec.suspend", DEFAULT_REFUSAL.format(field="spec.suspend")),
        ("pods", "", "spec.color", "field label not supported: spec.color"),
        ("secrets", "", "data", "field label not supported: data"),
        ("services", "", "spec.ports", "field label not supported: spec.ports"),
        ("events", "", "message", "field label not supported: message"),
        ("nodes", "", "metadata.namespace", "field label not supported: metadata.namespace"),
        ("namespaces", "", "metadata.namespace", "field label not supported: metadata.namespace"),
        ("jobs", "batch", "spec.suspend", 'field label "spec.suspend" not supported for Job'),
    ],
)
def test_refusals_are_worded_by_the_kinds_conversion(
    plural: str, group: str, field: str, message: str
) -> None:
    assert refusal(builtin(plural, group), f"{field}=x") == message


def test_kinds_without_a_conversion_accept_only_name_and_namespace() -> None:
    configmaps = builtin("configmaps")
    obj = {"metadata": {"name": "a", "namespace": "ns"}}
    assert selects(configmaps, "metadata.name=a,metadata.namespace=ns", obj)
    assert not selects(configmaps, "metadata.namespace!=ns", obj)
    # Fields other kinds select on are refused here, not silently matched.
    assert refusal(configmaps, "type=Opaque") == DEFAULT_REFUSAL.format(field="type")


def test_pod_fields() -> None:
    pods = builtin("pods")
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1", "restartPolicy": "Never", "schedulerName": "default-scheduler"},
        "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.2"}, {"ip": "fd00::2"}]},
    }
    assert selects(pods, "spec.nodeName=n1,status.phase=Running,spec.restartPolicy=Never", pod)
    # spec.host is the old name of spec.nodeName.
    assert selects(pods, "spec.host=n1", pod)
    assert not selects(pods, "spec.host=n2", pod)
    # hostNetwork is false unless set; the pod IP is the first of podIPs.
    assert selects(pods, "spec.hostNetwork=false,status.podIP=10.0.0.2", pod)
    assert selects(pods, "spec.hostNetwork=true", {**pod, "spec": {"hostNetwork": True}})
    assert selects(pods, "status.podIP=10.0.0.9", {"status": {"podIP": "10.0.0.9"}})
    # status.podIPs is accepted but the pod's field set never fills it.
    assert not selects(pods, "status.podIPs=10.0.0.2", pod)
    assert selects(pods, "status.podIPs=", pod)


def test_node_namespace_secret_service_fields() -> None:
    assert selects(builtin("nodes"), "spec.unschedulable=false", {"spec": {}})
    assert selects(builtin("nodes"), "spec.unschedulable=true", {"spec": {"unschedulable": True}})
    assert selects(builtin("namespaces"), "status.phase=Active", {"status": {"phase": "Active"}})
    assert selects(builtin("secrets"), "type=Opaque", {"type": "Opaque"})
    assert selects(
        builtin("services"),
        "spec.type=ClusterIP,spec.clusterIP=None",
        {"spec": {"type": "ClusterIP", "clusterIP": "None"}},
    )


def test_event_fields() -> None:
    events = builtin("events")
    legacy = {"involvedObject": {"kind": "Pod", "name": "p"}, "source": {"component": "kubelet"}}
    assert selects(events, "involvedObject.kind=Pod,involvedObject.name=p,source=kubelet", legacy)
    # Without source.component the event is selected by its reporting controller.
    modern = {"reportingComponent": "kcp-syncer", "reason": "Synced", "type": "Normal"}
    assert selects(
        events, "source=kcp-syncer,reportingComponent=kcp-syncer,reason=Synced,type=Normal", modern
    )


def test_job_status_successful() -> None:
    jobs = builtin("jobs", "batch")
    assert selects(jobs, "status.successful=0", {"status": {}})
    assert selects(jobs, "status.successful=2", {"status": {"succeeded": 2}})
    assert not selects(jobs, "status.successful=0", {"status": {"succeeded": 1}})


def test_custom_resources() -> None:
    namespaced = widget_info("Namespaced", ["spec.color"])
    assert selects(
        namespaced,
        "spec.color=red,metadata.namespace=ns",
        {"metadata": {"namespace": "ns"}, "spec": {"color": "red"}},
    )
    assert refusal(namespaced, "spec.size=3") == "field label not supported: spec.size"
    assert field_filter(namespaced, parse_field_selector("", None)).empty
    assert not field_filter(namespaced, parse_field_selector("spec.color=red", None)).empty
    cluster = widget_info("Cluster", [])
    assert field_labels(cluster).accepted == ("metadata.name",)
    assert refusal(cluster, "metadata.namespace=x") == "field label not supported: metadata.namespace"
    assert refusal(cluster, "spec.color=red") == "field label not supported: spec.color"
