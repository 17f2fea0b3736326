"""The pytest plugin for policy authors (loaded through its pytest11 entry point) and its plain helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jsonpatch
import pytest

from kcp_tmc.policies import (
    REGISTRY,
    SYNC_TARGET,
    FieldError,
    Mode,
    PolicyRequest,
    Registry,
    Verdict,
    mutating,
    validating,
)
from kcp_tmc.policies.config import EngineConfig, PolicyConfig
from kcp_tmc.policies.engine import UnknownPolicyError
from kcp_tmc.policies.patches import set_map_entry
from kcp_tmc.policies.testing import Result, evaluate, review

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    # Users get the plugin from its pytest11 entry point; load it by name only when autoloading is off.
    args = ["-q"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        args += ["-p", "kcp_tmc.policies.testing"]
    return pytester.runpytest_inprocess(*args)


SYNC_TARGET_OBJ = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "a"}}


def _registry() -> Registry:
    registry = Registry()

    @validating("region-label", kinds=[SYNC_TARGET], registry=registry)
    def region_label(req: PolicyRequest) -> Verdict | None:
        assert req.object is not None
        if "region" not in (req.object["metadata"].get("labels") or {}):
            return Verdict.deny("metadata.labels.region", "is required; add a region label")
        return None

    @mutating("add-owner", kinds=[SYNC_TARGET], registry=registry)
    def add_owner(req: PolicyRequest) -> Verdict | None:
        assert req.object is not None
        return Verdict(patch=set_map_entry(req.object, ("metadata", "labels"), "owner", req.user["username"]))

    @validating("peer-exists", kinds=[SYNC_TARGET], operations=["UPDATE"], registry=registry)
    def peer_exists(req: PolicyRequest) -> Verdict | None:
        if req.lookup.get(SYNC_TARGET, "peer") is None:
            return Verdict(errors=[FieldError("", "needs a SyncTarget named peer")], warnings=["looked"])
        return None

    return registry


def test_helpers_without_pytest() -> None:
    result = evaluate(review(SYNC_TARGET_OBJ, user="bob"), registry=_registry())
    assert result == Result(
        allowed=False,
        code=403,
        messages=["[region-label] metadata.labels.region: is required; add a region label"],
        warnings=[],
        audit_annotations={},
        patch=[{"op": "add", "path": "/metadata/labels", "value": {"owner": "bob"}}],
        patched={**SYNC_TARGET_OBJ, "metadata": {"name": "a", "labels": {"owner": "bob"}}},
        outcome=None,  # type: ignore[arg-type]
    )
    assert jsonpatch.apply_patch(SYNC_TARGET_OBJ, result.patch) == result.patched
    assert result.outcome.results[0].name == "add-owner"


def test_options_policies_config_lookup_and_phase() -> None:
    registry = _registry()
    update = review(SYNC_TARGET_OBJ, operation="UPDATE", old=SYNC_TARGET_OBJ)
    only_peer = evaluate(update, registry=registry, policies=["peer-exists"])
    assert only_peer.messages == ["[peer-exists] needs a SyncTarget named peer"]
    assert only_peer.warnings == ["[peer-exists] looked"]
    assert only_peer.patch == []
    assert only_peer.patched == SYNC_TARGET_OBJ
    assert only_peer.patched is not SYNC_TARGET_OBJ
    peer = {**SYNC_TARGET_OBJ, "metadata": {"name": "peer"}}
    assert evaluate(update, registry=registry, policies=["peer-exists"], lookup=[peer]).allowed
    warned = evaluate(
        update,
        registry=registry,
        config="policies:\n  region-label: {mode: warn}\n  peer-exists: {mode: audit}\n",
    )
    assert warned.allowed
    assert warned.warnings == [
        "[peer-exists] looked",
        "[region-label] metadata.labels.region: is required; add a region label",
    ]
    assert warned.audit_annotations == {"peer-exists": "needs a SyncTarget named peer"}
    config = EngineConfig(policies={"region-label": PolicyConfig(mode=Mode.AUDIT)})
    assert evaluate(update["request"], registry=registry, config=config, policies=["region-label"]).allowed
    validate_only = evaluate(review(SYNC_TARGET_OBJ), registry=registry, phase="validate")
    assert validate_only.patch == []
    with pytest.raises(
        UnknownPolicyError, match=r"^unknown policy 'nope' \(known: add-owner, peer-exists, region-label\)$"
    ):
        evaluate(update, registry=registry, policies=["nope"])


def test_default_registry_has_the_builtins() -> None:
    result = evaluate(review(None, operation="DELETE", old=SYNC_TARGET_OBJ))
    assert "synctarget-deletion-protection" in [r.name for r in result.outcome.results]


def test_review_builder_defaults() -> None:
    built = review(
        SYNC_TARGET_OBJ, uid="u1", namespace="x", groups=["g"], dry_run=True, sub_resource="status"
    )
    assert built["apiVersion"] == "admission.k8s.io/v1"
    request = built["request"]
    assert request["uid"] == "u1"
    assert request["userInfo"] == {"username": "alice", "groups": ["g"]}
    assert request["dryRun"] is True
    assert request["subResource"] == "status"
    assert request["namespace"] == "x"


def test_fixtures_in_a_policy_authors_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest
        from kcp_tmc.policies import SYNC_TARGET, Registry, Verdict, validating

        @pytest.fixture
        def kcp_tmc_registry():
            registry = Registry()

            @validating("region-label", kinds=[SYNC_TARGET], registry=registry)
            def region_label(req):
                if "region" not in (req.object["metadata"].get("labels") or {}):
                    return Verdict.deny("metadata.labels.region", "is required; add a region label")
                return None

            return registry
        """
    )
    pytester.makepyfile(
        textwrap.dedent(
            """
            OBJ = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "a"}}

            def test_region_required(review, evaluate):
                result = evaluate(review(OBJ))
                assert not result.allowed
                assert result.code == 403
                assert result.messages == [
                    "[region-label] metadata.labels.region: is required; add a region label"
                ]

            def test_update_with_region(review, evaluate):
                obj = {**OBJ, "metadata": {"name": "a", "labels": {"region": "eu"}}}
                result = evaluate(review(obj, operation="UPDATE", old=OBJ, user="bob", dry_run=True))
                assert result.allowed, result.messages

            def test_warn_mode_through_config(review, evaluate):
                result = evaluate(review(OBJ), config="policies:\\n  region-label: {mode: warn}\\n")
                assert result.allowed
                assert result.warnings == [
                    "[region-label] metadata.labels.region: is required; add a region label"
                ]

            def test_failing_on_purpose(review, evaluate):
                assert evaluate(review(OBJ)).allowed
            """
        )
    )
    outcome = _run(pytester)
    outcome.assert_outcomes(passed=3, failed=1)
    outcome.stdout.fnmatch_lines(["*test_failing_on_purpose*"])


