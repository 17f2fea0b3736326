"""kcp_tmc.certs: certificates for the admission webhook.

Generates an ECDSA P-256 CA and a serving certificate for a Service, rotates
them without outage (old and new CA side by side in ``caBundle`` while the
serving certificate moves to the new CA), injects the bundle into webhook
configurations and the pair into a ``kubernetes.io/tls`` Secret.  The CLI is
``tmc-certs`` (:mod:`kcp_tmc.certs.cli`).

In memory::

    from kcp_tmc.certs import new_ca, issue_serving
    ca = new_ca()
    pair = issue_serving(ca, service="tmc-webhook", namespace="kcp-tmc")

On disk::

    from kcp_tmc.certs import generate_dir
    paths = generate_dir(out, service="tmc-webhook", namespace="kcp-tmc")
"""

from kcp_tmc.certs.errors import CertsError
from kcp_tmc.certs.files import CertPaths, atomic_write
from kcp_tmc.certs.generate import CA, ServingPair, generate_dir, issue_serving, new_ca, service_dns_names
from kcp_tmc.certs.inspect import (
    PairMismatchError,
    PemPair,
    certificate_expiry,
    load_pair,
    renewal_due,
    verify_pair,
)
from kcp_tmc.certs.rotate import RotationResult, rotate_dir

__all__ = [
    "CA",
    "CertPaths",
    "CertsError",
    "PairMismatchError",
    "PemPair",
    "RotationResult",
    "ServingPair",
    "atomic_write",
    "certificate_expiry",
    "generate_dir",
    "issue_serving",
    "load_pair",
    "new_ca",
    "renewal_due",
    "rotate_dir",
    "service_dns_names",
    "verify_pair",
]
