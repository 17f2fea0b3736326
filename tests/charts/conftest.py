"""The chart tests need helm (``make test`` unpacks it into .venv/bin); without it they skip."""

from __future__ import annotations

import pytest

from tests.charts.chart_kit import HELM_MISSING, tool


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if tool("helm") is not None:
        return
    skip = pytest.mark.skip(reason=HELM_MISSING)
    for item in items:
        if "tests/charts/" in item.nodeid:
            item.add_marker(skip)
