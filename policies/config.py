"""The engine's configuration: one YAML file for modes, failure modes, exemptions and settings.

Example::

    defaultCluster: root
    exemptions:
      namespaces: ["kube-*"]
      users: ["system:serviceaccount:kube-system:*"]
      groups: ["system:masters"]
    disabled: [some-policy]
    policies:
      synctarget-validation:
        mode: warn                # enforce | warn | audit; default: the policy's own
        failureMode: ignore       # fail | ignore; default: the policy's own
        enabled: true
        exemptions: {users: ["ci-bot"]}
        settings: {heartbeatSkew: 60s}

A bad file is refused with a :class:`ConfigError` that names the file, the line and the
reason; nothing of it is used.  Policy names are checked when the configuration is bound to a
registry (:meth:`EngineConfig.check`, called by the engine), because which policies exist
depends on the plug-ins installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from kcp_tmc.policies.exemptions import Exemptions
from kcp_tmc.policies.policy import FailureMode, Mode
from kcp_tmc.policies.yamlfiles import (
    BOOL_TAG,
    NULL_TAG,
    STR_TAG,
    SourceError,
    describe_node,
    node_line,
    read_mapping,
    yaml_problem,
)

if TYPE_CHECKING:
    from kcp_tmc.policies.registry import Registry

__all__ = ["ConfigError", "EngineConfig", "PolicyConfig", "load_config", "parse_config"]

_TOP_KEYS = ("defaultCluster", "disabled", "exemptions", "policies")
_POLICY_KEYS = ("enabled", "exemptions", "failureMode", "mode", "settings")
_EXEMPTION_KEYS = ("groups", "namespaces", "users")
_MODES = ", ".join(m.value for m in Mode)
_FAILURE_MODES = ", ".join(m.value for m in FailureMode)


class ConfigError(SourceError):
    """A configuration that cannot be used: ``<source>:<line>: <reason>``.

    ``source``, ``line`` (1-based, ``None`` when the fault has no place in the file) and
    ``reason`` are also available as attributes.
    """


@dataclass(frozen=True)
class PolicyConfig:
    """The configuration of one policy.

    ``mode`` and ``failure_mode`` of ``None`` keep the policy's own default.  ``line`` is where
    the policy is named in the file (for error messages), ``None`` when built in code.
    """

    mode: Mode | None = None
    failure_mode: FailureMode | None = None
    exemptions: Exemptions = field(default_factory=Exemptions)
    settings: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    enabled: bool = True
    line: int | None = field(default=None, compare=False)


_NO_POLICY_CONFIG = PolicyConfig()


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine is told: the default cluster, global exemptions and per-policy settings.

    ``disabled`` names policies that never run (as does ``enabled: false`` on a policy).
    ``source`` names the file it came from; ``lines`` maps names in ``disabled`` to their line.
    """

    default_cluster: str = "root"
    policies: Mapping[str, PolicyConfig] = field(default_factory=lambda: MappingProxyType({}))
    exemptions: Exemptions = field(default_factory=Exemptions)
    disabled: frozenset[str] = frozenset()
    source: str = field(default="<defaults>", compare=False)
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), compare=False)

    def policy(self, name: str) -> PolicyConfig:
        """The configuration of policy ``name`` (defaults when the file does not name it)."""
        return self.policies.get(name, _NO_POLICY_CONFIG)

    def is_enabled(self, name: str) -> bool:
        """False when the policy is listed under ``disabled`` or has ``enabled: false``."""
        return name not in self.disabled and self.policy(name).enabled

    def check(self, registry: Registry) -> None:
        """Raise :class:`ConfigError` for the first policy name that ``registry`` does not hold.

        The message gives the line where the name appears and lists the known policies.
        """
        known = sorted(p.name for p in registry)
        named: list[tuple[int | None, str, str]] = [
            (cfg.line, name, f"policies.{name}") for name, cfg in self.policies.items()
        ]
        named += [(self.lines.get(name), name, "disabled") for name in sorted(self.disabled)]
        named.sort(key=lambda t: (t[0] is None, t[0] or 0, t[1]))
        for line, name, where in named:
            if name not in registry:
                listing = ", ".join(known) if known else "none are registered"
                raise ConfigError(self.source, line, f"{where}: unknown policy {name!r} (known: {listing})")


