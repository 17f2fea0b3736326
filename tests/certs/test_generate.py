"""Generation of the CA and the serving certificate, in memory and on disk."""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from kcp_tmc.certs import CertsError, generate_dir, issue_serving, new_ca, service_dns_names, verify_pair
from kcp_tmc.certs.generate import CLOCK_SKEW, issue_for_names
from kcp_tmc.certs.inspect import load_certificates, load_private_key

Snapshot = Callable[[Path], dict[str, tuple[bytes, int]]]


def _verify(leaf: x509.Certificate, ca: x509.Certificate, name: str, when: datetime) -> None:
    verifier = PolicyBuilder().store(Store([ca])).time(when).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf, [])


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_service_dns_names() -> None:
    assert service_dns_names("web", "ns") == ["web", "web.ns", "web.ns.svc", "web.ns.svc.cluster.local"]
    assert service_dns_names("web", "ns", "corp.example")[-1] == "web.ns.svc.corp.example"


def test_ca_is_p256_self_signed_with_pathlen_zero(t0: datetime) -> None:
    ca = new_ca("my-ca", now=t0)
    cert = ca.cert
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "my-ca"
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert cert.not_valid_before_utc == t0 - CLOCK_SKEW
    assert cert.not_valid_after_utc == t0 + timedelta(days=3650)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(ca.key.public_key())
    cert.verify_directly_issued_by(cert)
    assert ca.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert ca.key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_serving_certificate_profile(t0: datetime) -> None:
    ca = new_ca(now=t0)
    pair = issue_serving(
        ca,
        service="tmc-webhook",
        namespace="kcp-tmc",
        dns=["webhook.example.com"],
        ips=["127.0.0.1", "::1"],
        now=t0,
    )
    cert = pair.cert
    sans = _sans(cert)
    assert sans.get_values_for_type(x509.DNSName) == [
        "tmc-webhook",
        "tmc-webhook.kcp-tmc",
        "tmc-webhook.kcp-tmc.svc",
        "tmc-webhook.kcp-tmc.svc.cluster.local",
        "webhook.example.com",
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "tmc-webhook.kcp-tmc.svc"
    assert cert.issuer == ca.cert.subject
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.key_encipherment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(pair.key.public_key())
    assert cert.not_valid_before_utc == t0 - CLOCK_SKEW
    assert cert.not_valid_after_utc == t0 + timedelta(days=365)
    assert verify_pair(pair.cert_pem, pair.key_pem) == cert


@pytest.mark.parametrize(
    "name",
    [
        "tmc-webhook",
        "tmc-webhook.kcp-tmc",
        "tmc-webhook.kcp-tmc.svc",
        "tmc-webhook.kcp-tmc.svc.cluster.local",
    ],
)
def test_chain_verifies_for_every_service_name(t0: datetime, name: str) -> None:
    ca = new_ca(now=t0)
    pair = issue_serving(ca, service="tmc-webhook", namespace="kcp-tmc", now=t0)
    _verify(pair.cert, ca.cert, name, t0 + timedelta(days=100))


def test_chain_does_not_verify_for_other_names_other_cas_or_after_expiry(t0: datetime) -> None:
    ca = new_ca(now=t0)
    pair = issue_serving(ca, service="tmc-webhook", namespace="kcp-tmc", now=t0)
    with pytest.raises(VerificationError):
        _verify(pair.cert, ca.cert, "other.kcp-tmc.svc", t0)
    with pytest.raises(VerificationError):
        _verify(pair.cert, new_ca(now=t0).cert, "tmc-webhook.kcp-tmc.svc", t0)
    with pytest.raises(VerificationError):
        _verify(pair.cert, ca.cert, "tmc-webhook.kcp-tmc.svc", t0 + timedelta(days=366))


def test_ip_san_verifies(t0: datetime) -> None:
    ca = new_ca(now=t0)
    pair = issue_serving(ca, service="s", namespace="n", ips=["127.0.0.1"], now=t0)
    verifier = (
        PolicyBuilder()
        .store(Store([ca.cert]))
        .time(t0)
        .build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    )
    verifier.verify(pair.cert, [])


def test_duplicate_names_are_listed_once(t0: datetime) -> None:
    ca = new_ca(now=t0)
    pair = issue_serving(
        ca, service="s", namespace="n", dns=["s.n.svc", "x.example"], ips=["10.0.0.1", "10.0.0.1"], now=t0
    )
    sans = _sans(pair.cert)
    assert sans.get_values_for_type(x509.DNSName) == [
        "s",
        "s.n",
        "s.n.svc",
        "s.n.svc.cluster.local",
        "x.example",
    ]
    assert len(sans.get_values_for_type(x509.IPAddress)) == 1


def test_wildcard_dns_name_is_accepted(t0: datetime) -> None:
    pair = issue_serving(new_ca(now=t0), service="s", namespace="n", dns=["*.example.com"], now=t0)
    assert "*.example.com" in _sans(pair.cert).get_values_for_type(x509.DNSName)


def test_serving_certificate_never_outlives_its_ca(t0: datetime) -> None:
    ca = new_ca(days=30, now=t0)
    pair = issue_serving(ca, service="s", namespace="n", days=365, now=t0)
    assert pair.cert.not_valid_after_utc == ca.cert.not_valid_after_utc


def test_naive_now_is_taken_as_utc(t0: datetime) -> None:
    ca = new_ca(now=t0.replace(tzinfo=None))
    assert ca.cert.not_valid_after_utc == t0 + timedelta(days=3650)


LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"service": "Web_Hook"}, f'invalid service name "Web_Hook": {LABEL_RULE}'),
        ({"service": "web.hook"}, 'invalid service name "web.hook": must not contain dots'),
        ({"service": "a" * 64}, f'invalid service name "{"a" * 64}": must be no more than 63 characters'),
        ({"service": ""}, f'invalid service name "": {LABEL_RULE}'),
        ({"namespace": "-ns"}, f'invalid namespace "-ns": {LABEL_RULE}'),
        (
            {"dns": ["ok.example", "bad_name.example"]},
            f'invalid DNS name "bad_name.example": {SUBDOMAIN_RULE}',
        ),
        ({"dns": ["*.*.example"]}, f'invalid DNS name "*.*.example": {SUBDOMAIN_RULE}'),
        ({"ips": ["10.0.0.256"]}, 'invalid IP address "10.0.0.256": must be an IPv4 or IPv6 address'),
    ],
)
def test_bad_names_are_refused(t0: datetime, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"service": "s", "namespace": "n", **kwargs}
    with pytest.raises(CertsError) as info:
        issue_serving(new_ca(now=t0), now=t0, **args)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_bad_validity_is_refused(t0: datetime) -> None:
    with pytest.raises(CertsError) as info:
        new_ca(days=0, now=t0)
    assert str(info.value) == "invalid CA validity 0 days: must be at least 1 day"
    with pytest.raises(CertsError) as info:
        issue_serving(new_ca(now=t0), service="s", namespace="n", days=-1, now=t0)
    assert str(info.value) == "invalid serving certificate validity -1 days: must be at least 1 day"


