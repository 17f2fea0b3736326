"""Shared test set-up.

The project's pytest plugin (``kcp_tmc.policies.testing``) is registered as an
entry point for users; here it is loaded after coverage has started (the
entry point is disabled in ``addopts``), so that its import is measured.

Hypothesis: no per-example deadline (two loaded cores make timings noisy and
the property, not the speed, is under test), and in CI (``CI`` set) a fixed
seed, so that a landing is judged on the examples a developer ran too.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("kcp-tmc", deadline=None)
settings.register_profile("kcp-tmc-ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("kcp-tmc-ci" if os.environ.get("CI") else "kcp-tmc")

pytest_plugins = ["kcp_tmc.policies.testing"]


#: The suites that run several components together, for ``make test-integration`` (which adds the
#: ``realapi`` ones); ``make test`` runs them too.
INTEGRATION = (
    "tests/test_packaging.py",
    "tests/test_user_story.py",
    "tests/test_users_day.py",
    "tests/charts/",
    "tests/conformance/",
    "tests/reconcilers/test_reconciler_cluster_e2e.py",
    "tests/reconcilers/test_reconciler_synctarget_e2e.py",
    "tests/reconcilers/test_reconciler_leader_election.py",
)


#: The modules with the longest tests (half a minute and more each), longest first: run first, so that
#: ``pytest -n`` does not end with one worker still on a long test while the others idle.
LONG_FIRST = (
    "tests/test_users_day.py",
    "tests/webhook/test_webhook_quota_race.py",
    "tests/charts/test_chart_certs_job.py",
    "tests/reconcilers/test_reconciler_faults.py",
    "tests/webhook/test_webhook_quota_faults.py",
    "tests/webhook/test_webhook_faults.py",
    "tests/reconcilers/test_reconciler_cluster_concurrency.py",
    "tests/reconcilers/test_reconciler_leader_election.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)


def pytest_collection_modifyitems(items):
    for item in items:
        if item.nodeid.startswith(INTEGRATION):
            item.add_marker(pytest.mark.integration)
    # A stable sort: the order within a module (and its module-scoped fixtures) is kept.
    items.sort(key=_rank)
