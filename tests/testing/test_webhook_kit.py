"""kcp_tmc.testing.webhook: our webhook served in-process over TLS and registered with a test server."""

from __future__ import annotations

import base64
import contextlib
import gc
import io
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from kcp_tmc.certs import new_ca
from kcp_tmc.policies import SYNC_TARGET, PolicyRequest, Verdict, validating
from kcp_tmc.policies.engine import UnknownPolicyError
from kcp_tmc.policies.keys import LABEL_SYNC_TARGET_KEY
from kcp_tmc.policies.model import labels_of
from kcp_tmc.policies.registry import REGISTRY, Registry
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.crds import install_tmc_crds
from kcp_tmc.testing.kubectl import KubectlNotFoundError, kubectl
from kcp_tmc.testing.webhook import (
    MUTATING_WEBHOOK,
    VALIDATING_WEBHOOK,
    ServedWebhook,
    WebhookCall,
    serve_webhook,
    tmc_rules,
)
from kcp_tmc.webhook.app import EXTENSION
from kcp_tmc.webhook.config import WebhookConfig, WebhookConfigError

GROUP, VERSION, PLURAL = "workload.kcp.io", "v1alpha1", "synctargets"
ADMISSION = "admissionregistration.k8s.io/v1"


def sync_target(name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SyncTarget", "metadata": meta}


@pytest.fixture(scope="module")
def api() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as server:
        install_tmc_crds(server)
        yield server


@pytest.fixture
def objects(api: FakeAPIServer) -> Iterator[Any]:
    with api.api_client() as kube:
        yield CustomObjectsApi(kube)


def https_get(webhook: ServedWebhook, path: str, server_hostname: str = "127.0.0.1") -> bytes:
    context = ssl.create_default_context(cadata=webhook.ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as conn,
    ):
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# --- registration objects ------------------------------------------------------------------------


def test_rules_cover_the_tmc_kinds() -> None:
    ops = ["CREATE", "UPDATE", "DELETE"]
    assert tmc_rules() == [
        {
            "apiGroups": ["workload.kcp.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ops,
            "resources": ["synctargets", "synctargets/status"],
            "scope": "*",
        },
        {
            "apiGroups": ["tmc.kcp.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ops,
            "resources": ["clusters", "clusters/status"],
            "scope": "*",
        },
        {
            "apiGroups": ["scheduling.kcp.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ops,
            "resources": ["locations"],
            "scope": "*",
        },
    ]


def test_configurations_are_exact() -> None:
    with serve_webhook() as webhook:
        mutating, validating_ = webhook.configurations()
        url = webhook.url
        bundle = webhook.ca_bundle

    def expected(kind: str, hook: str, path: str) -> dict[str, Any]:
        return {
            "apiVersion": ADMISSION,
            "kind": kind,
            "metadata": {"name": "kcp-tmc"},
            "webhooks": [
                {
                    "name": hook,
                    "clientConfig": {"url": f"{url}{path}", "caBundle": bundle},
                    "rules": tmc_rules(),
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1", "v1beta1"],
                    "timeoutSeconds": 5,
                }
            ],
        }

    assert url.startswith("https://127.0.0.1:")
    assert mutating == expected("MutatingWebhookConfiguration", "mutate.tmc.kcp.io", "/mutate")
    assert validating_ == expected("ValidatingWebhookConfiguration", "validate.tmc.kcp.io", "/validate")
    assert (MUTATING_WEBHOOK, VALIDATING_WEBHOOK) == ("mutate.tmc.kcp.io", "validate.tmc.kcp.io")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_policy": "Maybe"}, 'failure_policy must be "Fail" or "Ignore", got \'Maybe\''),
        ({"timeout_seconds": 0}, "timeout_seconds must be between 1 and 30 (the apiserver's limits), got 0"),
        (
            {"timeout_seconds": 31},
            "timeout_seconds must be between 1 and 30 (the apiserver's limits), got 31",
        ),
        ({"timeout_seconds": 2.5}, "timeout_seconds must be a whole number of seconds, got 2.5"),
        ({"timeout_seconds": True}, "timeout_seconds must be a whole number of seconds, got True"),
    ],
)
def test_bad_registration_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with serve_webhook() as webhook, FakeAPIServer() as api:
        with pytest.raises(ValueError) as caught:
            webhook.register(api, **kwargs)
        assert str(caught.value) == message
        assert api.objects(ADMISSION, "validatingwebhookconfigurations") == []


def test_register_creates_then_replaces_and_unregister_deletes(api: FakeAPIServer) -> None:
    rules = [
        {"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": ["CREATE"], "resources": [PLURAL]}
    ]
    with serve_webhook() as webhook:
        stored_m, stored_v = webhook.register(api, name="custom")
        for kind, stored in (
            ("mutatingwebhookconfigurations", stored_m),
            ("validatingwebhookconfigurations", stored_v),
        ):
            held = api.get(ADMISSION, kind, "custom")
            assert held is not None
            assert stored["metadata"]["uid"] == held["metadata"]["uid"]
            assert stored["webhooks"][0]["failurePolicy"] == "Fail"
        again_m, again_v = webhook.register(
            api, name="custom", failure_policy="Ignore", rules=rules, timeout_seconds=2
        )
        assert again_m["metadata"]["uid"] == stored_m["metadata"]["uid"]
        for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
            held = api.get(ADMISSION, kind, "custom")
            assert held is not None
            hook = held["webhooks"][0]
            assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 2)
            assert hook["rules"][0]["resources"] == [PLURAL]
            assert hook["sideEffects"] == "None"
        assert again_v["webhooks"][0]["clientConfig"]["url"] == f"{webhook.url}/validate"
        webhook.unregister(api, name="custom")
        webhook.unregister(api, name="custom")  # already gone: fine
    assert api.get(ADMISSION, "mutatingwebhookconfigurations", "custom") is None
    assert api.get(ADMISSION, "validatingwebhookconfigurations", "custom") is None


def test_unregister_reports_other_errors() -> None:
    with serve_webhook() as webhook, FakeAPIServer(tokens={"t": ("nobody", [])}, rules=[]) as api:

        class AsNobody:
            def api_client(self) -> Any:
                return api.api_client(token="t")

        with pytest.raises(ApiException) as caught:
            webhook.unregister(AsNobody())
        assert caught.value.status == 403


# --- TLS and serving -----------------------------------------------------------------------------


def test_ca_bundle_verifies_the_served_certificate() -> None:
    with serve_webhook() as webhook:
        assert base64.b64decode(webhook.ca_bundle) == webhook.ca_pem
        assert webhook.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
        for name in ("127.0.0.1", "localhost", "tmc-webhook.tmc-system.svc"):
            reply = https_get(webhook, "/healthz", server_hostname=name)
            assert reply.startswith(b"HTTP/1.1 200"), reply
        ready = https_get(webhook, "/readyz")
        assert ready.startswith(b"HTTP/1.1 200"), ready
        assert b'"certificate":"ok (expires at ' in ready.replace(b": ", b":")
        other = ssl.create_default_context(cadata=new_ca("someone-else").cert_pem.decode())
        with (
            socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            other.wrap_socket(raw, server_hostname="127.0.0.1")
        with (
            socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            ssl.create_default_context(cadata=webhook.ca_pem.decode()).wrap_socket(
                raw, server_hostname="example.com"
            )


def test_teardown_releases_everything_even_with_idle_connections() -> None:
    threads_before = {t.ident for t in threading.enumerate()}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with serve_webhook() as webhook:
            port, cert_dir = webhook.port, webhook.cert_dir
            assert (cert_dir / "tls.key").exists()
            context = ssl.create_default_context(cadata=webhook.ca_pem.decode())
            # One connection that finished its handshake and sends nothing, one that never shakes hands:
            # each holds a server thread until stop() closes it.
            idle_tls = context.wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=5), server_hostname="127.0.0.1"
            )
            idle_tcp = socket.create_connection(("127.0.0.1", port), timeout=5)
            assert https_get(webhook, "/healthz").startswith(b"HTTP/1.1 200")
            started = time.monotonic()
        took = time.monotonic() - started
        with idle_tls, idle_tcp:
            for conn in (idle_tls, idle_tcp):
                # Closed without a TLS goodbye (an error) is closed all the same.
                with contextlib.suppress(ssl.SSLError, ConnectionError):
                    assert conn.recv(100) == b""
        gc.collect()
    assert took < 2, f"stopping took {took:.1f}s"
    assert not cert_dir.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    deadline = time.monotonic() + 5
    while {t.ident for t in threading.enumerate()} - threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t.ident not in threads_before] == []
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_bad_settings_raise_before_serving() -> None:
    threads_before = threading.active_count()
    with pytest.raises(WebhookConfigError) as caught, serve_webhook({"default_timeout": 99}):
        pass
    assert str(caught.value) == (
        "default_timeout must be more than 0 and at most 30 seconds (the apiserver's limit), got 99"
    )
    assert threading.active_count() == threads_before


