"""Generic validators: names, label keys and values, label selectors, URLs, and field errors.

Two layers, both pure and cheap (compiled patterns, no copies of the input):

* ``is_*`` string checks return a list of problems, empty when the value is valid.  Their
  messages are those of ``k8s.io/apimachinery`` v0.36 (Kubernetes 1.36):
  ``pkg/util/validation`` for DNS names and config keys ("must be no more than 63 characters"),
  ``pkg/api/validate/content`` for label keys and values ("must be no more than 63 bytes",
  "a valid label key ..."), so that they read exactly like the apiserver's.
* Field-error builders (:func:`invalid`, :func:`required`, ...) render a :class:`FieldError`
  the way apimachinery's ``field.Error`` renders its body: ``Invalid value: "x": <detail>``,
  ``Required value: <detail>``, ``Unsupported value: "x": supported values: "A", "B"``.

The webhook, the fake API server and third-party policies use these as they are; nothing here
knows about any particular kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from kcp_tmc.policies.gofmt import go_value
from kcp_tmc.policies.policy import FieldError

__all__ = [
    "DNS1123_LABEL_MAX_LENGTH",
    "DNS1123_SUBDOMAIN_MAX_LENGTH",
    "LABEL_SELECTOR_OPERATORS",
    "LABEL_VALUE_MAX_LENGTH",
    "QUALIFIED_NAME_MAX_LENGTH",
    "as_bool",
    "as_list",
    "as_map",
    "as_objects",
    "as_str",
    "child",
    "duplicate",
    "empty_error",
    "forbidden",
    "index",
    "invalid",
    "is_config_map_key",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_http_url",
    "is_qualified_name",
    "is_valid_label_selector",
    "is_valid_label_value",
    "json_type",
    "key",
    "max_len_error",
    "not_supported",
    "regex_error",
    "render_value",
    "required",
    "too_long",
    "type_invalid",
    "validate_labels",
]

DNS1123_LABEL_MAX_LENGTH: Final = 63
DNS1123_SUBDOMAIN_MAX_LENGTH: Final = 253
QUALIFIED_NAME_MAX_LENGTH: Final = 63
LABEL_VALUE_MAX_LENGTH: Final = 63

#: The operators of a ``metav1.LabelSelectorRequirement``, in apimachinery's order.
LABEL_SELECTOR_OPERATORS: Final = ("In", "NotIn", "Exists", "DoesNotExist")

_DNS1123_LABEL_FMT: Final = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_ERR: Final = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT: Final = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR: Final = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_QNAME_FMT: Final = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_ERR: Final = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT: Final = "(" + _QNAME_FMT + ")?"
_LABEL_VALUE_ERR: Final = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_CONFIG_MAP_KEY_FMT: Final = "[-._a-zA-Z0-9]+"
_CONFIG_MAP_KEY_ERR: Final = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"

# fullmatch everywhere: Python's "$" also matches before a trailing newline, Go's does not.
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_QNAME = re.compile(_QNAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_CONFIG_MAP_KEY = re.compile(_CONFIG_MAP_KEY_FMT)
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")

_URL_EXAMPLE: Final = "https://example.com:6443/path"


# --- apimachinery message helpers -----------------------------------------------------------------


def max_len_error(length: int, unit: str = "characters") -> str:
    """``must be no more than <length> characters`` (label keys and values say ``bytes``)."""
    return f"must be no more than {length} {unit}"


def empty_error() -> str:
    """``must be non-empty``."""
    return "must be non-empty"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's ``RegexError``: the rule, examples, and the regex it was checked with."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}', " for e in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _byte_len(value: str) -> int:
    # Go measures strings in bytes; only non-ASCII text differs.
    return len(value) if value.isascii() else len(value.encode("utf-8"))


# --- string checks --------------------------------------------------------------------------------


def is_dns1123_label(value: str) -> list[str]:
    """Problems with ``value`` as an RFC 1123 label (``my-name``; at most 63 characters)."""
    errs: list[str] = []
    if _byte_len(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if _DNS1123_LABEL.fullmatch(value) is None:
        if _DNS1123_SUBDOMAIN.fullmatch(value) is not None:
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_ERR, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    """Problems with ``value`` as an RFC 1123 subdomain (``example.com``; at most 253 characters)."""
    return _dns1123_subdomain(value, "characters")


def _dns1123_subdomain(value: str, unit: str) -> list[str]:
    errs: list[str] = []
    if _byte_len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH, unit))
    if _DNS1123_SUBDOMAIN.fullmatch(value) is None:
        errs.append(regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Problems with ``value`` as a qualified name: a label or annotation key (``example.com/MyName``)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + msg for msg in _dns1123_subdomain(prefix, "bytes"))
    else:
        return [
            "a valid label key "
            + regex_error(_QNAME_ERR, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif _byte_len(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH, "bytes"))
    if _QNAME.fullmatch(name) is None:
        errs.append("name part " + regex_error(_QNAME_ERR, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def is_valid_label_value(value: str) -> list[str]:
    """Problems with ``value`` as a label value (empty, or ``my_value``; at most 63 characters)."""
    errs: list[str] = []
    if _byte_len(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH, "bytes"))
    if _LABEL_VALUE.fullmatch(value) is None:
        errs.append(regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_config_map_key(value: str) -> list[str]:
    """Problems with ``value`` as a key of a ConfigMap's or a Secret's ``data``."""
    errs: list[str] = []
    if _byte_len(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if _CONFIG_MAP_KEY.fullmatch(value) is None:
        errs.append(regex_error(_CONFIG_MAP_KEY_ERR, _CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value == ".":
        errs.append("must not be '.'")
    elif value == "..":
        errs.append("must not be '..'")
    elif value.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def is_http_url(value: str) -> list[str]:
    """Problems with ``value`` as an absolute ``http`` or ``https`` URL with a host.

    The path, query and fragment are not checked; callers with rules about the path
    check :func:`urllib.parse.urlsplit`'s ``path`` themselves.
    """
    if not value:
        return [f"must be an absolute http or https URL such as {_URL_EXAMPLE}"]
    if _SPACE_OR_CONTROL.search(value):
        return ["must not contain whitespace or control characters"]
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return [f"is not a valid URL ({exc}); use an absolute http or https URL such as {_URL_EXAMPLE}"]
    scheme = parts.scheme.lower()
    if not scheme or "://" not in value:  # "host:6443/x" parses as scheme "host"
        return [f"must be an absolute URL with scheme http or https, such as {_URL_EXAMPLE}"]
    if scheme not in ("http", "https"):
        return [f'must use scheme http or https, not "{parts.scheme}" (for example {_URL_EXAMPLE})']
    if not parts.hostname:
        return [f"must include a host, such as {_URL_EXAMPLE}"]
    try:
        port = parts.port  # the property raises on a port that is not a number from 0 to 65535
    except ValueError:
        port = 0
    if port == 0:
        return [f"has an invalid port; use a number from 1 to 65535, such as {_URL_EXAMPLE}"]
    return []


# --- field paths ----------------------------------------------------------------------------------


def child(path: str, name: str) -> str:
    """``path.name``, or ``name`` at the root."""
    return f"{path}.{name}" if path else name


def index(path: str, i: int) -> str:
    """``path[i]``: an element of a list."""
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    """``path[k]``: an entry of a map (unquoted, as apimachinery's ``field.Path.Key``)."""
    return f"{path}[{k}]"


# --- field errors ---------------------------------------------------------------------------------


def json_type(value: object) -> str:
    """The JSON type name of a decoded JSON value: object, array, string, number, boolean or null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def render_value(value: object) -> str:
    """A bad value as apimachinery prints it (:func:`~kcp_tmc.policies.gofmt.go_value`)."""
    return go_value(value)


def invalid(path: str, value: object, detail: str) -> FieldError:
    """``Invalid value: <value>: <detail>``."""
    return FieldError.invalid(path, value, detail)


def type_invalid(path: str, value: object, expected: str) -> FieldError:
    """A value of the wrong JSON type: ``Invalid value: "x": must be an object, not a string``."""
    return FieldError.type_invalid(path, value, f"must be {expected}, not {_article(json_type(value))}")


def required(path: str, detail: str = "") -> FieldError:
    """``Required value[: <detail>]``."""
    return FieldError.required(path, detail)


def forbidden(path: str, detail: str) -> FieldError:
    """``Forbidden: <detail>``."""
    return FieldError.forbidden(path, detail)


def duplicate(path: str, value: object, detail: str = "") -> FieldError:
    """``Duplicate value: <value>[: <detail>]``."""
    return FieldError.duplicate(path, value, detail)


def not_supported(path: str, value: object, supported: Iterable[str]) -> FieldError:
    """``Unsupported value: <value>: supported values: "A", "B"``."""
    return FieldError.not_supported(path, value, supported)


def too_long(path: str, max_length: int, detail: str = "") -> FieldError:
    """``Too long: may not be more than <n> bytes[; <detail>]`` (the value itself is omitted)."""
    return FieldError.too_long(path, max_length, detail)


def _article(type_name: str) -> str:
    return f"an {type_name}" if type_name[:1] in "aeiou" else f"a {type_name}"


# --- typed access: the value, or None and an error ------------------------------------------------
# Each returns None without an error when the value is None (absent), so optional fields need
# no special case; a value of the wrong type adds one type error and also returns None.


def as_map(value: object, path: str, errs: list[FieldError]) -> Mapping[str, Any] | None:
    """``value`` when it is an object; ``None`` when absent or (with an error) of another type."""
    # Decoded JSON is a plain dict; the exact type test spares the slower ABC check.
    if value is None or type(value) is dict or isinstance(value, Mapping):
        return value
    errs.append(type_invalid(path, value, "an object"))
    return None


def as_list(value: object, path: str, errs: list[FieldError]) -> list[Any] | None:
    """``value`` when it is an array; ``None`` when absent or (with an error) of another type."""
    if value is None or isinstance(value, list):
        return value
    errs.append(type_invalid(path, value, "an array"))
    return None


def as_objects(
    value: object, path: str, errs: list[FieldError], expected: str
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The objects of an optional array, each with its path (``path[i]``).

    An array of the wrong type, or an item of the wrong type, adds the usual type error; a
    ``null`` item adds ``must be <expected>, not a null``.  Items that are not objects are skipped.
    """
    for i, item in enumerate(as_list(value, path, errs) or ()):
        at = index(path, i)
        entry = as_map(item, at, errs)
        if entry is not None:
            yield at, entry
        elif item is None:
            errs.append(type_invalid(at, item, expected))


def as_str(value: object, path: str, errs: list[FieldError]) -> str | None:
    """``value`` when it is a string; ``None`` when absent or (with an error) of another type."""
    if value is None or isinstance(value, str):
        return value
    errs.append(type_invalid(path, value, "a string"))
    return None


def as_bool(value: object, path: str, errs: list[FieldError]) -> bool | None:
    """``value`` when it is a boolean; ``None`` when absent or (with an error) of another type."""
    if value is None or isinstance(value, bool):
        return value
    errs.append(type_invalid(path, value, "a boolean (true or false)"))
    return None


# --- labels and selectors -------------------------------------------------------------------------


def validate_labels(labels: object, path: str) -> list[FieldError]:
    """Errors of a label map (``metadata.labels``, ``matchLabels``), checked as apimachinery does.

    Key errors name ``path`` itself, as apimachinery does; value errors name ``path[key]``.
    """
    errs: list[FieldError] = []
    mapping = as_map(labels, path, errs)
    if not mapping:
        return errs
    for k, v in mapping.items():
        if not isinstance(k, str):  # only possible for input that did not come from JSON
            errs.append(type_invalid(path, k, "a string key"))
            continue
        errs.extend(invalid(path, k, msg) for msg in is_qualified_name(k))
        if not isinstance(v, str):
            errs.append(type_invalid(key(path, k), v, "a string"))
            continue
        errs.extend(invalid(key(path, k), v, msg) for msg in is_valid_label_value(v))
    return errs


def is_valid_label_selector(selector: object, path: str = "") -> list[FieldError]:
    """Errors of a ``metav1.LabelSelector`` given as a decoded JSON object.

    ``matchLabels`` keys and values must be valid; each ``matchExpressions`` entry needs a valid
    ``key`` and an operator of In, NotIn (both with at least one value), Exists or DoesNotExist
    (both without values).  ``None`` is a valid (absent) selector.  ``path`` prefixes the field
    paths of the errors (``spec.instanceSelector``).
    """
    errs: list[FieldError] = []
    sel = as_map(selector, path, errs)
    if sel is None:
        return errs
    if "matchLabels" in sel:
        errs.extend(validate_labels(sel["matchLabels"], child(path, "matchLabels")))
    expressions = as_list(sel.get("matchExpressions"), child(path, "matchExpressions"), errs)
    for i, expr in enumerate(expressions or ()):
        errs.extend(_selector_requirement(expr, index(child(path, "matchExpressions"), i)))
    return errs


def _selector_requirement(expr: object, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    req = as_map(expr, path, errs)
    if req is None:
        if expr is None:
            errs.append(type_invalid(path, expr, "an object with key, operator and values"))
        return errs
    values_path = child(path, "values")
    raw_values = req.get("values")
    values = as_list(raw_values, values_path, errs)
    operator = req.get("operator")
    if operator in ("In", "NotIn"):
        if not values and (raw_values is None or values is not None):  # a wrong type is reported already
            errs.append(required(values_path, "must be specified when `operator` is 'In' or 'NotIn'"))
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            errs.append(
                forbidden(values_path, "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
            )
    else:
        errs.append(
            invalid(
                child(path, "operator"),
                "" if operator is None else operator,
                "not a valid selector operator; use In, NotIn, Exists or DoesNotExist",
            )
        )
    key_path = child(path, "key")
    label_key = as_str(req.get("key"), key_path, errs)
    if label_key is None and req.get("key") is None:
        label_key = ""
    if label_key is not None:
        errs.extend(invalid(key_path, label_key, msg) for msg in is_qualified_name(label_key))
    for i, value in enumerate(values or ()):
        value_path = index(values_path, i)
        if not isinstance(value, str):
            errs.append(type_invalid(value_path, value, "a string"))
            continue
        errs.extend(invalid(value_path, value, msg) for msg in is_valid_label_value(value))
    return errs
