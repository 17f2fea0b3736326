"""Declarative policy test suites: the schema's checks (each with its exact message), running, JUnit XML."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kcp_tmc.policies import (
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
from kcp_tmc.policies.plugins import load_builtins
from kcp_tmc.policies.suites import (
    Check,
    SuiteError,
    SuiteResult,
    build_engine,
    discover,
    junit_xml,
    load_suite,
    run_suite,
    run_suites,
)

ST = "{apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {name: a}}"


def builtins() -> Registry:
    registry = Registry()
    load_builtins(registry)
    return registry


def toy() -> Registry:
    """Two small policies whose behaviour the tests control through the object's labels."""
    registry = Registry()

    @validating("needs-region", kinds=[SYNC_TARGET], registry=registry)
    def needs_region(req: PolicyRequest) -> Verdict | None:
        labels = (req.object or {}).get("metadata", {}).get("labels") or {}
        if "region" not in labels:
            return Verdict.deny("metadata.labels.region", "is required")
        if req.lookup.get(SYNC_TARGET, "peer") is None:
            return Verdict(errors=[FieldError("", "needs a peer")], warnings=["looked for a peer"])
        return None

    @mutating("add-owner", kinds=[SYNC_TARGET], registry=registry)
    def add_owner(req: PolicyRequest) -> Verdict | None:
        assert req.object is not None
        return Verdict(patch=set_map_entry(req.object, ("metadata", "labels"), "owner", req.user["username"]))

    return registry


def write(tmp_path: Path, text: str, name: str = "tmc-test.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return str(info.value).replace(str(tmp_path) + "/", "")


# --- loading: what a suite holds ------------------------------------------------------------------


def test_a_full_suite_loads(tmp_path: Path) -> None:
    write(tmp_path, "apiVersion: v1\nkind: SyncTarget\nmetadata: {name: peer}\n", "res/peer.yaml")
    write(tmp_path, f"kind: List\napiVersion: v1\nitems:\n- {ST}\n", "res/list.yaml")
    write(tmp_path, "policies: {needs-region: {mode: warn}}\n", "config.yaml")
    write(tmp_path, f"{ST}\n", "objects/a.yaml")
    path = write(
        tmp_path,
        f"""
        apiVersion: tmc.kcp.io/v1alpha1
        kind: PolicyTest
        name: toy
        description: a toy suite
        requires: [needs-region]
        policies: [needs-region, add-owner]
        config: config.yaml
        resources: [res/peer.yaml, res/list.yaml, {ST}]
        tests:
        - name: t1
          description: the first
          object: objects/a.yaml
          operation: UPDATE
          oldObject: {ST}
          subResource: status
          namespace: ns
          user: bob
          groups: [g1, g2]
          dryRun: true
          policies: [needs-region]
          config: {{defaultCluster: "root:x"}}
          resources: [{ST}]
          expect:
            allowed: true
            messages: one
            warnings: [w1, w2]
            policies:
              needs-region: warn
            patchedObject: objects/a.yaml
        """,
    )
    suite = load_suite(path)
    assert (suite.name, suite.description, suite.requires, suite.policies) == (
        "toy",
        "a toy suite",
        ("needs-region",),
        ("needs-region", "add-owner"),
    )
    assert suite.config is not None and suite.config.policy("needs-region").mode is Mode.WARN
    assert [r["metadata"]["name"] for r in suite.resources] == ["peer", "a", "a"]
    (test,) = suite.tests
    assert (test.name, test.description, test.line, test.operation, test.sub_resource, test.namespace) == (
        "t1",
        "the first",
        10,
        "UPDATE",
        "status",
        "ns",
    )
    assert (test.user, test.groups, test.dry_run, test.policies) == (
        "bob",
        ("g1", "g2"),
        True,
        ("needs-region",),
    )
    assert test.config is not None and test.config.default_cluster == "root:x"
    assert test.old_object == {
        "apiVersion": "workload.kcp.io/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": "a"},
    }
    assert test.expect.allowed is True
    assert test.expect.messages == ("one",)
    assert test.expect.warnings == ("w1", "w2")
    assert [(p.policy, p.result, p.messages, p.line) for p in test.expect.policies] == [
        ("needs-region", "warn", (), 28)
    ]
    assert test.expect.patched_object == test.object


