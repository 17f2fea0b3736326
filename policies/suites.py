"""Declarative policy test suites (``tmc-test.yaml``), as ``kyverno test`` and ``gator verify`` run theirs.

A suite names objects, the request to make with each, and what every policy should answer;
:func:`run_suites` evaluates each test through the same :class:`~kcp_tmc.policies.engine.Engine`
the webhook uses and compares.  The schema is documented in ``docs/policy-testing.md``; in short::

    name: synctarget-validation
    requires: [synctarget-validation]       # skip the suite when a policy is not installed
    policies: [synctarget-validation]       # run only these (default: every loaded policy)
    config: config.yaml                     # an engine configuration: a file, or inline
    resources: [resources/peer.yaml]        # objects the policies can look up
    tests:
    - name: a long name is refused
      object: objects/long-name.yaml        # a file, or the object inline
      operation: CREATE                     # CREATE (default), UPDATE (needs oldObject), DELETE
      expect:
        allowed: false
        policies:
          synctarget-validation:
            result: deny                    # allow, deny, warn, audit, error, exempt, skip
            messages: ["metadata.name: Too long"]
        patchedObject: objects/expected.yaml

Paths in a suite are relative to the suite's file.  Loading checks the whole file first and
refuses it with a :class:`SuiteError` naming the file, the line and the fault; nothing runs
from a bad suite.  Nothing here prints: the CLI renders the results.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from xml.etree import ElementTree

import jsonpatch
import yaml

from kcp_tmc.policies.admission import OPERATIONS, Operation
from kcp_tmc.policies.config import ConfigError, EngineConfig, load_config, parse_config
from kcp_tmc.policies.documents import DocumentError, JsonLoader, describe, load_documents
from kcp_tmc.policies.engine import Engine, Outcome, PolicyResult, select_policies
from kcp_tmc.policies.policy import Object, StaticLookup
from kcp_tmc.policies.registry import Registry
from kcp_tmc.policies.reviews import make_request
from kcp_tmc.policies.yamlfiles import (
    BOOL_TAG,
    STR_TAG,
    SourceError,
    describe_node,
    node_line,
    read_mapping,
    yaml_problem,
)

__all__ = [
    "RESULTS",
    "SUITE_FILE",
    "Check",
    "PolicyExpectation",
    "Suite",
    "SuiteError",
    "SuiteResult",
    "TestCase",
    "TestResult",
    "build_engine",
    "discover",
    "junit_xml",
    "load_suite",
    "run_suite",
    "run_suites",
]

#: The file name :func:`discover` looks for.
SUITE_FILE: Final = "tmc-test.yaml"
API_VERSION: Final = "tmc.kcp.io/v1alpha1"
KIND: Final = "PolicyTest"

#: Expected results and the engine decisions they stand for.
RESULTS: Final[Mapping[str, str]] = {
    "allow": "allowed",
    "deny": "denied",
    "warn": "warned",
    "audit": "audited",
    "error": "errored",
    "exempt": "exempted",
    "skip": "skipped",
}
_WORDS: Final = {decision: word for word, decision in RESULTS.items()}
_SUITE_KEYS: Final = (
    "apiVersion",
    "kind",
    "name",
    "description",
    "requires",
    "policies",
    "config",
    "resources",
    "tests",
)
_TEST_KEYS: Final = (
    "name",
    "description",
    "object",
    "oldObject",
    "operation",
    "subResource",
    "namespace",
    "user",
    "groups",
    "dryRun",
    "policies",
    "config",
    "resources",
    "expect",
)
_EXPECT_KEYS: Final = ("allowed", "messages", "warnings", "policies", "patchedObject")
_POLICY_KEYS: Final = ("result", "messages")

#: Row labels for the checks that are not about one policy.
ALLOWED_ROW: Final = "(allowed)"
MESSAGES_ROW: Final = "(messages)"
WARNINGS_ROW: Final = "(warnings)"
PATCHED_ROW: Final = "(patchedObject)"


class SuiteError(SourceError):
    """A suite that cannot be run: ``<file>[:<line>]: <reason>``."""


@dataclass(frozen=True)
class PolicyExpectation:
    """What one policy should decide, and substrings its messages should hold."""

    policy: str
    result: str
    messages: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Expectation:
    """What a test expects; ``None`` (or empty) fields are not checked."""

    allowed: bool | None = None
    messages: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    policies: tuple[PolicyExpectation, ...] = ()
    patched_object: Object | None = None


@dataclass(frozen=True)
class TestCase:
    """One request of a suite and what it should give."""

    __test__ = False  # not a pytest test class, whatever its name

    name: str
    line: int
    object: Object | None
    old_object: Object | None
    operation: Operation
    expect: Expectation
    sub_resource: str = ""
    namespace: str | None = None
    user: str = "alice"
    groups: tuple[str, ...] = ()
    dry_run: bool = False
    policies: tuple[str, ...] | None = None
    resources: tuple[Object, ...] = ()
    config: EngineConfig | None = None
    description: str = ""


@dataclass(frozen=True)
class Suite:
    """A loaded ``tmc-test.yaml``; ``resources``, ``policies`` and ``config`` apply to every test."""

    path: str
    name: str
    tests: tuple[TestCase, ...]
    description: str = ""
    requires: tuple[str, ...] = ()
    policies: tuple[str, ...] | None = None
    resources: tuple[Object, ...] = ()
    config: EngineConfig | None = None
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Check:
    """One row of the report: a policy (or ``(allowed)``...), expected, got, and why it failed."""

    policy: str
    expected: str
    got: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class TestResult:
    """The checks of one test and how long it took (seconds)."""

    __test__ = False

    suite: str
    name: str
    checks: tuple[Check, ...]
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)


@dataclass(frozen=True)
class SuiteResult:
    """A suite's tests, or why it was skipped (``skipped``) or could not run (``error``)."""

    path: str
    name: str
    tests: tuple[TestResult, ...] = ()
    skipped: str | None = None
    error: SuiteError | None = None

    @property
    def passed(self) -> bool:
        """True when the suite was valid and no test failed (a skipped suite passes)."""
        return self.error is None and all(t.passed for t in self.tests)


