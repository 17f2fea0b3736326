"""Shared test set-up.

The project's pytest plugin (``kcp_tmc.policies.testing``) is registered as an
entry point for users; here it is loaded after coverage has started (the
entry point is disabled in ``addopts``), so that its import is measured.

Hypothesis: no per-example deadline (two loaded cores make timings noisy and
the property, not the speed, is under test), and in CI (``CI`` set) a fixed
seed, so that a landing is judged on the examples a developer ran too.
"""

import os

from hypothesis import settings

settings.register_profile("kcp-tmc", deadline=None)
settings.register_profile("kcp-tmc-ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("kcp-tmc-ci" if os.environ.get("CI") else "kcp-tmc")

pytest_plugins = ["kcp_tmc.policies.testing"]
