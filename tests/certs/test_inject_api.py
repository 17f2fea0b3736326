"""``inject`` against an API server: the in-repo fake, and a real kube-apiserver when available.

The fake (``kcp_tmc.testing.FakeAPIServer``) always runs; the real one runs
when ``KUBEBUILDER_ASSETS`` points at etcd and kube-apiserver (marker
``realapi``) and is skipped with the reason otherwise.
"""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from kcp_tmc.certs import CertPaths, CertsError, generate_dir, rotate_dir
from kcp_tmc.certs.cli import main
from kcp_tmc.certs.inject import inject

Snapshot = Callable[[Path], dict[str, tuple[bytes, int]]]
WEBHOOK_GROUP = "admissionregistration.k8s.io/v1"


def _fake_server() -> Any:
    testing = importlib.import_module("kcp_tmc.testing")
    server = getattr(testing, "FakeAPIServer", None)
    if server is None:  # pragma: no cover - only while the fake server is being written
        pytest.skip("kcp_tmc.testing has no FakeAPIServer yet")
    return server()


def _real_server() -> Any:
    from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer

    try:
        return RealAPIServer()
    except EnvtestUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=["fake", pytest.param("real", marks=pytest.mark.realapi)])
def api(request: pytest.FixtureRequest) -> Iterator[Any]:
    server = _fake_server() if request.param == "fake" else _real_server()
    with server:
        yield server


@pytest.fixture
def kube(api: Any) -> Iterator[Any]:
    """A kubernetes ApiClient for seeding and reading back objects."""
    new_client: Any = k8s_config.new_client_from_config
    with new_client(config_file=str(api.kubeconfig_path)) as client:
        yield client


def _admission(kube: Any) -> Any:
    return k8s.AdmissionregistrationV1Api(kube)


def _core(kube: Any) -> Any:
    return k8s.CoreV1Api(kube)


def _webhook(name: str, **client_config: Any) -> dict[str, Any]:
    # Rules that match nothing these tests write, so the fake's admission never calls them.
    return {
        "name": name,
        "clientConfig": client_config
        or {"service": {"name": "tmc-webhook", "namespace": "kcp-tmc", "path": "/x"}},
        "rules": [
            {
                "apiGroups": ["example.com"],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["widgets"],
            }
        ],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Ignore",
    }


def _drained(response: Any) -> None:
    # Read the body before the connection goes back to the pool: a connection
    # released with its body unread hands that body to the next request as its
    # status line (BadStatusLine on a real apiserver, whose replies are larger).
    try:
        response.data  # noqa: B018 - reading it is the point
    finally:
        response.release_conn()


def _create_configuration(kube: Any, kind: str, name: str, webhooks: list[dict[str, Any]]) -> None:
    body = {"apiVersion": WEBHOOK_GROUP, "kind": kind, "metadata": {"name": name}, "webhooks": webhooks}
    api = _admission(kube)
    create = (
        api.create_validating_webhook_configuration
        if kind == "ValidatingWebhookConfiguration"
        else api.create_mutating_webhook_configuration
    )
    _drained(create(body, _preload_content=False))


def _read(method: Callable[..., Any], *args: Any) -> dict[str, Any]:
    response = method(*args, _preload_content=False)
    try:
        result: dict[str, Any] = json.loads(response.data)
    finally:
        response.release_conn()
    return result


def _bundles(kube: Any, kind: str, name: str) -> list[str | None]:
    api = _admission(kube)
    read = (
        api.read_validating_webhook_configuration
        if kind == "ValidatingWebhookConfiguration"
        else api.read_mutating_webhook_configuration
    )
    return [w["clientConfig"].get("caBundle") for w in _read(read, name)["webhooks"]]