def test_expired_ca_cannot_issue(t0: datetime) -> None:
    ca = new_ca(days=1, now=t0)
    with pytest.raises(CertsError) as info:
        issue_for_names(ca, common_name="x", dns=["x"], now=t0 + timedelta(days=2))
    assert str(info.value) == "CA certificate expired at 2030-01-02T12:00:00Z"


def test_generate_dir_writes_four_files_with_modes(tmp_path: Path, t0: datetime) -> None:
    paths = generate_dir(
        tmp_path / "new" / "dir",
        service="tmc-webhook",
        namespace="kcp-tmc",
        dns=["x.example"],
        ips=["10.1.2.3"],
        now=t0,
    )
    assert sorted(p.name for p in paths.directory.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert stat.S_IMODE(paths.ca_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.tls_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.ca_crt.stat().st_mode) == 0o644
    assert stat.S_IMODE(paths.tls_crt.stat().st_mode) == 0o644
    (ca,) = load_certificates(paths.ca_crt)
    (leaf,) = load_certificates(paths.tls_crt)
    assert (
        ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == f"tmc-webhook-ca@{int(t0.timestamp())}"
    )
    assert ca.not_valid_after_utc == t0 + timedelta(days=3650)
    assert leaf.not_valid_after_utc == t0 + timedelta(days=365)
    verify_pair(paths.tls_crt.read_bytes(), paths.tls_key.read_bytes())
    verify_pair(paths.ca_crt.read_bytes(), paths.ca_key.read_bytes())
    assert isinstance(load_private_key(paths.ca_key), ec.EllipticCurvePrivateKey)
    _verify(leaf, ca, "tmc-webhook.kcp-tmc.svc", t0)
    assert _sans(leaf).get_values_for_type(x509.DNSName)[-1] == "x.example"


def test_generate_dir_custom_validity(tmp_path: Path, t0: datetime) -> None:
    paths = generate_dir(tmp_path, service="s", namespace="n", ca_days=100, serving_days=10, now=t0)
    assert load_certificates(paths.ca_crt)[0].not_valid_after_utc == t0 + timedelta(days=100)
    assert load_certificates(paths.tls_crt)[0].not_valid_after_utc == t0 + timedelta(days=10)


def test_generate_dir_refuses_to_replace_existing_files(
    tmp_path: Path, t0: datetime, snapshot: Snapshot
) -> None:
    generate_dir(tmp_path, service="s", namespace="n", now=t0)
    before = snapshot(tmp_path)
    with pytest.raises(CertsError) as info:
        generate_dir(tmp_path, service="s", namespace="n", now=t0)
    assert str(info.value) == (
        f"{tmp_path} already holds ca.key, ca.crt, tls.key, tls.crt; use 'tmc-certs rotate' to renew, "
        "or --force to replace the CA and serving certificate"
    )
    assert snapshot(tmp_path) == before


def test_generate_dir_overwrite_replaces_everything(tmp_path: Path, t0: datetime, snapshot: Snapshot) -> None:
    generate_dir(tmp_path, service="s", namespace="n", now=t0)
    before = snapshot(tmp_path)
    generate_dir(tmp_path, service="s", namespace="n", now=t0, overwrite=True)
    after = snapshot(tmp_path)
    assert sorted(after) == sorted(before)
    assert all(after[name][0] != before[name][0] for name in after)


def test_generate_dir_bad_input_writes_nothing(tmp_path: Path, t0: datetime) -> None:
    with pytest.raises(CertsError):
        generate_dir(tmp_path / "out", service="Bad", namespace="n", now=t0)
    assert not (tmp_path / "out").exists()


def test_generate_dir_into_a_file_is_refused(tmp_path: Path, t0: datetime) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"keep")
    with pytest.raises(CertsError) as info:
        generate_dir(target, service="s", namespace="n", now=t0)
    assert str(info.value) == f"{target}: not a directory"
    assert target.read_bytes() == b"keep"
