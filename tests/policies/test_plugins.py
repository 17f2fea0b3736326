"""Loading built-in policies and third-party plug-ins from entry points (a real dist-info on sys.path)."""

from __future__ import annotations

import importlib
import logging
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from kcp_tmc.policies import REGISTRY, PolicyConflictError, Registry, plugins
from kcp_tmc.policies.plugins import (
    PluginError,
    default_registry,
    load_builtins,
    load_default_registry,
    load_entry_points,
)
from tests.policies.builtin.helpers import BUILTIN_POLICIES


def builtin_names() -> set[str]:
    """Every policy the modules of kcp_tmc.policies.builtin registered (more may be added later)."""
    importlib.import_module("kcp_tmc.policies.builtin")
    names = {p.name for p in REGISTRY if p.source.startswith("kcp_tmc.policies.builtin.")}
    assert names >= BUILTIN_POLICIES
    return names


@dataclass
class Dist:
    """A distribution written to a temporary folder on sys.path."""

    group: str
    prefix: str


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Take out of REGISTRY, sys.modules and the plug-in cache whatever the test's plug-ins added."""
    yield
    for policy in REGISTRY:
        if policy.source.startswith("tmcplug_"):
            REGISTRY.unregister(policy.name)
    for name in [m for m in sys.modules if m.startswith("tmcplug_")]:
        del sys.modules[name]
    for name in [m for m in plugins._registered_by if m.startswith("tmcplug_")]:
        del plugins._registered_by[name]


