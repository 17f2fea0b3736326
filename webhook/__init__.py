"""kcp_tmc.webhook."""
