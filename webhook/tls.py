"""The webhook's serving TLS; the reloading context lives in kcp_tmc.certs.reloading (the VW uses it too)."""

from kcp_tmc.certs.reloading import ReloadingTLS, TLSConfigError, server_context

__all__ = ["ReloadingTLS", "TLSConfigError", "server_context"]
