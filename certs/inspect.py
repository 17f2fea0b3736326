"""Reading certificate files: expiry, whether renewal is due, and key/certificate matching.

The webhook uses these to decide when to reload its serving pair and to fail
readiness before the certificate expires.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.generate import normalize_now

#: Renew when less than this fraction of a certificate's lifetime is left
#: (a one-year certificate is renewed about four months before it expires,
#: a ten-year CA about three years and four months before).
RENEWAL_FRACTION = 1 / 3


class PairMismatchError(CertsError):
    """The private key does not belong to the certificate."""


@dataclass(frozen=True)
class PemPair:
    """A serving certificate and its key, as read from disk, known to match."""

    cert_pem: bytes
    key_pem: bytes
    cert: x509.Certificate


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The content of ``path``; :class:`CertsError` with the OS reason if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CertsError(f"cannot read {path}: {exc.strerror or exc}") from None


def parse_certificates(data: bytes, name: str) -> list[x509.Certificate]:
    """All PEM certificates in ``data``, in file order; ``name`` is used in the error message."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertsError(f"{name}: no valid PEM certificate found") from None
    return certs


def parse_private_key(data: bytes, name: str) -> ec.EllipticCurvePrivateKey:
    """The unencrypted ECDSA private key in ``data``; ``name`` is used in the error message."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertsError(
            f"{name}: the private key is encrypted; tmc-certs needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertsError(f"{name}: no valid PEM private key found") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertsError(f"{name}: unsupported key type {type(key).__name__}; tmc-certs uses ECDSA keys")
    return key


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """All certificates in the PEM file ``path`` (a bundle holds several, newest first)."""
    return parse_certificates(read_bytes(path), str(path))


def load_private_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """The ECDSA private key in the PEM file ``path``."""
    return parse_private_key(read_bytes(path), str(path))


def certificate_expiry(path: str | os.PathLike[str]) -> datetime:
    """notAfter (aware, UTC) of the first certificate in ``path``."""
    return load_certificates(path)[0].not_valid_after_utc


def remaining_fraction(cert: x509.Certificate, now: datetime | None = None) -> float:
    """The share of the certificate's lifetime still ahead at ``now`` (0 once expired, 1 before it starts)."""
    now = normalize_now(now)
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    lifetime = (end - start).total_seconds()
    if lifetime <= 0:
        return 0.0
    left = (end - now).total_seconds()
    return max(0.0, min(1.0, left / lifetime))


def is_due(cert: x509.Certificate, fraction: float = RENEWAL_FRACTION, now: datetime | None = None) -> bool:
    """True when less than ``fraction`` of the certificate's lifetime is left (or it has expired)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    return remaining_fraction(cert, now) < fraction


def renewal_due(
    path: str | os.PathLike[str], fraction: float = RENEWAL_FRACTION, now: datetime | None = None
) -> bool:
    """True when the first certificate in ``path`` has less than ``fraction`` of its lifetime left."""
    return is_due(load_certificates(path)[0], fraction, now)


def public_key_der(key: ec.EllipticCurvePrivateKey | x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key or a certificate, for comparing the two."""
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_pair(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, *, cert_name: str, key_name: str
) -> None:
    """Raise :class:`PairMismatchError` unless ``key`` is the private key of ``cert``."""
    if public_key_der(cert) != public_key_der(key):
        raise PairMismatchError(f"{key_name} does not match {cert_name}: their public keys differ")


def verify_pair(
    cert_pem: bytes,
    key_pem: bytes,
    *,
    cert_name: str = "certificate",
    key_name: str = "private key",
) -> x509.Certificate:
    """Check that ``key_pem`` is the private key of the (first) certificate in ``cert_pem``.

    Returns the parsed certificate.  Raises :class:`PairMismatchError` if they
    do not belong together and :class:`CertsError` if either cannot be parsed.
    """
    cert = parse_certificates(cert_pem, cert_name)[0]
    check_pair(cert, parse_private_key(key_pem, key_name), cert_name=cert_name, key_name=key_name)
    return cert


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """True when ``ca``'s key signed ``cert`` (names match and the signature verifies)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_pair(
    cert_path: str | os.PathLike[str],
    key_path: str | os.PathLike[str],
    *,
    attempts: int = 10,
    delay: float = 0.05,
) -> PemPair:
    """Read a serving certificate, then its key, and return them once they match.

    ``tmc-certs`` replaces the key first and the certificate last, each
    atomically.  A reader that reads the certificate and then the key can still
    straddle a rotation (old certificate, new key); this helper notices the
    mismatch and reads both again, up to ``attempts`` times ``delay`` seconds
    apart, before raising :class:`PairMismatchError`.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(attempts):
        cert_pem = read_bytes(cert_path)
        key_pem = read_bytes(key_path)
        try:
            cert = verify_pair(cert_pem, key_pem, cert_name=str(cert_path), key_name=str(key_path))
        except PairMismatchError:
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            continue
        return PemPair(cert_pem, key_pem, cert)
    raise AssertionError("unreachable")  # pragma: no cover
