"""The rendered chart against a real kube-apiserver (``KUBEBUILDER_ASSETS``): a server-side dry run.

``kubectl apply --dry-run=server`` with strict field validation runs every manifest through the
apiserver's own OpenAPI schemas, defaulting and validation (and our CRDs for the kcp objects), for
each value set.  cert-manager and prometheus-operator objects are left out: their CRDs are not here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import yaml

from kcp_tmc.testing.envtest import EnvtestUnavailable, RealAPIServer
from tests.charts.chart_kit import NAMESPACE, tool
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
