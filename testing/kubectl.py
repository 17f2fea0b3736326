"""Run the real ``kubectl`` against a test API server.

:func:`kubectl` points ``kubectl`` at the server's kubeconfig and gives every call its own
empty ``HOME`` and discovery cache: test servers come and go on ephemeral ports, and a cache
left by an earlier server on the same port would describe resources this one does not serve.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Any

__all__ = ["KubectlNotFoundError", "kubectl"]


class KubectlNotFoundError(FileNotFoundError):
    """``kubectl`` is not on ``PATH``."""


def kubectl(
    api: Any, *args: str, input: str | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl <args>`` against ``api`` (anything with ``kubeconfig_path``) and return the result.

    Output is captured as text; a nonzero exit is returned, not raised, so tests can assert
    on ``returncode`` and ``stderr``.  ``input`` is sent on stdin (``kubectl apply -f -``).
    Raises :class:`KubectlNotFoundError` when ``kubectl`` is not installed and
    :class:`subprocess.TimeoutExpired` after ``timeout`` seconds.
    """
    binary = shutil.which("kubectl")
    if binary is None:
        raise KubectlNotFoundError("kubectl is not on PATH; install it or skip this test without it")
    with tempfile.TemporaryDirectory(prefix="kcp-tmc-kubectl-") as home:
        env = {
            **os.environ,
            "KUBECONFIG": str(api.kubeconfig_path),
            "HOME": home,
            "KUBECACHEDIR": os.path.join(home, "cache"),
        }
        return subprocess.run(  # noqa: S603 (a fixed argv of binaries the caller named, no shell)
            [binary, *args],
            input=input,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
