"""Testing policies: a pytest plugin, and the same helpers for use without pytest.

Installed with kcp-tmc, the plugin (entry point ``pytest11``: ``kcp_tmc``) gives every test two
fixtures::

    def test_region_required(review, evaluate):
        result = evaluate(review({"apiVersion": "workload.kcp.io/v1alpha1", "kind": "SyncTarget",
                                  "metadata": {"name": "a"}}))
        assert not result.allowed
        assert result.messages == ["[region-label] metadata.labels.region: ..."]

``review(obj, operation=..., old=..., user=..., groups=..., dry_run=..., sub_resource=...,
namespace=...)`` builds an AdmissionReview as the apiserver sends it.  ``evaluate(review,
config=..., policies=..., lookup=..., phase=...)`` runs it through the same
:class:`~kcp_tmc.policies.engine.Engine` the webhook uses (mutating policies, then validating
ones), with the built-in policies and every installed plug-in, and returns a :class:`Result`.
Override the ``kcp_tmc_registry`` fixture to evaluate against your own registry.

Outside pytest, call :func:`review` and :func:`evaluate` from this module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the plugin loads in every pytest run of a user: import the engine lazily
    from kcp_tmc.policies.admission import AdmissionRequest, AdmissionReview, JsonPatchOperation, Operation
    from kcp_tmc.policies.config import EngineConfig
    from kcp_tmc.policies.engine import Outcome, Phase
    from kcp_tmc.policies.policy import Lookup, Object
    from kcp_tmc.policies.registry import Registry

__all__ = ["Result", "evaluate", "review"]


@dataclass(frozen=True)
class Result:
    """What the engine answered, in the terms a test asserts on.

    ``messages`` are the denial lines (``[policy] path: reason``); ``patch`` the combined JSON
    Patch; ``patched`` a copy of the object after it (so a test may change it freely);
    ``outcome`` the engine's full :class:`~kcp_tmc.policies.engine.Outcome`.
    """

    allowed: bool
    code: int
    messages: list[str]
    warnings: list[str]
    audit_annotations: dict[str, str]
    patch: list[JsonPatchOperation]
    patched: Object | None
    outcome: Outcome = field(repr=False, compare=False)


def review(
    obj: Object | None,
    *,
    operation: Operation = "CREATE",
    old: Object | None = None,
    user: str = "alice",
    groups: Iterable[str] = (),
    dry_run: bool = False,
    sub_resource: str = "",
    namespace: str | None = None,
    uid: str | None = None,
) -> AdmissionReview:
    """An ``admission.k8s.io/v1`` AdmissionReview of ``obj``.

    See :func:`kcp_tmc.policies.reviews.make_review`.
    """
    from kcp_tmc.policies.reviews import make_review  # noqa: PLC0415

    return make_review(
        obj,
        operation=operation,
        old=old,
        user=user,
        groups=groups,
        dry_run=dry_run,
        sub_resource=sub_resource,
        namespace=namespace,
        uid=uid,
    )


_default_registry: Registry | None = None


def _registry() -> Registry:
    """The built-in policies and installed plug-ins, plus every policy registered in this process.

    A policy author's test module registers its policy with the decorators on the global
    registry and then evaluates it by name: that policy must be found without more set-up.
    """
    global _default_registry  # noqa: PLW0603 - one registry per process, built on first use
    from kcp_tmc.policies.registry import REGISTRY, Registry  # noqa: PLC0415

    if _default_registry is None:
        from kcp_tmc.policies.plugins import default_registry  # noqa: PLC0415

        _default_registry = default_registry()
    extra = [p for p in REGISTRY if p.name not in _default_registry]
    if not extra:
        return _default_registry
    merged = Registry()
    for policy in (*_default_registry, *extra):
        merged.register(policy)
    return merged


def evaluate(
    review_or_request: AdmissionReview | AdmissionRequest,
    *,
    config: EngineConfig | str | None = None,
    policies: Iterable[str] | None = None,
    lookup: Lookup | Sequence[Object] | None = None,
    phase: Phase = "all",
    registry: Registry | None = None,
) -> Result:
    """Evaluate a review (or a bare request) as the webhook would, and return a :class:`Result`.

    ``config`` is an :class:`~kcp_tmc.policies.config.EngineConfig` or the text of a
    configuration file.  ``policies`` restricts the evaluation to those policy names
    (:class:`~kcp_tmc.policies.engine.UnknownPolicyError` for a name nobody registered).
    ``lookup`` is a :class:`~kcp_tmc.policies.policy.Lookup` or a list of objects the policies
    may look up.  ``registry`` defaults to the built-in policies, the installed plug-ins and
    every policy registered with the decorators in this process (your test module's).
    """
    # Imported here, not at the top, to keep the plugin's import light.
    from kcp_tmc.policies.config import parse_config  # noqa: PLC0415
    from kcp_tmc.policies.engine import Engine, select_policies  # noqa: PLC0415
    from kcp_tmc.policies.policy import StaticLookup  # noqa: PLC0415

    envelope: Mapping[str, Any] = review_or_request
    request: AdmissionRequest = envelope.get("request", envelope)
    source = registry if registry is not None else _registry()
    if policies is not None:
        source = select_policies(source, policies)
    if isinstance(config, str):
        config = parse_config(config, source="<config>")
    resolved: Lookup | None = StaticLookup(lookup) if isinstance(lookup, Sequence) else lookup
    engine = Engine(source, config)
    outcome = engine.evaluate(request, phase=phase, lookup=resolved, want_patched=True)
    return Result(
        allowed=outcome.allowed,
        code=outcome.code,
        messages=list(outcome.denials),
        warnings=list(outcome.warnings),
        audit_annotations=dict(outcome.audit_annotations),
        patch=list(outcome.patch),
        # The engine's patched object shares unchanged parts with the test's object: copy it.
        patched=copy.deepcopy(outcome.patched),
        outcome=outcome,
    )


Evaluate = Callable[..., Result]
ReviewBuilder = Callable[..., "AdmissionReview"]


@pytest.fixture
def kcp_tmc_registry() -> Registry:
    """The registry ``evaluate`` uses: built-ins, plug-ins and this process's policies (override it)."""
    return _registry()


@pytest.fixture(name="review")
def _review_fixture() -> ReviewBuilder:
    """Build an AdmissionReview: ``review(obj, operation="UPDATE", old=..., user=..., dry_run=...)``."""
    return review


@pytest.fixture(name="evaluate")
def _evaluate_fixture(kcp_tmc_registry: Registry) -> Evaluate:
    """Evaluate a review through the webhook's engine: ``evaluate(review, config=..., policies=...)``."""

    def run(review_or_request: Mapping[str, Any], **kwargs: Any) -> Result:
        kwargs.setdefault("registry", kcp_tmc_registry)
        return evaluate(review_or_request, **kwargs)  # type: ignore[arg-type]

    return run
