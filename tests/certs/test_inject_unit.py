"""The bodies ``inject`` sends, built by pure functions and checked without a cluster."""

from __future__ import annotations

import base64
import copy
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcp_tmc.certs import CertsError, generate_dir, issue_serving, new_ca
from kcp_tmc.certs.inject import (
    _api_error,
    ca_bundle_patch,
    encode_bundle,
    inject,
    parse_secret_ref,
    read_directory,
    secret_data,
    secret_data_patch,
    tls_secret,
)

DAY = timedelta(days=1)
BUNDLE = encode_bundle(b"-----BEGIN CERTIFICATE-----\nnew\n-----END CERTIFICATE-----\n")


def _configuration() -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "tmc", "resourceVersion": "7"},
        "webhooks": [
            {"name": "a.tmc.kcp.io", "clientConfig": {"service": {"name": "s", "namespace": "n"}}},
            {"name": "b.tmc.kcp.io", "clientConfig": {"url": "https://x.example/", "caBundle": "b2xk"}},
            {"name": "c.tmc.kcp.io", "clientConfig": {"url": "https://y.example/", "caBundle": BUNDLE}},
            {"name": "d.tmc.kcp.io"},
        ],
    }


def test_encode_bundle_is_one_line_base64() -> None:
    pem = b"-----BEGIN CERTIFICATE-----\n" + b"A" * 300 + b"\n-----END CERTIFICATE-----\n"
    encoded = encode_bundle(pem)
    assert "\n" not in encoded
    assert base64.b64decode(encoded) == pem


def test_ca_bundle_patch_sets_every_webhook_that_differs() -> None:
    config = _configuration()
    ops = ca_bundle_patch(config, BUNDLE)
    assert ops == [
        {"op": "test", "path": "/webhooks/0/name", "value": "a.tmc.kcp.io"},
        {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": BUNDLE},
        {"op": "test", "path": "/webhooks/1/name", "value": "b.tmc.kcp.io"},
        {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": BUNDLE},
        {"op": "test", "path": "/webhooks/3/name", "value": "d.tmc.kcp.io"},
        {"op": "add", "path": "/webhooks/3/clientConfig", "value": {"caBundle": BUNDLE}},
    ]
    patched = jsonpatch.apply_patch(config, ops)
    assert [w["clientConfig"]["caBundle"] for w in patched["webhooks"]] == [BUNDLE] * 4
    assert patched["webhooks"][0]["clientConfig"]["service"] == {"name": "s", "namespace": "n"}
    assert ca_bundle_patch(patched, BUNDLE) == []


def test_ca_bundle_patch_fails_if_the_list_changed_meanwhile() -> None:
    config = _configuration()
    ops = ca_bundle_patch(config, BUNDLE)
    reordered = copy.deepcopy(config)
    reordered["webhooks"].reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(reordered, ops)


def test_ca_bundle_patch_without_webhooks_is_empty() -> None:
    assert ca_bundle_patch({"metadata": {"name": "x"}}, BUNDLE) == []
    assert ca_bundle_patch({"webhooks": None}, BUNDLE) == []


def test_secret_bodies() -> None:
    data = secret_data(b"ca", b"crt", b"key")
    assert data == {"tls.crt": "Y3J0", "tls.key": "a2V5", "ca.crt": "Y2E="}
    assert tls_secret("ns", "tls", data) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "ns"},
        "type": "kubernetes.io/tls",
        "data": data,
    }


def test_secret_data_patch() -> None:
    data = secret_data(b"ca", b"crt", b"key")
    existing: dict[str, Any] = {
        "metadata": {"name": "tls", "namespace": "ns", "resourceVersion": "42"},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "Y3J0", "tls.key": "b2xk", "ca.key": "a2VlcA=="},
    }
    assert secret_data_patch(existing, data) == {
        "metadata": {"resourceVersion": "42"},
        "data": {"tls.key": "a2V5", "ca.crt": "Y2E="},
    }
    del existing["metadata"]["resourceVersion"]
    assert secret_data_patch(existing, data) == {"data": {"tls.key": "a2V5", "ca.crt": "Y2E="}}
    existing["data"] = dict(data)
    assert secret_data_patch(existing, data) is None


@pytest.mark.parametrize(("secret_type", "shown"), [("Opaque", "Opaque"), (None, "Opaque")])
def test_secret_of_another_type_is_refused(secret_type: str | None, shown: str) -> None:
    existing = {"metadata": {"name": "tls", "namespace": "ns"}, "type": secret_type}
    with pytest.raises(CertsError) as info:
        secret_data_patch(existing, secret_data(b"a", b"b", b"c"))
    assert str(info.value) == (
        f"Secret ns/tls has type {shown}, not kubernetes.io/tls; delete it or choose another name"
    )


@pytest.mark.parametrize("value", ["name", "/name", "ns/", "a/b/c", ""])
def test_parse_secret_ref_refuses(value: str) -> None:
    with pytest.raises(CertsError) as info:
        parse_secret_ref(value)
    assert str(info.value) == f'invalid Secret reference "{value}": expected NAMESPACE/NAME'


def test_parse_secret_ref() -> None:
    assert parse_secret_ref("kcp-tmc/webhook-tls") == ("kcp-tmc", "webhook-tls")


