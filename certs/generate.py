"""Generation of an ECDSA P-256 certificate authority and a webhook serving certificate.

In memory::

    ca = new_ca()
    pair = issue_serving(ca, service="tmc-webhook", namespace="kcp-tmc")
    pair.cert_pem, pair.key_pem, ca.cert_pem

On disk (what ``tmc-certs generate`` does)::

    paths = generate_dir(out, service="tmc-webhook", namespace="kcp-tmc")

The serving certificate carries the names the API server dials
(``<svc>.<ns>.svc`` is the TLS server name for ``clientConfig.service``) plus the
short and fully qualified forms, and any extra DNS names and IP addresses.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kcp_tmc.certs import files, names
from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.files import CertPaths

CA_DAYS = 3650
SERVING_DAYS = 365
CLUSTER_DOMAIN = "cluster.local"
ORGANIZATION = "kcp-tmc"
#: notBefore is set this far in the past so that peers whose clocks lag a little
#: accept a freshly issued certificate.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class _CertAndKey:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate, PEM encoded."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        """The private key, unencrypted PKCS#8 PEM."""
        return _key_pem(self.key)


@dataclass(frozen=True)
class CA(_CertAndKey):
    """A certificate authority: its certificate and private key."""


@dataclass(frozen=True)
class ServingPair(_CertAndKey):
    """A serving certificate, its private key and the CA that issued it.

    ``cert_pem`` is the leaf only: the CA is trusted through ``caBundle``.
    """

    ca: CA


