"""Go's printing of values, as field.Error and the apiserver's messages show them."""

from __future__ import annotations

import pytest

from kcp_tmc.policies import validation
from kcp_tmc.policies.gofmt import go_float, go_quote, go_value
from kcp_tmc.policies.policy import FieldError


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        (1.0, "1"),
        (-2.0, "-2"),
        (1.5, "1.5"),
        (0.1, "0.1"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.5, "1.2345675e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e21, "1e+21"),
        (-1.5e-7, "-1.5e-07"),
        (1e100, "1e+100"),
        (0.0, "0"),
        (-0.0, "-0"),
        (float("nan"), "NaN"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
    ],
)
def test_go_float_is_percent_v(value: float, printed: str) -> None:
    assert go_float(value) == printed


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("plain", '"plain"'),
        ('q"\\', '"q\\"\\\\"'),
        ("é😀", '"é😀"'),
        ("a\nb\tc", '"a\\nb\\tc"'),
        ("\x00\x7f", '"\\x00\\x7f"'),
        ("\u200b", '"\\u200b"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("\ud800", '"\ufffd"'),
        (" ", '" "'),
    ],
)
def test_go_quote_is_strconv_quote(text: str, quoted: str) -> None:
    assert go_quote(text) == quoted


def test_policies_and_the_fake_server_print_the_same() -> None:
    from kcp_tmc.testing import errors

    for value in (1.0, 2.5, 1e6, "x\n", True, None, [1.0], {"a": "b"}):
        assert validation.render_value(value) == errors.go_value(value) == go_value(value)
    # One FieldError class: the fake server's 422 causes carry the policies' errors.
    assert errors.FieldError is FieldError
    status = errors.invalid("g", "K", "n", [validation.required("spec.a"), FieldError("spec.b", "free text")])
    assert status.body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.a"},
        {"reason": "FieldValueInvalid", "message": "free text", "field": "spec.b"},
    ]


def test_field_error_types_follow_apimachinery() -> None:
    cases = {
        FieldError.invalid("f", 1.0, "bad"): ("FieldValueInvalid", "Invalid value: 1: bad"),
        FieldError.type_invalid("f", "x"): ("FieldValueTypeInvalid", 'Invalid value: "x"'),
        FieldError.required("f"): ("FieldValueRequired", "Required value"),
        FieldError.forbidden("f", "no"): ("FieldValueForbidden", "Forbidden: no"),
        FieldError.duplicate("f", "x"): ("FieldValueDuplicate", 'Duplicate value: "x"'),
        FieldError.not_supported("f", "x", ["A", "é"]): (
            "FieldValueNotSupported",
            'Unsupported value: "x": supported values: "A", "é"',
        ),
        FieldError.too_long("f", 3, "shorten it"): (
            "FieldValueTooLong",
            "Too long: may not be more than 3 bytes; shorten it",
        ),
        FieldError.too_many("f", 3, 2): ("FieldValueTooMany", "Too many: 3: must have at most 2 items"),
    }
    for error, (kind, message) in cases.items():
        assert (error.type, error.message) == (kind, message)
    # The type is metadata: equality is path and message, as policies compare them.
    assert FieldError("f", "Required value") == FieldError.required("f")
