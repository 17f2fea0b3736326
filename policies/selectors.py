"""Kubernetes label and field selectors, with the apiserver's syntax, semantics and messages.

Three entry points:

* :func:`parse_selector` parses the string syntax of ``?labelSelector=`` and
  ``kubectl -l`` (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
  ``a``, ``!a``, and the numeric ``a>1`` / ``a<1``).
* :func:`label_selector_from_dict` converts a ``metav1.LabelSelector`` object
  (``matchLabels`` + ``matchExpressions``) exactly like apimachinery's
  ``LabelSelectorAsSelector``: ``None`` matches nothing, ``{}`` matches everything.
* :func:`parse_field_selector` parses ``?fieldSelector=`` (``=``, ``==``, ``!=``
  with backslash escapes) and matches ``metadata.name`` / ``metadata.namespace``.

Error messages are those of ``k8s.io/apimachinery`` (``pkg/labels/selector.go``,
``pkg/fields/selector.go``, ``pkg/apis/meta/v1/helpers.go``), because users and
tests compare them with what a real cluster says.  ``str()`` of a selector is the
canonical form the apiserver prints: requirements sorted by key, set values sorted.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kcp_tmc.policies.validation import is_qualified_name, is_valid_label_value

__all__ = [
    "DEFAULT_FIELD_SELECTOR_FIELDS",
    "FieldRequirement",
    "FieldSelector",
    "Operator",
    "Requirement",
    "Selector",
    "SelectorError",
    "label_selector_from_dict",
    "parse_field_selector",
    "parse_selector",
    "selector_from_set",
]


class SelectorError(ValueError):
    """A selector that apimachinery would refuse; ``str()`` is its exact message."""


class Operator(enum.StrEnum):
    """The operators of ``k8s.io/apimachinery/pkg/selection`` (values are Go's)."""

    IN = "in"
    NOT_IN = "notin"
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    GREATER_THAN = "gt"
    LESS_THAN = "lt"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


_BINARY_OPERATORS = ("in", "notin", "=", "==", "!=", "gt", "lt")

# Keys and values are checked by the same functions the policies use (validation.py),
# so a selector and a label on an object are refused in the same words.


def _go_quote(value: str) -> str:
    """Approximates Go's ``%q``, which is what field errors use for string values."""
    return json.dumps(value, ensure_ascii=False)


def _invalid(path: str, bad_value: str, detail: str) -> str:
    """Formats a ``field.Invalid`` error; ``bad_value`` is already rendered."""
    return f"{path}: Invalid value: {bad_value}: {detail}"


def _aggregate(messages: Sequence[str]) -> str:
    """Joins errors like ``utilerrors.NewAggregate``: one bare, several bracketed, duplicates once."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


def _is_int64(value: str) -> bool:
    # strconv.ParseInt(v, 10, 64): optional sign, decimal digits only, 64-bit range.
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        return False
    return -(2**63) <= int(value) < 2**63


# --- requirements and selectors ---


@dataclass(frozen=True)
class Requirement:
    """One ``key <operator> values`` term.  ``values`` is sorted and free of duplicates.

    Build it with :meth:`new`, which validates like ``labels.NewRequirement``.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    @classmethod
    def new(
        cls, key: str, operator: Operator | str, values: Iterable[str] = (), *, path: str = ""
    ) -> Requirement:
        """Validates and builds a requirement; raises :class:`SelectorError` with apimachinery's text.

        ``path`` is the field path the messages are prefixed with (empty as in ``labels.Parse``).
        """
        given = list(values)
        prefix = f"{path}." if path else ""
        errors: list[str] = []
        if key_errors := is_qualified_name(key):
            errors.append(_invalid(prefix + "key", _go_quote(key), "; ".join(key_errors)))
        try:
            op: Operator | None = Operator(operator)
        except ValueError:
            op = None
            supported = ", ".join(_go_quote(o) for o in (*_BINARY_OPERATORS, "exists", "!"))
            shown = _go_quote(str(operator))
            errors.append(f"{prefix}operator: Unsupported value: {shown}: supported values: {supported}")
        values_path = prefix + "values"
        rendered = json.dumps(given or None, separators=(",", ":"), ensure_ascii=False)
        if op in (Operator.IN, Operator.NOT_IN) and not given:
            detail = "for 'in', 'notin' operators, values set can't be empty"
            errors.append(_invalid(values_path, rendered, detail))
        elif op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS) and len(given) != 1:
            detail = "exact-match compatibility requires one single value"
            errors.append(_invalid(values_path, rendered, detail))
        elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST) and given:
            errors.append(
                _invalid(values_path, rendered, "values set must be empty for exists and does not exist")
            )
        elif op in (Operator.GREATER_THAN, Operator.LESS_THAN):
            if len(given) != 1:
                errors.append(
                    _invalid(values_path, rendered, "for 'Gt', 'Lt' operators, exactly one value is required")
                )
            errors.extend(
                _invalid(
                    f"{values_path}[{i}]",
                    _go_quote(v),
                    "for 'Gt', 'Lt' operators, the value must be an integer",
                )
                for i, v in enumerate(given)
                if not _is_int64(v)
            )
        for i, value in enumerate(given):
            if value_errors := is_valid_label_value(value):
                path_i = f"{values_path}[{i}][{key}]"
                errors.append(_invalid(path_i, _go_quote(value), "; ".join(value_errors)))
        if errors or op is None:
            raise SelectorError(_aggregate(errors))
        return cls(key, op, tuple(sorted(set(given))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (a missing key satisfies ``!=`` and ``notin``)."""
        op = self.operator
        if op is Operator.EXISTS:
            return self.key in labels
        if op is Operator.DOES_NOT_EXIST:
            return self.key not in labels
        if self.key not in labels:
            return op in (Operator.NOT_IN, Operator.NOT_EQUALS)
        value = labels[self.key]
        if op in (Operator.IN, Operator.EQUALS, Operator.DOUBLE_EQUALS):
            return value in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return value not in self.values
        # gt / lt: both sides must be 64-bit integers, or nothing matches.
        if not _is_int64(value) or len(self.values) != 1 or not _is_int64(self.values[0]):
            return False
        if op is Operator.GREATER_THAN:
            return int(value) > int(self.values[0])
        return int(value) < int(self.values[0])

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        joined = ",".join(self.values)
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({joined})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{joined}"


@dataclass(frozen=True)
class Selector:
    """A conjunction of label requirements, sorted by key.

    ``Selector()`` matches everything; :meth:`nothing` matches no object at all
    (what a ``None`` ``metav1.LabelSelector`` means).
    """

    requirements: tuple[Requirement, ...] = ()
    selects_nothing: bool = False

    @classmethod
    def everything(cls) -> Selector:
        """The selector that matches every set of labels (the empty string)."""
        return cls()

    @classmethod
    def nothing(cls) -> Selector:
        """The selector that matches no set of labels; it prints as ``""`` like apimachinery's."""
        return cls(selects_nothing=True)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (apimachinery's ``Empty()``)."""
        return not self.requirements and not self.selects_nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """Whether every requirement holds for ``labels`` (``None`` means no labels)."""
        if self.selects_nothing:
            return False
        present = labels or {}
        return all(requirement.matches(present) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _sorted_by_key(requirements: Iterable[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(requirements, key=lambda requirement: requirement.key))


def selector_from_set(labels: Mapping[str, str]) -> Selector:
    """A selector requiring exactly these label values (``labels.SelectorFromSet``); no validation."""
    return Selector(_sorted_by_key(Requirement(k, Operator.EQUALS, (v,)) for k, v in labels.items()))


# --- the string syntax: lexer ---


class _Token(enum.Enum):
    END = enum.auto()
    CLOSE_PAREN = enum.auto()
    COMMA = enum.auto()
    NOT = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAREN = enum.auto()


_LITERAL_TOKENS = {
    ")": _Token.CLOSE_PAREN,
    ",": _Token.COMMA,
    "!": _Token.NOT,
    "==": _Token.DOUBLE_EQUALS,
    "=": _Token.EQUALS,
    ">": _Token.GREATER,
    "in": _Token.IN,
    "<": _Token.LESS,
    "!=": _Token.NOT_EQUALS,
    "notin": _Token.NOT_IN,
    "(": _Token.OPEN_PAREN,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Token, str]]:
    """Splits ``text`` into tokens the way apimachinery's lexer does.

    Every special character is a token on its own, so the lexer itself never
    fails: the longest run of special characters that still forms a token wins.
    """
    items: list[tuple[_Token, str]] = []
    pos, size = 0, len(text)
    while True:
        while pos < size and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= size:
            items.append((_Token.END, ""))
            return items
        if text[pos] in _SPECIAL:
            end = pos + 1
            while end < size and text[end] in _SPECIAL and text[pos : end + 1] in _LITERAL_TOKENS:
                end += 1
            literal = text[pos:end]
        else:
            end = pos
            while end < size and text[end] not in _SPECIAL and text[end] not in _WHITESPACE:
                end += 1
            literal = text[pos:end]
        items.append((_LITERAL_TOKENS.get(literal, _Token.IDENTIFIER), literal))
        pos = end


# --- the string syntax: parser ---


class _Parser:
    """Recursive descent over the token list, mirroring apimachinery's ``Parser``."""

    def __init__(self, text: str) -> None:
        self._items = _lex(text)
        self._position = 0

    def _peek(self, values: bool = True) -> tuple[_Token, str]:
        return self._as_context(self._items[self._position], values)

    def _take(self, values: bool = True) -> tuple[_Token, str]:
        item = self._items[self._position]
        self._position += 1
        return self._as_context(item, values)

    @staticmethod
    def _as_context(item: tuple[_Token, str], values: bool) -> tuple[_Token, str]:
        # 'in' and 'notin' are keywords only where an operator is expected; elsewhere
        # (keys, values) they are ordinary identifiers: `in in (in)` is valid.
        token, literal = item
        if values and token in (_Token.IN, _Token.NOT_IN):
            return _Token.IDENTIFIER, literal
        return token, literal

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            token, literal = self._peek()
            if token is _Token.END:
                return requirements
            if token not in (_Token.IDENTIFIER, _Token.NOT):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as err:
                raise SelectorError(f"unable to parse requirement: {err}") from None
            token, literal = self._take()
            if token is _Token.END:
                return requirements
            if token is not _Token.COMMA:
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            token, literal = self._peek()
            if token not in (_Token.IDENTIFIER, _Token.NOT):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        negated = False
        token, literal = self._take()
        if token is _Token.NOT:
            negated = True
            token, literal = self._take()
        if token is not _Token.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        key = literal
        if key_errors := is_qualified_name(key):
            raise SelectorError(_invalid("<nil>", _go_quote(key), "; ".join(key_errors)))
        if negated:
            # `!key` takes no operator; whatever follows is the caller's problem.
            return Requirement.new(key, Operator.DOES_NOT_EXIST)
        if self._peek()[0] in (_Token.END, _Token.COMMA):
            return Requirement.new(key, Operator.EXISTS)
        operator = self._operator()
        set_based = operator in (Operator.IN, Operator.NOT_IN)
        values = self._set_values() if set_based else self._exact_value()
        return Requirement.new(key, operator, sorted(values))

    def _operator(self) -> Operator:
        token, literal = self._take(values=False)
        operators = {
            _Token.IN: Operator.IN,
            _Token.EQUALS: Operator.EQUALS,
            _Token.DOUBLE_EQUALS: Operator.DOUBLE_EQUALS,
            _Token.GREATER: Operator.GREATER_THAN,
            _Token.LESS: Operator.LESS_THAN,
            _Token.NOT_IN: Operator.NOT_IN,
            _Token.NOT_EQUALS: Operator.NOT_EQUALS,
        }
        if token not in operators:
            raise SelectorError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        return operators[token]

    def _set_values(self) -> set[str]:
        token, literal = self._take()
        if token is not _Token.OPEN_PAREN:
            raise SelectorError(f"found '{literal}' expected: '('")
        token, literal = self._peek()
        if token is _Token.CLOSE_PAREN:
            self._take()
            return {""}
        if token not in (_Token.IDENTIFIER, _Token.COMMA):
            raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")
        values = self._identifier_list()
        self._take()  # the ')' that _identifier_list stopped in front of
        return values

    def _identifier_list(self) -> set[str]:
        # Empty entries are the empty string: `(,a)`, `(a,)` and `(a,,b)` all contain "".
        values: set[str] = set()
        while True:
            token, literal = self._take()
            if token is _Token.IDENTIFIER:
                values.add(literal)
                following, following_literal = self._peek()
                if following is _Token.CLOSE_PAREN:
                    return values
                if following is not _Token.COMMA:
                    raise SelectorError(f"found '{following_literal}', expected: ',' or ')'")
            elif token is _Token.COMMA:
                if not values:
                    values.add("")
                following = self._peek()[0]
                if following is _Token.CLOSE_PAREN:
                    values.add("")
                    return values
                if following is _Token.COMMA:
                    values.add("")
            else:
                raise SelectorError(f"found '{literal}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        if self._peek()[0] in (_Token.END, _Token.COMMA):
            return {""}
        token, literal = self._take()
        if token is not _Token.IDENTIFIER:
            raise SelectorError(f"found '{literal}', expected: identifier")
        return {literal}


def parse_selector(text: str) -> Selector:
    """Parses a label selector string (``labels.Parse``); raises :class:`SelectorError`.

    The empty string selects everything.  Requirements come out sorted by key.
    """
    return Selector(_sorted_by_key(_Parser(text).parse()))


_LABEL_SELECTOR_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def label_selector_from_dict(selector: Mapping[str, Any] | None) -> Selector:
    """Converts a ``metav1.LabelSelector`` (``LabelSelectorAsSelector``).

    ``None`` selects nothing; a selector without terms selects everything.  Raises
    :class:`SelectorError` for an unknown operator, invalid keys or values, or a
    value list that does not fit the operator.
    """
    if selector is None:
        return Selector.nothing()
    match_labels: Mapping[str, str] = selector.get("matchLabels") or {}
    expressions: Sequence[Mapping[str, Any]] = selector.get("matchExpressions") or ()
    if not match_labels and not expressions:
        return Selector.everything()
    requirements: list[Requirement] = []
    # Go walks matchLabels in random order; sorting makes the first error reported stable.
    for key in sorted(match_labels):
        requirements.append(Requirement.new(key, Operator.EQUALS, [match_labels[key]]))
    for expression in expressions:
        operator_name = expression.get("operator", "")
        operator = _LABEL_SELECTOR_OPERATORS.get(operator_name)
        if operator is None:
            raise SelectorError(f"{_go_quote(str(operator_name))} is not a valid label selector operator")
        requirements.append(
            Requirement.new(expression.get("key", ""), operator, list(expression.get("values") or ()))
        )
    return Selector(_sorted_by_key(requirements))


# --- field selectors ---

DEFAULT_FIELD_SELECTOR_FIELDS = ("metadata.name", "metadata.namespace")
"""The fields every resource supports in ``?fieldSelector=``."""


@dataclass(frozen=True)
class FieldRequirement:
    """``field=value`` (``operator`` ``=``; ``==`` is the same) or ``field!=value``."""

    field: str
    operator: Operator
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Whether the field's value (``""`` when absent) satisfies the requirement."""
        actual = fields.get(self.field, "")
        if self.operator is Operator.NOT_EQUALS:
            return actual != self.value
        return actual == self.value

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
        symbol = "!=" if self.operator is Operator.NOT_EQUALS else "="
        return f"{self.field}{symbol}{escaped}"


def object_field(obj: Mapping[str, Any], field: str) -> str:
    """The value of a dotted field path of an object, as a string (``""`` when absent)."""
    current: Any = obj
    for part in field.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements, in apimachinery's order (terms sorted as written)."""

    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing is required."""
        return not self.requirements

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether an object (a JSON dict) satisfies every requirement."""
        fields = {r.field: object_field(obj, r.field) for r in self.requirements}
        return all(requirement.matches(fields) for requirement in self.requirements)

    def matches_fields(self, fields: Mapping[str, str]) -> bool:
        """Whether a precomputed field set (as ``fields.Set``) satisfies every requirement."""
        return all(requirement.matches(fields) for requirement in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


def _split_terms(text: str) -> list[str]:
    # Commas split terms unless escaped; the backslash stays for _unescape to check.
    terms: list[str] = []
    start, escaped = 0, False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _unescape(value: str) -> str:
    out: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            # Go prints the rune with %v, i.e. as its code point number.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(char)}")
        else:
            out.append(char)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(
    text: str,
    supported: Collection[str] | None = DEFAULT_FIELD_SELECTOR_FIELDS,
    *,
    kind_specific: bool = False,
) -> FieldSelector:
    """Parses a field selector (``fields.ParseSelector``); raises :class:`SelectorError`.

    ``supported`` lists the field labels the resource accepts (``None`` accepts
    every field; matching then reads the dotted path).  Any other field is
    refused in the apiserver's words: kinds with their own field-label
    conversion (``kind_specific=True``: pods, nodes, namespaces, secrets,
    services, events) say ``field label not supported: <field>``; every other
    kind, custom resources included, says ``"<field>" is not a known field
    selector: only "metadata.name", "metadata.namespace"``.
    """
    requirements: list[FieldRequirement] = []
    for term in sorted(_split_terms(text)) if text else ():
        if not term:
            continue
        for index in range(len(term)):
            operator = next((op for op in ("!=", "==", "=") if term.startswith(op, index)), None)
            if operator is not None:
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, value = term[:index], _unescape(term[index + len(operator) :])
        op = Operator.NOT_EQUALS if operator == "!=" else Operator.EQUALS
        requirements.append(FieldRequirement(field, op, value))
    if supported is not None:
        for requirement in requirements:
            if requirement.field in supported:
                continue
            if kind_specific:
                raise SelectorError(f"field label not supported: {requirement.field}")
            known = ", ".join(_go_quote(f) for f in supported)
            raise SelectorError(f"{_go_quote(requirement.field)} is not a known field selector: only {known}")
    return FieldSelector(tuple(requirements))