def test_defaults_of_a_minimal_suite(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"tests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n", "mine/tmc-test.yaml"
    )
    suite = load_suite(path)
    assert (suite.name, suite.requires, suite.policies, suite.config, suite.resources) == (
        "mine",
        (),
        None,
        None,
        (),
    )
    (test,) = suite.tests
    assert (test.operation, test.user, test.groups, test.dry_run, test.sub_resource, test.namespace) == (
        "CREATE",
        "alice",
        (),
        False,
        "",
        None,
    )


def test_timestamps_stay_strings(tmp_path: Path) -> None:
    text = (
        "tests:\n- name: t\n  object: {apiVersion: v1, kind: X, spec: {t: 2024-01-02T15:04:05Z}}\n"
        "  expect: {allowed: true}\n"
    )
    suite = load_suite(write(tmp_path, text))
    assert suite.tests[0].object == {"apiVersion": "v1", "kind": "X", "spec": {"t": "2024-01-02T15:04:05Z"}}


_TEST = f"- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "tmc-test.yaml: the suite is empty; it needs at least a list of tests"),
        (
            "a: [",
            "tmc-test.yaml:1: not valid YAML: while parsing a flow node, expected the node content, but "
            "found '<stream end>'",
        ),
        (
            "a: \x07",
            "tmc-test.yaml: not valid YAML: unacceptable character #x0007: special characters are not "
            'allowed\n  in "<unicode string>", position 3',
        ),
        (
            "tests: []\n---\ntests: []\n",
            "tmc-test.yaml:2: not valid YAML: expected a single document in the stream, but found "
            "another document",
        ),
        ("- a\n", "tmc-test.yaml:1: the suite must be a mapping (got a list)"),
        ("1: a\n", "tmc-test.yaml:1: the suite: keys must be strings (got 1)"),
        ("name: a\nname: b\n", "tmc-test.yaml:2: the suite: duplicate key 'name'"),
        (
            "nmae: a\n",
            "tmc-test.yaml:1: the suite: unknown key 'nmae' (expected one of apiVersion, kind, name, "
            "description, requires, policies, config, resources, tests)",
        ),
        ("apiVersion: v1\n", "tmc-test.yaml:1: apiVersion must be tmc.kcp.io/v1alpha1 (got 'v1')"),
        ("kind: Test\n", "tmc-test.yaml:1: kind must be PolicyTest (got 'Test')"),
        ("name: 5\n", "tmc-test.yaml:1: name must be a non-empty string (got 5)"),
        ("name: ''\n", "tmc-test.yaml:1: name must be a non-empty string (got '')"),
        ("requires: a\n", "tmc-test.yaml:1: requires must be a list of strings (got 'a')"),
        ("requires: [a, null]\n", "tmc-test.yaml:1: requires[1] must be a non-empty string (got null)"),
        (
            "policies: []\n",
            "tmc-test.yaml:1: policies must name at least one policy (leave it out to run them all)",
        ),
        (
            "config: [a]\n",
            "tmc-test.yaml:1: config must be a file name or an inline configuration (got a list)",
        ),
        ("config: missing.yaml\n", "tmc-test.yaml:1: config: missing.yaml: no such file"),
        (
            "config:\n  policies:\n    x: {mode: loud}\n",
            "tmc-test.yaml:3: config: policies.x.mode must be one of enforce, warn, audit (got 'loud')",
        ),
        (
            "config: {defaultCluster: 1}\n",
            "tmc-test.yaml:1: config: defaultCluster must be a non-empty string (got 1)",
        ),
        (
            "resources: a.yaml\n",
            "tmc-test.yaml:1: resources must be a list of file names or inline objects (got 'a.yaml')",
        ),
        ("resources: [missing.yaml]\n", "tmc-test.yaml:1: resources[0]: missing.yaml: no such file"),
        ("resources: [5]\n", "tmc-test.yaml:1: resources[0] must be a file name or an inline object (got 5)"),
        (
            "resources: [{kind: X}]\n",
            "tmc-test.yaml:1: resources[0] must have a string apiVersion, like any Kubernetes object",
        ),
        ("name: a\n", "tmc-test.yaml:1: tests is missing: a suite needs a list of tests"),
        ("tests: []\n", "tmc-test.yaml:1: tests must be a non-empty list (got a list)"),
        ("tests: {}\n", "tmc-test.yaml:1: tests must be a non-empty list (got a mapping)"),
        ("tests: [a]\n", "tmc-test.yaml:1: tests[0] must be a mapping (got 'a')"),
        ("tests:\n- {object: a}\n", "tmc-test.yaml:2: tests[0].name is missing: give every test a name"),
        (
            "tests:\n- {name: t, bogus: 1}\n",
            "tmc-test.yaml:2: tests[0]: unknown key 'bogus' (expected one of name, description, object, "
            "oldObject, operation, subResource, namespace, user, groups, dryRun, policies, config, "
            "resources, expect)",
        ),
        ("tests:\n" + _TEST + _TEST, "tmc-test.yaml:5: tests[1]: duplicate test name 't' (first at line 2)"),
        (
            "tests:\n- {name: t, operation: PATCH}\n",
            "tmc-test.yaml:2: tests[0].operation must be one of CREATE, UPDATE, DELETE, CONNECT (got "
            "'PATCH')",
        ),
        (
            "tests:\n- {name: t, operation: [CREATE]}\n",
            "tmc-test.yaml:2: tests[0].operation must be one of CREATE, UPDATE, DELETE, CONNECT (got a list)",
        ),
        (
            "tests:\n- {name: t}\n",
            "tmc-test.yaml:2: tests[0].object is missing: name a file or write the object inline",
        ),
        (
            "tests:\n- {name: t, object: [a]}\n",
            "tmc-test.yaml:2: tests[0].object must be a file name or an inline object (got a list)",
        ),
        (
            "tests:\n- {name: t, object: {kind: X}}\n",
            "tmc-test.yaml:2: tests[0].object must have a string apiVersion, like any Kubernetes object",
        ),
        (
            "tests:\n- {name: t, object: {apiVersion: v1, kind: ''}}\n",
            "tmc-test.yaml:2: tests[0].object must have a string kind, like any Kubernetes object",
        ),
        (
            "tests:\n- {name: t, object: {apiVersion: v1, kind: X, t: !!binary aGk=}}\n",
            "tmc-test.yaml:2: tests[0].object cannot be read: could not determine a constructor for the "
            "tag 'tag:yaml.org,2002:binary'",
        ),
        (
            "tests:\n- {name: t, object: missing.yaml}\n",
            "tmc-test.yaml:2: tests[0].object: missing.yaml: no such file",
        ),
        (
            f"tests:\n- {{name: t, operation: DELETE, object: {ST}}}\n",
            "tmc-test.yaml:2: tests[0].object: a DELETE request carries no object; put the object being "
            "deleted under oldObject",
        ),
        (
            "tests:\n- {name: t, operation: DELETE}\n",
            "tmc-test.yaml:2: tests[0].oldObject is missing: a DELETE test needs the object being deleted",
        ),
        (
            f"tests:\n- {{name: t, operation: UPDATE, object: {ST}}}\n",
            "tmc-test.yaml:2: tests[0].oldObject is missing: an UPDATE test needs the object as it was "
            "stored",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, oldObject: {ST}}}\n",
            "tmc-test.yaml:2: tests[0].oldObject: a CREATE request has no old object",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}}}\n",
            "tmc-test.yaml:2: tests[0].expect is missing: say what the test expects",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{}}}}\n",
            "tmc-test.yaml:2: tests[0].expect must check something: allowed, messages, warnings, "
            "policies, patchedObject",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{allowed: yes please}}}}\n",
            "tmc-test.yaml:2: tests[0].expect.allowed must be true or false (got 'yes please')",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{messages: 5}}}}\n",
            "tmc-test.yaml:2: tests[0].expect.messages must be a string or a list of strings (got 5)",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{policies: {{}}}}}}\n",
            "tmc-test.yaml:2: tests[0].expect.policies must name at least one policy",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{policies: {{p: dney}}}}}}\n",
            "tmc-test.yaml:2: tests[0].expect.policies.p must be one of allow, deny, warn, audit, error, "
            "exempt, skip (got 'dney')",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{policies: {{p: {{messages: x}}}}}}}}\n",
            "tmc-test.yaml:2: tests[0].expect.policies.p.result is missing: one of allow, deny, warn, "
            "audit, error, exempt, skip",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, expect: {{policies: {{p: {{result: 1}}}}}}}}\n",
            "tmc-test.yaml:2: tests[0].expect.policies.p.result must be one of allow, deny, warn, audit, "
            "error, exempt, skip (got 1)",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, dryRun: 1, expect: {{allowed: true}}}}\n",
            "tmc-test.yaml:2: tests[0].dryRun must be true or false (got 1)",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, groups: g, expect: {{allowed: true}}}}\n",
            "tmc-test.yaml:2: tests[0].groups must be a list of strings (got 'g')",
        ),
        (
            f"tests:\n- {{name: t, object: {ST}, policies: [], expect: {{allowed: true}}}}\n",
            "tmc-test.yaml:2: tests[0].policies must name at least one policy (leave it out to run them all)",
        ),
    ],
)
def test_bad_suites_are_refused_with_file_line_and_reason(tmp_path: Path, text: str, message: str) -> None:
    assert load_error(tmp_path, text) == message.format(dir=tmp_path)


