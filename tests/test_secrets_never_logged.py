"""Credentials never reach a log: a full run of webhook and reconciler, then every log is searched.

The run: a fake kcp that needs a bearer token (the reconciler's kubeconfig carries it), a fake
physical cluster behind a token of its own, Cluster objects whose kubeconfig Secrets hold that
token, a token for an unreachable server and a kubeconfig that does not parse, plus a password
in the same Secret.  Our webhook is registered with kcp (it reviews what the reconciler writes)
and a ``tmc-webhook`` process is sent reviews of the Secrets themselves, all at debug level.  No
secret value, plain or base64, may appear in any log line or in any status the reconciler writes.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kcp_tmc.certs.generate import generate_dir
from kcp_tmc.policies.reviews import make_review
from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.resources import CLUSTERS, SECRETS, SYNCTARGETS
from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing.webhook import serve_webhook
from tests.reconcilers.reconciler_processes import Reconciler, crds, wait_for
from tests.webhook.load import read_response, request
from tests.webhook.webhook_helpers import NAMESPACE, SERVICE, free_port, start_server, stop_server

pytestmark = pytest.mark.slow

KCP_TOKEN = "kcp-" + secrets.token_hex(16)
MEMBER_TOKEN = "member-" + secrets.token_hex(16)
UNREACHABLE_TOKEN = "unreachable-" + secrets.token_hex(16)
BROKEN_TOKEN = "broken-" + secrets.token_hex(16)
PASSWORD = "password-" + secrets.token_hex(16)
SECRET_VALUES = (KCP_TOKEN, MEMBER_TOKEN, UNREACHABLE_TOKEN, BROKEN_TOKEN, PASSWORD)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def forbidden_strings() -> list[str]:
    """Pieces no log may hold: any 8 characters of each value's random part, and each value's base64.

    Pieces, not whole values: a message that quotes a line cut short still gives most of a token away.
    """
    pieces = [b64(v) for v in SECRET_VALUES]
    for value in SECRET_VALUES:
        rand = value.rsplit("-", 1)[1]
        pieces.extend(rand[i : i + 8] for i in range(len(rand) - 7))
    return pieces


class Collect(logging.Handler):
    """Every record of this process, formatted with its arguments and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + " " + json.dumps(record.__dict__, default=repr))


@pytest.fixture
def collected() -> Iterator[Collect]:
    handler = Collect()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def secret(name: str, kubeconfig: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"kubeconfig": b64(kubeconfig), "password": b64(PASSWORD)},
    }


def cluster(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "tmc.kcp.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {"kubeconfigSecretRef": {"namespace": "default", "name": name}, "syncMode": "Push"},
    }


def unreachable_kubeconfig() -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "far", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}},
            ],
            "users": [{"name": "u", "user": {"token": UNREACHABLE_TOKEN}}],
            "contexts": [{"name": "c", "context": {"cluster": "far", "user": "u"}}],
            "current-context": "c",
        }
    )


# A kubeconfig a person broke by hand (a quote left open): the parser's error quotes that line.
BROKEN_KUBECONFIG = f"""apiVersion: v1
users:
- name: u
  user:
    token: "{BROKEN_TOKEN}
"""


def ready_of(obj: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None)


def test_no_token_kubeconfig_or_secret_value_is_logged(tmp_path: Path, collected: Collect) -> None:
    member_tokens = {MEMBER_TOKEN: ("member-admin", ["system:authenticated"])}
    kcp_tokens = {KCP_TOKEN: ("tmc-reconciler", ["system:authenticated"])}
    with (
        FakeAPIServer(tokens=kcp_tokens) as kcp,
        FakeAPIServer(tokens=member_tokens) as member,
        serve_webhook({"log_reviews": True}) as webhook,
    ):
        for crd in crds():
            kcp.install_crd(crd)
        webhook.register(kcp)
        kubeconfig = kcp.write_kubeconfig(str(tmp_path / "kcp.kubeconfig"), token=KCP_TOKEN, user="tmc")
        member_kubeconfig = Path(member.write_kubeconfig(str(tmp_path / "m.kubeconfig"), token=MEMBER_TOKEN))
        with KubeClient.from_kubeconfig_file(kcp.kubeconfig_path, timeout=5.0) as admin:
            admin.create(SECRETS, secret("member", member_kubeconfig.read_text()), namespace="default")
            admin.create(SECRETS, secret("far", unreachable_kubeconfig()), namespace="default")
            admin.create(SECRETS, secret("broken", BROKEN_KUBECONFIG), namespace="default")
            for name in ("member", "far", "broken"):
                admin.create(CLUSTERS, cluster(name))
            reconciler = Reconciler(
                kubeconfig, tmp_path / "reconciler.log", "--log-level", "debug", "--poll-interval", "300ms"
            )
            try:

                def settled() -> bool:
                    states = {n: ready_of(admin.get(CLUSTERS, n)) for n in ("member", "far", "broken")}
                    return all(states.values()) and bool(admin.list(SYNCTARGETS)[0])

                wait_for(settled, 30, "the Clusters did not get their Ready conditions")
                statuses = json.dumps([admin.get(CLUSTERS, n)["status"] for n in ("member", "far", "broken")])
                ready = {n: ready_of(admin.get(CLUSTERS, n)) for n in ("member", "far", "broken")}
            finally:
                reconciler.stop()
        # The review path sees the Secrets too (a webhook registered for everything would).
        reviews = [make_review(secret(n, BROKEN_KUBECONFIG), uid=f"u-{n}") for n in ("a", "b")]
        served = _review_with_a_webhook_process(tmp_path, [json.dumps(r).encode() for r in reviews])
    assert ready["member"] is not None and ready["member"]["status"] == "True", ready
    assert ready["broken"] is not None and ready["broken"]["reason"] == "InvalidKubeConfig", ready
    assert ready["broken"]["message"] == (
        "Error invalid kubeconfig: cannot parse kubeconfig: line 6: "
        "while scanning a quoted scalar, found unexpected end of stream"
    )
    assert ready["far"] is not None and ready["far"]["status"] == "False", ready
    logs = {
        "reconciler": (tmp_path / "reconciler.log").read_text(),
        "tmc-webhook": served,
        "in-process (webhook, fake servers, clients)": "\n".join(collected.lines),
        "Cluster statuses": statuses,
    }
    assert len(logs["reconciler"].splitlines()) > 10  # debug level: the run was logged, and searched
    assert "review" in logs["tmc-webhook"]
    leaks = [(where, value) for where, text in logs.items() for value in forbidden_strings() if value in text]
    assert leaks == []


def _review_with_a_webhook_process(tmp_path: Path, bodies: list[bytes]) -> str:
    certs = tmp_path / "webhook-certs"
    generate_dir(certs, service=SERVICE, namespace=NAMESPACE, dns=["localhost"], ips=["127.0.0.1"])
    server = start_server(tmp_path, certs, "--workers", "1", "--log-level", "debug")
    try:
        with server.connect() as tls:
            for body in bodies:
                tls.sendall(request("/validate", body))
                assert read_response(tls)[0] == 200
            # And a broken one: the error names the position, never the bytes around it.
            tls.sendall(request("/validate", bodies[0][:-40]))
            assert read_response(tls)[0] == 400
    finally:
        stop_server(server)
    return server.logs()
