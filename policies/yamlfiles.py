"""What the readers of this project's files share: errors that name the file and line, and YAML nodes.

Documents (:mod:`~kcp_tmc.policies.documents`), the engine configuration
(:mod:`~kcp_tmc.policies.config`) and policy test suites (:mod:`~kcp_tmc.policies.suites`) all
refuse a bad file with ``<source>[:<line>]: <reason>``.  The configuration and the suites read
the YAML node tree, not the constructed values, so that every fault can name its line; the node
helpers here describe nodes and check mappings for them in the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

import yaml

__all__ = [
    "BOOL_TAG",
    "NULL_TAG",
    "STR_TAG",
    "SourceError",
    "describe_node",
    "node_line",
    "read_mapping",
    "yaml_problem",
]

STR_TAG: Final = "tag:yaml.org,2002:str"
NULL_TAG: Final = "tag:yaml.org,2002:null"
BOOL_TAG: Final = "tag:yaml.org,2002:bool"


class SourceError(ValueError):
    """A fault in a file: ``<source>:<line>: <reason>``, or ``<source>: <reason>`` without a line.

    ``source``, ``line`` (1-based, ``None`` when the fault has no place in the file) and
    ``reason`` are also available as attributes.
    """

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        super().__init__(f"{source}:{line}: {reason}" if line is not None else f"{source}: {reason}")


def yaml_problem(exc: yaml.MarkedYAMLError) -> tuple[int | None, str]:
    """The 1-based line of a YAML syntax error (``None`` when unknown) and what is wrong there."""
    mark = exc.problem_mark or exc.context_mark
    problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
    return (mark.line + 1 if mark is not None else None), problem


def node_line(node: yaml.Node) -> int:
    """The 1-based line where ``node`` starts."""
    return int(node.start_mark.line) + 1


def describe_node(node: yaml.Node) -> str:
    """A node as a message shows what was given: ``a mapping``, ``a list``, ``null``, ``'text'``, ``3``."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == NULL_TAG:
        return "null"
    return repr(node.value) if node.tag == STR_TAG else str(node.value)


def read_mapping(
    node: yaml.Node,
    where: str,
    keys: Iterable[str],
    error: Callable[[yaml.Node, str], Exception],
    *,
    prefix: str,
) -> dict[str, yaml.Node]:
    """The entries of a mapping node by key, checked: string keys, no duplicates, only ``keys``.

    ``keys`` empty allows any key.  A fault raises ``error(node, reason)``; ``where`` names the
    mapping in "must be a mapping", ``prefix`` starts the reasons about its keys.
    """
    if not isinstance(node, yaml.MappingNode):
        raise error(node, f"{where} must be a mapping (got {describe_node(node)})")
    allowed = tuple(keys)
    found: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
            raise error(key_node, f"{prefix}keys must be strings (got {describe_node(key_node)})")
        key = str(key_node.value)
        if key in found:
            raise error(key_node, f"{prefix}duplicate key {key!r}")
        if allowed and key not in allowed:
            raise error(key_node, f"{prefix}unknown key {key!r} (expected one of {', '.join(allowed)})")
        found[key] = value_node
    return found