def test_object_files_must_hold_one_object(tmp_path: Path) -> None:
    write(tmp_path, f"{ST}\n---\n{ST}\n", "two.yaml")
    write(tmp_path, "[1, 2]\n", "list.yaml")
    write(tmp_path, "a: [\n", "bad.yaml")
    base = "tests:\n- name: t\n  expect: {allowed: true}\n  object: "
    assert load_error(tmp_path, base + "two.yaml\n") == (
        "tmc-test.yaml:4: tests[0].object: two.yaml holds 2 documents; it must hold exactly one object"
    )
    assert load_error(tmp_path, base + "list.yaml\n") == (
        "tmc-test.yaml:4: tests[0].object (list.yaml) must be a Kubernetes object (got a list)"
    )
    assert load_error(tmp_path, base + "bad.yaml\n") == (
        "tmc-test.yaml:4: tests[0].object: bad.yaml:2: not valid JSON or YAML: while parsing a flow "
        "node, expected the node content, but found '<stream end>'"
    )


def test_resource_files_hold_objects(tmp_path: Path) -> None:
    write(tmp_path, "kind: List\napiVersion: v1\nitems: [5]\n", "list.yaml")
    assert load_error(tmp_path, "resources: [list.yaml]\n") == (
        "tmc-test.yaml:1: resources[0] (list.yaml) must be a Kubernetes object (got a number)"
    )


