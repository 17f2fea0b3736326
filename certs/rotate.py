"""Rotation of a certificate directory without an outage.

What ``rotate`` does, in this order, each step only when its condition holds:

1. **Drop old CAs.**  ``ca.crt`` may hold more than one CA (newest first) after
   a CA roll.  Once the serving certificate is signed by the newest CA, the
   older CAs are no longer needed and are removed from the bundle.  CAs that
   have expired are removed too, unless they signed the serving certificate.
2. **Roll the CA** when less than a third of the newest CA's lifetime is left.
   A new CA with the same lifetime is created; ``ca.key`` becomes its key and
   ``ca.crt`` holds the new CA *and* the previous one (new first), so a
   ``caBundle`` built from it trusts serving certificates from either.
3. **Renew the serving certificate** when less than a third of its lifetime is
   left, or when forced.  It keeps its names (CN and SANs).  It is signed by
   the newest CA, except in the run that rolls the CA: then it is signed by
   the outgoing CA, because the cluster's ``caBundle`` does not trust the new
   CA until ``tmc-certs inject`` has run.

So a CA roll takes three steps, with ``inject`` after each rotate:
rotate (bundle = new + old) -> rotate when the serving certificate is due, or
``rotate --force`` (serving certificate moves to the new CA) -> rotate (bundle =
new CA only).  At every point the served certificate is trusted by the bundle
that was injected before it.

Write order and readers
-----------------------
Files are replaced one by one, each atomically (:func:`files.atomic_write`), in
the order ``ca.key``, ``ca.crt``, ``tls.key``, ``tls.crt``, while holding an
exclusive lock on the directory.  The bundle is complete before the serving
certificate changes, and the serving key is in place before its certificate:
the certificate changing is the signal that a new pair is complete, so a
watcher that reloads when ``tls.crt`` changes always finds the matching key.
No ordering of two separate files can stop a reader that reads ``tls.crt`` and
then ``tls.key`` from straddling the two renames (old certificate, new key);
:func:`kcp_tmc.certs.inspect.load_pair` detects that and reads again.

Refusals (:class:`CertsError`, nothing written): an unreadable file, a key that
does not match its certificate, a serving certificate not signed by any CA in
the bundle, or an expired newest CA (rotation cannot keep serving alive any
more: generate a new CA with ``tmc-certs generate --force`` and inject it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kcp_tmc.certs import files, generate, inspect
from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.files import CertPaths


@dataclass(frozen=True)
class DirectoryState:
    """A certificate directory as read from disk, checked for consistency."""

    paths: CertPaths
    bundle: list[x509.Certificate]
    ca_key: ec.EllipticCurvePrivateKey
    serving: x509.Certificate
    serving_key: ec.EllipticCurvePrivateKey

    @property
    def ca(self) -> generate.CA:
        """The newest CA (first in the bundle) with its key."""
        return generate.CA(self.bundle[0], self.ca_key)

    def serving_issuer(self) -> x509.Certificate:
        """The CA in the bundle that signed the serving certificate."""
        for ca in self.bundle:
            if inspect.issued_by(self.serving, ca):
                return ca
        raise AssertionError("load_state checked that a CA in the bundle signed it")  # pragma: no cover


@dataclass
class RotationResult:
    """What one rotation changed; ``changed`` is false when nothing was due."""

    ca_rolled: bool = False
    serving_renewed: bool = False
    dropped_cas: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when any file was rewritten."""
        return self.ca_rolled or self.serving_renewed or bool(self.dropped_cas)


def load_state(directory: str | os.PathLike[str]) -> DirectoryState:
    """Read and cross-check the four files of ``directory``; :class:`CertsError` on any problem."""
    paths = CertPaths.of(directory)
    bundle = inspect.load_certificates(paths.ca_crt)
    ca_key = inspect.load_private_key(paths.ca_key)
    inspect.check_pair(bundle[0], ca_key, cert_name=f"{paths.ca_crt} (first CA)", key_name=str(paths.ca_key))
    serving = inspect.load_certificates(paths.tls_crt)[0]
    serving_key = inspect.load_private_key(paths.tls_key)
    inspect.check_pair(serving, serving_key, cert_name=str(paths.tls_crt), key_name=str(paths.tls_key))
    if not any(inspect.issued_by(serving, ca) for ca in bundle):
        raise CertsError(f"{paths.tls_crt} is not signed by any CA in {paths.ca_crt}")
    return DirectoryState(paths, bundle, ca_key, serving, serving_key)


