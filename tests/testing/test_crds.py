"""kcp_tmc.testing.crds: the shipped CRDs, found by name, parsed, installed and served."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kcp_tmc.testing import FakeAPIServer
from kcp_tmc.testing import crds as crds_module
from kcp_tmc.testing.crds import CRDNotFoundError, all_crds, crd, crd_names, install_tmc_crds

CHART_CRDS = Path(__file__).resolve().parents[2] / "charts" / "kcp-tmc" / "crds"
SHIPPED = [
    "apiexports.apis.kcp.io",
    "apiresourceimports.apiresource.kcp.io",
    "apiresourceschemas.apis.kcp.io",
    "clusters.tmc.kcp.io",
    "federatedquotas.tmc.kcp.io",
    "locations.scheduling.kcp.io",
    "synctargets.workload.kcp.io",
]


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    """Forget the parsed files before and after a test that changes where they come from."""
    load = crds_module._load
    load.cache_clear()
    yield
    load.cache_clear()


def test_names_are_the_chart_files() -> None:
    assert crd_names() == SHIPPED
    from_files = sorted(
        f"{p.stem.split('_', 1)[1]}.{p.stem.split('_', 1)[0]}" for p in CHART_CRDS.glob("*.yaml")
    )
    assert from_files == SHIPPED


def test_every_crd_is_the_chart_file_parsed() -> None:
    by_name = {d["metadata"]["name"]: d for d in all_crds()}
    for path in CHART_CRDS.glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert by_name[doc["metadata"]["name"]] == doc
        assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
        assert doc["metadata"]["name"] == f"{doc['spec']['names']['plural']}.{doc['spec']['group']}"


@pytest.mark.parametrize("name", ["synctargets.workload.kcp.io", "synctargets", "SyncTarget", "synctarget"])
def test_found_by_name_plural_kind_or_singular(name: str) -> None:
    assert crd(name)["metadata"]["name"] == "synctargets.workload.kcp.io"


def test_copies_are_fresh() -> None:
    first = crd("synctargets")
    first["spec"]["names"]["plural"] = "changed"
    all_crds()[0]["metadata"]["name"] = "changed too"
    assert crd("synctargets")["spec"]["names"]["plural"] == "synctargets"
    assert crd_names() == SHIPPED


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(CRDNotFoundError) as caught:
        crd("widgets")
    assert str(caught.value) == f"no shipped CRD is called 'widgets' (known: {', '.join(SHIPPED)})"


def test_a_short_name_of_several_crds_asks_for_the_full_name(
    monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    ours, other = crd("synctargets"), crd("synctargets")
    other["metadata"]["name"] = "synctargets.example.com"
    other["spec"]["group"] = "example.com"
    monkeypatch.setattr(crds_module, "_load", lambda: (ours, other))
    with pytest.raises(CRDNotFoundError) as caught:
        crd("SyncTarget")
    assert str(caught.value) == (
        "'SyncTarget' names several CRDs (synctargets.workload.kcp.io, synctargets.example.com): "
        "use the full name"
    )
    assert crd("synctargets.example.com")["spec"]["group"] == "example.com"


def test_documents_other_than_crds_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_cache: None
) -> None:
    package = tmp_path / "crdpkg_multi"
    (package / "crds").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    one = crd("locations")
    (package / "crds" / "all.yaml").write_text(
        "---\n"
        + yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap"})
        + "---\n---\n"
        + yaml.safe_dump(one)
    )
    (package / "crds" / "README.md").write_text("not yaml: skipped by name")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(crds_module, "_PACKAGE", "crdpkg_multi")
    crds_module._load.cache_clear()
    assert all_crds() == [one]
    sys.modules.pop("crdpkg_multi", None)


def test_no_data_files_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, fresh_cache: None) -> None:
    monkeypatch.setattr(crds_module, "_FOLDER", "builtin")
    with pytest.raises(FileNotFoundError) as caught:
        crd_names()
    assert str(caught.value) == (
        "no CustomResourceDefinition found in the package data kcp_tmc.policies/builtin; "
        "is kcp-tmc installed with its data files?"
    )


def test_all_install_on_the_fake_and_are_served() -> None:
    with FakeAPIServer() as api:
        installed = install_tmc_crds(api)
        assert [c["metadata"]["name"] for c in installed] == SHIPPED
        for doc in all_crds():
            group, plural = doc["spec"]["group"], doc["spec"]["names"]["plural"]
            for version in doc["spec"]["versions"]:
                discovery = api.http("GET", f"/apis/{group}/{version['name']}").json()
                served = {r["name"]: r for r in discovery["resources"]}
                assert served[plural]["kind"] == doc["spec"]["names"]["kind"]
                assert served[plural]["namespaced"] == (doc["spec"]["scope"] == "Namespaced")
                assert (f"{plural}/status" in served) == ("status" in (version.get("subresources") or {}))
                listed = api.http("GET", f"/apis/{group}/{version['name']}/{plural}")
                assert listed.status == 200, listed.body
                assert json.loads(listed.body)["items"] == []
        groups = {g["name"] for g in api.http("GET", "/apis").json()["groups"]}
        assert {d["spec"]["group"] for d in all_crds()} <= groups


def test_install_some_by_name_and_a_typo_installs_nothing() -> None:
    with FakeAPIServer() as api:
        with pytest.raises(CRDNotFoundError):
            install_tmc_crds(api, ["synctargets", "locatoins"])
        assert api.http("GET", "/apis/workload.kcp.io/v1alpha1").status == 404
        installed = install_tmc_crds(api, ["synctargets", "Location"])
        assert [c["metadata"]["name"] for c in installed] == [
            "synctargets.workload.kcp.io",
            "locations.scheduling.kcp.io",
        ]
        assert api.http("GET", "/apis/tmc.kcp.io/v1alpha1").status == 404
        # Installing again replaces, as install_crd does.
        assert len(install_tmc_crds(api, ["synctargets"])) == 1