def test_a_suite_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as info:
        load_suite(tmp_path / "missing.yaml")
    assert str(info.value) == f"{tmp_path}/missing.yaml: cannot read the file: No such file or directory"
    (tmp_path / "latin1.yaml").write_bytes(b"name: \xe9\n")
    with pytest.raises(SuiteError, match=r"latin1.yaml: cannot read the file: 'utf-8' codec can't decode"):
        load_suite(tmp_path / "latin1.yaml")


# --- discovery ------------------------------------------------------------------------------------


def test_discover_finds_suites_recursively_in_order(tmp_path: Path) -> None:
    for sub in ("b", "a/deep", "c"):
        write(tmp_path, "", f"{sub}/tmc-test.yaml")
    write(tmp_path, "", "c/other.yaml")
    assert [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path)] == [
        "a/deep/tmc-test.yaml",
        "b/tmc-test.yaml",
        "c/tmc-test.yaml",
    ]
    assert discover(tmp_path / "c" / "other.yaml") == [tmp_path / "c" / "other.yaml"]
    with pytest.raises(SuiteError) as info:
        discover(tmp_path / "nowhere")
    assert str(info.value) == f"{tmp_path}/nowhere: no such file or directory"


# --- running ----------------------------------------------------------------------------------------


def run(tmp_path: Path, text: str, registry: Registry | None = None) -> SuiteResult:
    return run_suite(load_suite(write(tmp_path, text)), registry if registry is not None else toy())


def rows(result: SuiteResult) -> list[tuple[str, str, str, str, bool]]:
    return [(t.name, c.policy, c.expected, c.got, c.passed) for t in result.tests for c in t.checks]


