"""The certificate Jobs' script, as rendered, run against the fake API server.

The pre-install Job makes the two Secrets; the post-install Job also puts the CA into the webhook
configurations; the renewal CronJob's run changes nothing while nothing is due, and keeps the CA when
the serving certificate is renewed.  The script runs with /bin/sh and the venv's tmc-certs, finding
the cluster through KUBECONFIG as it finds it through the service account in a pod.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kcp_tmc.testing import FakeAPIServer
from tests.charts.chart_kit import NAMESPACE, RELEASE, find, render

WEBHOOK = f"{RELEASE}-webhook"


def _script(manifests: list[dict[str, Any]], kind: str, name: str) -> str:
    job = find(manifests, kind, name)
    spec = job["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else job["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-ec"]
    script: str = container["args"][0]
    return script


def _run(api: FakeAPIServer, script: str, tmp: Path) -> str:
    # The pod's /tmp is an emptyDir: a fresh one per run.
    tmp.mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "KUBECONFIG": api.kubeconfig_path,
           "HOME": str(tmp)}  # fmt: skip
    pod_dir = "/tmp/certs"  # noqa: S108 (the folder in the pod, replaced by a test folder)
    done = subprocess.run(["/bin/sh", "-ec", script.replace(pod_dir, str(tmp / "certs"))],
                          capture_output=True, text=True, env=env, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _secret(api: FakeAPIServer, name: str) -> dict[str, bytes]:
    found = api.get("v1", "Secret", name, namespace=NAMESPACE)
    assert found is not None, name
    return {k: base64.b64decode(v) for k, v in found["data"].items()}


@pytest.mark.slow
# Many short-lived processes: on two loaded cores this takes minutes, not the default two.
@pytest.mark.timeout(360)
def test_install_then_a_renewal_run(tmp_path: Path) -> None:
    manifests = render()
    with FakeAPIServer() as api:
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        # Before install: the Secrets, generated (nothing to pull yet).
        out = _run(api, _script(manifests, "Job", f"{RELEASE}-certs-pre"), tmp_path / "pre")
        assert f"no Secret {NAMESPACE}/{WEBHOOK}-tls nor {NAMESPACE}/{WEBHOOK}-ca: nothing pulled" in out
        tls, ca = _secret(api, f"{WEBHOOK}-tls"), _secret(api, f"{WEBHOOK}-ca")
        assert sorted(tls) == ["ca.crt", "tls.crt", "tls.key"] and sorted(ca) == ["ca.crt", "ca.key"]
        assert tls["ca.crt"] == ca["ca.crt"]
        # Helm creates the release's objects, among them the configurations, without a bundle.
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            api.create(find(manifests, kind))
        # After install: the same state pulled back, nothing due, the bundle injected.
        out = _run(api, _script(manifests, "Job", f"{RELEASE}-certs-post"), tmp_path / "post")
        assert "nothing due" in out
        bundle = base64.b64encode(ca["ca.crt"]).decode()
        for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            stored = api.get("admissionregistration.k8s.io/v1", kind, RELEASE)
            assert stored is not None
            assert {w["clientConfig"]["caBundle"] for w in stored["webhooks"]} == {bundle}
        assert _secret(api, f"{WEBHOOK}-tls") == tls
        # A renewal run with nothing due writes nothing.
        renew = _script(manifests, "CronJob", f"{RELEASE}-certs-renew")
        out = _run(api, renew, tmp_path / "renew-1")
        assert "nothing due" in out and "caBundle already up to date" in out
        assert _secret(api, f"{WEBHOOK}-tls") == tls
        # A forced renewal (as an operator would run it) keeps the CA and replaces the serving pair.
        out = _run(api, renew.replace('tmc-certs rotate "$dir"', 'tmc-certs rotate --force "$dir"'),
                   tmp_path / "renew-2")  # fmt: skip
        renewed = _secret(api, f"{WEBHOOK}-tls")
        assert renewed["tls.crt"] != tls["tls.crt"] and renewed["ca.crt"] == tls["ca.crt"]
        assert _secret(api, f"{WEBHOOK}-ca") == ca
