"""Kubernetes quantities: parsing, printing and arithmetic, checked against apimachinery's own vectors."""

from __future__ import annotations

import pickle
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kcp_tmc.policies.quantities import (
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_SUFFIX,
    Format,
    Quantity,
    QuantityError,
    ResourceListError,
    add_lists,
    format_list,
    format_list_message,
    lists_le,
    parse_quantity,
    parse_resource_list,
    subtract_lists,
)

DSI, BSI, DEX = Format.DECIMAL_SI, Format.BINARY_SI, Format.DECIMAL_EXPONENT

# (input, what the apiserver prints (Go String()), the format kept)
# Sources: apimachinery pkg/api/resource/quantity_test.go TestQuantityParse, TestQuantityString,
# TestQuantityParseEmit and TestParseQuantity; plus the canonicalisations named in our task.
PRINTED = [
    ("0", "0", DSI),
    ("0n", "0", DSI),
    ("0m", "0", DSI),
    ("0Ki", "0", BSI),
    ("0Mi", "0", BSI),
    ("0T", "0", DSI),
    ("00", "0", DSI),
    ("1", "1", DSI),
    ("1Ki", "1Ki", BSI),
    ("8Ki", "8Ki", BSI),
    ("7Mi", "7Mi", BSI),
    ("6Gi", "6Gi", BSI),
    ("5Ti", "5Ti", BSI),
    ("4Pi", "4Pi", BSI),
    ("3Ei", "3Ei", BSI),
    ("100Ti", "100Ti", BSI),
    ("1024Mi", "1Gi", BSI),
    ("1024Ki", "1Mi", BSI),
    ("307200Ki", "300Mi", BSI),
    ("1025024Mi", "1001Gi", BSI),
    ("1024Gi", "1Ti", BSI),
    ("1.5Gi", "1536Mi", BSI),
    ("-1.5Gi", "-1536Mi", BSI),
    ("0.5Mi", "512Ki", BSI),
    ("100.035Ki", "102435840m", BSI),
    ("0.05Gi", "53687091200m", BSI),
    ("0.025Ti", "27487790694400m", BSI),
    (".001Ki", "1024m", BSI),
    (".000001Ki", "1024u", DSI),
    (".000000001Ki", "1024n", DSI),
    (".000000000001Ki", "2n", DSI),
    ("0.000000000001Ki", "2n", DSI),
    ("9Ei", "9223372036854775807", BSI),
    ("9223372036854775807Ki", "9223372036854775807", BSI),
    ("5n", "5n", DSI),
    ("4u", "4u", DSI),
    ("3m", "3m", DSI),
    ("8k", "8k", DSI),
    ("50k", "50k", DSI),
    ("40T", "40T", DSI),
    ("300T", "300T", DSI),
    ("2P", "2P", DSI),
    ("1E", "1E", DSI),
    ("12E", "12E", DSI),
    ("1000M", "1G", DSI),
    ("0.001T", "1G", DSI),
    ("1000u", "1m", DSI),
    ("1.08", "1080m", DSI),
    ("1080000000n", "1080m", DSI),
    ("0.5", "500m", DSI),
    ("1000m", "1", DSI),
    ("5000m", "5", DSI),
    ("100M", "100M", DSI),
    ("100.035k", "100.035k", DSI),  # scale 0 and no trailing 000: kept as written
    ("0.001", "1m", DSI),
    ("0.0005k", "500m", DSI),
    ("0.00500", "5m", DSI),
    ("9.01", "9010m", DSI),
    ("8.1k", "8100", DSI),
    ("7.123456M", "7.123456M", DSI),
    ("6.987654321G", "6.987654321G", DSI),
    ("5.444T", "5.444T", DSI),
    ("100.0350M", "100035k", DSI),
    ("6.9876543210G", "6987654321", DSI),
    ("2.5P", "2500T", DSI),
    ("1.01E", "1010P", DSI),
    (".0001k", "100m", DSI),
    ("3.001n", "4n", DSI),
    ("0.0000000001", "1n", DSI),
    ("0.9n", "1n", DSI),
    ("0.00000012345", "124n", DSI),
    ("0.00000012354", "124n", DSI),
    ("2e3", "2e3", DEX),
    ("1e3", "1e3", DEX),
    ("1E6", "1E6", DEX),
    ("1e9", "1e9", DEX),
    ("1E-3", "1E-3", DEX),
    ("0.001e0", "1e-3", DEX),
    (".001e12", "1e9", DEX),
    ("1000e-12", "1e-9", DEX),
    ("1e13", "10e12", DEX),
    ("1e14", "100e12", DEX),
    ("1e2", "100", DEX),
    ("0.5e0", "500e-3", DEX),
    ("0.5e-9", "1e-9", DEX),
    ("1.1E-9", "2e-9", DEX),
    ("1.2e3", "1200", DEX),
    ("1.3E+6", "1300e3", DEX),
    ("1.7E18", "1700e15", DEX),
    # the input is kept when apimachinery's fast path finds it canonical, sign and all
    ("+1", "+1", DSI),
    ("+1Ki", "+1Ki", BSI),
    ("-1Ki", "-1Ki", BSI),
    ("1.", "1.", DSI),
    ("1.G", "1.G", DSI),
    (".", "0", DSI),
    ("-.", "0", DSI),
    ("-999999999999999999", "-999999999999999999", DSI),
    ("999999999999999999.1", "999999999999999999100m", DSI),
    ("-1000000000000000000", "-1E", DSI),
    ("1.0E", "1E", DSI),
    ("9999999999999999999000m", "9999999999999999999", DSI),
    ("1.0000000000000000001E", "1000000000000000000100m", DSI),
    ("10000000000000000000", "10E", DSI),
    ("-10.0E", "-10E", DSI),
    ("10.000000000000000001E", "10000000000000000001", DSI),
    ("9223372036854775808.1", "9223372036854775808100m", DSI),
    ("-9223372036854775808000m", "-9223372036854775808", DSI),
]


