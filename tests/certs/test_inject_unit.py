"""The bodies ``inject`` sends, built by pure functions and checked without a cluster."""

from __future__ import annotations

import base64
import copy
from types import SimpleNamespace
from typing import Any

import jsonpatch
import pytest

from kcp_tmc.certs import CertsError
from kcp_tmc.certs.inject import (
    _api_error,
    ca_bundle_patch,
    encode_bundle,
    parse_secret_ref,
    secret_data,
    secret_data_patch,
    tls_secret,
)

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
