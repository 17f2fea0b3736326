"""Fixtures for the built-in policy tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Fix ``synctarget.now()`` to an RFC 3339 time."""
    from kcp_tmc.policies.builtin import synctarget
    from kcp_tmc.policies.timefmt import parse_rfc3339

    def fix(when: str) -> None:
        moment = parse_rfc3339(when)
        monkeypatch.setattr(synctarget, "now", lambda: moment)

    return fix