def test_settings_reach_the_app() -> None:
    with serve_webhook(WebhookConfig(log_reviews=False, default_timeout=3)) as webhook:
        state = webhook.app.extensions[EXTENSION]
        assert (state.config.log_reviews, state.config.default_timeout) == (False, 3)
        assert state.config.cert_file == str(webhook.cert_dir / "tls.crt")
    with serve_webhook({"cert_file": "/nonexistent/tls.crt", "key_file": "/nonexistent/tls.key"}) as webhook:
        # A configured pair is left alone (only /readyz reads it); TLS still uses the throwaway pair.
        assert webhook.app.extensions[EXTENSION].config.cert_file == "/nonexistent/tls.crt"
        assert https_get(webhook, "/readyz").startswith(b"HTTP/1.1 503")


# --- policies and registries ---------------------------------------------------------------------


def region_registry() -> Registry:
    registry = Registry()

    @validating("region-label", kinds=[SYNC_TARGET], operations=["CREATE", "UPDATE"], registry=registry)
    def region_label(req: PolicyRequest) -> Verdict | None:
        """SyncTargets must say which region they are in."""
        if not labels_of(req.object).get("region"):
            return Verdict.deny("metadata.labels.region", "is required; add a label such as region=us-east1")
        return None

    return registry


def test_a_users_own_policy_end_to_end(api: FakeAPIServer, objects: Any) -> None:
    with serve_webhook(registry=region_registry()) as webhook:
        webhook.register(api, name="user-policy")
        try:
            with pytest.raises(ApiException) as caught:
                objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("no-region"))
            stored = objects.create_cluster_custom_object(
                GROUP, VERSION, PLURAL, sync_target("with-region", region="eu")
            )
        finally:
            webhook.unregister(api, name="user-policy")
    assert json.loads(caught.value.body)["message"] == (
        'admission webhook "validate.tmc.kcp.io" denied the request: '
        "[region-label] metadata.labels.region: is required; add a label such as region=us-east1"
    )
    # Only the user's policy runs: no key label from the built-in mutating policy.
    assert LABEL_SYNC_TARGET_KEY not in stored["metadata"]["labels"]


