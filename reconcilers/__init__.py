"""kcp_tmc.reconcilers."""