# --- discovery and loading ------------------------------------------------------------------------


def discover(root: str | Path) -> list[Path]:
    """The suite files under ``root`` (``tmc-test.yaml``, recursively, sorted); ``root`` may be one file.

    Raises :class:`SuiteError` when ``root`` does not exist.
    """
    path = Path(root)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise SuiteError(str(root), None, "no such file or directory")
    return sorted(p for p in path.rglob(SUITE_FILE) if p.is_file())


def load_suite(path: str | Path) -> Suite:
    """Read and check the suite at ``path``; raises :class:`SuiteError` for any fault."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SuiteError(source, None, f"cannot read the file: {reason}") from None
    return _Parser(source, Path(path).parent, text).parse()


class _Parser:
    def __init__(self, source: str, base: Path, text: str) -> None:
        self.source = source
        self.base = base
        self.text = text
        self.loader: JsonLoader | None = None

    def error(self, node: yaml.Node | None, reason: str) -> SuiteError:
        return SuiteError(self.source, node_line(node) if node is not None else None, reason)

    def parse(self) -> Suite:
        try:
            loader = JsonLoader(self.text)
        except yaml.YAMLError as exc:
            raise SuiteError(self.source, None, f"not valid YAML: {exc}") from None
        self.loader = loader
        try:
            try:
                root = loader.get_single_node()
            except yaml.MarkedYAMLError as exc:
                line, problem = yaml_problem(exc)
                raise SuiteError(self.source, line, f"not valid YAML: {problem}") from None
            if root is None:
                raise SuiteError(self.source, None, "the suite is empty; it needs at least a list of tests")
            return self._suite(root)
        finally:
            loader.dispose()

    # -- typed readers

    def mapping(self, node: yaml.Node, where: str, keys: Iterable[str]) -> dict[str, yaml.Node]:
        return read_mapping(node, where, keys, self.error, prefix=f"{where}: " if where else "")

    def string(self, node: yaml.Node, where: str, *, empty: bool = False) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR_TAG or (not node.value and not empty):
            raise self.error(node, f"{where} must be a non-empty string (got {describe_node(node)})")
        return str(node.value)

    def strings(self, node: yaml.Node, where: str, *, single: bool = False) -> tuple[str, ...]:
        if single and isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
            return (self.string(node, where),)
        if not isinstance(node, yaml.SequenceNode):
            what = "a string or a list of strings" if single else "a list of strings"
            raise self.error(node, f"{where} must be {what} (got {describe_node(node)})")
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(node.value))

    def boolean(self, node: yaml.Node, where: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.tag != BOOL_TAG:
            raise self.error(node, f"{where} must be true or false (got {describe_node(node)})")
        return bool(self.construct(node, where))

    def construct(self, node: yaml.Node, where: str) -> Any:
        assert self.loader is not None  # noqa: S101 (an invariant for the type checker, not a check of input)
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark
            line = mark.line + 1 if mark is not None else node_line(node)
            raise SuiteError(self.source, line, f"{where} cannot be read: {exc.problem}") from None

    def file_objects(self, node: yaml.Node, where: str) -> tuple[list[Any], str]:
        name = self.string(node, where)
        path = self.base / name
        try:
            docs, _ = load_documents(path)
        except DocumentError as exc:
            at = f"{exc.source}:{exc.line}" if exc.line is not None else exc.source
            raise self.error(node, f"{where}: {at}: {exc.reason}") from None
        return docs, name

    def object(self, node: yaml.Node, where: str) -> Object:
        """An object given inline or as a file path (one document)."""
        if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
            docs, name = self.file_objects(node, where)
            if len(docs) != 1:
                raise self.error(
                    node, f"{where}: {name} holds {len(docs)} documents; it must hold exactly one object"
                )
            value, what = docs[0], f"{where} ({name})"
        elif isinstance(node, yaml.MappingNode):
            value, what = self.construct(node, where), where
        else:
            raise self.error(
                node, f"{where} must be a file name or an inline object (got {describe_node(node)})"
            )
        return self.check_object(node, value, what)

    def check_object(self, node: yaml.Node, value: Any, where: str) -> Object:
        if not isinstance(value, dict):
            raise self.error(node, f"{where} must be a Kubernetes object (got {describe(value)})")
        for key in ("apiVersion", "kind"):
            if not isinstance(value.get(key), str) or not value.get(key):
                raise self.error(node, f"{where} must have a string {key}, like any Kubernetes object")
        return value

    def resources(self, node: yaml.Node, where: str) -> tuple[Object, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(
                node, f"{where} must be a list of file names or inline objects (got {describe_node(node)})"
            )
        found: list[Object] = []
        for i, item in enumerate(node.value):
            at = f"{where}[{i}]"
            if isinstance(item, yaml.ScalarNode) and item.tag == STR_TAG:
                docs, name = self.file_objects(item, at)
                for doc in docs:
                    # A kubectl List (kind: List, items: [...]) stands for its items.
                    items = doc.get("items") if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
                    found.extend(self.check_object(item, d, f"{at} ({name})") for d in items or ())
            else:
                found.append(self.object(item, at))
        return tuple(found)

    def config(self, node: yaml.Node, where: str) -> EngineConfig:
        try:
            if isinstance(node, yaml.ScalarNode) and node.tag == STR_TAG:
                return load_config(self.base / self.string(node, where))
            if not isinstance(node, yaml.MappingNode):
                raise self.error(
                    node,
                    f"{where} must be a file name or an inline configuration (got {describe_node(node)})",
                )
            # Parse the inline text itself, padded to its place in the file, so that the
            # configuration's own errors give the suite's line numbers.
            start, end = node.start_mark, node.end_mark
            text = "\n" * start.line + " " * start.column + self.text[start.index : end.index]
            return parse_config(text, source=self.source)
        except ConfigError as exc:
            if exc.source == self.source:
                raise SuiteError(self.source, exc.line, f"{where}: {exc.reason}") from None
            raise self.error(node, f"{where}: {exc}") from None

    def policies(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        names = self.strings(node, where)
        if not names:
            raise self.error(node, f"{where} must name at least one policy (leave it out to run them all)")
        return names

    # -- the schema

    def _suite(self, root: yaml.Node) -> Suite:
        fields = self.mapping(root, "the suite", _SUITE_KEYS)
        if "apiVersion" in fields and self.string(fields["apiVersion"], "apiVersion") != API_VERSION:
            raise self.error(
                fields["apiVersion"],
                f"apiVersion must be {API_VERSION} (got {describe_node(fields['apiVersion'])})",
            )
        if "kind" in fields and self.string(fields["kind"], "kind") != KIND:
            raise self.error(fields["kind"], f"kind must be {KIND} (got {describe_node(fields['kind'])})")
        name = self.string(fields["name"], "name") if "name" in fields else self.base.name or self.source
        description = (
            self.string(fields["description"], "description", empty=True) if "description" in fields else ""
        )
        lines: dict[str, int] = {}
        requires: tuple[str, ...] = ()
        if "requires" in fields:
            requires = self.strings(fields["requires"], "requires")
            lines["requires"] = node_line(fields["requires"])
        policies = None
        if "policies" in fields:
            policies = self.policies(fields["policies"], "policies")
            lines["policies"] = node_line(fields["policies"])
        config = self.config(fields["config"], "config") if "config" in fields else None
        resources = self.resources(fields["resources"], "resources") if "resources" in fields else ()
        if "tests" not in fields:
            raise self.error(root, "tests is missing: a suite needs a list of tests")
        tests_node = fields["tests"]
        if not isinstance(tests_node, yaml.SequenceNode) or not tests_node.value:
            raise self.error(tests_node, f"tests must be a non-empty list (got {describe_node(tests_node)})")
        tests: list[TestCase] = []
        seen: dict[str, int] = {}
        for i, node in enumerate(tests_node.value):
            test = self._test(node, f"tests[{i}]")
            if test.name in seen:
                raise self.error(
                    node, f"tests[{i}]: duplicate test name {test.name!r} (first at line {seen[test.name]})"
                )
            seen[test.name] = test.line
            tests.append(test)
        return Suite(
            path=self.source,
            name=name,
            tests=tuple(tests),
            description=description,
            requires=requires,
            policies=policies,
            resources=resources,
            config=config,
            lines=lines,
        )

    def _test(self, node: yaml.Node, where: str) -> TestCase:
        fields = self.mapping(node, where, _TEST_KEYS)
        if "name" not in fields:
            raise self.error(node, f"{where}.name is missing: give every test a name")
        name = self.string(fields["name"], f"{where}.name")
        operation: Operation = "CREATE"
        if "operation" in fields:
            op_node = fields["operation"]
            value = op_node.value if isinstance(op_node, yaml.ScalarNode) else None
            if value not in OPERATIONS or op_node.tag != STR_TAG:
                got = describe_node(op_node)
                raise self.error(
                    op_node, f"{where}.operation must be one of {', '.join(OPERATIONS)} (got {got})"
                )
            operation = value
        obj = self.object(fields["object"], f"{where}.object") if "object" in fields else None
        old = self.object(fields["oldObject"], f"{where}.oldObject") if "oldObject" in fields else None
        self._check_objects(node, fields, where, operation, obj, old)
        if "expect" not in fields:
            raise self.error(node, f"{where}.expect is missing: say what the test expects")
        policies = self.policies(fields["policies"], f"{where}.policies") if "policies" in fields else None
        return TestCase(
            name=name,
            line=node_line(node),
            object=obj,
            old_object=old,
            operation=operation,
            expect=self._expect(fields["expect"], f"{where}.expect"),
            sub_resource=self.string(fields["subResource"], f"{where}.subResource")
            if "subResource" in fields
            else "",
            namespace=self.string(fields["namespace"], f"{where}.namespace")
            if "namespace" in fields
            else None,
            user=self.string(fields["user"], f"{where}.user") if "user" in fields else "alice",
            groups=self.strings(fields["groups"], f"{where}.groups") if "groups" in fields else (),
            dry_run=self.boolean(fields["dryRun"], f"{where}.dryRun") if "dryRun" in fields else False,
            policies=policies,
            resources=self.resources(fields["resources"], f"{where}.resources")
            if "resources" in fields
            else (),
            config=self.config(fields["config"], f"{where}.config") if "config" in fields else None,
            description=(
                self.string(fields["description"], f"{where}.description", empty=True)
                if "description" in fields
                else ""
            ),
        )

    def _check_objects(
        self,
        node: yaml.Node,
        fields: Mapping[str, yaml.Node],
        where: str,
        operation: str,
        obj: Object | None,
        old: Object | None,
    ) -> None:
        # The apiserver's rules: what each operation carries.
        at = fields.get("operation", node)
        if operation == "DELETE":
            if obj is not None:
                raise self.error(
                    fields["object"],
                    f"{where}.object: a DELETE request carries no object; put the object being deleted "
                    "under oldObject",
                )
            if old is None:
                raise self.error(
                    at, f"{where}.oldObject is missing: a DELETE test needs the object being deleted"
                )
            return
        if obj is None:
            raise self.error(node, f"{where}.object is missing: name a file or write the object inline")
        if operation == "UPDATE" and old is None:
            raise self.error(
                at, f"{where}.oldObject is missing: an UPDATE test needs the object as it was stored"
            )
        if operation == "CREATE" and old is not None:
            raise self.error(fields["oldObject"], f"{where}.oldObject: a CREATE request has no old object")

    def _expect(self, node: yaml.Node, where: str) -> Expectation:
        fields = self.mapping(node, where, _EXPECT_KEYS)
        if not fields:
            raise self.error(node, f"{where} must check something: {', '.join(_EXPECT_KEYS)}")
        policies: list[PolicyExpectation] = []
        if "policies" in fields:
            pnode = fields["policies"]
            entries = self.mapping(pnode, f"{where}.policies", ())
            if not entries:
                raise self.error(pnode, f"{where}.policies must name at least one policy")
            for key_node, value_node in pnode.value:
                policies.append(
                    self._policy_expectation(key_node, value_node, f"{where}.policies.{key_node.value}")
                )
        return Expectation(
            allowed=self.boolean(fields["allowed"], f"{where}.allowed") if "allowed" in fields else None,
            messages=self.strings(fields["messages"], f"{where}.messages", single=True)
            if "messages" in fields
            else (),
            warnings=self.strings(fields["warnings"], f"{where}.warnings", single=True)
            if "warnings" in fields
            else (),
            policies=tuple(policies),
            patched_object=(
                self.object(fields["patchedObject"], f"{where}.patchedObject")
                if "patchedObject" in fields
                else None
            ),
        )

    def _policy_expectation(self, key_node: yaml.Node, node: yaml.Node, where: str) -> PolicyExpectation:
        messages: tuple[str, ...] = ()
        if isinstance(node, yaml.MappingNode):
            fields = self.mapping(node, where, _POLICY_KEYS)
            if "result" not in fields:
                raise self.error(node, f"{where}.result is missing: one of {', '.join(RESULTS)}")
            result_node = fields["result"]
            if "messages" in fields:
                messages = self.strings(fields["messages"], f"{where}.messages", single=True)
            at = f"{where}.result"
        else:
            result_node, at = node, where
        result = result_node.value if isinstance(result_node, yaml.ScalarNode) else None
        if result not in RESULTS or result_node.tag != STR_TAG:
            raise self.error(
                result_node, f"{at} must be one of {', '.join(RESULTS)} (got {describe_node(result_node)})"
            )
        return PolicyExpectation(str(key_node.value), str(result), messages, node_line(key_node))


# --- running ----------------------------------------------------------------------------------


def _check_names(suite: Suite, registry: Registry) -> str | None:
    """Raise for a policy the suite names but nobody registered; the skip reason for unmet ``requires``."""
    missing = [name for name in suite.requires if name not in registry]
    if missing:
        return f"requires {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed"
    known = ", ".join(sorted(p.name for p in registry)) or "none are registered"

    def check(names: Iterable[str], line: int | None, where: str) -> None:
        for name in names:
            if name not in registry:
                raise SuiteError(suite.path, line, f"{where}: unknown policy {name!r} (known: {known})")

    check(suite.policies or (), suite.lines.get("policies"), "policies")
    for test in suite.tests:
        check(test.policies or (), test.line, f"test {test.name!r}: policies")
        chosen = test.policies or suite.policies
        for exp in test.expect.policies:
            check((exp.policy,), exp.line, f"test {test.name!r}: expect.policies")
            if chosen is not None and exp.policy not in chosen:
                raise SuiteError(
                    suite.path,
                    exp.line,
                    f"test {test.name!r}: expect.policies: {exp.policy!r} does not run in this test "
                    f"(it runs {', '.join(chosen)}); add it to policies or remove the expectation",
                )
    for config in {
        id(c): c for c in [suite.config, *(t.config for t in suite.tests)] if c is not None
    }.values():
        try:
            config.check(registry)
        except ConfigError as exc:
            if exc.source == suite.path:  # an inline configuration
                raise SuiteError(suite.path, exc.line, f"config: {exc.reason}") from None
            raise SuiteError(suite.path, None, f"config: {exc}") from None
    return None


def build_engine(registry: Registry, config: EngineConfig | None, names: Sequence[str] | None) -> Engine:
    """An engine over the policies ``names`` of ``registry`` (all of them for ``None``).

    The configuration may speak of policies that are left out; those parts are dropped.
    Raises :class:`~kcp_tmc.policies.engine.UnknownPolicyError` for a name ``registry`` lacks.
    """
    config = config if config is not None else EngineConfig()
    if names is None:
        return Engine(registry, config)
    chosen = select_policies(registry, names)
    keep = set(names)
    config = dataclasses.replace(
        config,
        policies={k: v for k, v in config.policies.items() if k in keep},
        disabled=frozenset(config.disabled & keep),
    )
    return Engine(chosen, config)


def run_suite(suite: Suite, registry: Registry) -> SuiteResult:
    """Run every test of ``suite`` against ``registry``.

    Raises :class:`SuiteError` when the suite names a policy ``registry`` does not hold (other
    than through ``requires``, which skips the suite instead).
    """
    skip = _check_names(suite, registry)
    if skip is not None:
        return SuiteResult(suite.path, suite.name, skipped=skip)
    results = [_run_test(suite, test, registry) for test in suite.tests]
    return SuiteResult(suite.path, suite.name, tests=tuple(results))


def _run_test(suite: Suite, test: TestCase, registry: Registry) -> TestResult:
    started = time.perf_counter()
    engine = build_engine(registry, test.config or suite.config, test.policies or suite.policies)
    request = make_request(
        test.object,
        operation=test.operation,
        old=test.old_object,
        user=test.user,
        groups=test.groups,
        dry_run=test.dry_run,
        sub_resource=test.sub_resource,
        namespace=test.namespace,
        uid=f"{suite.name}/{test.name}",
    )
    lookup = StaticLookup([*suite.resources, *test.resources])
    outcome = engine.evaluate(request, lookup=lookup, want_patched=True)
    checks = _compare(test.expect, outcome)
    return TestResult(suite.name, test.name, tuple(checks), time.perf_counter() - started)


def _texts(name: str, result: PolicyResult | None, outcome: Outcome) -> list[str]:
    texts: list[str] = []
    if result is not None:
        texts.extend(result.messages)
        texts.extend(t for t in (result.error, result.note) if t)
    prefix = f"[{name}] "
    texts.extend(w[len(prefix) :] for w in outcome.warnings if w.startswith(prefix))
    return texts


def _missing(wanted: Sequence[str], texts: Sequence[str]) -> list[str]:
    return [w for w in wanted if not any(w in t for t in texts)]


def _contains_check(row: str, wanted: Sequence[str], texts: Sequence[str], noun: str) -> Check:
    # Passes when every wanted text is part of one of the texts (denials or warnings, by ``noun``).
    missing = _missing(wanted, texts)
    detail = ""
    if missing:
        detail = f"no {noun} contains " + ", ".join(json.dumps(m) for m in missing)
        detail += f"; the {noun}s: {' | '.join(texts) or 'none'}"
    return Check(row, f"{len(wanted)} found", _found(wanted, missing), not missing, detail)


def _compare(expect: Expectation, outcome: Outcome) -> list[Check]:
    checks: list[Check] = []
    if expect.allowed is not None:
        want, got = _allowed(expect.allowed), _allowed(outcome.allowed)
        detail = "" if want == got else f"message: {outcome.message}" if outcome.message else ""
        checks.append(Check(ALLOWED_ROW, want, got, want == got, detail))
    by_name = {r.name: r for r in outcome.results}
    for exp in expect.policies:
        result = by_name.get(exp.policy)
        got = _WORDS[result.decision] if result is not None else "skip"
        texts = _texts(exp.policy, result, outcome)
        problems: list[str] = []
        if got != exp.result:
            if result is None:
                problems.append("the policy does not handle this kind, operation or subresource")
            elif texts:
                problems.append("its messages: " + " | ".join(texts))
        missing = _missing(exp.messages, texts)
        if missing:
            problems.append(
                "no message contains "
                + ", ".join(json.dumps(m) for m in missing)
                + (f"; its messages: {' | '.join(texts)}" if texts and got == exp.result else "")
            )
        passed = got == exp.result and not missing
        checks.append(Check(exp.policy, exp.result, got, passed, "; ".join(problems)))
    if expect.messages:
        checks.append(_contains_check(MESSAGES_ROW, expect.messages, outcome.denials, "denial"))
    if expect.warnings:
        checks.append(_contains_check(WARNINGS_ROW, expect.warnings, outcome.warnings, "warning"))
    if expect.patched_object is not None:
        got_obj = outcome.patched
        if got_obj == expect.patched_object:
            checks.append(Check(PATCHED_ROW, "equal", "equal", True))
        else:
            diff = jsonpatch.make_patch(expect.patched_object, got_obj or {}).patch
            detail = "the patched object differs; JSON Patch from the expected object to the patched one: "
            checks.append(
                Check(PATCHED_ROW, "equal", "differs", False, detail + json.dumps(diff, sort_keys=True))
            )
    return checks


def _allowed(value: bool) -> str:
    return "allowed" if value else "denied"


def _found(wanted: Sequence[str], missing: Sequence[str]) -> str:
    return f"{len(wanted) - len(missing)} found"


def run_suites(paths: Iterable[str | Path], registry: Registry) -> list[SuiteResult]:
    """Load and run each suite file; a bad one becomes a result with ``error`` and the others still run."""
    results: list[SuiteResult] = []
    for path in paths:
        try:
            suite = load_suite(path)
            results.append(run_suite(suite, registry))
        except SuiteError as exc:
            results.append(SuiteResult(str(path), str(path), error=exc))
    return results


# --- JUnit XML ------------------------------------------------------------------------------------


def junit_xml(results: Sequence[SuiteResult]) -> ElementTree.ElementTree:
    """The results as JUnit XML (``testsuites``/``testsuite``/``testcase``), the form CI systems read.

    A failed check becomes a ``failure`` with every failing row in its text; a bad suite one
    ``testcase`` with an ``error``; a skipped suite one ``testcase`` with ``skipped``.
    """
    root = ElementTree.Element("testsuites", name="tmc-policy test")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total_time = 0.0
    for suite in results:
        element = ElementTree.SubElement(root, "testsuite", name=suite.name, file=suite.path)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        suite_time = 0.0
        if suite.error is not None:
            case = ElementTree.SubElement(element, "testcase", classname=suite.name, name="(load)", time="0")
            ElementTree.SubElement(case, "error", message=str(suite.error), type="SuiteError")
            counts["tests"], counts["errors"] = 1, 1
        elif suite.skipped is not None:
            case = ElementTree.SubElement(element, "testcase", classname=suite.name, name="(suite)", time="0")
            ElementTree.SubElement(case, "skipped", message=suite.skipped)
            counts["tests"], counts["skipped"] = 1, 1
        for test in suite.tests:
            counts["tests"] += 1
            suite_time += test.duration
            case = ElementTree.SubElement(
                element, "testcase", classname=suite.name, name=test.name, time=f"{test.duration:.6f}"
            )
            failed = [c for c in test.checks if not c.passed]
            if failed:
                counts["failures"] += 1
                first = failed[0]
                failure = ElementTree.SubElement(
                    case, "failure", message=f"{first.policy}: expected {first.expected}, got {first.got}"
                )
                failure.text = "\n".join(
                    f"{c.policy}: expected {c.expected}, got {c.got}" + (f" ({c.detail})" if c.detail else "")
                    for c in failed
                )
        for key, value in counts.items():
            element.set(key, str(value))
            totals[key] += value
        element.set("time", f"{suite_time:.6f}")
        total_time += suite_time
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{total_time:.6f}")
    ElementTree.indent(root)
    return ElementTree.ElementTree(root)
