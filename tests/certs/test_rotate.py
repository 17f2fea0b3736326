"""Rotation: serving renewal, CA roll with old and new CA in the bundle, refusals that change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from kcp_tmc.certs import CertPaths, CertsError, generate_dir, issue_serving, new_ca, rotate_dir, verify_pair
from kcp_tmc.certs.inspect import issued_by, load_certificates

Snapshot = Callable[[Path], dict[str, tuple[bytes, int]]]
DAY = timedelta(days=1)
_PEM = Encoding.PEM


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _ts(when: datetime) -> int:
    return int(when.timestamp())


def _assert_served_cert_trusted(paths: CertPaths, when: datetime) -> None:
    bundle = load_certificates(paths.ca_crt)
    (leaf,) = load_certificates(paths.tls_crt)
    verify_pair(paths.tls_crt.read_bytes(), paths.tls_key.read_bytes())
    verify_pair(paths.ca_crt.read_bytes(), paths.ca_key.read_bytes())  # ca.key belongs to the newest CA
    verifier = (
        PolicyBuilder()
        .store(Store(bundle))
        .time(when)
        .build_server_verifier(x509.DNSName("tmc-webhook.kcp-tmc.svc"))
    )
    verifier.verify(leaf, [])


def test_nothing_due_changes_nothing(cert_dir: CertPaths, t0: datetime, snapshot: Snapshot) -> None:
    before = snapshot(cert_dir.directory)
    result = rotate_dir(cert_dir.directory, now=t0 + 200 * DAY)
    assert not result.changed
    assert result.messages == []
    assert snapshot(cert_dir.directory) == before


def test_serving_certificate_renewed_when_a_third_of_life_is_left(
    cert_dir: CertPaths, t0: datetime, snapshot: Snapshot
) -> None:
    before = snapshot(cert_dir.directory)
    (old,) = load_certificates(cert_dir.tls_crt)
    now = t0 + 250 * DAY
    result = rotate_dir(cert_dir.directory, now=now)
    assert result.serving_renewed and not result.ca_rolled and result.dropped_cas == []
    (new,) = load_certificates(cert_dir.tls_crt)
    ca_cn = f"tmc-webhook-ca@{_ts(t0)}"
    assert result.messages == [
        f"renewed serving certificate (due): signed by {ca_cn}, expires at 2031-09-08T12:00:00Z"
    ]
    assert new.not_valid_after_utc == now + 365 * DAY
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName) == (
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    )
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
    after = snapshot(cert_dir.directory)
    assert after["ca.crt"] == before["ca.crt"] and after["ca.key"] == before["ca.key"]
    assert after["tls.key"][0] != before["tls.key"][0]
    assert after["tls.key"][1] == before["tls.key"][1]  # still 0600
    _assert_served_cert_trusted(cert_dir, now)


def test_force_renews_a_fresh_certificate(cert_dir: CertPaths, t0: datetime) -> None:
    old = cert_dir.tls_crt.read_bytes()
    result = rotate_dir(cert_dir.directory, force=True, now=t0 + DAY)
    assert result.serving_renewed
    assert result.messages[0].startswith("renewed serving certificate (forced): ")
    assert cert_dir.tls_crt.read_bytes() != old
    _assert_served_cert_trusted(cert_dir, t0 + DAY)


def test_renewal_keeps_extra_names_and_lifetime(tmp_path: Path, t0: datetime) -> None:
    paths = generate_dir(
        tmp_path, service="s", namespace="n", dns=["x.example"], ips=["10.0.0.1"], serving_days=30, now=t0
    )
    old_sans = load_certificates(paths.tls_crt)[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    rotate_dir(tmp_path, now=t0 + 25 * DAY)
    (new,) = load_certificates(paths.tls_crt)
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName) == old_sans
    assert new.not_valid_after_utc == t0 + 55 * DAY


def test_ca_roll_keeps_both_cas_then_drops_the_old_one(cert_dir: CertPaths, t0: datetime) -> None:
    (old_ca,) = load_certificates(cert_dir.ca_crt)
    old_ca_cn = _cn(old_ca)

    # 1. CA has less than a third of its life left: new CA first, old CA kept.  The serving
    #    certificate (long expired) is renewed by the outgoing CA, which the cluster still trusts.
    t1 = t0 + 2500 * DAY
    result = rotate_dir(cert_dir.directory, now=t1)
    assert result.ca_rolled and result.serving_renewed
    new_cn = f"tmc-webhook-ca@{_ts(t1)}"
    assert result.messages == [
        f"rolled CA: {new_cn} added to ca.crt before {old_ca_cn}, which expires at 2039-12-30T12:00:00Z",
        f"renewed serving certificate (due): signed by {old_ca_cn}, expires at 2037-11-05T12:00:00Z",
    ]
    bundle = load_certificates(cert_dir.ca_crt)
    assert [_cn(c) for c in bundle] == [new_cn, old_ca_cn]
    assert bundle[1] == old_ca
    assert bundle[0].not_valid_after_utc == t1 + 3650 * DAY
    (leaf,) = load_certificates(cert_dir.tls_crt)
    assert issued_by(leaf, old_ca)
    _assert_served_cert_trusted(cert_dir, t1)

    # 2. Nothing due: the old CA stays, it still signs the serving certificate.
    t2 = t1 + DAY
    assert not rotate_dir(cert_dir.directory, now=t2).changed
    assert len(load_certificates(cert_dir.ca_crt)) == 2

    # 3. Forced renewal moves the serving certificate to the new CA; both CAs still in the bundle.
    t3 = t2 + DAY
    result = rotate_dir(cert_dir.directory, force=True, now=t3)
    assert result.serving_renewed and not result.ca_rolled and result.dropped_cas == []
    assert result.messages[0].startswith(f"renewed serving certificate (forced): signed by {new_cn}, ")
    assert [_cn(c) for c in load_certificates(cert_dir.ca_crt)] == [new_cn, old_ca_cn]
    assert issued_by(load_certificates(cert_dir.tls_crt)[0], bundle[0])
    _assert_served_cert_trusted(cert_dir, t3)

    # 4. Every serving certificate is signed by the new CA: the old one is dropped.
    t4 = t3 + DAY
    serving_before = cert_dir.tls_crt.read_bytes()
    result = rotate_dir(cert_dir.directory, now=t4)
    assert result.dropped_cas == [old_ca_cn]
    assert result.messages == [f"dropped CA {old_ca_cn} from ca.crt"]
    assert load_certificates(cert_dir.ca_crt) == [bundle[0]]
    assert cert_dir.tls_crt.read_bytes() == serving_before
    _assert_served_cert_trusted(cert_dir, t4)


def test_expired_old_ca_is_dropped_when_it_signs_nothing(cert_dir: CertPaths, t0: datetime) -> None:
    """An old CA past its expiry is useless in the bundle, even before the serving cert moved."""
    rotate_dir(cert_dir.directory, now=t0 + 2500 * DAY)
    bundle = load_certificates(cert_dir.ca_crt)
    # A third CA: roll again once the second is due, while the serving certificate is from the first.
    # Simpler to arrange by hand: bundle = [new, expired unrelated CA, original].
    stale = new_ca("stale", days=1, now=t0)
    cert_dir.ca_crt.write_bytes(b"".join(c.public_bytes(_PEM) for c in [bundle[0], stale.cert, bundle[1]]))
    result = rotate_dir(cert_dir.directory, now=t0 + 2501 * DAY)
    assert result.dropped_cas == ["stale"]
    assert load_certificates(cert_dir.ca_crt) == bundle


def test_serving_cut_short_by_its_ca_is_renewed_for_a_year(tmp_path: Path, t0: datetime) -> None:
    paths = generate_dir(tmp_path, service="s", namespace="n", ca_days=600, serving_days=365, now=t0)
    # The CA rolls at 400 days (less than 200 left); the serving certificate is then due too and,
    # signed by the outgoing CA, ends with it.
    rotate_dir(tmp_path, now=t0 + 401 * DAY)
    (leaf,) = load_certificates(paths.tls_crt)
    assert leaf.not_valid_after_utc == t0 + 600 * DAY
    rotate_dir(tmp_path, now=t0 + 550 * DAY)
    (leaf,) = load_certificates(paths.tls_crt)
    assert leaf.not_valid_after_utc == t0 + (550 + 365) * DAY


# --- refusals: exact message, nothing changed --------------------------------------------------------


def _refused(directory: Path, snapshot: Snapshot, message: str, **kwargs: object) -> None:
    before = snapshot(directory)
    with pytest.raises(CertsError) as info:
        rotate_dir(directory, **kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert snapshot(directory) == before


def test_expired_ca_is_refused(tmp_path: Path, t0: datetime, snapshot: Snapshot) -> None:
    generate_dir(tmp_path, service="s", namespace="n", ca_days=10, serving_days=5, now=t0)
    _refused(
        tmp_path,
        snapshot,
        f"the CA in {tmp_path / 'ca.crt'} expired at 2030-01-11T12:00:00Z; a rotation cannot restore trust: "
        "run 'tmc-certs generate --force' and inject the new caBundle",
        now=t0 + 11 * DAY,
        force=True,
    )


def test_mismatched_serving_key_is_refused(cert_dir: CertPaths, t0: datetime, snapshot: Snapshot) -> None:
    other = issue_serving(new_ca(now=t0), service="s", namespace="n", now=t0)
    cert_dir.tls_key.write_bytes(other.key_pem)
    _refused(
        cert_dir.directory,
        snapshot,
        f"{cert_dir.tls_key} does not match {cert_dir.tls_crt}: their public keys differ",
        force=True,
        now=t0,
    )


def test_mismatched_ca_key_is_refused(cert_dir: CertPaths, t0: datetime, snapshot: Snapshot) -> None:
    cert_dir.ca_key.write_bytes(new_ca(now=t0).key_pem)
    _refused(
        cert_dir.directory,
        snapshot,
        f"{cert_dir.ca_key} does not match {cert_dir.ca_crt} (first CA): their public keys differ",
        force=True,
        now=t0,
    )


def test_serving_certificate_from_another_ca_is_refused(
    cert_dir: CertPaths, t0: datetime, snapshot: Snapshot
) -> None:
    other = issue_serving(new_ca(now=t0), service="s", namespace="n", now=t0)
    cert_dir.tls_crt.write_bytes(other.cert_pem)
    cert_dir.tls_key.write_bytes(other.key_pem)
    _refused(
        cert_dir.directory,
        snapshot,
        f"{cert_dir.tls_crt} is not signed by any CA in {cert_dir.ca_crt}",
        force=True,
        now=t0,
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("ca.crt", b"not a certificate", "{path}: no valid PEM certificate found"),
        ("tls.crt", b"", "{path}: no valid PEM certificate found"),
        (
            "ca.key",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "{path}: no valid PEM private key found",
        ),
        ("tls.key", b"junk", "{path}: no valid PEM private key found"),
    ],
)
def test_unreadable_files_are_refused(
    cert_dir: CertPaths, t0: datetime, snapshot: Snapshot, name: str, content: bytes, message: str
) -> None:
    path = cert_dir.directory / name
    path.write_bytes(content)
    _refused(cert_dir.directory, snapshot, message.format(path=path), force=True, now=t0)


def test_missing_file_is_refused(cert_dir: CertPaths, t0: datetime, snapshot: Snapshot) -> None:
    cert_dir.tls_key.unlink()
    _refused(
        cert_dir.directory,
        snapshot,
        f"cannot read {cert_dir.tls_key}: No such file or directory",
        force=True,
        now=t0,
    )


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CertsError) as info:
        rotate_dir(tmp_path / "absent")
    assert str(info.value) == f"{tmp_path / 'absent'}: not a directory"
    assert not (tmp_path / "absent").exists()


def test_serving_without_san_is_refused(cert_dir: CertPaths, t0: datetime, snapshot: Snapshot) -> None:
    from cryptography.hazmat.primitives import hashes

    from kcp_tmc.certs.inspect import load_private_key

    ca_cert = load_certificates(cert_dir.ca_crt)[0]
    ca_key = load_private_key(cert_dir.ca_key)
    key = load_private_key(cert_dir.tls_key)
    bare = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bare")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(t0)
        .not_valid_after(t0 + DAY)
        .sign(ca_key, hashes.SHA256())
    )
    cert_dir.tls_crt.write_bytes(bare.public_bytes(_PEM))
    _refused(
        cert_dir.directory,
        snapshot,
        "the serving certificate has no subjectAltName to renew it with",
        force=True,
        now=t0,
    )