def test_a_policy_registered_in_the_test_module_is_found_by_name(pytester: pytest.Pytester) -> None:
    # The README's way: decorate on the global registry, then evaluate by name, with no fixture.
    pytester.makepyfile(
        textwrap.dedent(
            """
            from kcp_tmc.policies import SYNC_TARGET, Verdict, validating
            from kcp_tmc.policies.model import labels_of

            @validating("module-region-label", kinds=[SYNC_TARGET])
            def region_label(req):
                if not labels_of(req.object).get("region"):
                    return Verdict.deny("metadata.labels.region", "is required; add a region label")
                return None

            OBJ = {"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget", "metadata": {"name": "a"}}

            def test_region_required(review, evaluate):
                result = evaluate(review(OBJ), policies=["module-region-label"])
                assert result.messages == [
                    "[module-region-label] metadata.labels.region: is required; add a region label"
                ]

            def test_builtins_still_run_beside_it(review, evaluate):
                result = evaluate(review(OBJ))
                denial = "[module-region-label] metadata.labels.region: is required; add a region label"
                assert denial in result.messages
                defaults = {"unschedulable": False, "supportedAPIExports": [{"export": "kubernetes"}]}
                assert result.patched["spec"] == defaults
            """
        )
    )
    try:
        _run(pytester).assert_outcomes(passed=2)
    finally:
        # pytester ran in this process: take the module's policy back off the global registry.
        REGISTRY.unregister("module-region-label")
    assert "module-region-label" not in REGISTRY


def test_the_default_registry_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_builtins_are_there(kcp_tmc_registry):
            assert "synctarget-validation" in kcp_tmc_registry
        """
    )
    _run(pytester).assert_outcomes(passed=1)


def test_the_plugin_imports_lightly() -> None:
    code = (
        "import sys, kcp_tmc.policies.testing as t; "
        "heavy = [m for m in ('kcp_tmc.policies.engine', 'jsonpatch', 'yaml', 'kcp_tmc.policies.plugins') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"