def rotate_dir(
    directory: str | os.PathLike[str],
    *,
    force: bool = False,
    now: datetime | None = None,
    fraction: float = inspect.RENEWAL_FRACTION,
) -> RotationResult:
    """Rotate the CA and serving certificate in ``directory`` as described in this module."""
    now = generate.normalize_now(now)
    paths = CertPaths.of(directory)
    with files.directory_lock(_existing_directory(paths)):
        state = load_state(directory)
        return _rotate(state, force=force, now=now, fraction=fraction)


def _existing_directory(paths: CertPaths) -> str:
    if not paths.directory.is_dir():
        raise CertsError(f"{paths.directory}: not a directory")
    return str(paths.directory)


def _rotate(state: DirectoryState, *, force: bool, now: datetime, fraction: float) -> RotationResult:
    result = RotationResult()
    newest = state.bundle[0]
    if newest.not_valid_after_utc <= now:
        raise CertsError(expired_ca_message(state.paths, newest, "a rotation cannot restore trust"))
    issuer = state.serving_issuer()

    bundle = list(state.bundle)
    if inspect.issued_by(state.serving, newest):
        dropped = bundle[1:]
        bundle = bundle[:1]
    else:
        dropped = [ca for ca in bundle[1:] if ca.not_valid_after_utc <= now and ca is not issuer]
        bundle = [ca for ca in bundle if not any(ca is d for d in dropped)]
    result.dropped_cas = [common_name(ca) for ca in dropped]
    for ca in dropped:
        result.messages.append(f"dropped CA {common_name(ca)} from {state.paths.ca_crt.name}")

    signing_ca = state.ca
    new_ca: generate.CA | None = None
    if inspect.is_due(newest, fraction, now):
        new_ca = generate.new_ca(_next_ca_name(newest, now), days=_lifetime_days(newest), now=now)
        bundle.insert(0, new_ca.cert)
        result.ca_rolled = True
        result.messages.append(
            f"rolled CA: {common_name(new_ca.cert)} added to {state.paths.ca_crt.name} "
            f"before {common_name(newest)}, which expires at "
            f"{generate.format_time(newest.not_valid_after_utc)}"
        )

    pair: generate.ServingPair | None = None
    serving_due = inspect.is_due(state.serving, fraction, now)
    if force or serving_due:
        pair = _reissue(state.serving, issuer, signing_ca, now)
        why = "forced" if force and not serving_due else "due"
        result.serving_renewed = True
        result.messages.append(
            f"renewed serving certificate ({why}): signed by {common_name(signing_ca.cert)}, "
            f"expires at {generate.format_time(pair.cert.not_valid_after_utc)}"
        )

    if new_ca is not None or dropped:
        generate.write_ca(state.paths, [_pem(ca) for ca in bundle], new_ca.key_pem if new_ca else None)
    if pair is not None:
        generate.write_serving(state.paths, pair.cert_pem, pair.key_pem)
    return result


def expired_ca_message(paths: CertPaths, ca: x509.Certificate, consequence: str) -> str:
    """The refusal for an expired newest CA, with the way out."""
    return (
        f"the CA in {paths.ca_crt} expired at {generate.format_time(ca.not_valid_after_utc)}; {consequence}: "
        "run 'tmc-certs generate --force' and inject the new caBundle"
    )


def _reissue(
    old: x509.Certificate, old_issuer: x509.Certificate, ca: generate.CA, now: datetime
) -> generate.ServingPair:
    try:
        san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertsError("the serving certificate has no subjectAltName to renew it with") from None
    dns = san.get_values_for_type(x509.DNSName)
    ips: list[IPv4Address | IPv6Address] = [
        ip for ip in san.get_values_for_type(x509.IPAddress) if isinstance(ip, IPv4Address | IPv6Address)
    ]
    days = generate.SERVING_DAYS
    # A certificate cut short by its CA's expiry does not tell its intended lifetime.
    if old.not_valid_after_utc != old_issuer.not_valid_after_utc:
        days = _lifetime_days(old)
    return generate.issue_for_names(
        ca, common_name=common_name(old), dns=dns, ips=[str(ip) for ip in ips], days=days, now=now
    )


def _lifetime_days(cert: x509.Certificate) -> int:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc - generate.CLOCK_SKEW
    return max(1, round(lifetime / timedelta(days=1)))


def _next_ca_name(ca: x509.Certificate, now: datetime) -> str:
    base = common_name(ca).rsplit("@", 1)[0] or "kcp-tmc-ca"
    return f"{base}@{int(now.timestamp())}"


def common_name(cert: x509.Certificate) -> str:
    """The certificate's CN, or its whole subject when it has none."""
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else cert.subject.rfc4514_string()


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