def test_api_error_text() -> None:
    status = b'{"kind":"Status","message":"secrets \\"x\\" is forbidden: no","code":403}'
    assert _api_error(SimpleNamespace(status=403, reason="Forbidden", body=status)) == (
        '403 Forbidden: secrets "x" is forbidden: no'
    )
    assert _api_error(SimpleNamespace(status=502, reason="Bad Gateway", body=b"upstream down\n")) == (
        "502 Bad Gateway: upstream down"
    )
    assert _api_error(SimpleNamespace(status=500, reason="Internal Server Error", body=None)) == (
        "500 Internal Server Error"
    )


def test_read_directory_refuses_expired_material(tmp_path: Path, t0: datetime) -> None:
    generate_dir(tmp_path, service="s", namespace="n", ca_days=30, serving_days=10, now=t0)
    assert (
        read_directory(tmp_path, need_pair=True, now=t0 + 5 * DAY).bundle_pem
        == (tmp_path / "ca.crt").read_bytes()
    )
    with pytest.raises(CertsError) as info:
        read_directory(tmp_path, need_pair=True, now=t0 + 11 * DAY)
    assert (
        str(info.value)
        == f"{tmp_path / 'tls.crt'} expired at 2030-01-11T12:00:00Z; run 'tmc-certs rotate' first"
    )
    assert read_directory(tmp_path, need_pair=False, now=t0 + 11 * DAY).cert_pem == b""
    with pytest.raises(CertsError) as info:
        read_directory(tmp_path, need_pair=False, now=t0 + 31 * DAY)
    assert str(info.value) == (
        f"the CA in {tmp_path / 'ca.crt'} expired at 2030-01-31T12:00:00Z; "
        "injecting it would break the webhook: run 'tmc-certs generate --force' and inject the new caBundle"
    )


def test_read_directory_refuses_a_foreign_serving_certificate(tmp_path: Path, t0: datetime) -> None:
    paths = generate_dir(tmp_path, service="s", namespace="n", now=t0)
    other = issue_serving(new_ca(now=t0), service="s", namespace="n", now=t0)
    paths.tls_crt.write_bytes(other.cert_pem)
    paths.tls_key.write_bytes(other.key_pem)
    with pytest.raises(CertsError) as info:
        read_directory(tmp_path, need_pair=True, now=t0)
    assert str(info.value) == f"{paths.tls_crt} is not signed by any CA in {paths.ca_crt}"


def test_inject_refuses_before_contacting_the_cluster(tmp_path: Path, t0: datetime) -> None:
    generate_dir(tmp_path, service="s", namespace="n", ca_days=30, now=t0)
    with pytest.raises(CertsError) as info:
        inject(tmp_path / "no-kubeconfig", tmp_path, webhook_configurations=["w"], now=t0 + 31 * DAY)
    assert str(info.value).startswith(f"the CA in {tmp_path / 'ca.crt'} expired at ")


@pytest.fixture
def no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $KUBECONFIG, an empty home, not in a cluster."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_no_kubeconfig_anywhere(no_kubeconfig: Path, tmp_path: Path, t0: datetime) -> None:
    generate_dir(tmp_path / "c", service="s", namespace="n")
    with pytest.raises(CertsError) as info:
        inject(None, tmp_path / "c", webhook_configurations=["w"])
    assert str(info.value) == "no kubeconfig: give --kubeconfig, set KUBECONFIG, or run inside a cluster"


def test_kubeconfig_from_home(no_kubeconfig: Path, tmp_path: Path) -> None:
    generate_dir(tmp_path / "c", service="s", namespace="n")
    (no_kubeconfig / ".kube").mkdir()
    (no_kubeconfig / ".kube" / "config").write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(CertsError) as info:
        inject(None, tmp_path / "c", webhook_configurations=["w"])
    path = no_kubeconfig / ".kube" / "config"
    assert str(info.value) == (
        f"cannot load kubeconfig {path}: Invalid kube-config file. Expected key current-context in {path}"
    )


def test_in_cluster_without_a_service_account(
    no_kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_dir(tmp_path / "c", service="s", namespace="n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(CertsError) as info:
        inject(None, tmp_path / "c", webhook_configurations=["w"])
    assert str(info.value) == "cannot load the in-cluster configuration: Service token file does not exist."


_webhooks = st.lists(
    st.fixed_dictionaries(
        {"name": st.text(min_size=1, max_size=8)},
        optional={
            "clientConfig": st.fixed_dictionaries(
                {"url": st.just("https://x.example/")},
                optional={"caBundle": st.sampled_from(["b2xk", BUNDLE])},
            ),
            "failurePolicy": st.sampled_from(["Fail", "Ignore"]),
        },
    ),
    max_size=6,
)


@given(webhooks=_webhooks)
def test_ca_bundle_patch_property(webhooks: list[dict[str, Any]]) -> None:
    """Applying the patch sets every caBundle and changes nothing else."""
    config = {"metadata": {"name": "c"}, "webhooks": webhooks}
    patched = jsonpatch.apply_patch(config, ca_bundle_patch(config, BUNDLE))
    assert [w["clientConfig"]["caBundle"] for w in patched["webhooks"]] == [BUNDLE] * len(webhooks)
    for before, result in zip(webhooks, patched["webhooks"], strict=True):
        after = copy.deepcopy(result)
        after["clientConfig"].pop("caBundle")
        expected = copy.deepcopy(before)
        expected.setdefault("clientConfig", {}).pop("caBundle", None)
        assert after == expected
    assert ca_bundle_patch(patched, BUNDLE) == []
