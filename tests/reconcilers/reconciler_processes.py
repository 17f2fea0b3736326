"""Helpers of the reconciler tests: our CRDs, and ``tmc-reconciler`` run as real processes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kcp_tmc.reconcilers.client import KubeClient
from kcp_tmc.reconcilers.resources import SECRETS

CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "kcp-tmc" / "crds"


def crds() -> list[dict[str, Any]]:
    """The CustomResourceDefinitions the reconciler needs, from charts/kcp-tmc/crds."""
    return [yaml.safe_load(path.read_text(encoding="utf-8")) for path in sorted(CRD_DIR.glob("*.yaml"))]


def store_kubeconfig(kube: KubeClient, name: str, kubeconfig: bytes) -> None:
    """Create Secret ``default/<name>`` holding ``kubeconfig`` under the key a Cluster reads by default."""
    kube.create(
        SECRETS,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "data": {"kubeconfig": base64.b64encode(kubeconfig).decode()},
        },
        namespace="default",
    )


FAST_LEASES = [
    "--leader-elect-lease-duration=2s",
    "--leader-elect-renew-deadline=1500ms",
    "--leader-elect-retry-period=250ms",
    "--poll-interval=300ms",
]


class Reconciler:
    """One ``tmc-reconciler`` process; its JSON log lines are kept in a file."""

    def __init__(self, kubeconfig: str, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcp_tmc.reconcilers.cli",
                "--kubeconfig",
                kubeconfig,
                "--metrics-bind=127.0.0.1:0",
                *args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=env,
        )

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line})
        return out

    def metrics_port(self, timeout: float = 10.0) -> int:
        def port() -> int | None:
            for line in self.lines():
                if line.get("message") == "started":
                    return int(line["metrics_port"])
            return None

        return wait_for(port, timeout, "the reconciler did not start")

    def stop(self, sig: str = "TERM", timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            if sig == "KILL":
                self.process.kill()
            else:
                self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self._log.close()
        return code


def wait_for(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)
