"""The race: 200 concurrent pod creates through two ``tmc-webhook`` processes against one quota.

The FederatedQuota admits exactly 50 pods (``requests.cpu: 50``, one CPU each).  Two webhook
processes each serve half the pods (an ``objectSelector`` per webhook), so each decides from its
own cache while the other reserves behind its back: only the reservation's resourceVersion
precondition keeps the count.  Exactly 50 must be admitted and ``status.overallUsed`` must read
50 afterwards, five rounds in a row.  On the fake API server always; through a real
kube-apiserver when ``KUBEBUILDER_ASSETS`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.webhook.quota_race import (
    CREATES,
    LIMIT,
    create,
    pods_now,
    quota_api,
    quota_webhooks,
    reset,
    used_now,
)
from tests.webhook.webhook_helpers import Server

pytestmark = pytest.mark.slow

ROUNDS = 5


@pytest.fixture(
    params=["fake", pytest.param("real", marks=[pytest.mark.realapi, pytest.mark.realapi_long])],
    scope="module",
)
def api(request: pytest.FixtureRequest) -> Iterator[Any]:
    with quota_api(request.param) as server:
        yield server


@pytest.fixture(scope="module")
def webhooks(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    with quota_webhooks(api, tmp_path_factory.mktemp("race")) as servers:
        yield servers


def test_exactly_the_quota_is_admitted_under_concurrency(api: Any, webhooks: list[Server]) -> None:
    for round_ in range(ROUNDS):
        with ThreadPoolExecutor(max_workers=24) as pool:
            answers = list(pool.map(lambda i: create(api, i), range(CREATES)))
        admitted = [a for a in answers if a[0] == 201]
        refused = [a for a in answers if a[0] != 201]
        assert len(admitted) == LIMIT, (round_, refused[:3])
        assert {status for status, _ in refused} == {403}, [a for a in refused if a[0] != 403][:3]
        assert all("exceeded quota: team-a, requested: requests.cpu=1" in m for _, m in refused), refused[:3]
        assert used_now(api) == str(LIMIT)
        assert len(pods_now(api)) == LIMIT
        reset(api)  # the next round starts empty, as the quota manager would then report