def test_policies_narrow_the_builtins(api: FakeAPIServer, objects: Any) -> None:
    with serve_webhook(policies=["synctarget-validation"]) as webhook:
        webhook.register(api, name="narrowed")
        try:
            stored = objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("narrowed-one"))
        finally:
            webhook.unregister(api, name="narrowed")
        assert [p.name for p in webhook.app.extensions[EXTENSION].registry] == ["synctarget-validation"]
    assert "labels" not in stored["metadata"]


def test_policies_by_object_and_by_function() -> None:
    registry = region_registry()
    policy = registry.get("region-label")
    assert policy is not None
    for chosen in ([policy], [policy.func]):
        with serve_webhook(policies=chosen, registry=registry) as webhook:
            assert [p.name for p in webhook.app.extensions[EXTENSION].registry] == ["region-label"]


def test_policies_on_the_default_registry_are_found_by_name_and_function(
    api: FakeAPIServer, objects: Any
) -> None:
    # What a test module gets from the README's @validating(...) without registry=.
    @validating("kit-test-no-x-label", kinds=[SYNC_TARGET], operations=["CREATE"])
    def no_x_label(req: PolicyRequest) -> Verdict | None:
        """SyncTargets may not carry the label x."""
        return Verdict.deny("metadata.labels.x", "is not allowed") if "x" in labels_of(req.object) else None

    try:
        for chosen in (["kit-test-no-x-label"], [no_x_label]):
            with serve_webhook(policies=chosen) as webhook:
                webhook.register(api, name="default-registry")
                try:
                    with pytest.raises(ApiException) as caught:
                        objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("x", x="1"))
                finally:
                    webhook.unregister(api, name="default-registry")
            assert json.loads(caught.value.body)["message"] == (
                'admission webhook "validate.tmc.kcp.io" denied the request: '
                "[kit-test-no-x-label] metadata.labels.x: is not allowed"
            )
    finally:
        REGISTRY.unregister("kit-test-no-x-label")


