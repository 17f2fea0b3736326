"""Validation of the names that go into a serving certificate.

The DNS-1123 checks are :mod:`kcp_tmc.policies.validation`'s, which word their
messages like the API server does, so users read what ``kubectl`` would say.
"""

from __future__ import annotations

import ipaddress

from kcp_tmc.policies.validation import is_dns1123_label, is_dns1123_subdomain

__all__ = ["describe", "dns1123_label_errors", "dns_san_errors", "parse_ip"]


def dns1123_label_errors(value: str) -> list[str]:
    """Reasons why ``value`` is not an RFC 1123 label (empty when it is one)."""
    return is_dns1123_label(value)


def dns_san_errors(value: str) -> list[str]:
    """Reasons why ``value`` cannot be a DNS SAN: a subdomain, optionally with one leading ``*.``."""
    if value.startswith("*."):
        return is_dns1123_subdomain(value[2:])
    return is_dns1123_subdomain(value)


def describe(kind: str, value: str, errors: list[str]) -> str:
    """One message for an invalid name: ``invalid <kind> "<value>": <reasons joined by '; '>``."""
    return f'invalid {kind} "{value}": ' + "; ".join(errors)


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse an IP SAN; raises ``ValueError`` with a user-facing message."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f'invalid IP address "{value}": must be an IPv4 or IPv6 address') from None
