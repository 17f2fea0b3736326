"""Shared test set-up.

The project's pytest plugin (``kcp_tmc.policies.testing``) is registered as an
entry point for users; here it is loaded after coverage has started (the
entry point is disabled in ``addopts``), so that its import is measured.
"""

pytest_plugins = ["kcp_tmc.policies.testing"]