def utcnow() -> datetime:
    """The current time, UTC, whole seconds (X.509 times have no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def normalize_now(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime in whole seconds; naive values are taken as UTC."""
    if now is None:
        return utcnow()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def service_dns_names(service: str, namespace: str, cluster_domain: str = CLUSTER_DOMAIN) -> list[str]:
    """The four names of a Service: ``S``, ``S.N``, ``S.N.svc`` and ``S.N.svc.<cluster_domain>``."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.{cluster_domain}",
    ]


def validate_names(service: str, namespace: str, dns: Sequence[str] = (), ips: Sequence[str] = ()) -> None:
    """Raise :class:`CertsError` for the first name that cannot go into the certificate."""
    for kind, value in (("service name", service), ("namespace", namespace)):
        errors = names.dns1123_label_errors(value)
        if errors:
            raise CertsError(names.describe(kind, value, errors))
    for value in dns:
        errors = names.dns_san_errors(value)
        if errors:
            raise CertsError(names.describe("DNS name", value, errors))
    for value in ips:
        try:
            names.parse_ip(value)
        except ValueError as exc:
            raise CertsError(str(exc)) from None


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def new_ca(
    common_name: str = "kcp-tmc-ca",
    *,
    days: int = CA_DAYS,
    now: datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> CA:
    """A self-signed CA valid for ``days`` days that may only sign leaf certificates (pathlen 0)."""
    if days <= 0:
        raise CertsError(f"invalid CA validity {days} days: must be at least 1 day")
    now = normalize_now(now)
    key = key or new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(cert, key)


def issue_serving(
    ca: CA,
    *,
    service: str,
    namespace: str,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    days: int = SERVING_DAYS,
    now: datetime | None = None,
    cluster_domain: str = CLUSTER_DOMAIN,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> ServingPair:
    """A serving certificate for Service ``service`` in ``namespace``, signed by ``ca``.

    SANs: the Service names (:func:`service_dns_names`), then ``dns``, then
    ``ips``, without duplicates.  The certificate never outlives its CA: its
    notAfter is the earlier of ``now + days`` and the CA's notAfter.
    """
    validate_names(service, namespace, dns, ips)
    return issue_for_names(
        ca,
        common_name=f"{service}.{namespace}.svc",
        dns=[*service_dns_names(service, namespace, cluster_domain), *dns],
        ips=ips,
        days=days,
        now=now,
        key=key,
    )


def issue_for_names(
    ca: CA,
    *,
    common_name: str,
    dns: Sequence[str],
    ips: Sequence[str] = (),
    days: int = SERVING_DAYS,
    now: datetime | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> ServingPair:
    """A serving certificate with exactly these SANs (used by rotation to keep a certificate's names)."""
    if days <= 0:
        raise CertsError(f"invalid serving certificate validity {days} days: must be at least 1 day")
    now = normalize_now(now)
    if ca.cert.not_valid_after_utc <= now:
        raise CertsError(f"CA certificate expired at {format_time(ca.cert.not_valid_after_utc)}")
    key = key or new_key()
    sans: list[x509.GeneralName] = []
    for name in dict.fromkeys(dns):
        sans.append(x509.DNSName(name))
    for ip in dict.fromkeys(ipaddress.ip_address(value) for value in ips):
        sans.append(x509.IPAddress(ip))
    not_after = min(now + timedelta(days=days), ca.cert.not_valid_after_utc)
    issuer_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return ServingPair(cert, key, ca)


def ca_common_name(service: str, now: datetime) -> str:
    """The CN of a generated CA: ``<service>-ca@<unix time>``, like Kubernetes' self-signed CAs.

    The timestamp tells a rolled CA from its predecessor in ``ca.crt`` at a glance.
    """
    return f"{service}-ca@{int(now.timestamp())}"


def generate_dir(
    out_dir: str | os.PathLike[str],
    *,
    service: str,
    namespace: str,
    dns: Sequence[str] = (),
    ips: Sequence[str] = (),
    ca_days: int = CA_DAYS,
    serving_days: int = SERVING_DAYS,
    now: datetime | None = None,
    overwrite: bool = False,
) -> CertPaths:
    """Create a CA and a serving certificate and write ``ca.crt``, ``ca.key``, ``tls.crt``, ``tls.key``.

    ``out_dir`` is created if missing.  Existing files are kept and
    :class:`CertsError` raised unless ``overwrite`` is true: replacing a CA
    that a ``caBundle`` already trusts breaks the webhook until the bundle is
    injected again, so it must be asked for.  All input is checked before the
    first byte is written.  Keys get mode 0600, certificates 0644.
    """
    validate_names(service, namespace, dns, ips)
    now = normalize_now(now)
    paths = CertPaths.of(out_dir)
    if paths.directory.exists() and not paths.directory.is_dir():
        raise CertsError(f"{paths.directory}: not a directory")
    if not overwrite:
        existing = [p.name for p in paths.all() if p.exists()]
        if existing:
            raise CertsError(
                f"{paths.directory} already holds {', '.join(existing)}; "
                "use 'tmc-certs rotate' to renew, or --force to replace the CA and serving certificate"
            )
    ca = new_ca(ca_common_name(service, now), days=ca_days, now=now)
    pair = issue_serving(
        ca, service=service, namespace=namespace, dns=dns, ips=ips, days=serving_days, now=now
    )
    try:
        paths.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CertsError(f"cannot create {paths.directory}: {exc.strerror}") from None
    with files.directory_lock(paths.directory):
        write_ca(paths, [ca.cert_pem], ca.key_pem)
        write_serving(paths, pair.cert_pem, pair.key_pem)
    return paths


def write_ca(paths: CertPaths, bundle: Sequence[bytes], key_pem: bytes | None) -> None:
    """Write the CA key (if given) and then the bundle (newest CA first)."""
    if key_pem is not None:
        files.atomic_write(paths.ca_key, key_pem, mode=files.KEY_MODE)
    files.atomic_write(paths.ca_crt, b"".join(bundle), mode=files.CERT_MODE)


def write_serving(paths: CertPaths, cert_pem: bytes, key_pem: bytes) -> None:
    """Write the serving pair: key first, certificate last (see :mod:`kcp_tmc.certs.rotate`)."""
    files.atomic_write(paths.tls_key, key_pem, mode=files.KEY_MODE)
    files.atomic_write(paths.tls_crt, cert_pem, mode=files.CERT_MODE)


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with a ``Z``, as Kubernetes prints times."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    # ECDSA keys sign (TLS handshakes, and certificates and CRLs for a CA); they never encipher.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
