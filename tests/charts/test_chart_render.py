"""``helm lint`` and ``helm template`` of charts/kcp-tmc: every manifest checked, every safety default.

Each variant (defaults, cert-manager, your own certificates, failurePolicy Ignore, metrics on, one
replica, neither quota nor the virtual workspace, many values at once) renders; every built-in manifest must
survive a round trip through its Kubernetes client model unchanged (unknown or misplaced fields and
wrong types do not), and every kcp object must be accepted by our CRD schemas on the fake server.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
import yaml

from kcp_tmc.policies.config import parse_config
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.webhook import MUTATING_WEBHOOK, VALIDATING_WEBHOOK, tmc_rules
from tests.charts.chart_kit import (
    CHART,
    NAMESPACE,
    RELEASE,
    REPO,
    SAFE_LOADER,
    Manifest,
    all_of,
    find,
    granted,
    helm,
    model_name,
    model_round_trip,
    render,
)
from tests.reconcilers.reconciler_processes import crds

CA_B64 = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "cert-manager": ["certManager.enabled=true"],
    "user-certs": ["tls.existingSecret=my-webhook-tls", f"tls.caBundle={CA_B64}"],
    "fail-open": ["webhook.failurePolicy=Ignore", "quota.webhook.failurePolicy=Ignore"],
    # Neither quota admission nor the virtual workspaces: the webhook needs no API access at all.
    "minimal": ["quota.webhook.enabled=false", "virtualWorkspace.enabled=false"],
    "metrics": ["metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true"],
    "one-replica": ["webhook.replicas=1", "reconciler.replicas=1"],
    "hooks": [
        "virtualWorkspace.url=https://vw.example.com:8443/shard",
        "virtualWorkspace.dnsNames={vw.example.com}",
        "reconciler.partitions=4",
        "reconciler.shards={root=https://shard-1.example:6443/}",
        "reconciler.secretNamespaces={tmc-system,clusters}",
        "webhook.excludedNamespaces={team-a}",
        "webhook.config.exemptions.namespaces={sandbox-*}",
        "reconciler.kubeconfigSecret=kcp-admin",
    ],
}
#: Kinds of other projects' CRDs (cert-manager, prometheus-operator), whose schemas we do not hold:
#: their fields are asserted one by one below instead.
FOREIGN_KINDS = {"Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"}
WEBHOOK = f"{RELEASE}-webhook"
VW_SERVICE = f"{RELEASE}-virtual-workspace"
QUOTA_WEBHOOKS = ["federatedquota.tmc.kcp.io", "quota.tmc.kcp.io"]
RECONCILER = f"{RELEASE}-reconciler"
CONFIGURATIONS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render(*sets) for name, sets in VARIANTS.items()}


@pytest.fixture(scope="module")
def defaults(rendered: dict[str, list[Manifest]]) -> list[Manifest]:
    return rendered["defaults"]


# --- lint and schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_passes(variant: str) -> None:
    args = ["lint", str(CHART), "--strict", "--namespace", NAMESPACE]
    for item in VARIANTS[variant]:
        args += ["--set", item]
    done = helm(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_builtin_manifest_matches_the_kubernetes_schema(
    rendered: dict[str, list[Manifest]], variant: str
) -> None:
    checked = 0
    for manifest in rendered[variant]:
        if model_name(manifest) is None:
            continue
        assert model_round_trip(manifest) == manifest, (manifest["kind"], manifest["metadata"]["name"])
        checked += 1
    assert checked >= 15


def test_every_kcp_object_is_accepted_by_our_crd_schemas(rendered: dict[str, list[Manifest]]) -> None:
    ours = {(c["spec"]["group"], c["spec"]["names"]["kind"]) for c in crds()}
    with FakeAPIServer() as api:
        for crd in crds():
            api.install_crd(crd)
        for variant, manifests in rendered.items():
            for manifest in manifests:
                group = manifest["apiVersion"].rpartition("/")[0]
                if manifest["kind"] == "CustomResourceDefinition" or model_name(manifest) is not None:
                    continue
                if manifest["kind"] in FOREIGN_KINDS:
                    continue
                assert (group, manifest["kind"]) in ours, (variant, manifest["kind"])
                if api.get(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]) is None:
                    api.create(manifest)


def test_every_manifest_is_checked_by_one_of_the_schemas(rendered: dict[str, list[Manifest]]) -> None:
    ours = {c["spec"]["names"]["kind"] for c in crds()}
    kinds = {m["kind"] for manifests in rendered.values() for m in manifests}
    unchecked = {k for k in kinds if k not in ours and k != "CustomResourceDefinition"}
    unchecked -= {m["kind"] for ms in rendered.values() for m in ms if model_name(m) is not None}
    assert unchecked == FOREIGN_KINDS


def test_the_crds_are_the_ones_in_crds(defaults: list[Manifest]) -> None:
    rendered = sorted(m["metadata"]["name"] for m in all_of(defaults, "CustomResourceDefinition"))
    assert rendered == sorted(c["metadata"]["name"] for c in crds())


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("webhook.replicas=notanumber", "at '/webhook/replicas': got string, want integer"),
        ("webhook.replicas=0", "at '/webhook/replicas': minimum: got 0, want 1"),
        (
            "webhook.failurePolicy=Sometimes",
            "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'",
        ),
        (
            "webhook.timeoutSeconds.validating=31",
            "at '/webhook/timeoutSeconds/validating': maximum: got 31, want 30",
        ),
        ("reconciler.partitions=0", "at '/reconciler/partitions': minimum: got 0, want 1"),
        ("reconciler.pollInterval=soon", "at '/reconciler/pollInterval'"),
        ("webhook.replica=3", "at '/webhook': additional properties 'replica' not allowed"),
    ],
)
def test_bad_values_fail_with_the_path_and_the_reason(value: str, message: str) -> None:
    done = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--set", value)
    assert done.returncode == 1
    assert "values don't meet the specifications of the schema(s)" in done.stderr
    assert message in done.stderr, done.stderr


def test_a_user_secret_needs_its_ca_and_excludes_cert_manager() -> None:
    done = helm("template", RELEASE, str(CHART), "--set", "tls.existingSecret=mine")
    assert done.returncode == 1
    assert "at '/tls/caBundle': minLength: got 0, want 1" in done.stderr, done.stderr
    both = [
        "--set",
        "tls.existingSecret=mine",
        "--set",
        f"tls.caBundle={CA_B64}",
        "--set",
        "certManager.enabled=true",
    ]
    done = helm("template", RELEASE, str(CHART), *both)
    assert done.returncode == 1
    assert "at '/certManager/enabled': value must be false" in done.stderr, done.stderr


# --- the webhook ---------------------------------------------------------------------------------


def _pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _hardened(pod: dict[str, Any]) -> None:
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert set(container["resources"]) == {"requests", "limits"}
        assert set(container["resources"]["limits"]) == {"cpu", "memory"}


def test_the_webhook_is_highly_available_probed_and_hardened(rendered: dict[str, list[Manifest]]) -> None:
    defaults = rendered["minimal"]
    deployment = find(defaults, "Deployment", WEBHOOK)
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = spec["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert _selects(anti["podAffinityTerm"]["labelSelector"]["matchLabels"], _pod_labels(deployment))
    (container,) = pod["containers"]
    assert container["command"] == ["tmc-webhook"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    # A stopping pod keeps serving until its endpoint is gone, well within its grace period.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert pod["terminationGracePeriodSeconds"] > 5
    _hardened(pod)
    # Without quota it needs no API access: no token in the pod, no RBAC for its account.
    assert "--kubeconfig=in-cluster" not in container["args"]
    assert pod["automountServiceAccountToken"] is False
    assert find(defaults, "ServiceAccount", WEBHOOK)["automountServiceAccountToken"] is False
    subjects = [s["name"] for kind in ("RoleBinding", "ClusterRoleBinding") for b in all_of(defaults, kind)
                for s in b["subjects"]]  # fmt: skip
    assert WEBHOOK not in subjects
    pdb = find(defaults, "PodDisruptionBudget", WEBHOOK)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert _selects(pdb["spec"]["selector"]["matchLabels"], _pod_labels(deployment))
    service = find(defaults, "Service", WEBHOOK)
    assert _selects(service["spec"]["selector"], _pod_labels(deployment))
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]


def test_one_replica_keeps_a_pdb_that_still_lets_a_node_drain(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["one-replica"]
    assert find(manifests, "Deployment", WEBHOOK)["spec"]["replicas"] == 1
    assert find(manifests, "Deployment", RECONCILER)["spec"]["replicas"] == 1
    assert find(manifests, "PodDisruptionBudget", WEBHOOK)["spec"]["maxUnavailable"] == 1


def test_the_webhook_configurations_are_narrow_and_fail_closed_by_default(defaults: list[Manifest]) -> None:
    mutating = find(defaults, "MutatingWebhookConfiguration", RELEASE)
    validating = find(defaults, "ValidatingWebhookConfiguration", RELEASE)
    assert [w["name"] for w in mutating["webhooks"]] == [MUTATING_WEBHOOK]
    assert [w["name"] for w in validating["webhooks"]] == [VALIDATING_WEBHOOK, *QUOTA_WEBHOOKS]
    for configuration, timeout, path in ((mutating, 2, "/mutate"), (validating, 3, "/validate")):
        hook = configuration["webhooks"][0]
        assert hook["failurePolicy"] == "Fail"
        assert hook["timeoutSeconds"] == timeout
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1", "v1beta1"]
        assert hook["matchPolicy"] == "Equivalent"
        # The same rules the test kit registers: the TMC kinds, their status, nothing else.
        assert hook["rules"] == tmc_rules()
        assert hook["clientConfig"]["service"] == {
            "name": WEBHOOK,
            "namespace": NAMESPACE,
            "path": path,
            "port": 443,
        }
        assert "caBundle" not in hook["clientConfig"]  # the certificate Job injects it after install
        _excludes_the_system_namespaces(hook)
    assert mutating["webhooks"][0]["reinvocationPolicy"] == "Never"


def _excludes_the_system_namespaces(hook: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    expressions = hook["namespaceSelector"]["matchExpressions"]
    assert expressions == [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
         "values": ["kube-system", "kube-node-lease", NAMESPACE, *extra]},
        {"key": "tmc.kcp.io/ignore", "operator": "DoesNotExist"},
    ]  # fmt: skip


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_webhook_ever_matches_leases_events_or_everything(
    rendered: dict[str, list[Manifest]], variant: str
) -> None:
    for kind in CONFIGURATIONS:
        for hook in find(rendered[variant], kind)["webhooks"]:
            for rule in hook["rules"]:
                assert "*" not in rule["apiGroups"] and "*" not in rule["resources"], (hook["name"], rule)
                assert not {"coordination.k8s.io", "events.k8s.io"} & set(rule["apiGroups"])
                assert not {"leases", "events"} & {r.split("/")[0] for r in rule["resources"]}
            assert hook["timeoutSeconds"] <= 3
            _excludes_the_system_namespaces(hook, ("team-a",) if variant == "hooks" else ())


def test_fail_open_is_a_value(rendered: dict[str, list[Manifest]]) -> None:
    for kind in CONFIGURATIONS:
        policies = [w["failurePolicy"] for w in find(rendered["fail-open"], kind)["webhooks"]]
        assert policies == ["Ignore"] * (1 if kind.startswith("Mutating") else 3)
    # Quota's failure policy is a value of its own: our kinds fail open, quota still fails closed.
    alone = render("webhook.failurePolicy=Ignore")
    hooks = find(alone, "ValidatingWebhookConfiguration")["webhooks"]
    assert [w["failurePolicy"] for w in hooks] == ["Ignore", "Ignore", "Fail"]


def test_quota_admission_is_on_by_default_on_its_own_route(rendered: dict[str, list[Manifest]]) -> None:
    from kcp_tmc.policies.builtin.quotaenforcement import POLICY

    validating = find(rendered["defaults"], "ValidatingWebhookConfiguration")
    fq, quota = validating["webhooks"][1:]
    # The route the webhook serves quota enforcement on, alone (docs/webhook.md).
    assert quota["clientConfig"]["service"]["path"] == f"/validate/{POLICY}" == "/validate/quota-enforcement"
    # It reserves usage as it admits: a dry run must not reach it.
    assert quota["sideEffects"] == "NoneOnDryRun"
    assert quota["failurePolicy"] == "Fail"
    assert quota["timeoutSeconds"] == 3
    assert quota["admissionReviewVersions"] == ["v1", "v1beta1"]
    assert {(g, r) for rule in quota["rules"] for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("", "pods"),
        ("", "configmaps"),
        ("apps", "deployments"),
        ("apps", "deployments/scale"),
        ("apps", "replicasets"),
        ("apps", "replicasets/scale"),
        ("apps", "statefulsets"),
        ("apps", "statefulsets/scale"),
        ("batch", "jobs"),
        ("tenancy.kcp.io", "workspaces"),
    }
    *namespaced, workspaces = quota["rules"]
    assert all(rule["operations"] == ["CREATE", "UPDATE"] for rule in namespaced)
    assert all(rule["scope"] == "Namespaced" for rule in namespaced)
    # A Workspace is counted when it is made; an update changes no count.
    assert (workspaces["operations"], workspaces["scope"]) == (["CREATE"], "Cluster")
    _excludes_the_system_namespaces(quota)
    # FederatedQuotas themselves are validated by the library on /validate, without side effects.
    assert fq["clientConfig"]["service"]["path"] == "/validate"
    assert fq["sideEffects"] == "None"
    # ResourceQuotas too (resourcequota-validation). Not their status: the webhook writes
    # reservations there while it holds a review, and the quota manager writes the counts.
    assert [(r["apiGroups"], r["resources"]) for r in fq["rules"]] == [
        (["tmc.kcp.io"], ["federatedquotas"]),
        ([""], ["resourcequotas"]),
    ]
    assert fq["rules"][1]["operations"] == ["CREATE", "UPDATE"]
    # The webhook reads the quotas through its service account and writes reservations.
    pod = find(rendered["defaults"], "Deployment", WEBHOOK)["spec"]["template"]["spec"]
    assert "--kubeconfig=in-cluster" in pod["containers"][0]["args"]
    assert pod["automountServiceAccountToken"] is True
    assert granted(rendered["defaults"], WEBHOOK) == {
        ("get", "tmc.kcp.io", "federatedquotas"),
        ("list", "tmc.kcp.io", "federatedquotas"),
        ("watch", "tmc.kcp.io", "federatedquotas"),
        ("patch", "tmc.kcp.io", "federatedquotas/status"),
        ("get", "", "resourcequotas"),
        ("list", "", "resourcequotas"),
        ("watch", "", "resourcequotas"),
        ("patch", "", "resourcequotas/status"),
    }
    off = find(rendered["minimal"], "ValidatingWebhookConfiguration")["webhooks"]
    assert [w["name"] for w in off] == [VALIDATING_WEBHOOK]


def test_engine_configuration_reaches_the_webhook_as_a_file(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["hooks"]
    config = find(manifests, "ConfigMap", f"{WEBHOOK}-config")
    assert yaml.safe_load(config["data"]["config.yaml"]) == {"exemptions": {"namespaces": ["sandbox-*"]}}
    # What the webhook will read is a configuration the engine accepts.
    parsed = parse_config(config["data"]["config.yaml"], "webhook.config")
    assert parsed.exemptions.namespaces == ("sandbox-*",)
    pod = find(manifests, "Deployment", WEBHOOK)["spec"]["template"]
    assert "--config=/etc/kcp-tmc/config/config.yaml" in pod["spec"]["containers"][0]["args"]
    assert "checksum/config" in pod["metadata"]["annotations"]  # a changed configuration rolls the pods


# --- the reconciler ------------------------------------------------------------------------------


def test_the_reconciler_elects_a_leader_and_partitions_from_values(
    rendered: dict[str, list[Manifest]],
) -> None:
    deployment = find(rendered["defaults"], "Deployment", RECONCILER)
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert {"--leader-elect", f"--leader-elect-namespace={NAMESPACE}", "--partitions=1"} <= set(args)
    assert pod["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert pod["containers"][0]["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    _hardened(pod)
    hooks = find(rendered["hooks"], "Deployment", RECONCILER)["spec"]["template"]["spec"]["containers"][0]
    assert {"--partitions=4", "--shard=root=https://shard-1.example:6443/",
            "--kubeconfig=/etc/kcp-tmc/kubeconfig/kubeconfig"} <= set(hooks["args"])  # fmt: skip
    # The flags the chart passes are flags tmc-reconciler accepts.
    from kcp_tmc.reconcilers.cli import build_parser

    build_parser().parse_args([a for a in hooks["args"] if not a.startswith("--kubeconfig")])


def test_the_virtual_workspace_is_served_by_default(rendered: dict[str, list[Manifest]]) -> None:
    from kcp_tmc.reconcilers.cli import build_parser

    manifests = rendered["defaults"]
    service = find(manifests, "Service", VW_SERVICE)
    pod = find(manifests, "Deployment", RECONCILER)["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert _selects(service["spec"]["selector"], pod["metadata"]["labels"])
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "vw", "protocol": "TCP"}]
    assert {"name": "vw", "containerPort": 6443, "protocol": "TCP"} in container["ports"]
    vw_args = [a for a in container["args"] if a.startswith(("--vw-", "--shard"))]
    assert vw_args == [
        "--vw-bind=0.0.0.0:6443",
        "--vw-cert-file=/etc/kcp-tmc/tls/tls.crt",
        "--vw-key-file=/etc/kcp-tmc/tls/tls.key",
        # status.virtualWorkspaces of every SyncTarget points at this Service.
        f"--shard=root=https://{VW_SERVICE}.{NAMESPACE}.svc:443",
    ]
    opts = build_parser().parse_args(container["args"])
    assert opts.vw_bind == "0.0.0.0:6443" and opts.shard == [f"root=https://{VW_SERVICE}.{NAMESPACE}.svc:443"]
    # The files are the serving certificate's Secret, mounted read-only.
    mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/etc/kcp-tmc/tls", "readOnly": True}
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "tls")
    assert volume["secret"]["secretName"] == _tls_volume(manifests)
    # An external URL (for syncers in other clusters) replaces the Service's, beside other shards.
    hooks = find(rendered["hooks"], "Deployment", RECONCILER)["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in hooks["args"] if a.startswith("--shard")] == [
        "--shard=root=https://shard-1.example:6443/",
        "--shard=root=https://vw.example.com:8443/shard",
    ]
    minimal = rendered["minimal"]
    assert not [s for s in all_of(minimal, "Service") if "virtual-workspace" in s["metadata"]["name"]]
    off = find(minimal, "Deployment", RECONCILER)["spec"]["template"]["spec"]
    assert not [a for a in off["containers"][0]["args"] if a.startswith("--vw-")]
    assert "tls" not in {v["name"] for v in off["volumes"]}


VW_NAMES = [VW_SERVICE, f"{VW_SERVICE}.{NAMESPACE}", f"{VW_SERVICE}.{NAMESPACE}.svc",
            f"{VW_SERVICE}.{NAMESPACE}.svc.cluster.local"]  # fmt: skip


def test_the_serving_certificate_names_the_virtual_workspace(rendered: dict[str, list[Manifest]]) -> None:
    for job in (f"{RELEASE}-certs-pre", f"{RELEASE}-certs-post"):
        script = find(rendered["defaults"], "Job", job)["spec"]["template"]["spec"]["containers"][0]["args"][
            0
        ]
        assert all(f"--dns {name} " in script for name in VW_NAMES), script
    script = find(rendered["hooks"], "Job", f"{RELEASE}-certs-pre")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert "--dns vw.example.com " in script["args"][0]
    assert (
        "--dns"
        not in find(rendered["minimal"], "Job", f"{RELEASE}-certs-pre")["spec"]["template"]["spec"][
            "containers"
        ][0]["args"][0]
    )
    certificate = find(rendered["cert-manager"], "Certificate", WEBHOOK)
    assert certificate["spec"]["dnsNames"][-4:] == VW_NAMES


def test_the_generated_certificate_serves_both_names(tmp_path) -> None:
    # The Job's generate command, run: the one certificate is valid for the webhook and the VW.
    from cryptography import x509

    from kcp_tmc.certs.cli import main as certs_main

    script = find(render(), "Job", f"{RELEASE}-certs-pre")["spec"]["template"]["spec"]["containers"][0][
        "args"
    ][0]
    command = script.split("tmc-certs generate", 1)[1].split("\n    fi", 1)[0].split("\nfi", 1)[0]
    args = command.replace("\\\n", " ").replace('"$dir"', str(tmp_path)).split()
    assert certs_main(["generate", *args]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(VW_NAMES) | {f"{WEBHOOK}.{NAMESPACE}.svc"} <= set(sans.get_values_for_type(x509.DNSName))


def _rules_of(manifests: list[Manifest]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m["kind"], m["metadata"]["name"], rule) for kind in ("Role", "ClusterRole")
            for m in all_of(manifests, kind) for rule in m["rules"]]  # fmt: skip


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_is_least_privilege(rendered: dict[str, list[Manifest]], variant: str) -> None:
    manifests = rendered[variant]
    for kind, name, rule in _rules_of(manifests):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], (kind, name, rule)
        assert (
            "escalate" not in rule["verbs"]
            and "bind" not in rule["verbs"]
            and "impersonate" not in rule["verbs"]
        )
        if "secrets" in rule["resources"] and name == f"{RECONCILER}-virtual-workspace":
            # The one exception: the syncer virtual workspace serves a SyncTarget's Secrets to its
            # syncer (only those labelled for that target), so it reads them in every namespace.
            assert kind == "ClusterRole" and "create" not in rule["verbs"] and "delete" not in rule["verbs"]
        elif "secrets" in rule["resources"]:
            # Secrets only by Role, in named namespaces; the certificate Job's by name except create.
            assert kind == "Role", (name, rule)
            assert set(rule["verbs"]) <= {"get", "create", "update", "patch"}
            assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]
        if {"validatingwebhookconfigurations", "mutatingwebhookconfigurations"} & set(rule["resources"]):
            assert rule["resourceNames"] == [RELEASE]
            assert set(rule["verbs"]) == {"get", "patch"}
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in all_of(manifests, kind):
            assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit"), binding["metadata"]
    secret_roles = {r["metadata"]["namespace"] for r in all_of(manifests, "Role")
                    if r["metadata"]["name"] == f"{RECONCILER}-kubeconfigs"}  # fmt: skip
    assert secret_roles == ({NAMESPACE, "clusters"} if variant == "hooks" else {NAMESPACE})


# --- certificates --------------------------------------------------------------------------------


def _tls_volume(manifests: list[Manifest]) -> str:
    volumes = find(manifests, "Deployment", WEBHOOK)["spec"]["template"]["spec"]["volumes"]
    secret: str = next(v for v in volumes if v["name"] == "tls")["secret"]["secretName"]
    return secret


def test_default_certificates_come_from_tmc_certs_in_hook_jobs(defaults: list[Manifest]) -> None:
    pre, post = find(defaults, "Job", f"{RELEASE}-certs-pre"), find(defaults, "Job", f"{RELEASE}-certs-post")
    assert pre["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert post["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    tls, ca = f"{NAMESPACE}/{WEBHOOK}-tls", f"{NAMESPACE}/{WEBHOOK}-ca"
    assert _tls_volume(defaults) == f"{WEBHOOK}-tls"
    for job, injects in ((pre, False), (post, True)):
        pod = job["spec"]["template"]["spec"]
        _hardened(pod)
        script = pod["containers"][0]["args"][0]
        assert f'tmc-certs pull "$dir" --secret {tls} --ca-secret {ca}' in script
        assert 'tmc-certs rotate "$dir"' in script
        assert f"--service {WEBHOOK} --namespace {NAMESPACE}" in script
        assert (f"--webhook-configuration {RELEASE}" in script) is injects
        # The hook Jobs run before the release's own service accounts exist: theirs are hooks too.
        account = find(defaults, "ServiceAccount", pod["serviceAccountName"])
        assert "pre-install" in account["metadata"]["annotations"]["helm.sh/hook"]
    renew = find(defaults, "CronJob", f"{RELEASE}-certs-renew")
    assert renew["spec"]["schedule"] == "17 3 * * *"
    assert renew["spec"]["concurrencyPolicy"] == "Forbid"
    script = renew["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"--webhook-configuration {RELEASE}" in script
    assert not all_of(defaults, "Certificate")


def test_only_the_certificate_job_and_the_reconciler_may_read_secrets(defaults: list[Manifest]) -> None:
    readers = {}
    for role in all_of(defaults, "Role"):
        for rule in role["rules"]:
            if "secrets" in rule["resources"] and "get" in rule["verbs"]:
                readers[role["metadata"]["name"]] = (rule["verbs"], rule.get("resourceNames"))
    assert readers == {
        # The certificate Jobs (hook and renewal): their two Secrets, by name.
        f"{RELEASE}-certs-hook": (["get", "update", "patch"], [f"{WEBHOOK}-tls", f"{WEBHOOK}-ca"]),
        f"{RELEASE}-certs": (["get", "update", "patch"], [f"{WEBHOOK}-tls", f"{WEBHOOK}-ca"]),
        # The reconciler: a Cluster's kubeconfig Secret, by the name the Cluster gives; no list, no
        # watch.  docs/installation.md says to keep those Secrets in a namespace of their own
        # (reconciler.secretNamespaces) so that not even a get can reach the CA key.
        f"{RECONCILER}-kubeconfigs": (["get"], None),
    }
    volumes = find(defaults, "Deployment", WEBHOOK)["spec"]["template"]["spec"]["volumes"]
    assert all(v.get("secret", {}).get("secretName") != f"{WEBHOOK}-ca" for v in volumes)


def test_cert_manager_issues_the_certificate_and_injects_the_ca(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["cert-manager"]
    assert not all_of(manifests, "Job") and not all_of(manifests, "CronJob")
    certificate = find(manifests, "Certificate", WEBHOOK)
    assert certificate["spec"]["secretName"] == _tls_volume(manifests)
    assert f"{WEBHOOK}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"] == {"name": f"{WEBHOOK}-ca", "kind": "Issuer"}
    assert find(manifests, "Certificate", f"{WEBHOOK}-ca")["spec"]["isCA"] is True
    assert find(manifests, "Issuer", f"{WEBHOOK}-ca")["spec"] == {"ca": {"secretName": f"{WEBHOOK}-ca"}}
    for kind in CONFIGURATIONS:
        configuration = find(manifests, kind)
        assert configuration["metadata"]["annotations"] == {
            "cert-manager.io/inject-ca-from": f"{NAMESPACE}/{WEBHOOK}"
        }
        assert all("caBundle" not in w["clientConfig"] for w in configuration["webhooks"])
    own = render(
        "certManager.enabled=true",
        "certManager.issuerRef.name=corp-ca",
        "certManager.issuerRef.kind=ClusterIssuer",
    )
    assert find(own, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert not all_of(own, "Issuer")


def test_a_user_secret_is_mounted_and_its_ca_is_the_bundle(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["user-certs"]
    assert _tls_volume(manifests) == "my-webhook-tls"
    assert not all_of(manifests, "Job") and not all_of(manifests, "Certificate")
    for kind in CONFIGURATIONS:
        assert {w["clientConfig"]["caBundle"] for w in find(manifests, kind)["webhooks"]} == {CA_B64}


# --- monitoring, the kubernetes export, NOTES ------------------------------------------------------


def test_monitoring_is_off_by_default_and_alerts_on_what_breaks_clusters(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert not all_of(rendered["defaults"], "ServiceMonitor") and not all_of(
        rendered["defaults"], "PrometheusRule"
    )
    manifests = rendered["metrics"]
    monitor = find(manifests, "ServiceMonitor")
    endpoints = {(e["port"], e.get("scheme", "http"), e["path"]) for e in monitor["spec"]["endpoints"]}
    assert endpoints == {("https", "https", "/metrics"), ("metrics", "http", "/metrics")}
    services = [
        s
        for s in all_of(manifests, "Service")
        if _selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    ]
    assert {p["name"] for s in services for p in s["spec"]["ports"]} >= {"https", "metrics"}
    rules = {r["alert"]: r for r in find(manifests, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert set(rules) == {"KcpTmcWebhookSlow", "KcpTmcCertificateExpiring", "KcpTmcWebhookFailingOpen",
                          "KcpTmcReconcilerNotLeading"}  # fmt: skip
    assert "histogram_quantile(0.99" in rules["KcpTmcWebhookSlow"]["expr"]
    assert rules["KcpTmcWebhookSlow"]["expr"].strip().endswith("> 0.5")
    assert "tmc_serving_certificate_expiry_timestamp_seconds" in rules["KcpTmcCertificateExpiring"]["expr"]
    assert rules["KcpTmcCertificateExpiring"]["expr"].strip().endswith(f"< {14 * 86400}")
    assert "apiserver_admission_webhook_fail_open_count" in rules["KcpTmcWebhookFailingOpen"]["expr"]
    assert "tmc_reconciler_leader" in rules["KcpTmcReconcilerNotLeading"]["expr"]
    assert rules["KcpTmcReconcilerNotLeading"]["for"] == "5m"


def test_the_kubernetes_export_is_rendered_from_the_reconcilers_file(
    rendered: dict[str, list[Manifest]],
) -> None:
    source = [
        d
        for d in yaml.load_all((REPO / "reconcilers" / "kubernetes-export.yaml").read_text(), SAFE_LOADER)
        if d
    ]
    exported = [copy.deepcopy(m) for m in rendered["defaults"] if m["apiVersion"].startswith("apis.kcp.io/")]
    for manifest in exported:
        del manifest["metadata"]["labels"]
    assert exported == source
    off = render("kubernetesExport.enabled=false")
    assert not [m for m in off if m["apiVersion"].startswith("apis.kcp.io/")]


def test_notes_tell_status_commands_and_the_break_glass_step() -> None:
    done = helm("install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert f"kubectl -n {NAMESPACE} get deploy,pods,pdb -l app.kubernetes.io/instance={RELEASE}" in notes
    assert f"kubectl -n {NAMESPACE} get secret/{WEBHOOK}-tls cronjob/{RELEASE}-certs-renew" in notes
    assert f"kubectl delete validatingwebhookconfiguration,mutatingwebhookconfiguration {RELEASE}" in notes


def test_the_packaged_chart_renders_what_the_folder_does(tmp_path, defaults: list[Manifest]) -> None:
    # files/kubernetes-export.yaml is a link to the reconciler's file: the package must hold its content.
    packaged = helm("package", str(CHART), "--destination", str(tmp_path))
    assert packaged.returncode == 0, packaged.stderr
    (archive,) = tmp_path.glob("kcp-tmc-*.tgz")
    done = helm("template", RELEASE, str(archive), "--namespace", NAMESPACE, "--include-crds")
    assert done.returncode == 0, done.stderr
    assert [d for d in yaml.load_all(done.stdout, Loader=SAFE_LOADER) if d] == defaults


def test_the_reconciler_may_do_what_its_controllers_and_the_virtual_workspace_do(
    rendered: dict[str, list[Manifest]],
) -> None:
    grants = granted(rendered["defaults"], RECONCILER)
    # The aggregator and the quota manager: count the workloads, write the status they own.
    counted = {("", "pods"), ("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets"),
               ("batch", "jobs")}  # fmt: skip
    assert {("list", g, r) for g, r in counted} <= grants
    for group, resource in (("workload.kcp.io", "synctargets"), ("scheduling.kcp.io", "locations"),
                            ("tmc.kcp.io", "federatedquotas"), ("", "resourcequotas")):  # fmt: skip
        assert ("patch", group, f"{resource}/status") in grants
        assert ("list", group, resource) in grants
    # The virtual workspace: syncers' tokens and grants checked, what it serves read and written.
    assert {("create", "authentication.k8s.io", "tokenreviews"),
            ("create", "authorization.k8s.io", "subjectaccessreviews")} <= grants  # fmt: skip
    for verb in ("get", "list", "watch", "update", "patch"):
        assert (verb, "", "configmaps") in grants and (verb, "apps", "deployments") in grants
    assert ("create", "", "configmaps") not in grants  # a syncer never creates in the workspace
    assert {("create", "", "pods"), ("delete", "", "persistentvolumes")} <= grants  # the upsyncer does
    # Without the virtual workspace none of that is granted.
    minimal = granted(rendered["minimal"], RECONCILER)
    assert ("create", "authentication.k8s.io", "tokenreviews") not in minimal
    assert ("list", "", "configmaps") not in minimal
    # The reconciler polls: no watch outside what the virtual workspace's caches follow.
    assert {r for v, _, r in minimal if v == "watch"} == {"synctargets", "apiexports", "apiresourceschemas"}


def test_a_workspace_path_as_the_logical_cluster_is_refused_by_the_values_schema() -> None:
    done = helm("template", "x", str(CHART), "--set", "reconciler.logicalCluster=root:org:ws")
    assert done.returncode != 0
    assert "at '/reconciler/logicalCluster': 'root:org:ws' does not match pattern" in done.stderr, done.stderr
    args = find(render("reconciler.logicalCluster=2t0gpaylzr6ws2i4"), "Deployment", f"{RELEASE}-reconciler")
    assert "--logical-cluster=2t0gpaylzr6ws2i4" in args["spec"]["template"]["spec"]["containers"][0]["args"]
