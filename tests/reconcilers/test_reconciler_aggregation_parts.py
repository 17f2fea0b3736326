"""Parts of the aggregator and the quota manager: the streaming list parser, the workload index and
its sums (a property test against adding every workload's use one by one), and the error paths."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.policies.aggregation import node_requests
from kcp_tmc.policies.usage import usage_of
from kcp_tmc.reconcilers.aggregator import AggregatorController
from kcp_tmc.reconcilers.client import ApiError, NotFound, iter_list_items
from kcp_tmc.reconcilers.engine import Context, Engine, ObjectRef, RetryLater, Snapshot
from kcp_tmc.reconcilers.quota import QuotaController
from kcp_tmc.reconcilers.resources import LOCATIONS, SYNCTARGETS
from kcp_tmc.reconcilers.workloads import WORKLOAD_RESOURCES, WorkloadUsage

# --- the streaming list parser ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"kind":"List","metadata":{"resourceVersion":"5"},"items":[{"a":1},{"b":[1,{"c":"]}"}]}]}',
        '{"items":[{"a":1}, {"b":[1,{"c":"]}"}]}],"kind":"List"}',
        ' { "items" : [ {"a":1} ,\n {"b":[1,{"c":"]}"}]} ] , "metadata" : {} } ',
    ],
)
def test_list_items_parsed_one_by_one_wherever_items_is(text):
    assert list(iter_list_items(text)) == json.loads(text)["items"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_list_items_from_pieces_of_any_size(size):
    """Pieces split values, numbers and multi-byte characters anywhere: the items are the same."""
    text = json.dumps(
        {
            "kind": "List",
            "metadata": {"resourceVersion": "12345"},
            "items": [{"n": 1234567, "s": "日本語 é", "t": True, "l": [1.5, None]}, {"n": -9}, 42, "x"],
        },
        ensure_ascii=False,
    )
    data = text.encode("utf-8")
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    assert list(iter_list_items(pieces)) == json.loads(text)["items"]
    with pytest.raises(ValueError):  # cut short: the decoder's or our own message, by where the cut is
        list(iter_list_items(pieces[:-1]))


@pytest.mark.parametrize("text", ["{}", '{"items":[]}', '{"items": [ ] ,"kind":"X"}', '{"items":null}'])
def test_empty_lists(text):
    assert list(iter_list_items(text)) == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[]", "expected one of '{'"),
        ('{"items":[{"a":1} {"b":2}]}', "expected one of ',]'"),
        ('{"items":[] "kind":1}', "expected one of ',}'"),
        ('{"items" [] }', "expected one of ':'"),
        ("{items:[]}", "expected one of '\"'"),
        ('{"items":[{"a":', "Expecting value"),
    ],
)
def test_malformed_lists_raise_value_error(text, error):
    with pytest.raises(ValueError, match=error):
        list(iter_list_items(text))


# --- a client that serves lists from memory -----------------------------------------------------------


class MemoryClient:
    """Lists from a dict; kinds not in it are 404, as on an apiserver that does not serve them."""

    def __init__(self, lists, errors=None):
        self.lists = lists
        self.errors = errors or {}
        self.requests = 0

    def iter_list(self, resource):
        self.requests += 1
        if resource.plural in self.errors:
            raise self.errors[resource.plural]
        if resource.plural not in self.lists:
            raise NotFound(404, "NotFound", "the server could not find the requested resource")
        yield from (json.loads(json.dumps(obj)) for obj in self.lists[resource.plural])

    def list(self, resource, label_selector=None):
        self.requests += 1
        if resource.plural not in self.lists:
            raise NotFound(404, "NotFound", "the server could not find the requested resource")
        return [dict(obj, kind=resource.kind) for obj in self.lists[resource.plural]], "1"

    def get(self, resource, name, namespace=None):
        for obj in self.lists.get(resource.plural, []):
            if obj["metadata"]["name"] == name and obj["metadata"].get("namespace") in (None, namespace):
                return obj
        raise NotFound(404, "NotFound", f'{resource.plural} "{name}" not found')

    def get_json(self, path):
        self.requests += 1
        if path == "/apis/example.com":
            return {"preferredVersion": {"groupVersion": "example.com/v2"}}
        if path == "/apis/example.com/v2":
            return {
                "groupVersion": "example.com/v2",
                "resources": [{"name": "widgets", "namespaced": True, "kind": "W"}],
            }
        raise NotFound(404, "NotFound", path)


def context(client) -> Context:
    engine = Engine(client, [])
    return Context(engine, Snapshot(client), datetime(2026, 12, 3, tzinfo=UTC))


def deployment(name, namespace, replicas, cpu, targets, cluster="root", rv="1"):
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{namespace}-{name}",
            "resourceVersion": rv,
            "labels": {f"state.workload.kcp.io/{t}": "Sync" for t in targets},
            "annotations": {"kcp.io/cluster": cluster},
        },
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}},
        },
    }


WORKLOADS = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 5),
        st.sampled_from(["1", "100m", "250m", "1.5", "3"]),
        st.frozensets(st.sampled_from(["k1", "k2", "k3"]), max_size=3),
        st.sampled_from(["root", "root:x"]),
    ),
    max_size=15,
)


def _add(into, use):
    for name, value in use.items():
        into[name] = into[name] + value if name in into else value


@settings(max_examples=60, deadline=None)
@given(WORKLOADS)
def test_property_index_equals_the_sum_of_every_workload(specs):
    """Aggregation equals the sum of its parts: per namespace, per namespace and target, per target."""
    objs = [
        deployment(f"d{i}", ns, replicas, cpu, sorted(targets), cluster)
        for i, (ns, replicas, cpu, targets, cluster) in enumerate(specs)
    ]
    index = WorkloadUsage().index(context(MemoryClient({"deployments": objs})))
    namespace_use, target_use, node_use = {}, {}, {}
    for obj in objs:
        usage = usage_of(obj, "apps", "Deployment", "deployments")
        where = (obj["metadata"]["annotations"]["kcp.io/cluster"], obj["metadata"]["namespace"])
        _add(namespace_use.setdefault(where, {}), usage.overall())
        for key in usage.targets:
            _add(target_use.setdefault(where, {}).setdefault(key, {}), usage.on(key))
            _add(node_use.setdefault(key, {}), node_requests(usage.compute))

    def exact(values):
        return {k: v.to_fraction() for k, v in values.items()}

    assert {w: exact(t.quantities()) for w, t in index.namespace_use.items()} == {
        w: exact(u) for w, u in namespace_use.items()
    }
    assert {
        w: {k: exact(t.quantities()) for k, t in per.items()} for w, per in index.namespace_target_use.items()
    } == {w: {k: exact(u) for k, u in per.items()} for w, per in target_use.items()}
    assert {k: exact(t.quantities()) for k, t in index.node_use.items()} == {
        k: exact(u) for k, u in node_use.items()
    }
    assert index.workloads == len(objs)


def test_index_is_built_once_per_cycle_and_reuses_unchanged_workloads():
    objs = [deployment("a", "ns", 2, "1", ["k1"])]
    client = MemoryClient({"deployments": objs})
    usage = WorkloadUsage()
    ctx = context(client)
    first = usage.index(ctx)
    assert usage.index(ctx) is first
    assert client.requests == len(WORKLOAD_RESOURCES) == first.requests
    entry = usage._cache["uid-ns-a"]
    usage.index(context(client))
    assert usage._cache["uid-ns-a"] is entry  # same resourceVersion: not recomputed
    objs[0]["metadata"]["resourceVersion"] = "2"
    objs[0]["spec"]["replicas"] = 3
    third = usage.index(context(client))
    assert usage._cache["uid-ns-a"] is not entry
    assert third.node_use["k1"].resource_list() == {"cpu": "3", "pods": "3"}
    objs.clear()
    usage.index(context(client))
    assert usage._cache == {}  # deleted workloads are forgotten


def test_broken_workload_is_left_out_with_a_warning(caplog):
    bad = deployment("bad", "ns", 1, "lots", ["k1"])
    good = deployment("good", "ns", 1, "1", ["k1"])
    with caplog.at_level(logging.WARNING):
        index = WorkloadUsage().index(context(MemoryClient({"deployments": [bad, good]})))
    assert index.node_use["k1"].resource_list() == {"cpu": "1", "pods": "1"}
    assert index.workloads == 1
    assert any(r.getMessage() == "workload use not computable" and r.object == "bad" for r in caplog.records)


def test_use_in_sums_namespaces():
    objs = [deployment("a", "x", 1, "1", ["k1"]), deployment("b", "y", 1, "2", ["k1", "k2"])]
    index = WorkloadUsage().index(context(MemoryClient({"deployments": objs})))
    overall, per_target = index.use_in([("root", "x"), ("root", "y"), ("root", "missing")])
    assert overall.resource_list()["requests.cpu"] == "5"
    assert {k: t.resource_list()["requests.cpu"] for k, t in per_target.items()} == {"k1": "3", "k2": "2"}


# --- controller error paths -----------------------------------------------------------------------------


def test_invalid_instance_selector_is_retried_later():
    location = {
        "kind": "Location",
        "metadata": {"name": "l", "resourceVersion": "1"},
        "spec": {"instanceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}},
    }
    client = MemoryClient({"locations": [location], "synctargets": []})
    with pytest.raises(
        RetryLater, match=r"^spec.instanceSelector: \"Near\" is not a valid label selector operator"
    ):
        AggregatorController().reconcile(context(client), dict(location), 0)


def test_bad_quota_spec_is_retried_later():
    quota = {
        "kind": "FederatedQuota",
        "metadata": {"name": "q", "namespace": "n"},
        "spec": {"overall": {"cpu": "x"}},
    }
    client = MemoryClient({"federatedquotas": [quota], "synctargets": []})
    with pytest.raises(RetryLater, match=r"^spec: cpu: "):
        QuotaController().reconcile(context(client), quota, 0)


def test_fetch_finds_each_kind_by_its_ref():
    st_ = {"metadata": {"name": "same"}}
    loc = {"metadata": {"name": "same"}, "spec": {}}
    fq = {"metadata": {"name": "same", "namespace": "n"}}
    rq = {"metadata": {"name": "rq", "namespace": "admin"}}
    client = MemoryClient(
        {"synctargets": [st_], "locations": [loc], "federatedquotas": [fq], "resourcequotas": [rq]}
    )
    ctx = context(client)
    aggregator, quota = AggregatorController(), QuotaController()
    assert aggregator.fetch(ctx, ObjectRef("aggregator", "synctargets/same")) is st_
    assert aggregator.fetch(ctx, ObjectRef("aggregator", "locations/same")) is loc
    assert aggregator.fetch(ctx, ObjectRef("aggregator", "locations/gone")) is None
    assert quota.fetch(ctx, ObjectRef("quota", "federatedquotas/same", "n")) is fq
    assert quota.fetch(ctx, ObjectRef("quota", "resourcequotas/rq", "admin")) is rq
    # A SyncTarget and a Location of the same name are two refs.
    refs = {ref for ref, _, _ in aggregator.refs(ctx)}
    assert refs == {ObjectRef("aggregator", "synctargets/same"), ObjectRef("aggregator", "locations/same")}
    assert {r.name for r, _, _ in quota.refs(ctx)} == {"federatedquotas/same"}  # rq is not cluster-scoped


def cluster_scoped_rq(hard):
    return {
        "kind": "ResourceQuota",
        "metadata": {
            "name": "q",
            "namespace": "admin",
            "annotations": {"experimental.quota.kcp.io/cluster-scoped": "t"},
        },
        "spec": {"hard": hard},
    }


def test_counts_of_a_discovered_group_and_a_failing_list():
    widgets = [
        {"metadata": {"name": "w1", "namespace": "a"}},
        {"metadata": {"name": "w2", "namespace": "b"}},
        {"metadata": {"name": "w3", "namespace": "b", "annotations": {"kcp.io/cluster": "root:else"}}},
    ]
    client = MemoryClient({"widgets": widgets})
    quota = QuotaController()
    ctx = context(client)
    assert quota._counts(ctx, "root", ["count/widgets.example.com", "count/gadgets.example.com", "cpu"]) == {
        "count/widgets.example.com": 2,
        "count/gadgets.example.com": 0,
    }
    assert quota._discovered[("widgets", "example.com")].version == "v2"
    assert quota._discovered[("gadgets", "example.com")] is None
    # The kind went away after discovery: counted 0 and looked up again next time.
    client.lists.pop("widgets")
    assert quota._counts(context(client), "root", ["count/widgets.example.com"]) == {
        "count/widgets.example.com": 0
    }
    assert ("widgets", "example.com") not in quota._discovered
    quota._discover(context(client), "widgets", "example.com")
    client.errors["widgets"] = ApiError(500, "InternalError", "boom")
    with pytest.raises(
        RetryLater, match=r"^cannot count count/widgets\.example\.com: 500 InternalError: boom$"
    ):
        quota._counts(context(client), "root", ["count/widgets.example.com"])


def test_resource_quota_and_federated_quota_refs_are_told_apart():
    rq = cluster_scoped_rq({"count/pods": "1"})
    client = MemoryClient({"resourcequotas": [rq], "federatedquotas": [], "pods": []})
    ctx = context(client)
    refs = QuotaController().refs(ctx)
    assert [(r.name, r.namespace) for r, _, _ in refs] == [("resourcequotas/q", "admin")]


def test_kinds_the_server_does_not_serve_list_as_empty():
    client = MemoryClient({"synctargets": [{"metadata": {"name": "t"}}], "resourcequotas": []})
    ctx = context(client)
    assert [r.name for r, _, _ in AggregatorController().refs(ctx)] == ["synctargets/t"]
    assert QuotaController().refs(ctx) == []
    with pytest.raises(NotFound):
        ctx.snapshot.list_optional(SYNCTARGETS) and ctx.snapshot.list(LOCATIONS)


def test_iter_list_against_the_fake_server(kube):
    from kcp_tmc.reconcilers.client import Resource

    configmaps = Resource("", "v1", "configmaps", namespaced=True, kind="ConfigMap")
    for i in range(3):
        kube.create(
            configmaps,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}},
            namespace="default",
        )
    before = kube.requests
    assert [obj["metadata"]["name"] for obj in kube.iter_list(configmaps)] == ["c0", "c1", "c2"]
    assert kube.requests == before + 1
    # Abandoned halfway: the connection is dropped, not reused with a body half read.
    items = kube.iter_list(configmaps)
    assert next(items)["metadata"]["name"] == "c0"
    items.close()
    assert len(kube.list(configmaps)[0]) == 3
    with pytest.raises(NotFound, match="404"):
        list(kube.iter_list(Resource("example.com", "v1", "widgets", namespaced=True)))


def test_failed_workload_lists_fail_the_cycle_once_not_per_object():
    from kcp_tmc.reconcilers.client import Unreachable

    client = MemoryClient(
        {"pods": []}, errors={"deployments": Unreachable("GET /apis/apps/v1/deployments: refused")}
    )
    ctx = context(client)
    usage = WorkloadUsage()
    message = r"^listing workloads failed: GET /apis/apps/v1/deployments: refused$"
    with pytest.raises(RetryLater, match=message):
        usage.index(ctx)
    requests = client.requests
    with pytest.raises(RetryLater, match=message):
        usage.index(ctx)
    assert client.requests == requests  # not listed again within the cycle
    client.errors.clear()
    assert usage.index(context(client)).workloads == 0  # the next cycle lists again