@pytest.mark.parametrize(("text", "printed", "fmt"), PRINTED)
def test_apiserver_printing(text: str, printed: str, fmt: Format) -> None:
    quantity = parse_quantity(text)
    assert str(quantity) == printed
    assert quantity.format is fmt
    assert parse_quantity(printed) == quantity


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("+1", "1"), ("1E-3", "1e-3"), ("1.G", "1G"), ("1Ki", "1Ki"), ("1.5Gi", "1536Mi"), ("2e3", "2e3")],
)
def test_canonical_ignores_the_kept_text(text: str, canonical: str) -> None:
    assert parse_quantity(text).canonical() == canonical


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1Ki", Fraction(1024)),
        ("1.5Gi", Fraction(3 * 2**29)),
        ("100m", Fraction(1, 10)),
        ("3.001n", Fraction(4, 10**9)),
        ("-3.001n", Fraction(-4, 10**9)),
        ("1.1E-9", Fraction(2, 10**9)),
        ("12E", Fraction(12 * 10**18)),
        ("1e-2147483648", Fraction(1, 10**9)),
        ("-1e-2147483648", Fraction(-1, 10**9)),
        ("9Ei", Fraction(2**63 - 1)),
        ("-9Ei", Fraction(-(2**63) + 1)),
        ("100.035Ki", Fraction(10243584, 100)),
    ],
)
def test_exact_values(text: str, value: Fraction) -> None:
    quantity = parse_quantity(text)
    assert quantity.to_fraction() == value
    assert quantity.to_decimal() == Decimal(value.numerator) / Decimal(value.denominator)


FORMAT_WRONG = [
    "",
    "1.1.M",
    "1+1.0M",
    "0.1am",
    "aoeu",
    " 1",
    "1 ",
    "1e3.5",
    "1Gi ",
    "Non-Numeric",
    "1,5",
    "1KB",
    "1e--3",
]
SUFFIX_WRONG = ["0.1mi", ".5i", "1i", "-3.01i", "-3.01e-", "1e", "1E+", "1Kii", "--1", "1k3", "1e99999999999"]


