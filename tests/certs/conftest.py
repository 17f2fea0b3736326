"""Fixtures for the certificate tooling tests: a fixed clock and generated directories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kcp_tmc.certs import CertPaths, generate_dir

#: A fixed "now" so that validity periods are exact.
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def t0() -> datetime:
    return T0


@pytest.fixture
def cert_dir(tmp_path: Path) -> CertPaths:
    """A directory generated at T0 for Service tmc-webhook in kcp-tmc."""
    return generate_dir(tmp_path / "certs", service="tmc-webhook", namespace="kcp-tmc", now=T0)


def snapshot_dir(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file's bytes and mode, to show that a refused command changed nothing."""
    return {p.name: (p.read_bytes(), p.stat().st_mode) for p in sorted(directory.iterdir())}


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[bytes, int]]]:
    return snapshot_dir
