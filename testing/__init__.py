"""kcp_tmc.testing."""