@pytest.mark.parametrize("text", FORMAT_WRONG)
def test_format_errors(text: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    assert str(info.value) == ERR_FORMAT_WRONG


@pytest.mark.parametrize("text", SUFFIX_WRONG)
def test_suffix_errors(text: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == "unable to parse quantity's suffix" == ERR_SUFFIX


@pytest.mark.parametrize("text", [".e-10", "-.e-12", "+.E-100"])
def test_numeric_errors(text: str) -> None:
    # "." is zero on apimachinery's int64 path, but exponents below -9 take the inf.Dec path, which fails.
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert str(info.value) == "unable to parse numeric part of quantity" == ERR_NUMERIC


def test_guards_against_huge_input() -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity("1e1000")
    assert str(info.value) == "quantity is too large: values must stay below 10^1000"
    assert str(parse_quantity("1e996")) == "1e996"
    assert parse_quantity("1e998").canonical() == "100e996"
    with pytest.raises(QuantityError) as info:
        parse_quantity("1" * 1001)
    assert str(info.value) == "quantity has too many digits: at most 1000 are accepted"
    with pytest.raises(QuantityError) as info:
        parse_quantity(10**5000)
    assert str(info.value) == "quantity has too many digits: at most 1000 are accepted"


def test_quantity_error_is_a_value_error() -> None:
    assert issubclass(QuantityError, ValueError)


def test_numbers_are_accepted_like_unquoted_json() -> None:
    assert parse_quantity(2) == parse_quantity("2")
    assert str(parse_quantity(-3)) == "-3"
    assert str(parse_quantity(1.5)) == "1500m"
    assert str(parse_quantity(0.1)) == "100m"
    assert parse_quantity(1e21) == parse_quantity("1e21")
    q = parse_quantity("5")
    assert parse_quantity(q) is q


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(value)
    assert str(info.value) == ERR_FORMAT_WRONG


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError) as info:
        parse_quantity(value)  # type: ignore[arg-type]
    assert str(info.value) == f"a quantity must be a string or a number, not {type(value).__name__}"


def test_constructor() -> None:
    assert Quantity(5, -1) == parse_quantity("500m")
    assert str(Quantity(1536, 0, BSI)) == "1536"
    assert str(Quantity(1536 * 1024, 0, BSI)) == "1536Ki"
    assert str(Quantity(1, -10)) == "1n"  # rounded up to 1n
    assert str(Quantity(-11, -10)) == "-2n"  # away from zero
    assert str(Quantity(123456789123, -20)) == "2n"
    assert str(Quantity(10**30, -40)) == "1n"
    assert Quantity() == parse_quantity("0")
    assert Quantity(0, -50).scale == 0
    with pytest.raises(TypeError) as info:
        Quantity("1")  # type: ignore[arg-type]
    assert str(info.value) == "Quantity(value, scale) takes integers; use parse_quantity() for strings"
    with pytest.raises(TypeError):
        Quantity(True)


def test_immutable_and_hashable() -> None:
    q = parse_quantity("1Ki")
    with pytest.raises(AttributeError) as info:
        q.format = DSI  # type: ignore[misc]
    assert str(info.value) == "Quantity is immutable; cannot set 'format'"
    with pytest.raises(AttributeError) as info:
        del q._unscaled
    assert str(info.value) == "Quantity is immutable; cannot delete '_unscaled'"
    assert {parse_quantity("1Ki"), parse_quantity("1024"), parse_quantity("1.024k")} == {q}
    assert pickle.loads(pickle.dumps(parse_quantity("1.5Gi"))) == parse_quantity("1536Mi")
    assert str(pickle.loads(pickle.dumps(parse_quantity("+1")))) == "+1"


def test_accessors() -> None:
    q = parse_quantity("1.5k")
    assert (q.unscaled, q.scale) == (15, 2)
    assert q.sign == 1 and (-q).sign == -1 and Quantity().sign == 0
    assert q.value() == 1500
    assert parse_quantity("100m").value() == 1
    assert parse_quantity("-100m").value() == -1
    assert parse_quantity("100m").milli_value() == 100
    assert parse_quantity("1n").milli_value() == 1
    assert parse_quantity("1Ki").scaled_value(3) == 2  # ceil(1.024)
    assert parse_quantity("0").is_zero() and not parse_quantity("1n").is_zero()
    assert bool(parse_quantity("1n")) and not bool(parse_quantity("0Ki"))
    assert repr(parse_quantity("1.5Gi")) == "Quantity('1536Mi')"
    assert f"{parse_quantity('2Ki'):>6}" == "   2Ki"
    assert parse_quantity("1.5Gi").with_format(DSI).canonical() == "1610612736"
    assert abs(parse_quantity("-2")) == parse_quantity("2") and abs(parse_quantity("2")) == parse_quantity(
        "2"
    )
    assert +parse_quantity("3") == parse_quantity("3")


@pytest.mark.parametrize(
    ("a", "b", "cmp"),
    [
        ("0", "0", 0),
        ("100m", "50m", 1),
        ("50m", "100m", -1),
        ("10000T", "100Gi", 1),
        ("9.01", "9010m", 0),
        ("9", "9.01", -1),
        ("800m", "1", -1),
        ("800m", "790m", 1),
        ("1Ki", "1024", 0),
        ("-1", "1n", -1),
    ],
)
def test_comparison(a: str, b: str, cmp: int) -> None:
    x, y = parse_quantity(a), parse_quantity(b)
    assert x.cmp(y) == cmp and y.cmp(x) == -cmp
    assert (x < y) == (cmp < 0) and (x <= y) == (cmp <= 0)
    assert (x > y) == (cmp > 0) and (x >= y) == (cmp >= 0)
    assert (x == y) == (cmp == 0) and (x != y) == (cmp != 0)


def test_comparison_with_other_types_is_not_supported() -> None:
    q = parse_quantity("1")
    assert q != "1"
    assert q.__eq__(1) is NotImplemented
    for method in (q.__lt__, q.__le__, q.__gt__, q.__ge__, q.__add__, q.__sub__):
        assert method(1) is NotImplemented  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = q < 1  # type: ignore[operator]


@pytest.mark.parametrize(
    ("a", "b", "total", "fmt"),
    [
        ("10", "1e1", "20", DSI),
        ("10", "1Ki", "1034", DSI),
        ("1Ki", "1", "1025", BSI),
        ("0", "50", "50", DSI),
        ("50", "0", "50", DSI),
        ("0", "1Gi", "1Gi", BSI),  # a zero receiver takes the other's format
        ("1Gi", "0", "1Gi", BSI),
        ("100m", "0", "100m", DSI),
        ("1.5Gi", "512Mi", "2Gi", BSI),
        ("100m", "900m", "1", DSI),
        ("4Ei", "4Ei", "8Ei", BSI),
        ("8Ei", "0", "9223372036854775807", BSI),  # parsing caps BinarySI at 2^63-1
        ("1000E", "1000E", "2000E", DSI),
    ],
)
def test_addition(a: str, b: str, total: str, fmt: Format) -> None:
    result = parse_quantity(a) + parse_quantity(b)
    assert str(result) == total
    assert result.format is fmt


@pytest.mark.parametrize(
    ("a", "b", "difference", "fmt"),
    [
        ("10", "1e1", "0", DSI),
        ("10", "1", "9", DSI),
        ("0", "50", "-50", DSI),
        ("50", "0", "50", DSI),
        ("0", "1Gi", "-1Gi", BSI),
        ("1Gi", "0", "1Gi", BSI),
        ("2Gi", "512Mi", "1536Mi", BSI),
        ("1", "100m", "900m", DSI),
    ],
)
def test_subtraction(a: str, b: str, difference: str, fmt: Format) -> None:
    result = parse_quantity(a) - parse_quantity(b)
    assert str(result) == difference
    assert result.format is fmt


def test_beyond_the_largest_suffix() -> None:
    # apimachinery would drop the suffix here (printing "1"); we keep the largest one.
    assert str(Quantity(2**70, 0, BSI)) == "1024Ei"
    assert str(Quantity(2**70, 0, BSI) + parse_quantity("1Ei")) == "1025Ei"
    assert str(parse_quantity("1000E")) == "1000E"
    assert str(parse_quantity("1000E") + parse_quantity("1E")) == "1001E"


def test_negation() -> None:
    assert str(-parse_quantity("9.01")) == "-9010m"
    assert str(-parse_quantity("10Ki")) == "-10Ki"
    negated = -parse_quantity("+1")
    assert str(-negated) == "1"
    assert str(-parse_quantity("0")) == "0"


# --- properties ---------------------------------------------------------------------------------

_SUFFIXES = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


@st.composite
def quantity_texts(draw: st.DrawFn) -> str:
    sign = draw(st.sampled_from(["", "+", "-"]))
    whole = draw(st.text("0123456789", max_size=12))
    frac = draw(st.text("0123456789", max_size=12))
    dot = draw(st.booleans())
    if not whole and not frac:
        whole = "0"
    number = whole + ("." + frac if dot or frac else "")
    if draw(st.booleans()):
        exponent = draw(st.integers(min_value=-30, max_value=30))
        suffix = draw(st.sampled_from(["e", "E"])) + draw(st.sampled_from(["", "+"])) + str(exponent)
        if exponent < 0:
            suffix = suffix.replace("+", "")
    else:
        suffix = draw(st.sampled_from(_SUFFIXES))
    return sign + number + suffix


quantities = quantity_texts().map(parse_quantity)


@settings(max_examples=300, deadline=None)
@given(quantity_texts())
def test_round_trip(text: str) -> None:
    quantity = parse_quantity(text)
    assert parse_quantity(str(quantity)) == quantity
    assert parse_quantity(quantity.canonical()) == quantity
    assert str(parse_quantity(quantity.canonical())) == quantity.canonical()


@settings(max_examples=300, deadline=None)
@given(quantity_texts())
def test_parse_matches_exact_arithmetic(text: str) -> None:
    # Independent model: the exact value, rounded up (away from zero) to 1n, BinarySI capped at 2^63-1.
    body = text.lstrip("+-")
    negative = text.startswith("-")
    suffix_at = len(body) - len(body.lstrip("0123456789."))
    number, suffix = body[:suffix_at], body[suffix_at:]
    value = Fraction(Decimal(number if number.strip(".") else "0"))
    binary = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
    decimal = {"": 0, "n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
    if suffix in binary:
        value *= 2 ** binary[suffix]
    elif suffix in decimal:
        value *= Fraction(10) ** decimal[suffix]
    else:
        value *= Fraction(10) ** int(suffix[1:])
    nanos = value * 10**9
    rounded = Fraction(-((-nanos.numerator) // nanos.denominator), 10**9)  # ceil
    if suffix in binary:
        rounded = min(rounded, Fraction(2**63 - 1))
    expected = -rounded if negative else rounded
    assert parse_quantity(text).to_fraction() == expected


@settings(max_examples=200, deadline=None)
@given(quantities, quantities, quantities)
def test_arithmetic_laws(a: Quantity, b: Quantity, c: Quantity) -> None:
    assert a + b == b + a
    assert (a + b) + c == a + (b + c)
    assert a + b - b == a
    assert a - a == Quantity()
    negated = -a
    assert -negated == a
    assert (a + b).to_fraction() == a.to_fraction() + b.to_fraction()
    assert (a < b) == (a.to_fraction() < b.to_fraction())
    assert (a == b) == (a.to_fraction() == b.to_fraction())
    assert (a == b) <= (hash(a) == hash(b))
    assert sorted([a, b, c], key=lambda q: q.to_fraction()) == sorted([a, b, c])


# --- resource lists -----------------------------------------------------------------------------


def test_parse_resource_list() -> None:
    assert parse_resource_list({"cpu": "1500m", "memory": "1Gi", "pods": 10}) == {
        "cpu": parse_quantity("1.5"),
        "memory": parse_quantity("1Gi"),
        "pods": parse_quantity("10"),
    }
    assert parse_resource_list(None) == {}
    assert parse_resource_list({}) == {}


def test_parse_resource_list_names_the_key() -> None:
    with pytest.raises(ResourceListError) as info:
        parse_resource_list({"cpu": "1", "memory": "lots"})
    assert str(info.value) == (
        "memory: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )
    assert info.value.key == "memory"
    assert info.value.reason == ERR_FORMAT_WRONG
    assert isinstance(info.value, QuantityError)
    with pytest.raises(ResourceListError) as info:
        parse_resource_list({"pods": None})  # type: ignore[dict-item]
    assert str(info.value) == "pods: a quantity must be a string or a number, not NoneType"


def test_add_lists() -> None:
    result = add_lists({"cpu": "1", "memory": "1Gi"}, {"cpu": "500m", "pods": "3"})
    assert format_list(result) == {"cpu": "1500m", "memory": "1Gi", "pods": "3"}
    assert add_lists(None, None) == {}


def test_subtract_lists() -> None:
    result = subtract_lists({"cpu": "1", "memory": "1Gi"}, {"cpu": "500m", "pods": "3"})
    assert format_list(result) == {"cpu": "500m", "memory": "1Gi", "pods": "-3"}


def test_lists_le() -> None:
    used = {"cpu": "2", "memory": "1Gi", "pods": "4"}
    hard = {"cpu": "1", "memory": "2Gi", "pods": "4", "services": "1"}
    assert lists_le(used, hard) == ["cpu"]
    assert lists_le({"memory": "3Gi", "cpu": "3"}, hard) == ["cpu", "memory"]
    assert lists_le({"gpus": "100"}, hard) == []  # only resources in both are compared
    assert lists_le(None, hard) == []


def test_format_list_and_message() -> None:
    assert format_list({"b": "1.5Gi", "a": "0.5"}) == {"a": "500m", "b": "1536Mi"}
    assert list(format_list({"b": "1", "a": "2"})) == ["a", "b"]
    assert format_list_message({"pods": "4", "cpu": "1.5"}) == "cpu=1500m,pods=4"
    assert format_list_message({"pods": "4", "cpu": "1.5"}, keys=["pods", "gpus"]) == "pods=4"
    assert format_list_message(None) == ""
