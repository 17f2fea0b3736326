"""Expiry, renewal and key/certificate matching."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from kcp_tmc.certs import (
    CertPaths,
    CertsError,
    PairMismatchError,
    certificate_expiry,
    issue_serving,
    load_pair,
    new_ca,
    renewal_due,
    verify_pair,
)
from kcp_tmc.certs.files import atomic_write
from kcp_tmc.certs.generate import CLOCK_SKEW
from kcp_tmc.certs.inspect import is_due, load_certificates, load_private_key, remaining_fraction


def test_certificate_expiry(cert_dir: CertPaths, t0: datetime) -> None:
    assert certificate_expiry(cert_dir.tls_crt) == t0 + timedelta(days=365)
    assert certificate_expiry(cert_dir.ca_crt) == t0 + timedelta(days=3650)
    assert certificate_expiry(cert_dir.tls_crt).tzinfo is not None


def test_renewal_due_at_one_third_of_life_left(cert_dir: CertPaths, t0: datetime) -> None:
    lifetime = timedelta(days=365) + CLOCK_SKEW
    end = t0 + timedelta(days=365)
    threshold = end - lifetime / 3
    assert not renewal_due(cert_dir.tls_crt, now=threshold)
    assert renewal_due(cert_dir.tls_crt, now=threshold + timedelta(seconds=1))
    assert renewal_due(cert_dir.tls_crt, now=end + timedelta(days=1))
    assert not renewal_due(cert_dir.tls_crt, fraction=0.5, now=t0 + timedelta(days=150))
    assert renewal_due(cert_dir.tls_crt, fraction=0.5, now=t0 + timedelta(days=200))


def test_remaining_fraction_bounds(t0: datetime) -> None:
    cert = new_ca(days=10, now=t0).cert
    assert remaining_fraction(cert, t0 - timedelta(days=1)) == 1.0
    assert remaining_fraction(cert, t0 + timedelta(days=11)) == 0.0
    instant = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.subject)
        .public_key(cert.public_key())
        .serial_number(1)
        .not_valid_before(t0)
        .not_valid_after(t0)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    )
    assert remaining_fraction(instant, t0 - timedelta(days=1)) == 0.0
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 0"):
        is_due(cert, 0, t0)


def test_verify_pair_mismatch_message(t0: datetime) -> None:
    ca = new_ca(now=t0)
    one = issue_serving(ca, service="s", namespace="n", now=t0)
    two = issue_serving(ca, service="s", namespace="n", now=t0)
    with pytest.raises(PairMismatchError) as info:
        verify_pair(one.cert_pem, two.key_pem)
    assert str(info.value) == "private key does not match certificate: their public keys differ"
    with pytest.raises(PairMismatchError) as info:
        verify_pair(one.cert_pem, two.key_pem, cert_name="tls.crt", key_name="tls.key")
    assert str(info.value) == "tls.key does not match tls.crt: their public keys differ"


@pytest.mark.parametrize(
    ("cert_pem", "key_pem", "message"),
    [
        (b"garbage", None, "certificate: no valid PEM certificate found"),
        (b"", None, "certificate: no valid PEM certificate found"),
        (None, b"garbage", "private key: no valid PEM private key found"),
    ],
)
def test_verify_pair_unparsable(
    t0: datetime, cert_pem: bytes | None, key_pem: bytes | None, message: str
) -> None:
    pair = issue_serving(new_ca(now=t0), service="s", namespace="n", now=t0)
    with pytest.raises(CertsError) as info:
        verify_pair(
            cert_pem if cert_pem is not None else pair.cert_pem,
            key_pem if key_pem is not None else pair.key_pem,
        )
    assert str(info.value) == message


def test_encrypted_and_non_ec_keys_are_refused(tmp_path: Path) -> None:
    encrypted = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    path = tmp_path / "enc.key"
    path.write_bytes(encrypted)
    with pytest.raises(CertsError) as info:
        load_private_key(path)
    assert str(info.value) == f"{path}: the private key is encrypted; tmc-certs needs an unencrypted key"
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(rsa_pem)
    with pytest.raises(CertsError) as info:
        load_private_key(path)
    assert str(info.value) == f"{path}: unsupported key type RSAPrivateKey; tmc-certs uses ECDSA keys"


def test_missing_file_message(tmp_path: Path) -> None:
    with pytest.raises(CertsError) as info:
        load_certificates(tmp_path / "nope.crt")
    assert str(info.value) == f"cannot read {tmp_path / 'nope.crt'}: No such file or directory"


def test_load_pair_returns_matching_pair(cert_dir: CertPaths) -> None:
    pair = load_pair(cert_dir.tls_crt, cert_dir.tls_key)
    assert pair.cert_pem == cert_dir.tls_crt.read_bytes()
    assert pair.key_pem == cert_dir.tls_key.read_bytes()


def test_load_pair_gives_up_on_a_lasting_mismatch(cert_dir: CertPaths, t0: datetime) -> None:
    other = issue_serving(new_ca(now=t0), service="s", namespace="n", now=t0)
    cert_dir.tls_key.write_bytes(other.key_pem)
    with pytest.raises(PairMismatchError) as info:
        load_pair(cert_dir.tls_crt, cert_dir.tls_key, attempts=3, delay=0.001)
    assert (
        str(info.value) == f"{cert_dir.tls_key} does not match {cert_dir.tls_crt}: their public keys differ"
    )
    with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
        load_pair(cert_dir.tls_crt, cert_dir.tls_key, attempts=0)


def test_load_pair_retries_across_a_rotation(cert_dir: CertPaths, t0: datetime) -> None:
    """Key replaced first, certificate a moment later (the order tmc-certs uses): load_pair waits it out."""
    new = issue_serving(new_ca(now=t0), service="s", namespace="n", now=t0)
    atomic_write(cert_dir.tls_key, new.key_pem, mode=0o600)
    timer = threading.Timer(0.05, atomic_write, args=(cert_dir.tls_crt, new.cert_pem))
    timer.start()
    try:
        pair = load_pair(cert_dir.tls_crt, cert_dir.tls_key, attempts=100, delay=0.01)
    finally:
        timer.join()
    assert pair.cert_pem == new.cert_pem
    assert pair.key_pem == new.key_pem