def test_bad_policy_selections_are_refused() -> None:
    with (
        pytest.raises(UnknownPolicyError) as unknown,
        serve_webhook(policies=["nope"], registry=region_registry()),
    ):
        pass
    known = ", ".join(sorted({"region-label"} | {p.name for p in REGISTRY}))
    assert str(unknown.value) == f"unknown policy 'nope' (known: {known})"

    def not_a_policy(req: PolicyRequest) -> None:
        return None

    with pytest.raises(ValueError) as unregistered, serve_webhook(policies=[not_a_policy]):
        pass
    assert str(unregistered.value) == (
        "'test_bad_policy_selections_are_refused.<locals>.not_a_policy' is not a registered policy: "
        "decorate it with @validating(...) or @mutating(...), or pass its name"
    )
    with pytest.raises(TypeError) as wrong_type, serve_webhook(policies=[42]):  # type: ignore[list-item]
        pass
    assert str(wrong_type.value) == "policies must hold names, Policy objects or policy functions, got 42"
    with (
        pytest.raises(WebhookConfigError) as twice,
        serve_webhook({"registry": Registry()}, registry=Registry()),
    ):
        pass
    assert str(twice.value) == "give the registry once: as registry= or in the config, not both"


# --- what the webhook received -------------------------------------------------------------------


def test_calls_are_recorded(api: FakeAPIServer, objects: Any) -> None:
    with serve_webhook() as webhook:
        webhook.register(api, name="recording")
        try:
            objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("rec-1"), dry_run="All")
            objects.create_cluster_custom_object(GROUP, VERSION, PLURAL, sync_target("rec-2"))
            current = objects.get_cluster_custom_object(GROUP, VERSION, PLURAL, "rec-2")
            current["status"] = {"conditions": []}
            objects.replace_cluster_custom_object_status(GROUP, VERSION, PLURAL, "rec-2", current)
            calls = webhook.calls
            webhook.clear_calls()
            assert webhook.calls == []
            https_post = _post_raw(webhook, "/validate", b"not json")
        finally:
            webhook.unregister(api, name="recording")
    assert https_post.startswith(b"HTTP/1.1 400")
    shape = [(c.path, c.operation, c.resource, c.name, c.namespace, c.dry_run) for c in calls]
    assert shape == [
        ("/mutate", "CREATE", "synctargets", "rec-1", "", True),
        ("/validate", "CREATE", "synctargets", "rec-1", "", True),
        ("/mutate", "CREATE", "synctargets", "rec-2", "", False),
        ("/validate", "CREATE", "synctargets", "rec-2", "", False),
        ("/mutate", "UPDATE", "synctargets/status", "rec-2", "", False),
        ("/validate", "UPDATE", "synctargets/status", "rec-2", "", False),
    ]
    assert all(c.uid for c in calls)
    assert len({c.uid for c in calls}) == len(calls)


