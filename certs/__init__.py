"""kcp_tmc.certs."""
