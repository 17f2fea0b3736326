"""The Cluster registration flow against two real kube-apiservers (one as kcp, one as the physical cluster).

Opt-in: needs ``KUBEBUILDER_ASSETS`` (a folder with ``etcd`` and ``kube-apiserver``); skipped otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.reconcilers.reconciler_processes import crds, register_and_converge

pytestmark = [
    pytest.mark.realapi,
    pytest.mark.skipif(
        not os.environ.get("KUBEBUILDER_ASSETS"),
        reason="KUBEBUILDER_ASSETS is not set: the real kube-apiserver tests are skipped",
    ),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[object, object]]:
    from kcp_tmc.testing.envtest import RealAPIServer

    with RealAPIServer() as kcp, RealAPIServer() as physical:
        for crd in crds():
            kcp.install_crd(crd)
        yield kcp, physical


def test_registration_on_real_apiservers(servers) -> None:
    kcp, physical = servers
    register_and_converge(kcp, physical)