def _post_raw(webhook: ServedWebhook, path: str, body: bytes) -> bytes:
    context = ssl.create_default_context(cadata=webhook.ca_pem.decode())
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_unparsable_reviews_are_recorded_empty() -> None:
    with serve_webhook() as webhook:
        answers = [
            _post_raw(webhook, "/validate", b"[1, 2]"),
            _post_raw(webhook, "/mutate", b"{not json"),
            _post_raw(webhook, "/validate", b'{"request": "x"}'),
            _post_raw(webhook, "/validate", b'{"request": {"uid": "u1", "resource": "x", "name": 7}}'),
        ]
        assert webhook.calls == [
            WebhookCall("/validate", "", "", "", "", "", False),
            WebhookCall("/mutate", "", "", "", "", "", False),
            WebhookCall("/validate", "", "", "", "", "", False),
            WebhookCall("/validate", "u1", "", "", "7", "", False),
        ]
    # The app refused each itself (not an AdmissionReview): never a 500 from the kit.
    assert [a.split(b" ", 2)[1] for a in answers] == [b"400"] * 4


# --- waiting for a real apiserver ----------------------------------------------------------------


class NotTheFake:
    """Hides the FakeAPIServer type, so ``register`` waits as it does for a real apiserver."""

    def __init__(self, api: FakeAPIServer) -> None:
        self._api = api

    def api_client(self) -> Any:
        return self._api.api_client()


def test_register_waits_with_a_probe_and_hides_it(api: FakeAPIServer) -> None:
    with serve_webhook() as webhook:
        writes_before = api.counters.writes(resource=PLURAL)
        webhook.register(NotTheFake(api), name="probed")
        try:
            probes = [r for r in api.write_log if r.resource == PLURAL]
            assert webhook.calls == []
            assert api.counters.writes(resource=PLURAL) == writes_before  # dry-run: nothing stored
            assert probes == [r for r in api.write_log if r.resource == PLURAL]
            assert api.counters.requests(verb="create", resource=PLURAL) >= 1
        finally:
            webhook.unregister(api, name="probed")


def test_wait_returns_false_when_nothing_is_served() -> None:
    with serve_webhook() as webhook, FakeAPIServer() as bare, bare.api_client() as kube:
        assert webhook.wait_until_called(kube, tmc_rules(), 1) is False
        odd_rules = [
            {"apiGroups": ["*"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["x"]},
            {"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": ["DELETE"], "resources": [PLURAL]},
            {"apiGroups": [GROUP], "apiVersions": [VERSION], "operations": ["*"], "resources": ["*"]},
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]},
        ]
        assert webhook.wait_until_called(kube, odd_rules, 1) is False


def test_wait_times_out_with_a_clear_error(api: FakeAPIServer) -> None:
    with serve_webhook() as webhook, api.api_client() as kube:
        with pytest.raises(TimeoutError) as caught:
            webhook.wait_until_called(kube, tmc_rules(), 0.3)
        assert str(caught.value) == (
            f"the apiserver did not call the webhooks at {webhook.url} within 0.3s "
            "(a dry-run create of synctargets.workload.kcp.io reached none of /mutate and /validate)"
        )
        assert webhook.calls == []


def test_wait_settles_for_mutate_when_the_schema_refuses_the_probe(api: FakeAPIServer) -> None:
    # A bare Location lacks the required spec: a real apiserver refuses it (422) before validating
    # webhooks run, so only the mutating one can be waited for.
    location_rules = [
        {
            "apiGroups": ["scheduling.kcp.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE"],
            "resources": ["locations"],
        }
    ]
    with serve_webhook() as webhook, api.api_client() as kube:
        mutating, _ = webhook.configurations(name="mutate-only", rules=location_rules)
        api.create(mutating)
        try:
            assert webhook.wait_until_called(kube, location_rules, 5) is True
        finally:
            api.delete(ADMISSION, "mutatingwebhookconfigurations", "mutate-only")