def _secret(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    return _read(_core(kube).read_namespaced_secret, name, namespace)


def _ensure_namespace(kube: Any, name: str) -> None:
    try:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        _drained(_core(kube).create_namespace(body, _preload_content=False))
    except ApiException as exc:
        if exc.status != 409:
            raise


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def test_injects_into_both_kinds(api: Any, kube: Any, cert_dir: CertPaths) -> None:
    _create_configuration(
        kube, "ValidatingWebhookConfiguration", "both", [_webhook("a.x.io"), _webhook("b.x.io")]
    )
    _create_configuration(kube, "MutatingWebhookConfiguration", "both", [_webhook("m.x.io")])
    result = inject(api.kubeconfig_path, cert_dir.directory, webhook_configurations=["both"])
    assert result.messages == [
        "ValidatingWebhookConfiguration both: caBundle set on 2 webhook(s)",
        "MutatingWebhookConfiguration both: caBundle set on 1 webhook(s)",
    ]
    bundle = _b64(cert_dir.ca_crt)
    assert _bundles(kube, "ValidatingWebhookConfiguration", "both") == [bundle, bundle]
    assert _bundles(kube, "MutatingWebhookConfiguration", "both") == [bundle]

    again = inject(api.kubeconfig_path, cert_dir.directory, webhook_configurations=["both"])
    assert again.patched == []
    assert again.messages == [
        "ValidatingWebhookConfiguration both: caBundle already up to date on 2 webhook(s)",
        "MutatingWebhookConfiguration both: caBundle already up to date on 1 webhook(s)",
    ]


def test_injects_a_rolled_bundle_with_both_cas(
    api: Any, kube: Any, cert_dir: CertPaths, t0: datetime
) -> None:
    _create_configuration(
        kube, "ValidatingWebhookConfiguration", "rolled", [_webhook("a.x.io", url="https://x/")]
    )
    rotate_dir(cert_dir.directory, now=t0 + timedelta(days=2500))
    inject(api.kubeconfig_path, cert_dir.directory, webhook_configurations=["rolled"])
    (value,) = _bundles(kube, "ValidatingWebhookConfiguration", "rolled")
    assert value is not None
    assert base64.b64decode(value).count(b"BEGIN CERTIFICATE") == 2


def test_only_mutating_exists(api: Any, kube: Any, cert_dir: CertPaths) -> None:
    _create_configuration(kube, "MutatingWebhookConfiguration", "only-mutating", [_webhook("m.x.io")])
    result = inject(api.kubeconfig_path, cert_dir.directory, webhook_configurations=["only-mutating"])
    assert result.patched == ["MutatingWebhookConfiguration/only-mutating"]


def test_missing_configuration_is_an_error_and_writes_nothing(
    api: Any, kube: Any, cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    _ensure_namespace(kube, "kcp-tmc")
    before = snapshot(cert_dir.directory)
    argv = ["inject", "--kubeconfig", str(api.kubeconfig_path), "--webhook-configuration", "absent"]
    assert main([*argv, "--secret", "kcp-tmc/not-created", str(cert_dir.directory)]) == 2
    assert capsys.readouterr().err == (
        "tmc-certs: error: no ValidatingWebhookConfiguration or MutatingWebhookConfiguration "
        'named "absent" found\n'
    )
    assert snapshot(cert_dir.directory) == before
    with pytest.raises(ApiException) as info:
        _secret(kube, "kcp-tmc", "not-created")
    assert info.value.status == 404


def test_secret_is_created_then_updated(api: Any, kube: Any, tmp_path: Path, t0: datetime) -> None:
    _ensure_namespace(kube, "kcp-tmc")
    paths = generate_dir(tmp_path, service="tmc-webhook", namespace="kcp-tmc", now=t0)
    result = inject(api.kubeconfig_path, tmp_path, secret="kcp-tmc/webhook-tls")
    assert result.messages == ["Secret kcp-tmc/webhook-tls: created"]
    secret = _secret(kube, "kcp-tmc", "webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["data"] == {
        "tls.crt": _b64(paths.tls_crt),
        "tls.key": _b64(paths.tls_key),
        "ca.crt": _b64(paths.ca_crt),
    }

    unchanged = inject(api.kubeconfig_path, tmp_path, secret="kcp-tmc/webhook-tls")
    assert unchanged.messages == ["Secret kcp-tmc/webhook-tls: already up to date"]
    assert unchanged.patched == []

    rotate_dir(tmp_path, force=True, now=t0 + timedelta(days=1))
    result = inject(api.kubeconfig_path, tmp_path, secret="kcp-tmc/webhook-tls")
    assert result.messages == ["Secret kcp-tmc/webhook-tls: updated tls.crt, tls.key"]
    assert result.patched == ["Secret/kcp-tmc/webhook-tls"]
    assert _secret(kube, "kcp-tmc", "webhook-tls")["data"]["tls.crt"] == _b64(paths.tls_crt)


def test_cli_inject_both(
    api: Any, kube: Any, cert_dir: CertPaths, capsys: pytest.CaptureFixture[str]
) -> None:
    _ensure_namespace(kube, "kcp-tmc")
    _create_configuration(kube, "ValidatingWebhookConfiguration", "cli", [_webhook("a.x.io")])
    argv = ["inject", "--kubeconfig", str(api.kubeconfig_path), "--webhook-configuration", "cli"]
    assert main([*argv, "--secret", "kcp-tmc/cli-tls", str(cert_dir.directory)]) == 0
    assert capsys.readouterr().out == (
        "ValidatingWebhookConfiguration cli: caBundle set on 1 webhook(s)\nSecret kcp-tmc/cli-tls: created\n"
    )


def test_secret_of_another_type_is_left_alone(api: Any, kube: Any, cert_dir: CertPaths) -> None:
    _ensure_namespace(kube, "kcp-tmc")
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "opaque", "namespace": "kcp-tmc"},
        "type": "Opaque",
        "data": {"x": "eA=="},
    }
    _drained(_core(kube).create_namespaced_secret("kcp-tmc", body, _preload_content=False))
    with pytest.raises(CertsError) as info:
        inject(api.kubeconfig_path, cert_dir.directory, secret="kcp-tmc/opaque")
    assert str(info.value) == (
        "Secret kcp-tmc/opaque has type Opaque, not kubernetes.io/tls; delete it or choose another name"
    )
    assert _secret(kube, "kcp-tmc", "opaque")["data"] == {"x": "eA=="}


