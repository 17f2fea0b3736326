"""kcp_tmc.testing: a fake Kubernetes API server for tests, importable by users.

    from kcp_tmc.testing import FakeAPIServer

    with FakeAPIServer() as api:
        kubernetes.config.load_kube_config(api.kubeconfig_path)
        ...

See ``docs/fake-apiserver.md`` for what it serves and where it deliberately
differs from kube-apiserver.
"""

from kcp_tmc.testing.crds import all_crds, crd, install_tmc_crds
from kcp_tmc.testing.errors import FieldError, StatusError
from kcp_tmc.testing.instruments import Counters, Faults, WriteLog, WriteRecord
from kcp_tmc.testing.kubectl import kubectl
from kcp_tmc.testing.server import FakeAPIServer, HTTPReply
from kcp_tmc.testing.types import AdmissionAttributes, AdmissionHook, AdmissionResult, StoreReader
from kcp_tmc.testing.webhook import serve_webhook

__all__ = [
    "AdmissionAttributes",
    "AdmissionHook",
    "AdmissionResult",
    "Counters",
    "FakeAPIServer",
    "Faults",
    "FieldError",
    "HTTPReply",
    "StatusError",
    "StoreReader",
    "WriteLog",
    "WriteRecord",
    "all_crds",
    "crd",
    "install_tmc_crds",
    "kubectl",
    "serve_webhook",
]