def test_passing_checks(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        f"""
        resources: [{{apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {{name: peer}}}}]
        tests:
        - name: labelled
          user: bob
          object:
            apiVersion: workload.kcp.io/v1alpha1
            kind: SyncTarget
            metadata: {{name: a, labels: {{region: x}}}}
          expect:
            allowed: true
            policies:
              add-owner: allow
              needs-region: allow
            patchedObject:
              apiVersion: workload.kcp.io/v1alpha1
              kind: SyncTarget
              metadata: {{name: a, labels: {{region: x, owner: bob}}}}
        - name: unlabelled
          object: {ST}
          expect:
            allowed: false
            messages: "[needs-region] metadata.labels.region: is required"
            policies:
              needs-region: {{result: deny, messages: [is required, labels.region]}}
        """,
    )
    assert result.passed and result.skipped is None and result.error is None
    assert rows(result) == [
        ("labelled", "(allowed)", "allowed", "allowed", True),
        ("labelled", "add-owner", "allow", "allow", True),
        ("labelled", "needs-region", "allow", "allow", True),
        ("labelled", "(patchedObject)", "equal", "equal", True),
        ("unlabelled", "(allowed)", "denied", "denied", True),
        ("unlabelled", "needs-region", "deny", "deny", True),
        ("unlabelled", "(messages)", "1 found", "1 found", True),
    ]
    assert all(t.duration >= 0 for t in result.tests)


def test_resources_reach_the_policies_through_the_lookup(tmp_path: Path) -> None:
    labelled = (
        "{apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {name: a, labels: {region: x}}}"
    )
    result = run(
        tmp_path,
        f"""
        tests:
        - name: no peer
          object: {labelled}
          expect:
            warnings: looked for a peer
            policies: {{needs-region: {{result: deny, messages: [needs a peer, looked for a peer]}}}}
        - name: a peer from the test's resources
          object: {labelled}
          resources: [{{apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {{name: peer}}}}]
          expect: {{allowed: true}}
        """,
    )
    assert result.passed, rows(result)


def test_failing_checks_say_why(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        f"""
        tests:
        - name: wrong
          object: {ST}
          expect:
            allowed: true
            messages: [is required, not there]
            warnings: a warning
            policies:
              needs-region: {{result: allow}}
              add-owner: {{result: allow, messages: nope}}
            patchedObject: {ST}
        - name: wrong message only
          object: {ST}
          expect:
            policies:
              needs-region: {{result: deny, messages: [is required, other]}}
        """,
    )
    assert not result.passed
    wrong, message_only = result.tests
    assert not wrong.passed and not message_only.passed
    assert [(c.policy, c.expected, c.got, c.passed, c.detail) for c in wrong.checks] == [
        (
            "(allowed)",
            "allowed",
            "denied",
            False,
            "message: [needs-region] metadata.labels.region: is required",
        ),
        ("needs-region", "allow", "deny", False, "its messages: metadata.labels.region: is required"),
        ("add-owner", "allow", "allow", False, 'no message contains "nope"'),
        (
            "(messages)",
            "2 found",
            "1 found",
            False,
            'no denial contains "not there"; the denials: [needs-region] metadata.labels.region: is required',
        ),
        ("(warnings)", "1 found", "0 found", False, 'no warning contains "a warning"; the warnings: none'),
        (
            "(patchedObject)",
            "equal",
            "differs",
            False,
            "the patched object differs; JSON Patch from the expected object to the patched one: "
            '[{"op": "add", "path": "/metadata/labels", "value": {"owner": "alice"}}]',
        ),
    ]
    assert [(c.passed, c.detail) for c in message_only.checks] == [
        (False, 'no message contains "other"; its messages: metadata.labels.region: is required')
    ]


def test_a_policy_that_does_not_handle_the_request_is_a_skip(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """
        tests:
        - name: a Location
          object: {apiVersion: scheduling.kcp.io/v1alpha1, kind: Location, metadata: {name: l}}
          expect:
            policies: {needs-region: skip}
        - name: expected to deny
          object: {apiVersion: scheduling.kcp.io/v1alpha1, kind: Location, metadata: {name: l}}
          expect:
            policies: {needs-region: deny}
        - name: expected to warn, but it allows without a word
          object:
            {apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {name: a, labels: {region: x}}}
          resources: [{apiVersion: workload.kcp.io/v1alpha1, kind: SyncTarget, metadata: {name: peer}}]
          expect:
            policies: {needs-region: warn}
        """,
    )
    assert [(c.got, c.passed, c.detail) for t in result.tests for c in t.checks] == [
        ("skip", True, ""),
        ("skip", False, "the policy does not handle this kind, operation or subresource"),
        ("allow", False, ""),
    ]