def load_config(path: str | Path) -> EngineConfig:
    """Read and parse the configuration file at ``path``; see :func:`parse_config`."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, None, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, None, f"cannot read the file: {reason}") from None
    return parse_config(text, source=source)


def parse_config(text: str, source: str = "<string>") -> EngineConfig:
    """Parse one YAML document into an :class:`EngineConfig`; an empty document gives the defaults.

    Raises :class:`ConfigError` naming ``source``, the line and the reason for invalid YAML,
    unknown keys, duplicate keys and values of the wrong type or out of range.
    """
    return _Parser(source).parse(text)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, node: yaml.Node | None, reason: str) -> ConfigError:
        return ConfigError(self.source, node_line(node) if node is not None else None, reason)

    def parse(self, text: str) -> EngineConfig:
        try:
            loader = yaml.SafeLoader(text)
        except yaml.YAMLError as exc:  # the reader refuses control characters before any parsing
            raise ConfigError(self.source, None, f"not valid YAML: {exc}") from None
        try:
            try:
                root = loader.get_single_node()
            except yaml.MarkedYAMLError as exc:
                line, problem = yaml_problem(exc)
                raise ConfigError(self.source, line, f"not valid YAML: {problem}") from None
            self._loader = loader
            if root is None or _is_null(root):
                return EngineConfig(source=self.source)
            return self._top(root)
        finally:
            loader.dispose()

    def _mapping(self, node: yaml.Node, where: str, keys: Iterable[str]) -> dict[str, yaml.Node]:
        prefix = f"{where}: " if where != "the configuration" else ""
        return read_mapping(node, where, keys, self.error, prefix=prefix)

    def _string(self, node: yaml.Node, where: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != STR_TAG or not node.value:
            raise self.error(node, f"{where} must be a non-empty string (got {describe_node(node)})")
        return str(node.value)

    def _strings(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, f"{where} must be a list of strings (got {describe_node(node)})")
        return tuple(self._string(item, f"{where}[{i}]") for i, item in enumerate(node.value))

    def _bool(self, node: yaml.Node, where: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.tag != BOOL_TAG:
            raise self.error(node, f"{where} must be true or false (got {describe_node(node)})")
        return bool(self._loader.construct_object(node))

    def _enum(self, node: yaml.Node, where: str, choices: str, cls: type[Mode] | type[FailureMode]) -> Any:
        value = node.value if isinstance(node, yaml.ScalarNode) else None
        for member in cls:
            if value == member.value and node.tag == STR_TAG:
                return member
        raise self.error(node, f"{where} must be one of {choices} (got {describe_node(node)})")

    def _exemptions(self, node: yaml.Node, where: str) -> Exemptions:
        if _is_null(node):
            return Exemptions()
        fields = self._mapping(node, where, _EXEMPTION_KEYS)
        return Exemptions(**{k: self._strings(v, f"{where}.{k}") for k, v in fields.items()})

    def _policy(self, key_node: yaml.Node, node: yaml.Node, name: str) -> PolicyConfig:
        where = f"policies.{name}"
        if _is_null(node):
            return PolicyConfig(line=node_line(key_node))
        fields = self._mapping(node, where, _POLICY_KEYS)
        mode = failure_mode = None
        exemptions = Exemptions()
        settings: Mapping[str, Any] = MappingProxyType({})
        enabled = True
        if "mode" in fields:
            mode = self._enum(fields["mode"], f"{where}.mode", _MODES, Mode)
        if "failureMode" in fields:
            failure_mode = self._enum(
                fields["failureMode"], f"{where}.failureMode", _FAILURE_MODES, FailureMode
            )
        if "exemptions" in fields:
            exemptions = self._exemptions(fields["exemptions"], f"{where}.exemptions")
        if "settings" in fields and not _is_null(fields["settings"]):
            settings_node = fields["settings"]
            self._mapping(settings_node, f"{where}.settings", ())
            try:
                settings = MappingProxyType(self._loader.construct_object(settings_node, deep=True))
            except Exception as exc:  # PyYAML raises AttributeError on some malformed tagged values
                problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else None
                mark = exc.problem_mark if isinstance(exc, yaml.MarkedYAMLError) else None
                line = mark.line + 1 if mark is not None else node_line(settings_node)
                raise ConfigError(
                    self.source, line, f"{where}.settings cannot be read: {problem or _describe_exc(exc)}"
                ) from None
        if "enabled" in fields:
            enabled = self._bool(fields["enabled"], f"{where}.enabled")
        return PolicyConfig(
            mode=mode,
            failure_mode=failure_mode,
            exemptions=exemptions,
            settings=settings,
            enabled=enabled,
            line=node_line(key_node),
        )

    def _top(self, root: yaml.Node) -> EngineConfig:
        fields = self._mapping(root, "the configuration", _TOP_KEYS)
        default_cluster = "root"
        if "defaultCluster" in fields:
            default_cluster = self._string(fields["defaultCluster"], "defaultCluster")
        exemptions = (
            self._exemptions(fields["exemptions"], "exemptions") if "exemptions" in fields else Exemptions()
        )
        disabled: dict[str, int] = {}
        if "disabled" in fields and not _is_null(fields["disabled"]):
            node = fields["disabled"]
            names = self._strings(node, "disabled")
            disabled = {name: node_line(item) for name, item in zip(names, node.value, strict=True)}
        policies: dict[str, PolicyConfig] = {}
        if "policies" in fields and not _is_null(fields["policies"]):
            node = fields["policies"]
            self._mapping(node, "policies", ())
            for key_node, value_node in node.value:
                policies[key_node.value] = self._policy(key_node, value_node, key_node.value)
        return EngineConfig(
            default_cluster=default_cluster,
            policies=MappingProxyType(policies),
            exemptions=exemptions,
            disabled=frozenset(disabled),
            source=self.source,
            lines=MappingProxyType(disabled),
        )


def _describe_exc(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == NULL_TAG
