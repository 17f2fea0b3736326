"""The CustomResourceDefinitions kcp-tmc ships, for installing on a test API server.

They are the files of ``charts/kcp-tmc/crds``, installed as package data of
``kcp_tmc.policies`` (``crds/*.yaml``), so the CRDs a test installs are the ones the chart
deploys::

    from kcp_tmc.testing import FakeAPIServer
    from kcp_tmc.testing.crds import crd, install_tmc_crds

    with FakeAPIServer() as api:
        install_tmc_crds(api)                            # all of them
        api.install_crd(crd("synctargets.workload.kcp.io"))  # or one

Every call returns fresh copies: a test may change what it gets without affecting the next one.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import yaml

__all__ = ["CRDNotFoundError", "CRDServer", "all_crds", "crd", "crd_names", "install_tmc_crds"]

_PACKAGE = "kcp_tmc.policies"
_FOLDER = "crds"
#: libyaml's safe loader where PyYAML has it (the CRD files are large).
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CRDNotFoundError(LookupError):
    """No shipped CRD has that name, or a short name matches several; the message lists the names."""


class CRDServer(Protocol):
    """What :func:`install_tmc_crds` needs: ``FakeAPIServer`` and ``RealAPIServer`` both have it."""

    def install_crd(self, crd: dict[str, Any]) -> Any:
        """Create the CustomResourceDefinition and return once it is served."""


@functools.cache
def _load() -> tuple[dict[str, Any], ...]:
    folder = importlib.resources.files(_PACKAGE) / _FOLDER
    found: list[dict[str, Any]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for doc in yaml.load_all(entry.read_text(encoding="utf-8"), Loader=_LOADER):
            # A chart file may hold several documents, and an empty one between separators.
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                found.append(doc)
    if not found:
        raise FileNotFoundError(
            f"no CustomResourceDefinition found in the package data {_PACKAGE}/{_FOLDER}; "
            "is kcp-tmc installed with its data files?"
        )
    return tuple(sorted(found, key=lambda d: str(d["metadata"]["name"])))


def crd_names() -> list[str]:
    """The names (``plural.group``) of the shipped CRDs, sorted."""
    return [str(d["metadata"]["name"]) for d in _load()]


def all_crds() -> list[dict[str, Any]]:
    """Every shipped CRD (fresh copies), sorted by name."""
    return [copy.deepcopy(d) for d in _load()]


def crd(name: str) -> dict[str, Any]:
    """The shipped CRD called ``name`` (a fresh copy).

    ``name`` is the CRD's name, ``plural.group`` (``"synctargets.workload.kcp.io"``), or just the
    plural (``"synctargets"``), singular or kind (any case) when only one CRD has it.  Raises
    :class:`CRDNotFoundError` listing the names otherwise.
    """
    docs = _load()
    for doc in docs:
        if doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    wanted = name.lower()
    matches = [doc for doc in docs if wanted in _short_names(doc)]
    if len(matches) == 1:
        return copy.deepcopy(matches[0])
    known = ", ".join(crd_names())
    if matches:
        several = ", ".join(str(d["metadata"]["name"]) for d in matches)
        raise CRDNotFoundError(f"{name!r} names several CRDs ({several}): use the full name")
    raise CRDNotFoundError(f"no shipped CRD is called {name!r} (known: {known})")


def _short_names(doc: Mapping[str, Any]) -> set[str]:
    names = doc["spec"]["names"]
    found = {names.get("plural", ""), names.get("singular", ""), names.get("kind", "")}
    found.update(names.get("shortNames") or ())
    return {str(n).lower() for n in found if n}


def install_tmc_crds(api: CRDServer, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Install the shipped CRDs (all of them, or those ``names`` name, see :func:`crd`) on ``api``.

    Returns what the server answered for each, in order.  Every name is resolved before the
    first CRD is installed, so a typo installs nothing.
    """
    wanted = all_crds() if names is None else [crd(n) for n in names]
    return [api.install_crd(doc) for doc in wanted]
