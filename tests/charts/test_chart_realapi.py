"""The rendered chart against a real kube-apiserver (``KUBEBUILDER_ASSETS``): a server-side dry run.

``kubectl apply --dry-run=server`` with strict field validation runs every manifest through the
apiserver's own OpenAPI schemas, defaulting and validation (and our CRDs for the kcp objects), for
each value set.  cert-manager and prometheus-operator objects are left out: their CRDs are not here.
And helm itself against that server: an upgrade renders the caBundle the certificate Job injected.
(The fake server cannot stand in for this one: helm reads OpenAPI as protobuf.)
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer
from tests.charts.chart_kit import CHART, NAMESPACE, RELEASE, SAFE_LOADER, find, tool
from tests.charts.test_chart_render import FOREIGN_KINDS, VARIANTS, render
from tests.reconcilers.reconciler_processes import crds

pytestmark = pytest.mark.realapi


@pytest.fixture(scope="module")
def real() -> Iterator[RealAPIServer]:
    try:
        server = RealAPIServer()
    except EnvtestUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        for crd in crds():
            server.install_crd(crd)
        for namespace in (NAMESPACE, "clusters"):
            server.request_json("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        yield server


def _kubectl(real: RealAPIServer, *args: str, input: str) -> tuple[int, str, str]:
    binary = tool("kubectl")
    assert binary is not None, "kubectl is not installed: run `make kube-tools`"
    done = subprocess.run(
        [binary, "--kubeconfig", real.kubeconfig_path, *args],
        input=input, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_apiserver_accepts_every_manifest_in_a_strict_dry_run(real: RealAPIServer, variant: str) -> None:
    manifests = [m for m in render(*VARIANTS[variant])
                 if m["kind"] not in FOREIGN_KINDS and m["kind"] != "CustomResourceDefinition"]  # fmt: skip
    code, out, err = _kubectl(
        real, "apply", "--dry-run=server", "--validate=strict", "-f", "-", input=yaml.safe_dump_all(manifests)
    )
    assert code == 0, err
    assert len(out.splitlines()) == len(manifests), out
    assert all(line.endswith("(server dry run)") for line in out.splitlines()), out


def test_an_upgrade_keeps_the_bundle_the_certificate_job_injected(
    real: RealAPIServer, tmp_path: Path
) -> None:
    # helm reads the CA Secret with lookup when it talks to a cluster (install, upgrade,
    # --dry-run=server): the configurations it renders carry the bundle instead of dropping it.
    ca_pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    secret = {"metadata": {"name": f"{RELEASE}-webhook-ca"}, "type": "Opaque",
              "data": {"ca.crt": base64.b64encode(ca_pem).decode(), "ca.key": "eA=="}}  # fmt: skip
    real.request_json("POST", f"/api/v1/namespaces/{NAMESPACE}/secrets", secret)
    helm_bin = tool("helm")
    assert helm_bin is not None
    done = subprocess.run(
        [helm_bin, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=server",
         "--kubeconfig", real.kubeconfig_path],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifests = [d for d in yaml.load_all(done.stdout, Loader=SAFE_LOADER) if d]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        hooks = find(manifests, kind)["webhooks"]
        assert {h["clientConfig"]["caBundle"] for h in hooks} == {secret["data"]["ca.crt"]}
