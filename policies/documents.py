"""Reading Kubernetes objects from JSON and YAML files the way kubectl does.

YAML is read as JSON in YAML syntax, as ``sigs.k8s.io/yaml`` reads manifests: a time such as
``2024-01-02T15:04:05Z`` stays a string (PyYAML would turn it into a ``datetime``, which no policy
expects and no JSON encoder writes), and only JSON types come out.  Every fault is a
:class:`DocumentError` that names the file and, where the text has one, the line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kcp_tmc.policies.yamlfiles import SourceError, yaml_problem

__all__ = ["DocumentError", "JsonLoader", "describe", "load_documents", "parse_documents", "read_text"]


class JsonLoader(yaml.SafeLoader):
    """A YAML loader that yields JSON values only: no timestamps, no binary, no sets."""


# Drop the resolvers and constructors that produce non-JSON values.  Copy the tables first:
# SafeLoader's are class attributes shared with every other loader.
JsonLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
JsonLoader.yaml_constructors = dict(yaml.SafeLoader.yaml_constructors)
for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    JsonLoader.yaml_constructors[f"tag:yaml.org,2002:{_tag}"] = JsonLoader.construct_undefined


class DocumentError(SourceError):
    """A file that cannot be read as JSON or YAML: ``<source>[:<line>]: <reason>``."""


def read_text(path: str | Path, *, stdin_name: str = "-") -> tuple[str, str]:
    """The text of ``path`` and the name to report it by; ``-`` reads standard input.

    Raises :class:`DocumentError` for a missing, unreadable or non-UTF-8 file.
    """
    if str(path) == stdin_name:
        try:
            return sys.stdin.read(), "<stdin>"
        except UnicodeDecodeError as exc:
            raise DocumentError("<stdin>", None, f"not UTF-8 text: {exc.reason}") from None
    source = str(path)
    try:
        return Path(path).read_text(encoding="utf-8"), source
    except FileNotFoundError:
        raise DocumentError(source, None, "no such file") from None
    except IsADirectoryError:
        raise DocumentError(source, None, "is a directory, not a file") from None
    except UnicodeDecodeError as exc:
        raise DocumentError(source, None, f"not UTF-8 text: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DocumentError(source, None, f"cannot read the file: {reason}") from None


def parse_documents(text: str, source: str) -> list[Any]:
    """The documents of ``text``: one for JSON, one or more for YAML (empty documents dropped).

    JSON is tried first (YAML refuses some valid JSON, such as tabs used for indentation).
    """
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return [json.loads(text)]
        except ValueError:
            pass  # maybe YAML in flow style; YAML's error is the clearer one then
    try:
        return [doc for doc in _load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        line, problem = yaml_problem(exc)
        raise DocumentError(source, line, f"not valid JSON or YAML: {problem}") from None
    except yaml.YAMLError as exc:  # the reader refuses control characters before any parsing
        raise DocumentError(source, None, f"not valid JSON or YAML: {exc}") from None


def _load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=JsonLoader)


def load_documents(path: str | Path) -> tuple[list[Any], str]:
    """The documents of the file at ``path`` (``-``: standard input) and the name it goes by."""
    text, source = read_text(path)
    return parse_documents(text, source), source


def describe(value: object) -> str:
    """The JSON type of ``value`` with its article, for messages: ``a list``, ``a string``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