def test_modes_exemptions_and_disabled_policies(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        f"""
        config:
          policies:
            needs-region: {{mode: audit}}
        tests:
        - name: audit from the suite's configuration
          object: {ST}
          expect: {{allowed: true, policies: {{needs-region: {{result: audit, messages: is required}}}}}}
        - name: warn from the test's configuration
          config: {{policies: {{needs-region: {{mode: warn}}}}}}
          object: {ST}
          expect:
            warnings: "[needs-region] metadata.labels.region: is required"
            policies: {{needs-region: warn}}
        - name: exempt
          config: {{exemptions: {{users: [ci-*]}}}}
          user: ci-bot
          object: {ST}
          expect: {{policies: {{needs-region: {{result: exempt, messages: user ci-bot matches ci-*}}}}}}
        - name: disabled
          config: {{disabled: [needs-region]}}
          object: {ST}
          expect: {{policies: {{needs-region: {{result: skip, messages: disabled in the configuration}}}}}}
        """,
    )
    assert result.passed, [c for t in result.tests for c in t.checks if not c.passed]


def test_a_failing_policy_is_an_error(tmp_path: Path) -> None:
    registry = Registry()

    @validating("broken", kinds=[SYNC_TARGET], registry=registry)
    def broken(req: PolicyRequest) -> Verdict | None:
        raise RuntimeError("boom")

    result = run(
        tmp_path,
        f"tests:\n- name: t\n  object: {ST}\n  expect: {{policies: {{broken: {{result: error, messages: "
        "'RuntimeError: boom'}}}\n",
        registry,
    )
    assert result.passed


def test_restricting_policies_drops_the_configuration_of_the_others(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        f"""
        policies: [add-owner]
        config: {{disabled: [needs-region], policies: {{needs-region: {{mode: warn}}}}}}
        tests:
        - name: only add-owner runs
          object: {ST}
          expect:
            allowed: true
            policies: {{add-owner: allow}}
        - name: a test may choose others
          policies: [needs-region]
          config: {{policies: {{needs-region: {{mode: warn}}, add-owner: {{mode: warn}}}}}}
          object: {ST}
          expect: {{policies: {{needs-region: warn}}}}
        """,
    )
    assert result.passed, rows(result)


def test_build_engine_refuses_unknown_names() -> None:
    with pytest.raises(
        UnknownPolicyError, match="unknown policy 'nope' \\(known: add-owner, needs-region\\)"
    ):
        build_engine(toy(), None, ["nope"])
    engine = build_engine(
        toy(), EngineConfig(policies={"needs-region": PolicyConfig(mode=Mode.AUDIT)}), ["add-owner"]
    )
    assert [p.name for p in engine.policies] == ["add-owner"]


def test_unmet_requires_skip_the_suite(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        f"requires: [region-label, other]\ntests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n",
    )
    assert (result.skipped, result.tests, result.passed) == (
        "requires region-label, other, which are not installed",
        (),
        True,
    )
    result = run(
        tmp_path,
        f"requires: [region-label]\ntests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n",
    )
    assert result.skipped == "requires region-label, which is not installed"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"policies: [nope]\ntests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n",
            "tmc-test.yaml:1: policies: unknown policy 'nope' (known: add-owner, needs-region)",
        ),
        (
            f"tests:\n- name: t\n  policies: [nope]\n  object: {ST}\n  expect: {{allowed: true}}\n",
            "tmc-test.yaml:2: test 't': policies: unknown policy 'nope' (known: add-owner, needs-region)",
        ),
        (
            f"tests:\n- name: t\n  object: {ST}\n  expect:\n    policies:\n      nope: allow\n",
            "tmc-test.yaml:6: test 't': expect.policies: unknown policy 'nope' (known: add-owner, "
            "needs-region)",
        ),
        (
            f"policies: [add-owner]\ntests:\n- name: t\n  object: {ST}\n  expect:\n    policies:\n      "
            "needs-region: allow\n",
            "tmc-test.yaml:7: test 't': expect.policies: 'needs-region' does not run in this test (it runs "
            "add-owner); add it to policies or remove the expectation",
        ),
        (
            f"config:\n  disabled: [nope]\ntests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n",
            "tmc-test.yaml:2: config: disabled: unknown policy 'nope' (known: add-owner, needs-region)",
        ),
        (
            f"config: cfg.yaml\ntests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n",
            "tmc-test.yaml: config: cfg.yaml:2: policies.nope: unknown policy 'nope' (known: add-owner, "
            "needs-region)",
        ),
    ],
)
def test_unknown_policy_names_make_a_bad_suite(tmp_path: Path, text: str, message: str) -> None:
    write(tmp_path, "policies:\n  nope: {mode: warn}\n", "cfg.yaml")
    with pytest.raises(SuiteError) as info:
        run(tmp_path, text)
    assert str(info.value).replace(str(tmp_path) + "/", "") == message.format(dir=tmp_path)


