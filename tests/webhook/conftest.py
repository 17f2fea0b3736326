"""Fixtures of the webhook tests: apps, certificates and a real ``tmc-webhook`` process."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.webhook import create_app
from kcp_tmc.webhook.app import EXTENSION
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, Server, start_server, stop_server


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Build apps with settings (``make_app(engine_config=..., fast_path=False)``); engines closed after."""
    apps: list[Flask] = []

    def build(**settings: Any) -> Flask:
        settings.setdefault("log_reviews", True)
        app = create_app(settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions[EXTENSION].close()


@pytest.fixture(params=[True, False], ids=["fast-path", "flask-routes"])
def client(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> FlaskClient:
    """A test client of the default app, through the fast path and through Flask's routes."""
    return make_app(fast_path=request.param).test_client()


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and serving pair for ``tmc-webhook.tmc-system`` plus ``localhost``/``127.0.0.1``."""
    out = tmp_path_factory.mktemp("certs")
    generate_dir(out, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"])
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``tmc-webhook`` with 2 workers on its own certificate directory (rotation may change it)."""
    tmp = tmp_path_factory.mktemp("server")
    certs = tmp / "certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"])
    srv = start_server(tmp, certs, "--workers", "2", "--header-timeout", "1", "--handshake-timeout", "2")
    yield srv
    stop_server(srv)
    shutil.rmtree(tmp, ignore_errors=True)
