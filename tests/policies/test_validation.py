"""Tests of kcp_tmc.policies.validation: apimachinery's messages, field errors and label selectors."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.policies import FieldError
from kcp_tmc.policies.validation import (
    as_bool,
    as_list,
    as_map,
    as_objects,
    as_str,
    child,
    duplicate,
    forbidden,
    index,
    invalid,
    is_config_map_key,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_http_url,
    is_qualified_name,
    is_valid_label_selector,
    is_valid_label_value,
    json_type,
    key,
    not_supported,
    regex_error,
    render_value,
    required,
    too_long,
    type_invalid,
    validate_labels,
)
from tests.policies.messages import (
    CONFIG_KEY_REGEX,
    LABEL_REGEX,
    LABEL_VALUE_REGEX,
    QNAME_REGEX,
    SUBDOMAIN_REGEX,
)

# --- string checks --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "my-name", "123-abc", "0", "a" * 63])
def test_dns1123_label_accepts(value: str) -> None:
    assert is_dns1123_label(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a" * 64, ["must be no more than 63 characters"]),
        ("My-Name", [LABEL_REGEX]),
        ("", [LABEL_REGEX]),
        ("-a", [LABEL_REGEX]),
        ("a-", [LABEL_REGEX]),
        ("a.b", ["must not contain dots"]),
        ("abc\n", [LABEL_REGEX]),  # Go's "$" does not match before a trailing newline
        ("A" * 64, ["must be no more than 63 characters", LABEL_REGEX]),
    ],
)
def test_dns1123_label_rejects_with_apimachinery_messages(value: str, expected: list[str]) -> None:
    assert is_dns1123_label(value) == expected


def test_dns1123_subdomain() -> None:
    assert is_dns1123_subdomain("example.com") == []
    assert is_dns1123_subdomain("a" * 253) == []
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]
    assert is_dns1123_subdomain("Example.com") == [SUBDOMAIN_REGEX]
    assert is_dns1123_subdomain("a..b") == [SUBDOMAIN_REGEX]


def test_lengths_count_bytes_as_go_does() -> None:
    # 32 two-byte characters are 64 bytes: too long for Go even though Python counts 32.
    assert is_dns1123_label("é" * 32)[0] == "must be no more than 63 characters"


@pytest.mark.parametrize(
    "value", ["MyName", "my.name", "123-abc", "example.com/MyName", "internal.workload.kcp.io/key", "a" * 63]
)
def test_qualified_name_accepts(value: str) -> None:
    assert is_qualified_name(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "a/b/c",
            [
                "a valid label key "
                + QNAME_REGEX
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ],
        ),
        ("/name", ["prefix part must be non-empty"]),
        ("Bad_Prefix/name", ["prefix part " + SUBDOMAIN_REGEX]),
        ("a" * 254 + "/name", ["prefix part must be no more than 253 bytes"]),
        ("a" * 64, ["name part must be no more than 63 bytes"]),
        ("", ["name part must be non-empty", "name part " + QNAME_REGEX]),
        ("example.com/", ["name part must be non-empty", "name part " + QNAME_REGEX]),
        ("-name", ["name part " + QNAME_REGEX]),
    ],
)
def test_qualified_name_rejects(value: str, expected: list[str]) -> None:
    assert is_qualified_name(value) == expected


def test_label_value() -> None:
    assert is_valid_label_value("") == []
    assert is_valid_label_value("my_value") == []
    assert is_valid_label_value("a" * 64) == ["must be no more than 63 bytes"]
    assert is_valid_label_value("-x") == [LABEL_VALUE_REGEX]
    assert is_valid_label_value("a b") == [LABEL_VALUE_REGEX]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("kubeconfig", []),
        ("key.name", []),
        ("KEY_NAME", []),
        (".hidden", []),
        (".", ["must not be '.'"]),
        ("..", ["must not be '..'"]),
        ("..x", ["must not start with '..'"]),
        ("a b", [CONFIG_KEY_REGEX]),
        ("", [CONFIG_KEY_REGEX]),
        ("a" * 254, ["must be no more than 253 characters"]),
    ],
)
def test_config_map_key(value: str, expected: list[str]) -> None:
    assert is_config_map_key(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com",
        "http://10.0.0.1:6443/services/syncer/root/x",
        "HTTPS://example.com/",
        "https://[::1]:8443/path?q=1",
    ],
)
def test_http_url_accepts(value: str) -> None:
    assert is_http_url(value) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "must be an absolute http or https URL such as https://example.com:6443/path"),
        ("https://exa mple.com", "must not contain whitespace or control characters"),
        ("https://example.com\n", "must not contain whitespace or control characters"),
        ("example.com/path", "must be an absolute URL with scheme http or https, such as https://example.com:6443/path"),
        ("localhost:6443/x", "must be an absolute URL with scheme http or https, such as https://example.com:6443/path"),
        ("ftp://example.com", 'must use scheme http or https, not "ftp" (for example https://example.com:6443/path)'),
        ("https:///path", "must include a host, such as https://example.com:6443/path"),
        ("https://example.com:99999/", "has an invalid port; use a number from 1 to 65535, such as https://example.com:6443/path"),
        ("https://example.com:0/", "has an invalid port; use a number from 1 to 65535, such as https://example.com:6443/path"),
        ("https://example.com:abc/", "has an invalid port; use a number from 1 to 65535, such as https://example.com:6443/path"),
        ("http://[::1", "is not a valid URL (Invalid IPv6 URL); use an absolute http or https URL such as https://example.com:6443/path"),
    ],
)  # fmt: skip
def test_http_url_rejects(value: str, expected: str) -> None:
    assert is_http_url(value) == [expected]


def test_regex_error_without_examples() -> None:
    assert regex_error("bad", "[a-z]+") == "bad (regex used for validation is '[a-z]+')"


# --- paths and field errors -----------------------------------------------------------------------


def test_paths() -> None:
    assert child("", "spec") == "spec"
    assert child("spec", "cells") == "spec.cells"
    assert index("spec.items", 2) == "spec.items[2]"
    assert key("metadata.labels", "a/b") == "metadata.labels[a/b]"


@pytest.mark.parametrize(
    ("value", "rendered", "type_name"),
    [
        ("x", '"x"', "string"),
        ('q"é', '"q\\"é"', "string"),
        (3, "3", "number"),
        (1.5, "1.5", "number"),
        (True, "true", "boolean"),
        (False, "false", "boolean"),
        (None, "null", "null"),
        ({"b": 1, "a": [1]}, '{"a":[1],"b":1}', "object"),
        ([1, "x"], '[1,"x"]', "array"),
        (object, repr(object), "type"),
    ],
)
def test_render_value_and_json_type(value: object, rendered: str, type_name: str) -> None:
    assert render_value(value) == rendered
    assert json_type(value) == type_name


def test_field_error_builders() -> None:
    assert invalid("a.b", "x", "bad") == FieldError("a.b", 'Invalid value: "x": bad')
    assert str(invalid("a.b", 5, "bad")) == "a.b: Invalid value: 5: bad"
    assert required("a").message == "Required value"
    assert required("a", "set it").message == "Required value: set it"
    assert forbidden("a", "no").message == "Forbidden: no"
    assert duplicate("a", "x").message == 'Duplicate value: "x"'
    assert duplicate("a", {"k": "v"}, "remove it").message == 'Duplicate value: {"k":"v"}: remove it'
    assert not_supported("a", "x", ["A", "B"]).message == 'Unsupported value: "x": supported values: "A", "B"'
    assert too_long("a", 1).message == "Too long: may not be more than 1 byte"
    assert too_long("a", 255, "shorten it").message == "Too long: may not be more than 255 bytes; shorten it"
    assert (
        type_invalid("a", "x", "an object").message == 'Invalid value: "x": must be an object, not a string'
    )
    assert type_invalid("a", [], "a string").message == "Invalid value: []: must be a string, not an array"
    assert type_invalid("a", 1, "a string").message == "Invalid value: 1: must be a string, not a number"


def test_typed_access() -> None:
    errs: list[FieldError] = []
    assert as_map(None, "m", errs) is None
    assert as_map({"a": 1}, "m", errs) == {"a": 1}
    assert as_list(None, "l", errs) is None
    assert as_list([1], "l", errs) == [1]
    assert as_str(None, "s", errs) is None
    assert as_str("x", "s", errs) == "x"
    assert as_bool(None, "b", errs) is None
    assert as_bool(False, "b", errs) is False
    assert errs == []
    assert as_map("x", "m", errs) is None
    assert as_list({}, "l", errs) is None
    assert as_str(1, "s", errs) is None
    assert as_bool("true", "b", errs) is None
    assert [str(e) for e in errs] == [
        'm: Invalid value: "x": must be an object, not a string',
        "l: Invalid value: {}: must be an array, not an object",
        "s: Invalid value: 1: must be a string, not a number",
        'b: Invalid value: "true": must be a boolean (true or false), not a string',
    ]


def test_as_objects_yields_objects_with_their_paths_and_reports_the_rest() -> None:
    errs: list[FieldError] = []
    assert list(as_objects(None, "items", errs, "an object with a name")) == []
    assert errs == []
    found = list(as_objects([{"a": 1}, None, "x", {"b": 2}], "items", errs, "an object with a name"))
    assert found == [("items[0]", {"a": 1}), ("items[3]", {"b": 2})]
    assert list(as_objects({}, "other", errs, "an object with a name")) == []
    assert [str(e) for e in errs] == [
        "items[1]: Invalid value: null: must be an object with a name, not a null",
        'items[2]: Invalid value: "x": must be an object, not a string',
        "other: Invalid value: {}: must be an array, not an object",
    ]


# --- labels and selectors -------------------------------------------------------------------------


def test_validate_labels() -> None:
    assert validate_labels(None, "spec.cells") == []
    assert validate_labels({"region": "us-east1", "example.com/zone": ""}, "spec.cells") == []
    assert [str(e) for e in validate_labels("x", "spec.cells")] == [
        'spec.cells: Invalid value: "x": must be an object, not a string'
    ]
    assert [str(e) for e in validate_labels({"a b": "ok", "k": "v!", "n": None, 1: "x"}, "l")] == [
        'l: Invalid value: "a b": name part ' + QNAME_REGEX,
        'l[k]: Invalid value: "v!": ' + LABEL_VALUE_REGEX,
        "l[n]: Invalid value: null: must be a string, not a null",
        "l: Invalid value: 1: must be a string key, not a number",
    ]


def sel_errors(selector: object, path: str = "spec.selector") -> list[str]:
    return [str(e) for e in is_valid_label_selector(selector, path)]


def test_label_selector_accepts() -> None:
    assert sel_errors(None) == []
    assert sel_errors({}) == []
    assert (
        sel_errors(
            {
                "matchLabels": {"region": "us-east1"},
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "example.com/tier", "operator": "NotIn", "values": ["x"]},
                    {"key": "gpu", "operator": "Exists"},
                    {"key": "spot", "operator": "DoesNotExist", "values": []},
                ],
            }
        )
        == []
    )


def test_label_selector_path_defaults_to_root() -> None:
    assert [
        str(e) for e in is_valid_label_selector({"matchExpressions": [{"key": "a", "operator": "In"}]})
    ] == ["matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("region=a", ['spec.selector: Invalid value: "region=a": must be an object, not a string']),
        (
            {"matchLabels": {"a": "b c"}},
            ['spec.selector.matchLabels[a]: Invalid value: "b c": ' + LABEL_VALUE_REGEX],
        ),
        (
            {"matchLabels": ["a"]},
            ['spec.selector.matchLabels: Invalid value: ["a"]: must be an object, not an array'],
        ),
        (
            {"matchExpressions": {"key": "a"}},
            ['spec.selector.matchExpressions: Invalid value: {"key":"a"}: must be an array, not an object'],
        ),
        (
            {"matchExpressions": [None, "a"]},
            [
                "spec.selector.matchExpressions[0]: Invalid value: null: "
                "must be an object with key, operator and values, not a null",
                'spec.selector.matchExpressions[1]: Invalid value: "a": must be an object, not a string',
            ],
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": []}]},
            [
                "spec.selector.matchExpressions[0].values: Required value: "
                "must be specified when `operator` is 'In' or 'NotIn'"
            ],
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]},
            [
                "spec.selector.matchExpressions[0].values: Forbidden: "
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
            ],
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            [
                'spec.selector.matchExpressions[0].operator: Invalid value: "Gt": '
                "not a valid selector operator; use In, NotIn, Exists or DoesNotExist"
            ],
        ),
        (
            {"matchExpressions": [{"key": "a"}]},
            [
                'spec.selector.matchExpressions[0].operator: Invalid value: "": '
                "not a valid selector operator; use In, NotIn, Exists or DoesNotExist"
            ],
        ),
        (
            {"matchExpressions": [{"operator": "Exists"}]},
            [
                'spec.selector.matchExpressions[0].key: Invalid value: "": name part must be non-empty',
                'spec.selector.matchExpressions[0].key: Invalid value: "": name part ' + QNAME_REGEX,
            ],
        ),
        (
            {"matchExpressions": [{"key": 7, "operator": "Exists"}]},
            ["spec.selector.matchExpressions[0].key: Invalid value: 7: must be a string, not a number"],
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]},
            [
                'spec.selector.matchExpressions[0].values: Invalid value: "x": '
                "must be an array, not a string",
            ],
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": [1, "b c"]}]},
            [
                "spec.selector.matchExpressions[0].values[0]: Invalid value: 1: "
                "must be a string, not a number",
                'spec.selector.matchExpressions[0].values[1]: Invalid value: "b c": ' + LABEL_VALUE_REGEX,
            ],
        ),
    ],
)
def test_label_selector_rejects(selector: object, expected: list[str]) -> None:
    assert sel_errors(selector) == expected


# --- properties -----------------------------------------------------------------------------------

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcXYZ019-._/ \n", max_size=70))
def test_dns1123_label_agrees_with_its_definition(value: str) -> None:
    ok = _LABEL.fullmatch(value) is not None and len(value) <= 63
    assert (is_dns1123_label(value) == []) is ok


_SEGMENT = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z")


@settings(max_examples=60, deadline=None)
@given(st.lists(_SEGMENT, min_size=1, max_size=4).map(".".join))
def test_generated_subdomains_are_valid_label_prefixes(prefix: str) -> None:
    assert is_dns1123_subdomain(prefix) == []
    assert is_qualified_name(prefix + "/Name_1") == []