def write_dist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: dict[str, str], modules: dict[str, str]
) -> Dist:
    prefix = f"tmcplug_{uuid.uuid4().hex[:8]}"
    group = f"kcp_tmc.test.{prefix}"
    info = tmp_path / "acme_policies-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acme-policies\nVersion: 1.2\n", encoding="utf-8"
    )
    lines = [f"[{group}]"] + [f"{name} = {value.format(p=prefix)}" for name, value in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, source in modules.items():
        (tmp_path / f"{prefix}_{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return Dist(group, prefix)


GOOD = """
    from kcp_tmc.policies import SYNC_TARGET, Verdict, validating

    @validating("acme-required", kinds=[SYNC_TARGET])
    def acme_required(req):
        return Verdict.deny("metadata.labels.acme", "is required")

    @validating("acme-other", kinds=[SYNC_TARGET])
    def acme_other(req):
        return None
"""

CALLABLE = """
    from kcp_tmc.policies import SYNC_TARGET, mutating

    VALUE = 3

    def register(registry):
        mutating("acme-defaults", kinds=[SYNC_TARGET], registry=registry)(lambda req: None)
"""

BROKEN = """
    from kcp_tmc.policies import SYNC_TARGET, validating

    @validating("acme-half", kinds=[SYNC_TARGET])
    def half(req):
        return None

    raise ValueError("exploded on import")
"""

CONFLICT = """
    from kcp_tmc.policies import SYNC_TARGET, validating

    def register(registry):
        validating("acme-required", kinds=[SYNC_TARGET], registry=registry)(lambda req: None)
"""


@pytest.mark.usefixtures("clean_registry")
def test_plugins_load_and_failures_are_reported_without_stopping_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dist = write_dist(
        tmp_path,
        monkeypatch,
        {
            "a-good": "{p}_good",
            "b-callable": "{p}_callable:register",
            "c-broken": "{p}_broken",
            "d-conflict": "{p}_conflict:register",
            "e-missing": "{p}_missing",
            "f-not-callable": "{p}_callable:VALUE",
        },
        {"good": GOOD, "callable": CALLABLE, "broken": BROKEN, "conflict": CONFLICT},
    )
    registry = Registry()
    with caplog.at_level(logging.ERROR, logger="kcp_tmc.policies.plugins"):
        errors = load_entry_points(registry, group=dist.group)
    assert sorted(p.name for p in registry) == ["acme-defaults", "acme-other", "acme-required"]
    assert registry.get("acme-required").source == f"{dist.prefix}_good.acme_required"  # type: ignore[union-attr]
    p = dist.prefix
    assert [str(e) for e in errors] == [
        f"policy plug-in 'c-broken' ({p}_broken) from acme-policies 1.2 was not loaded: "
        "ValueError: exploded on import",
        f"policy plug-in 'd-conflict' ({p}_conflict:register) from acme-policies 1.2 was not loaded: "
        f"name conflict: policy 'acme-required' from {p}_conflict.register.<locals>.<lambda> conflicts with "
        f"policy 'acme-required' already registered from {p}_good.acme_required; rename one of them",
        f"policy plug-in 'e-missing' ({p}_missing) from acme-policies 1.2 was not loaded: "
        f"ModuleNotFoundError: No module named '{p}_missing'",
        f"policy plug-in 'f-not-callable' ({p}_callable:VALUE) from acme-policies 1.2 was not loaded: "
        f"TypeError: {p}_callable:VALUE is not a module nor a callable taking a registry",
    ]
    assert (errors[0].entry_point, errors[0].dist) == ("c-broken", "acme-policies 1.2")
    assert isinstance(errors[1].error, PolicyConflictError)
    assert caplog.messages == [str(e) for e in errors]
    # the broken module registered one policy before failing: it is taken back out
    assert "acme-half" not in REGISTRY
    # the module plug-in registered on the process-wide registry too, as decorators do
    assert "acme-required" in REGISTRY


@pytest.mark.usefixtures("clean_registry")
def test_a_module_plugin_loads_into_several_registries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = write_dist(tmp_path, monkeypatch, {"good": "{p}_good"}, {"good": GOOD})
    first, second = Registry(), Registry()
    assert load_entry_points(first, group=dist.group) == []
    assert load_entry_points(second, group=dist.group) == []
    assert {p.name for p in first} == {p.name for p in second} == {"acme-required", "acme-other"}
    assert first.get("acme-other") is second.get("acme-other")
    # into the process-wide registry (the default): already there, nothing to do
    assert load_entry_points(group=dist.group) == []


@pytest.mark.usefixtures("clean_registry")
def test_a_module_imported_before_is_found_by_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = write_dist(tmp_path, monkeypatch, {"good": "{p}_good"}, {"good": GOOD})
    importlib.import_module(f"{dist.prefix}_good")
    registry = Registry()
    assert load_entry_points(registry, group=dist.group) == []
    assert {p.name for p in registry} == {"acme-required", "acme-other"}


@pytest.mark.usefixtures("clean_registry")
def test_a_conflict_while_copying_leaves_the_registry_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = write_dist(tmp_path, monkeypatch, {"good": "{p}_good"}, {"good": GOOD})
    registry = Registry()
    load_entry_points(Registry(), group=dist.group)  # imported and cached
    from kcp_tmc.policies import SYNC_TARGET, validating

    validating("acme-other", kinds=[SYNC_TARGET], registry=registry)(lambda req: None)
    [error] = load_entry_points(registry, group=dist.group)
    assert str(error).endswith(
        f"already registered from {__name__}.test_a_conflict_while_copying_leaves_the_registry_unchanged."
        "<locals>.<lambda>; rename one of them"
    )
    assert "name conflict: policy 'acme-other' from " in str(error)
    assert [p.name for p in registry] == ["acme-other"]  # acme-required was not added either


@pytest.mark.usefixtures("clean_registry")
def test_a_plugin_may_not_take_a_builtin_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = """
        from kcp_tmc.policies import SYNC_TARGET, validating

        @validating("synctarget-validation", kinds=[SYNC_TARGET])
        def mine(req):
            return None
    """
    dist = write_dist(tmp_path, monkeypatch, {"evil": "{p}_evil"}, {"evil": source})
    load_builtins()
    registry, errors = load_default_registry(group=dist.group)
    assert {p.name for p in registry} == builtin_names()
    [error] = errors
    assert str(error) == (
        f"policy plug-in 'evil' ({dist.prefix}_evil) from acme-policies 1.2 was not loaded: name conflict: "
        f"policy 'synctarget-validation' from {dist.prefix}_evil.mine conflicts with policy "
        "'synctarget-validation' already registered from "
        "kcp_tmc.policies.builtin.synctarget.sync_target_validation; rename one of them"
    )


def test_load_builtins() -> None:
    registry = Registry()
    load_builtins(registry)
    load_builtins(registry)  # twice is harmless
    assert {p.name for p in registry} == builtin_names()
    assert all(p.source.startswith("kcp_tmc.policies.builtin.") for p in registry)
    load_builtins()
    assert {p.name for p in REGISTRY} >= builtin_names()


def test_default_registry_has_the_builtins_and_logs_plugin_failures(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert {p.name for p in default_registry()} >= builtin_names()
    broken = metadata.EntryPoint(
        name="ghost", value="tmcplug_does_not_exist", group=plugins.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(
        metadata, "entry_points", lambda group: [broken] if group == plugins.ENTRY_POINT_GROUP else []
    )
    with caplog.at_level(logging.ERROR, logger="kcp_tmc.policies.plugins"):
        registry = default_registry()
    assert {p.name for p in registry} == builtin_names()
    assert caplog.messages == [
        "policy plug-in 'ghost' (tmcplug_does_not_exist) from an unknown distribution was not loaded: "
        "ModuleNotFoundError: No module named 'tmcplug_does_not_exist'"
    ]


def test_plugin_error_fields() -> None:
    error = PluginError("x", "dist 1", "mod:func", RuntimeError("bad"))
    assert str(error) == "policy plug-in 'x' (mod:func) from dist 1 was not loaded: RuntimeError: bad"
    assert error.entry_point == "x"
    assert error.value == "mod:func"
