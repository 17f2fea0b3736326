"""Throwaway TLS material for the fake server: a CA and a serving certificate for 127.0.0.1.

Generated once per process with :mod:`kcp_tmc.certs` (ECDSA P-256, valid for a day) and shared
by every server the process starts; the CA is what kubeconfigs carry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from kcp_tmc.certs.generate import issue_for_names, new_ca


@dataclass(frozen=True)
class ServingCerts:
    """PEM bytes of the CA certificate, the serving certificate and its key."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


@functools.cache
def serving_certs() -> ServingCerts:
    """The process-wide CA and serving certificate (SANs: localhost, 127.0.0.1, ::1)."""
    ca = new_ca("kcp-tmc fake apiserver CA", days=1)
    pair = issue_for_names(
        ca, common_name="kube-apiserver", dns=["localhost"], ips=["127.0.0.1", "::1"], days=1
    )
    return ServingCerts(ca_pem=ca.cert_pem, cert_pem=pair.cert_pem, key_pem=pair.key_pem)