def test_namespaced_resources_are_probed_in_default(api: FakeAPIServer) -> None:
    rules = [
        {
            "apiGroups": ["tmc.kcp.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE"],
            "resources": ["federatedquotas"],
        }
    ]
    with serve_webhook() as webhook, api.api_client() as kube:
        webhook.register(api, name="namespaced", rules=rules)
        try:
            assert webhook.wait_until_called(kube, rules, 5) is True
        finally:
            webhook.unregister(api, name="namespaced")
    assert api.counters.requests(verb="create", resource="federatedquotas") >= 1


# --- kubectl -------------------------------------------------------------------------------------


def test_kubectl_without_kubectl_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, api: FakeAPIServer
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(KubectlNotFoundError) as caught:
        kubectl(api, "version")
    assert str(caught.value) == "kubectl is not on PATH; install it or skip this test without it"


def test_kubectl_uses_its_own_home_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: FakeAPIServer
) -> None:
    fake = tmp_path / "kubectl"
    fake.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "print(json.dumps({k: os.environ[k] for k in ('KUBECONFIG', 'HOME', 'KUBECACHEDIR')}))\n"
        "print(sys.stdin.read(), sys.argv[1:], file=sys.stderr)\nsys.exit(3)\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    result = kubectl(api, "apply", "-f", "-", input="data")
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.returncode == 3
    env = json.loads(result.stdout)
    assert env["KUBECONFIG"] == api.kubeconfig_path
    assert env["KUBECACHEDIR"] == str(Path(env["HOME"]) / "cache")
    assert not Path(env["HOME"]).exists()  # removed after the call
    assert result.stderr == "data ['apply', '-f', '-']\n"


def test_importing_the_kit_does_not_import_flask() -> None:
    code = (
        "import sys, kcp_tmc.testing, kcp_tmc.testing.webhook, kcp_tmc.testing.crds\n"
        "import kcp_tmc.testing.kubectl\n"
        "heavy = ('flask', 'werkzeug', 'kcp_tmc.webhook.app', 'prometheus_client')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_documented_example_is_the_user_story_test() -> None:
    root = Path(__file__).resolve().parents[2]
    story = (root / "tests" / "test_user_story.py").read_text()
    example = story[story.index("ST = {") : story.index("# --- the same story")].strip()
    doc = (root / "docs" / "testing-policies-end-to-end.md").read_text()
    block = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert example in block
    # Every import the example uses is in the story test too.
    for line in block.splitlines():
        if line.startswith(("import ", "from ")):
            assert line in story or line.split(" import ")[0] in story, line


def test_recorder_passes_odd_requests_through_untouched() -> None:
    from kcp_tmc.testing.webhook import _Recorder

    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read())
        return []

    recorder = _Recorder(app, limit=10)
    for length, method in (("bogus", "POST"), ("11", "POST"), ("", "POST"), ("3", "GET")):
        environ = {"REQUEST_METHOD": method, "CONTENT_LENGTH": length, "PATH_INFO": "/validate"}
        environ["wsgi.input"] = io.BytesIO(b"x" * 11)
        recorder(environ, None)
    assert seen == [b"x" * 11] * 4  # nothing read or consumed on the app's behalf
    assert list(recorder.calls) == []
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": "2",
        "PATH_INFO": "/mutate",
        "wsgi.input": io.BytesIO(b"{}"),
    }
    recorder(environ, None)
    assert seen[-1] == b"{}"
    assert list(recorder.calls) == [WebhookCall("/mutate", "", "", "", "", "", False)]


def test_configurations_declare_no_side_effects_on_dry_run_when_quota_is_reserved() -> None:
    pods = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}]
    with serve_webhook(policies=["quota-enforcement", "synctarget-validation"]) as webhook:
        _, validating_config = webhook.configurations(rules=pods)
        assert validating_config["webhooks"][0]["sideEffects"] == "NoneOnDryRun"
        _, validating_config = webhook.configurations(
            rules=[{**pods[0], "apiGroups": ["*"], "resources": ["*"]}]
        )
        assert validating_config["webhooks"][0]["sideEffects"] == "NoneOnDryRun"
        _, validating_config = webhook.configurations()  # the TMC kinds: no quota reservations
        assert validating_config["webhooks"][0]["sideEffects"] == "None"