def test_mismatched_pair_is_not_uploaded(api: Any, kube: Any, cert_dir: CertPaths) -> None:
    cert_dir.tls_key.write_bytes(cert_dir.ca_key.read_bytes())
    with pytest.raises(CertsError) as info:
        inject(api.kubeconfig_path, cert_dir.directory, secret="kcp-tmc/never")
    assert (
        str(info.value) == f"{cert_dir.tls_key} does not match {cert_dir.tls_crt}: their public keys differ"
    )


def test_api_error_is_reported_with_the_status_message(
    api: Any, cert_dir: CertPaths, capsys: pytest.CaptureFixture[str], snapshot: Snapshot
) -> None:
    before = snapshot(cert_dir.directory)
    argv = ["inject", "--kubeconfig", str(api.kubeconfig_path), "--secret", "no-such-namespace/tls"]
    assert main([*argv, str(cert_dir.directory)]) == 2
    assert capsys.readouterr().err == (
        "tmc-certs: error: cannot create Secret no-such-namespace/tls: 404 Not Found: "
        'namespaces "no-such-namespace" not found\n'
    )
    assert snapshot(cert_dir.directory) == before


def test_default_kubeconfig_comes_from_the_environment(
    api: Any, kube: Any, cert_dir: CertPaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    _create_configuration(kube, "ValidatingWebhookConfiguration", "from-env", [_webhook("a.x.io")])
    monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig_path))
    result = inject(None, cert_dir.directory, webhook_configurations=["from-env"])
    assert result.patched == ["ValidatingWebhookConfiguration/from-env"]


def test_only_the_webhooks_that_differ_are_counted(api: Any, kube: Any, cert_dir: CertPaths) -> None:
    current = _b64(cert_dir.ca_crt)
    webhooks = [_webhook("a.x.io"), _webhook("b.x.io", url="https://x.example/", caBundle=current)]
    _create_configuration(kube, "ValidatingWebhookConfiguration", "partial", webhooks)
    result = inject(api.kubeconfig_path, cert_dir.directory, webhook_configurations=["partial"])
    assert result.messages == ["ValidatingWebhookConfiguration partial: caBundle set on 1 webhook(s)"]
    assert _bundles(kube, "ValidatingWebhookConfiguration", "partial") == [current, current]
