"""Label and field selectors: syntax, semantics and apimachinery's exact messages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kcp_tmc.policies.selectors import (
    FieldSelector,
    Operator,
    Requirement,
    Selector,
    SelectorError,
    label_selector_from_dict,
    object_field,
    parse_field_selector,
    parse_selector,
    selector_from_set,
)
from tests.policies.messages import LABEL_VALUE_REGEX, QNAME_REGEX

# --- parsing: canonical form ---


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("  a  =  b  ", "a=b"),
        ("b=1,a=2", "a=2,b=1"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("x in (b, a, b)", "x in (a,b)"),
        ("x in (a,)", "x in (,a)"),
        ("x in (,a)", "x in (,a)"),
        ("!a", "!a"),
        ("a", "a"),
        ("a=", "a="),
        ("a=,b", "a=,b"),
        ("in in (in),notin notin (notin)", "in in (in),notin notin (notin)"),
        ("a=in", "a=in"),
        ("a>1,b<2", "a>1,b<2"),
        ("example.com/key=v", "example.com/key=v"),
    ],
)
def test_parse_gives_the_canonical_string(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


def test_parse_builds_typed_requirements() -> None:
    selector = parse_selector("tier notin (b,a),!gone,env=prod")
    assert selector.requirements == (
        Requirement("env", Operator.EQUALS, ("prod",)),
        Requirement("gone", Operator.DOES_NOT_EXIST),
        Requirement("tier", Operator.NOT_IN, ("a", "b")),
    )
    assert not selector.empty
    assert parse_selector("").empty


# --- parsing: errors, with apimachinery's text ---


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in x", "unable to parse requirement: found 'x' expected: '('"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("a in (a,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
        ("!(", "unable to parse requirement: found '(', expected: identifier"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("x=a b", "found 'b', expected: ',' or 'end of string'"),
        ("a=b,", "found '', expected: identifier after ','"),
        ("a,=b", "found '=', expected: identifier after ','"),
        (",", "found ',', expected: !, identifier, or 'end of string'"),
        ("(a)", "found '(', expected: !, identifier, or 'end of string'"),
        (
            "a>x",
            'unable to parse requirement: values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            "k=$$",
            f'unable to parse requirement: values[0][k]: Invalid value: "$$": {LABEL_VALUE_REGEX}',
        ),
        (
            "a/b/c",
            'unable to parse requirement: <nil>: Invalid value: "a/b/c": a valid label key '
            f"{QNAME_REGEX} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        ),
        (
            "-a",
            f'unable to parse requirement: <nil>: Invalid value: "-a": name part {QNAME_REGEX}',
        ),
        (
            "/a",
            'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty',
        ),
        (
            "Ex.com/a",
            'unable to parse requirement: <nil>: Invalid value: "Ex.com/a": prefix part a lowercase RFC 1123 '
            "subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and "
            "end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        (
            "a/",
            'unable to parse requirement: <nil>: Invalid value: "a/": name part must be non-empty; '
            f"name part {QNAME_REGEX}",
        ),
        (
            "k" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"k" * 64}": '
            "name part must be no more than 63 bytes",
        ),
        (
            "k=" + "v" * 64,
            f'unable to parse requirement: values[0][k]: Invalid value: "{"v" * 64}": '
            "must be no more than 63 bytes",
        ),
    ],
)
def test_parse_errors_carry_apimachinery_messages(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert str(caught.value) == message


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected"):
        parse_selector("a b")


def test_overlong_prefix_is_reported() -> None:
    prefix = ".".join(["a" * 60] * 5)  # 304 bytes
    with pytest.raises(SelectorError) as caught:
        parse_selector(f"{prefix}/k")
    assert str(caught.value) == (
        f'unable to parse requirement: <nil>: Invalid value: "{prefix}/k": '
        "prefix part must be no more than 253 bytes"
    )


# --- matching ---


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("", {}, True),
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a=b", {}, False),
        ("a==b", {"a": "b"}, True),
        ("a!=b", {"a": "c"}, True),
        ("a!=b", {"a": "b"}, False),
        ("a!=b", {}, True),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x,y)", {"a": "z"}, False),
        ("a in (x,y)", {}, False),
        ("a notin (x,y)", {"a": "z"}, True),
        ("a notin (x,y)", {"a": "x"}, False),
        ("a notin (x,y)", {}, True),
        ("a", {"a": ""}, True),
        ("a", {"b": "a"}, False),
        ("!a", {}, True),
        ("!a", {"a": "x"}, False),
        ("a=", {"a": ""}, True),
        ("a in ()", {"a": ""}, True),
        ("a>5", {"a": "6"}, True),
        ("a>5", {"a": "5"}, False),
        ("a>5", {"a": "x"}, False),
        ("a>5", {}, False),
        ("a<5", {"a": "-1"}, True),
        ("a<5", {"a": "9"}, False),
        ("a=b,c", {"a": "b", "c": "1"}, True),
        ("a=b,c", {"a": "b"}, False),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(text).matches(labels) is expected


def test_matches_none_as_no_labels() -> None:
    assert parse_selector("!a").matches(None)
    assert not parse_selector("a").matches(None)


def test_numeric_requirement_with_a_broken_value_matches_nothing() -> None:
    # Requirement() bypasses validation; matching must still not raise.
    assert not Requirement("a", Operator.GREATER_THAN, ("x",)).matches({"a": "1"})
    assert not Requirement("a", Operator.GREATER_THAN, ("1", "2")).matches({"a": "3"})


def test_selector_from_set() -> None:
    selector = selector_from_set({"b": "2", "a": "1"})
    assert str(selector) == "a=1,b=2"
    assert selector.matches({"a": "1", "b": "2", "c": "3"})
    assert not selector.matches({"a": "1"})
    assert selector_from_set({}).empty


# --- Requirement.new validation ---


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("a", "in", []),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            ("a", "=", ["x", "y"]),
            'values: Invalid value: ["x","y"]: exact-match compatibility requires one single value',
        ),
        (
            ("a", "!", ["x"]),
            'values: Invalid value: ["x"]: values set must be empty for exists and does not exist',
        ),
        (
            ("a", "gt", ["1", "2"]),
            "values: Invalid value: [\"1\",\"2\"]: for 'Gt', 'Lt' operators, exactly one value is required",
        ),
        (
            ("a", "near", []),
            'operator: Unsupported value: "near": supported values: "in", "notin", "=", "==", "!=", "gt", '
            '"lt", "exists", "!"',
        ),
        (
            ("-", "in", ["%"]),
            f'[key: Invalid value: "-": name part {QNAME_REGEX}, '
            f'values[0][-]: Invalid value: "%": {LABEL_VALUE_REGEX}]',
        ),
    ],
)
def test_requirement_new_errors(args: tuple[str, str, list[str]], message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        Requirement.new(*args)
    assert str(caught.value) == message


def test_requirement_new_with_path_prefixes_messages() -> None:
    with pytest.raises(SelectorError) as caught:
        Requirement.new("a", "in", [], path="spec.selector")
    assert str(caught.value) == (
        "spec.selector.values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
    )


def test_requirement_new_sorts_and_dedups() -> None:
    assert Requirement.new("a", "in", ["b", "a", "b"]).values == ("a", "b")


# --- metav1.LabelSelector ---


def test_label_selector_none_matches_nothing() -> None:
    selector = label_selector_from_dict(None)
    assert not selector.matches({})
    assert not selector.matches({"a": "b"})
    assert str(selector) == ""
    assert not selector.empty


@pytest.mark.parametrize("empty", [{}, {"matchLabels": {}}, {"matchLabels": None, "matchExpressions": []}])
def test_label_selector_without_terms_matches_everything(empty: dict[str, object]) -> None:
    selector = label_selector_from_dict(empty)
    assert selector.empty
    assert selector.matches({})
    assert selector.matches({"a": "b"})


def test_label_selector_all_operators() -> None:
    selector = label_selector_from_dict(
        {
            "matchLabels": {"env": "prod"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "zone", "operator": "NotIn", "values": ["z9"]},
                {"key": "owner", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist", "values": []},
            ],
        }
    )
    assert str(selector) == "env=prod,!legacy,owner,tier in (api,web),zone notin (z9)"
    assert selector.matches({"env": "prod", "tier": "web", "owner": "me"})
    assert not selector.matches({"env": "prod", "tier": "web", "owner": "me", "legacy": "1"})
    assert not selector.matches({"env": "prod", "tier": "db", "owner": "me"})
    assert not selector.matches({"env": "prod", "tier": "web", "owner": "me", "zone": "z9"})


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt"}]},
            '"Gt" is not a valid label selector operator',
        ),
        ({"matchExpressions": [{"key": "a"}]}, '"" is not a valid label selector operator'),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'values: Invalid value: ["x"]: values set must be empty for exists and does not exist',
        ),
        (
            {"matchLabels": {"a": "no spaces"}},
            f'values[0][a]: Invalid value: "no spaces": {LABEL_VALUE_REGEX}',
        ),
        ({"matchLabels": {"/a": "b"}}, 'key: Invalid value: "/a": prefix part must be non-empty'),
    ],
)
def test_label_selector_errors(selector: dict[str, object], message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        label_selector_from_dict(selector)
    assert str(caught.value) == message


# --- field selectors ---

POD = {"metadata": {"name": "web-1", "namespace": "prod"}, "spec": {"nodeName": "n1", "hostNetwork": True}}


@pytest.mark.parametrize(
    ("text", "expected", "canonical"),
    [
        ("", True, ""),
        ("metadata.name=web-1", True, "metadata.name=web-1"),
        ("metadata.name==web-1", True, "metadata.name=web-1"),
        ("metadata.name!=web-1", False, "metadata.name!=web-1"),
        ("metadata.namespace=prod,metadata.name=web-1", True, "metadata.name=web-1,metadata.namespace=prod"),
        ("metadata.namespace=dev,metadata.name=web-1", False, "metadata.name=web-1,metadata.namespace=dev"),
        ("metadata.namespace!=dev", True, "metadata.namespace!=dev"),
        ("metadata.name=", False, "metadata.name="),
        (",metadata.name=web-1,", True, "metadata.name=web-1"),
    ],
)
def test_field_selector(text: str, expected: bool, canonical: str) -> None:
    selector = parse_field_selector(text)
    assert selector.matches(POD) is expected
    assert str(selector) == canonical


def test_field_selector_escapes_round_trip() -> None:
    selector = parse_field_selector(r"metadata.name=a\,b\=c\\d", supported=None)
    assert selector.requirements[0].value == "a,b=c\\d"
    assert str(selector) == r"metadata.name=a\,b\=c\\d"
    assert selector.matches({"metadata": {"name": "a,b=c\\d"}})


def test_field_selector_on_any_field_when_unrestricted() -> None:
    selector = parse_field_selector("spec.nodeName=n1,spec.hostNetwork=true,spec.missing=", supported=None)
    assert selector.matches(POD)
    assert not parse_field_selector("spec.nodeName.x=a", supported=None).matches(POD)
    assert object_field({"spec": {"replicas": 3}}, "spec.replicas") == "3"
    assert object_field({"spec": {"paused": False}}, "spec.paused") == "false"
    assert selector.matches_fields({"spec.nodeName": "n1", "spec.hostNetwork": "true"})
    assert FieldSelector().empty


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
        ("metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"),
        ("metadata.name=a\\x", "invalid field selector: invalid escape sequence: \\x"),
        (
            "spec.nodeName=n1",
            '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"',
        ),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_field_selector(text)
    assert str(caught.value) == message


def test_field_selector_of_a_kind_with_its_own_conversion() -> None:
    supported = ("metadata.name", "metadata.namespace", "type")
    assert parse_field_selector("type=Opaque", supported, kind_specific=True).matches({"type": "Opaque"})
    with pytest.raises(SelectorError) as caught:
        parse_field_selector("spec.x=1", supported, kind_specific=True)
    assert str(caught.value) == "field label not supported: spec.x"


# --- properties ---

_ALNUM = "abcz019"
_names = st.builds(
    lambda first, middle, last: first + middle + last if middle or last else first,
    st.sampled_from(_ALNUM),
    st.text(alphabet=_ALNUM + "._-", max_size=6),
    st.sampled_from(["", *_ALNUM]),
).filter(lambda name: name[-1] in _ALNUM)
_keys = st.one_of(
    _names, st.builds(lambda prefix, name: f"{prefix}.io/{name}", st.sampled_from(["x", "k8s"]), _names)
)
_values = st.one_of(st.just(""), _names)


@st.composite
def _requirement_texts(draw: st.DrawFn) -> str:
    key = draw(_keys)
    kind = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!", ">", "<"]))
    if kind in ("=", "==", "!="):
        return f"{key}{draw(st.sampled_from(['', ' ']))}{kind}{draw(_values)}"
    if kind in (">", "<"):
        return f"{key}{kind}{draw(st.integers(0, 1000))}"
    if kind in ("in", "notin"):
        values = draw(st.lists(_values, min_size=1, max_size=4))
        return f"{key} {kind} ({', '.join(values)})"
    return key if kind == "exists" else f"!{key}"


@given(st.lists(_requirement_texts(), max_size=5).map(",".join))
def test_canonical_string_round_trips(text: str) -> None:
    selector = parse_selector(text)
    assert parse_selector(str(selector)) == selector
    assert str(parse_selector(str(selector))) == str(selector)


@given(st.text(alphabet="ab=!(),in ot\t", max_size=20))
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        selector = parse_selector(text)
    except SelectorError:
        return
    assert parse_selector(str(selector)) == selector


@given(st.dictionaries(_names, _values, max_size=4), st.lists(_requirement_texts(), max_size=3).map(",".join))
def test_match_equals_conjunction_of_requirements(labels: dict[str, str], text: str) -> None:
    selector = parse_selector(text)
    assert selector.matches(labels) == all(r.matches(labels) for r in selector.requirements)
    assert Selector(selector.requirements).matches(labels) == selector.matches(labels)


@st.composite
def _label_selectors(draw: st.DrawFn) -> dict[str, object]:
    match_labels = draw(st.dictionaries(_names, _values, max_size=2))
    expressions = []
    for _ in range(draw(st.integers(0, 3))):
        operator = draw(st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]))
        expression: dict[str, object] = {"key": draw(_keys), "operator": operator}
        if operator in ("In", "NotIn"):
            expression["values"] = draw(st.lists(_values, min_size=1, max_size=3))
        expressions.append(expression)
    return {"matchLabels": match_labels, "matchExpressions": expressions}


@given(_label_selectors(), st.dictionaries(_names, _values, max_size=4))
def test_label_selector_and_its_string_select_alike(
    selector: dict[str, object], labels: dict[str, str]
) -> None:
    converted = label_selector_from_dict(selector)
    assert parse_selector(str(converted)).matches(labels) == converted.matches(labels)
