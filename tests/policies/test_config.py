"""The configuration file: what it accepts, and the exact message of every refusal."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kcp_tmc.policies import SYNC_TARGET, FailureMode, Mode, Registry, Verdict, validating
from kcp_tmc.policies.config import ConfigError, EngineConfig, PolicyConfig, load_config, parse_config
from kcp_tmc.policies.engine import Engine
from kcp_tmc.policies.exemptions import Exemptions

FULL = textwrap.dedent(
    """\
    defaultCluster: root:org
    exemptions:
      namespaces: ["kube-*"]
      users: ["system:serviceaccount:kube-system:*"]
      groups: ["system:masters"]
    disabled: [legacy-check]
    policies:
      synctarget-validation:
        mode: warn
        failureMode: ignore
        settings: {heartbeatSkew: 60s, retries: 3, nested: {a: [1, 2]}}
        exemptions: {users: ["ci-bot"]}
      quota:
        mode: audit
        enabled: false
      bare:
    """
)


def test_full_file_is_read() -> None:
    config = parse_config(FULL, source="tmc.yaml")
    assert config.default_cluster == "root:org"
    assert config.exemptions == Exemptions(
        namespaces=("kube-*",), users=("system:serviceaccount:kube-system:*",), groups=("system:masters",)
    )
    assert config.disabled == frozenset({"legacy-check"})
    st = config.policies["synctarget-validation"]
    assert st == PolicyConfig(
        mode=Mode.WARN,
        failure_mode=FailureMode.IGNORE,
        exemptions=Exemptions(users=("ci-bot",)),
        settings={"heartbeatSkew": "60s", "retries": 3, "nested": {"a": [1, 2]}},
    )
    assert st.line == 8
    assert config.policies["quota"].mode is Mode.AUDIT
    assert not config.is_enabled("quota")
    assert not config.is_enabled("legacy-check")
    assert config.is_enabled("synctarget-validation")
    assert config.policy("bare") == PolicyConfig()
    assert config.policy("not-named") == PolicyConfig()
    assert config.source == "tmc.yaml"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n", "null\n"])
def test_empty_document_gives_defaults(text: str) -> None:
    assert parse_config(text) == EngineConfig()
    assert EngineConfig().default_cluster == "root"


def test_null_sections_are_empty() -> None:
    config = parse_config("exemptions:\ndisabled:\npolicies:\n  a:\n    settings:\n")
    assert config == EngineConfig(policies={"a": PolicyConfig()})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "cfg.yaml:1: the configuration must be a mapping (got a list)"),
        ("hello\n", "cfg.yaml:1: the configuration must be a mapping (got 'hello')"),
        (
            "a: [1,\nb: 2\n",
            "cfg.yaml:3: not valid YAML: while parsing a flow sequence, expected ',' or ']', "
            "but got '<stream end>'",
        ),
        (
            "a:\n\t- b\n",
            "cfg.yaml:2: not valid YAML: while scanning for the next token, "
            "found character '\\t' that cannot start any token",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "cfg.yaml:2: not valid YAML: expected a single document in the stream, "
            "but found another document",
        ),
        (
            "defaultCluster: x\ndefualtCluster: y\n",
            "cfg.yaml:2: unknown key 'defualtCluster' (expected one of defaultCluster, disabled, exemptions, "
            "policies)",
        ),
        ("defaultCluster: x\ndefaultCluster: y\n", "cfg.yaml:2: duplicate key 'defaultCluster'"),
        ("1: x\n", "cfg.yaml:1: keys must be strings (got 1)"),
        ("defaultCluster: 3\n", "cfg.yaml:1: defaultCluster must be a non-empty string (got 3)"),
        ("defaultCluster: ''\n", "cfg.yaml:1: defaultCluster must be a non-empty string (got '')"),
        ("defaultCluster: [a]\n", "cfg.yaml:1: defaultCluster must be a non-empty string (got a list)"),
        ("defaultCluster: {a: 1}\n", "cfg.yaml:1: defaultCluster must be a non-empty string (got a mapping)"),
        (
            "policies:\n  a:\n    mode: block\n",
            "cfg.yaml:3: policies.a.mode must be one of enforce, warn, audit (got 'block')",
        ),
        (
            "policies:\n  a:\n    mode: 1\n",
            "cfg.yaml:3: policies.a.mode must be one of enforce, warn, audit (got 1)",
        ),
        (
            "policies:\n  a:\n    mode: Enforce\n",
            "cfg.yaml:3: policies.a.mode must be one of enforce, warn, audit (got 'Enforce')",
        ),
        (
            "policies:\n  a:\n    failureMode: Fail\n",
            "cfg.yaml:3: policies.a.failureMode must be one of fail, ignore (got 'Fail')",
        ),
        (
            "policies:\n  a:\n    mod: warn\n",
            "cfg.yaml:3: policies.a: unknown key 'mod' "
            "(expected one of enabled, exemptions, failureMode, mode, settings)",
        ),
        ("policies:\n  a: warn\n", "cfg.yaml:2: policies.a must be a mapping (got 'warn')"),
        ("policies: [a]\n", "cfg.yaml:1: policies must be a mapping (got a list)"),
        ("policies:\n  3: {}\n", "cfg.yaml:2: policies: keys must be strings (got 3)"),
        ("policies:\n  a: {}\n  a: {}\n", "cfg.yaml:3: policies: duplicate key 'a'"),
        ("exemptions: [a]\n", "cfg.yaml:1: exemptions must be a mapping (got a list)"),
        (
            "exemptions:\n  namespaces: kube-system\n",
            "cfg.yaml:2: exemptions.namespaces must be a list of strings (got 'kube-system')",
        ),
        (
            "exemptions:\n  namespaces: [a, 3]\n",
            "cfg.yaml:2: exemptions.namespaces[1] must be a non-empty string (got 3)",
        ),
        (
            "exemptions:\n  users: [~]\n",
            "cfg.yaml:2: exemptions.users[0] must be a non-empty string (got null)",
        ),
        (
            "exemptions:\n  namespace: [a]\n",
            "cfg.yaml:2: exemptions: unknown key 'namespace' (expected one of groups, namespaces, users)",
        ),
        (
            "policies:\n  a:\n    exemptions:\n      groups: x\n",
            "cfg.yaml:4: policies.a.exemptions.groups must be a list of strings (got 'x')",
        ),
        (
            "policies:\n  a:\n    settings: [1]\n",
            "cfg.yaml:3: policies.a.settings must be a mapping (got a list)",
        ),
        (
            "policies:\n  a:\n    settings:\n      x: 1\n      t: !!python/object:os.system x\n",
            "cfg.yaml:5: policies.a.settings cannot be read: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            "policies:\n  a:\n    settings:\n      t: !!timestamp nope\n",
            "cfg.yaml:4: policies.a.settings cannot be read: AttributeError: 'NoneType' object has no "
            "attribute 'groupdict'",
        ),
        (
            "policies:\n  a:\n    enabled: 'no'\n",
            "cfg.yaml:3: policies.a.enabled must be true or false (got 'no')",
        ),
        ("disabled: a\n", "cfg.yaml:1: disabled must be a list of strings (got 'a')"),
    ],
)
def test_rejections(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="cfg.yaml")
    assert str(info.value) == message
    assert info.value.source == "cfg.yaml"
    assert message.startswith(f"cfg.yaml:{info.value.line}: {info.value.reason}"[: len(message)])


def test_bad_characters_have_no_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("a: \x07\n", source="cfg.yaml")
    assert info.value.line is None
    assert str(info.value).startswith("cfg.yaml: not valid YAML: unacceptable character #x0007")


def test_load_config_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tmc.yaml"
    path.write_text(FULL, encoding="utf-8")
    assert load_config(path) == parse_config(FULL)
    assert load_config(str(path)).source == str(path)


def test_load_config_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: no such file"
    assert info.value.line is None


def test_load_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: cannot read the file: Is a directory"


def test_load_config_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"defaultCluster: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: cannot read the file: 'utf-8' codec can't decode byte 0xe9 in position 19: "
        "invalid continuation byte"
    )


def test_load_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tmc.yaml"
    path.write_text("policies:\n  a:\n    mode: strict\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"tmc\.yaml:3: policies\.a\.mode must be one of enforce, warn, audit"
    ):
        load_config(path)


def _registry() -> Registry:
    registry = Registry()
    for name in ("zeta", "alpha"):
        validating(name, kinds=[SYNC_TARGET], registry=registry)(lambda req: Verdict())
    return registry


def test_unknown_policy_is_reported_with_its_line_when_bound() -> None:
    config = parse_config("policies:\n  alpha: {}\n  alhpa:\n    mode: warn\n", source="tmc.yaml")
    with pytest.raises(ConfigError) as info:
        Engine(_registry(), config)
    assert str(info.value) == "tmc.yaml:3: policies.alhpa: unknown policy 'alhpa' (known: alpha, zeta)"


def test_unknown_disabled_policy_is_reported_with_its_line() -> None:
    config = parse_config("disabled:\n  - zeta\n  - omega\n", source="tmc.yaml")
    with pytest.raises(ConfigError) as info:
        config.check(_registry())
    assert str(info.value) == "tmc.yaml:3: disabled: unknown policy 'omega' (known: alpha, zeta)"


def test_first_unknown_policy_in_file_order() -> None:
    config = parse_config("policies:\n  b1: {}\ndisabled: [a1]\n", source="tmc.yaml")
    with pytest.raises(ConfigError, match=r"^tmc\.yaml:2: policies\.b1: unknown policy 'b1'"):
        config.check(_registry())


def test_unknown_policy_in_code_built_config_and_empty_registry() -> None:
    config = EngineConfig(policies={"ghost": PolicyConfig()})
    with pytest.raises(ConfigError) as info:
        config.check(Registry())
    assert (
        str(info.value) == "<defaults>: policies.ghost: unknown policy 'ghost' (known: none are registered)"
    )


def test_known_policies_pass_the_check() -> None:
    parse_config("policies:\n  alpha: {mode: warn}\ndisabled: [zeta]\n").check(_registry())