def test_run_suites_keeps_going_after_a_bad_suite(tmp_path: Path) -> None:
    good = write(
        tmp_path, f"tests:\n- name: t\n  object: {ST}\n  expect: {{allowed: false}}\n", "good/tmc-test.yaml"
    )
    bad = write(tmp_path, "tests: 5\n", "bad/tmc-test.yaml")
    unknown = write(
        tmp_path,
        f"policies: [x]\ntests:\n- name: t\n  object: {ST}\n  expect: {{allowed: true}}\n",
        "u/tmc-test.yaml",
    )
    results = run_suites([bad, good, unknown], toy())
    assert [(r.name, r.passed, str(r.error) if r.error else None) for r in results] == [
        (str(bad), False, f"{bad}:1: tests must be a non-empty list (got 5)"),
        ("good", True, None),
        (str(unknown), False, f"{unknown}:1: policies: unknown policy 'x' (known: add-owner, needs-region)"),
    ]


# --- JUnit XML ------------------------------------------------------------------------------------------


def test_junit_xml(tmp_path: Path) -> None:
    from kcp_tmc.policies.suites import TestResult

    results = [
        SuiteResult(
            "s.yaml",
            "s",
            tests=(
                TestResult("s", "ok", (Check("(allowed)", "allowed", "allowed", True),), 0.5),
                TestResult(
                    "s",
                    "bad",
                    (
                        Check("p", "deny", "allow", False, "its messages: x"),
                        Check("(allowed)", "denied", "allowed", False),
                    ),
                    0.25,
                ),
            ),
        ),
        SuiteResult("k.yaml", "k", skipped="requires p, which is not installed"),
        SuiteResult("e.yaml", "e", error=SuiteError("e.yaml", 3, "tests must be a non-empty list (got 5)")),
    ]
    path = tmp_path / "junit.xml"
    junit_xml(results).write(path, encoding="utf-8", xml_declaration=True)
    text = path.read_text(encoding="utf-8")
    assert text == textwrap.dedent(
        """\
        <?xml version='1.0' encoding='utf-8'?>
        <testsuites name="tmc-policy test" tests="4" failures="1" errors="1" skipped="1" time="0.750000">
          <testsuite name="s" file="s.yaml" tests="2" failures="1" errors="0" skipped="0" time="0.750000">
            <testcase classname="s" name="ok" time="0.500000" />
            <testcase classname="s" name="bad" time="0.250000">
              <failure message="p: expected deny, got allow">p: expected deny, got allow (its messages: x)
        (allowed): expected denied, got allowed</failure>
            </testcase>
          </testsuite>
          <testsuite name="k" file="k.yaml" tests="1" failures="0" errors="0" skipped="1" time="0.000000">
            <testcase classname="k" name="(suite)" time="0">
              <skipped message="requires p, which is not installed" />
            </testcase>
          </testsuite>
          <testsuite name="e" file="e.yaml" tests="1" failures="0" errors="1" skipped="0" time="0.000000">
            <testcase classname="e" name="(load)" time="0">
              <error message="e.yaml:3: tests must be a non-empty list (got 5)" type="SuiteError" />
            </testcase>
          </testsuite>
        </testsuites>"""
    )


# --- the shipped examples ---------------------------------------------------------------------------------


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_builtin_policy_has_a_passing_example_suite() -> None:
    registry = builtins()
    results = run_suites(discover(EXAMPLES), registry)
    assert all(r.error is None for r in results), [str(r.error) for r in results if r.error]
    failures = [(t.suite, t.name, c) for r in results for t in r.tests for c in t.checks if not c.passed]
    assert failures == []
    checked = {c.policy for r in results for t in r.tests for c in t.checks}
    assert {p.name for p in registry} <= checked
    skipped = {r.name: r.skipped for r in results if r.skipped}
    assert skipped == {"region-label": "requires region-label, which is not installed"}
    # Every built-in policy is seen both allowing and denying (or, for the mutating ones, patching).
    for policy in registry:
        results_of = {
            c.got for r in results for t in r.tests for c in t.checks if c.policy == policy.name and c.passed
        }
        assert "allow" in results_of, policy.name
        if policy.type.value == "validating":
            assert "deny" in results_of, policy.name
