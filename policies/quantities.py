"""Kubernetes ``resource.Quantity``, exactly: parsing, canonical printing and arithmetic without floats.

This follows ``k8s.io/apimachinery/pkg/api/resource`` (``quantity.go``, ``amount.go``, ``suffix.go``):

- Every legal form parses (``100m``, ``1.5Gi``, ``2e3``, ``1E-3``, ``+1``, ``.5``, ``5.``); values are
  rounded *up* (away from zero) to a multiple of 1n, BinarySI values are capped at 2^63-1 in magnitude.
- The suffix family is remembered as :attr:`Quantity.format`.
- ``str(q)`` is what the apiserver prints: the input text itself when apimachinery keeps it (it was
  already canonical, e.g. ``1Ki``, ``2e3``, ``+1``), else the canonical form (``1.5Gi`` → ``1536Mi``,
  ``0.5`` → ``500m``, ``1000m`` → ``1``).  :meth:`Quantity.canonical` always gives the canonical form.

Deliberate differences from apimachinery, all at magnitudes no resource has:

- apimachinery prints DecimalSI values of 10^21 and more, and BinarySI values of 2^70 and more, without
  their suffix (``1000E`` prints as ``1``); here they keep the largest suffix (``1000E``, ``1024Ei``).
- Exponents outside int32 are refused (apimachinery wraps them), and so are values of 10^1000 or more
  and numbers of more than 1000 digits, so that untrusted input cannot make us build huge integers.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Final, TypeAlias

__all__ = [
    "ERR_FORMAT_WRONG",
    "ERR_NUMERIC",
    "ERR_SUFFIX",
    "Format",
    "Quantity",
    "QuantityError",
    "QuantityInput",
    "ResourceList",
    "ResourceListError",
    "add_lists",
    "format_list",
    "format_list_message",
    "lists_le",
    "parse_quantity",
    "parse_resource_list",
    "subtract_lists",
]

#: apimachinery's regular expression for a quantity (only used in the error text, as upstream).
SPLIT_RE_STRING: Final = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
#: apimachinery ``ErrFormatWrong``.
ERR_FORMAT_WRONG: Final = "quantities must match the regular expression '" + SPLIT_RE_STRING + "'"
#: apimachinery ``ErrNumeric``.
ERR_NUMERIC: Final = "unable to parse numeric part of quantity"
#: apimachinery ``ErrSuffix``.
ERR_SUFFIX: Final = "unable to parse quantity's suffix"
_ERR_TOO_LARGE: Final = "quantity is too large: values must stay below 10^1000"
_ERR_TOO_LONG: Final = "quantity has too many digits: at most 1000 are accepted"

_NANO: Final = -9  # the smallest scale a quantity keeps
_MAX_INT64: Final = (1 << 63) - 1
_MAX_DECIMAL_DIGITS: Final = 1000
_INT32_MIN: Final = -(1 << 31)
_INT32_MAX: Final = (1 << 31) - 1


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity; the message is apimachinery's."""


class Format(enum.StrEnum):
    """How a quantity prints: the suffix family it was written with."""

    DECIMAL_EXPONENT = "DecimalExponent"  # 12e6
    BINARY_SI = "BinarySI"  # 12Mi
    DECIMAL_SI = "DecimalSI"  # 12M


_DECIMAL_SUFFIXES: Final = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_DECIMAL_BY_EXPONENT: Final = {exponent: suffix for suffix, exponent in _DECIMAL_SUFFIXES.items()}
_BINARY_SUFFIXES: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_BY_POWER: Final = {exponent // 10: suffix for suffix, exponent in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS: Final = frozenset("eEinumkKMGTP")
_DIGITS: Final = frozenset("0123456789")


def _normalize(unscaled: int, scale: int) -> tuple[int, int]:
    """Strip factors of ten into the scale so that equal values have equal (unscaled, scale)."""
    if unscaled == 0:
        return 0, 0
    while unscaled % 10 == 0:
        unscaled //= 10
        scale += 1
    return unscaled, scale


def _ceil_div_away(value: int, divisor: int) -> int:
    """``value / divisor`` rounded away from zero (inf.RoundUp), for ``divisor > 0``."""
    quotient, remainder = divmod(abs(value), divisor)
    if remainder:
        quotient += 1
    return -quotient if value < 0 else quotient


class Quantity:
    """An exact, immutable Kubernetes quantity: ``unscaled * 10**scale`` plus the :class:`Format` to print in.

    Equality, hashing and ordering follow the value only (``Quantity("1Ki") == Quantity("1024")``).
    Build one with :func:`parse_quantity` or ``Quantity(value, scale, format)``; values finer than 1n
    are rounded away from zero, as apimachinery does.
    """

    __slots__ = ("_format", "_scale", "_text", "_unscaled")

    _unscaled: int
    _scale: int
    _format: Format
    _text: str | None

    def __init__(self, value: int = 0, scale: int = 0, format: Format = Format.DECIMAL_SI) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not isinstance(scale, int):
            raise TypeError("Quantity(value, scale) takes integers; use parse_quantity() for strings")
        if scale < _NANO and value:
            shift = _NANO - scale
            if value.bit_length() <= 3 * shift:
                # |value| < 8**shift <= 10**shift: the value is below 1n and rounds up to it, and
                # we avoid building 10**shift for absurd exponents.
                value = 1 if value > 0 else -1
            else:
                value = _ceil_div_away(value, 10**shift)
            scale = _NANO
        unscaled, normalized_scale = _normalize(value, scale)
        object.__setattr__(self, "_unscaled", unscaled)
        object.__setattr__(self, "_scale", normalized_scale)
        object.__setattr__(self, "_format", Format(format))
        object.__setattr__(self, "_text", None)

    @classmethod
    def _make(cls, unscaled: int, scale: int, format: Format, text: str | None = None) -> Quantity:
        quantity = cls(unscaled, scale, format)
        object.__setattr__(quantity, "_text", text)
        return quantity

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Quantity is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Quantity is immutable; cannot delete {name!r}")

    # --- accessors ---------------------------------------------------------------------------------

    @property
    def format(self) -> Format:
        """The suffix family: DecimalSI, BinarySI or DecimalExponent."""
        return self._format

    @property
    def unscaled(self) -> int:
        """The integer part of the normalized ``unscaled * 10**scale`` representation."""
        return self._unscaled

    @property
    def scale(self) -> int:
        """The power of ten of the normalized representation (never below -9)."""
        return self._scale

    def to_fraction(self) -> Fraction:
        """The exact value."""
        if self._scale >= 0:
            return Fraction(self._unscaled * 10**self._scale)
        return Fraction(self._unscaled, 10**-self._scale)

    def to_decimal(self) -> Decimal:
        """The exact value as a :class:`~decimal.Decimal` (no context rounding is applied)."""
        return Decimal(self._unscaled).scaleb(self._scale)

    def is_zero(self) -> bool:
        """True when the value is zero."""
        return self._unscaled == 0

    @property
    def sign(self) -> int:
        """-1, 0 or 1."""
        return (self._unscaled > 0) - (self._unscaled < 0)

    def scaled_value(self, scale: int) -> int:
        """``ceil(q / 10**scale)`` away from zero, as apimachinery ``ScaledValue``."""
        shift = self._scale - scale
        if shift >= 0:
            return self._unscaled * int(10**shift)
        return _ceil_div_away(self._unscaled, 10**-shift)

    def value(self) -> int:
        """The value rounded away from zero to an integer (apimachinery ``Value``)."""
        return self.scaled_value(0)

    def milli_value(self) -> int:
        """The value in thousandths, rounded away from zero (apimachinery ``MilliValue``)."""
        return self.scaled_value(-3)

    # --- printing ----------------------------------------------------------------------------------

    def canonical(self) -> str:
        """The canonical form (apimachinery ``CanonicalizeBytes``), ignoring the text it was parsed from."""
        if self._unscaled == 0:
            return "0"
        fmt = self._format
        if fmt is Format.BINARY_SI:
            magnitude = self.to_fraction()
            if -1024 < magnitude < 1024 or magnitude.denominator != 1:
                # Small values would print oddly and fractions would lose precision in base 1024.
                fmt = Format.DECIMAL_SI
            else:
                return self._binary_text(magnitude.numerator)
        return self._decimal_text(fmt)

    def _binary_text(self, whole: int) -> str:
        power = 0
        while whole % 1024 == 0:
            whole //= 1024
            power += 1
        if power > 6:  # beyond Ei apimachinery drops the suffix; keep Ei instead
            whole *= 1024 ** (power - 6)
            power = 6
        return f"{whole}{_BINARY_BY_POWER.get(power, '')}"

    def _decimal_text(self, fmt: Format) -> str:
        unscaled, exponent = self._unscaled, self._scale
        remainder = exponent % 3
        unscaled *= 10**remainder
        exponent -= remainder
        if fmt is Format.DECIMAL_EXPONENT:
            return f"{unscaled}e{exponent}" if exponent else str(unscaled)
        if exponent > 18:  # beyond E apimachinery drops the suffix; keep E instead
            unscaled *= 10 ** (exponent - 18)
            exponent = 18
        return f"{unscaled}{_DECIMAL_BY_EXPONENT[exponent]}"

    def __str__(self) -> str:
        return self._text if self._text is not None else self.canonical()

    def __repr__(self) -> str:
        return f"Quantity({str(self)!r})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    # --- comparison --------------------------------------------------------------------------------

    def _aligned(self, other: Quantity) -> tuple[int, int]:
        scale = min(self._scale, other._scale)
        return self._unscaled * 10 ** (self._scale - scale), other._unscaled * 10 ** (other._scale - scale)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self._unscaled == other._unscaled and self._scale == other._scale

    def __hash__(self) -> int:
        return hash((self._unscaled, self._scale))

    def __lt__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        left, right = self._aligned(other)
        return left < right

    def __le__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        left, right = self._aligned(other)
        return left <= right

    def __gt__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        left, right = self._aligned(other)
        return left > right

    def __ge__(self, other: Quantity) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        left, right = self._aligned(other)
        return left >= right

    def cmp(self, other: Quantity) -> int:
        """-1, 0 or 1 as apimachinery ``Cmp``."""
        left, right = self._aligned(other)
        return (left > right) - (left < right)

    def __bool__(self) -> bool:
        return self._unscaled != 0

    # --- arithmetic --------------------------------------------------------------------------------

    def __add__(self, other: Quantity) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        left, right = self._aligned(other)
        # As apimachinery Add: a zero receiver takes the other operand's format.
        fmt = other._format if self._unscaled == 0 else self._format
        return Quantity(left + right, min(self._scale, other._scale), fmt)

    def __sub__(self, other: Quantity) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        left, right = self._aligned(other)
        fmt = other._format if self._unscaled == 0 else self._format
        return Quantity(left - right, min(self._scale, other._scale), fmt)

    def __neg__(self) -> Quantity:
        return Quantity(-self._unscaled, self._scale, self._format)

    def __pos__(self) -> Quantity:
        return self

    def __abs__(self) -> Quantity:
        return -self if self._unscaled < 0 else self

    def with_format(self, format: Format) -> Quantity:
        """The same value printed in ``format``."""
        return Quantity(self._unscaled, self._scale, format)

    def __reduce__(self) -> tuple[object, ...]:
        return (parse_quantity, (str(self),))


QuantityInput: TypeAlias = "Quantity | str | int | float"


def _scan(text: str) -> tuple[bool, str, str, str, str]:
    """apimachinery ``parseQuantityString``: (positive, value, num, denom, suffix) or ErrFormatWrong."""
    positive = True
    pos, end = 0, len(text)
    if pos < end and text[0] in "+-":
        positive = text[0] == "+"
        pos += 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    if pos >= end:
        return positive, text, num, "", ""
    denom = ""
    if text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
        if pos >= end:
            return positive, text, num, denom, ""
    value = text[:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in "+-":
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(ERR_FORMAT_WRONG)
    return positive, value, num, denom, text[suffix_start:]


def _interpret(suffix: str) -> tuple[int, int, Format]:
    """apimachinery ``suffixer.interpret``: (base, exponent, format) or ErrSuffix."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], Format.DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], Format.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        digits = suffix[1:]
        body = digits[1:] if digits[0] in "+-" else digits
        if body and all(char in _DIGITS for char in body):
            exponent = int(digits)
            if _INT32_MIN <= exponent <= _INT32_MAX:
                return 10, exponent, Format.DECIMAL_EXPONENT
    raise QuantityError(ERR_SUFFIX)


def _keeps_text(num: str, denom: str, base: int, exponent: int, fmt: Format) -> bool:
    """Whether apimachinery's fast path keeps the input text as the printed form (it was canonical)."""
    if fmt is Format.BINARY_SI:
        if exponent < 0 or denom:
            return False
        precision = 15 - len(num) - exponent * 3 // 10 - 1
        mantissa = 1 << exponent
        scale = 0
    else:
        precision = 18 - (len(num) + len(denom))
        mantissa = 1
        scale = exponent - len(denom)
    if precision < 0 or scale < _NANO:
        return False
    shifted = num + denom
    value = int(shifted)
    # The precision bounds above keep value * mantissa inside int64, so apimachinery's overflow
    # fallback cannot trigger here.
    assert value * mantissa <= _MAX_INT64  # noqa: S101 (an invariant for the type checker, not a check of input)
    if fmt is Format.BINARY_SI:
        return exponent % 10 == 0 and value & 0x07 != 0
    return scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def parse_quantity(s: QuantityInput) -> Quantity:
    """Parse a quantity as apimachinery ``ParseQuantity`` does.

    Also takes an int, or a float as JSON numbers decode (the apiserver accepts unquoted quantities),
    or a :class:`Quantity` (returned as is).  Raises :class:`QuantityError` with apimachinery's message.
    """
    if isinstance(s, Quantity):
        return s
    if isinstance(s, bool) or not isinstance(s, str | int | float):
        raise TypeError(f"a quantity must be a string or a number, not {type(s).__name__}")
    if isinstance(s, float):
        if not math.isfinite(s):
            raise QuantityError(ERR_FORMAT_WRONG)
        text = repr(s)
    elif isinstance(s, int) and s.bit_length() > 3 * _MAX_DECIMAL_DIGITS:
        # str() of such an int would hit Python's digit limit; it is too long for a quantity anyway.
        raise QuantityError(_ERR_TOO_LONG)
    else:
        text = str(s)
    if not text:
        raise QuantityError(ERR_FORMAT_WRONG)
    if text == "0":
        return Quantity._make(0, 0, Format.DECIMAL_SI, "0")
    positive, value, num, denom, suffix = _scan(text)
    base, exponent, fmt = _interpret(suffix)

    if base == 10 and exponent < _NANO and not any(char in _DIGITS for char in value):
        # "." is zero on apimachinery's int64 path, but fails inf.Dec parsing on the path small
        # exponents take.
        raise QuantityError(ERR_NUMERIC)
    if len(num) + len(denom) > _MAX_DECIMAL_DIGITS:
        raise QuantityError(_ERR_TOO_LONG)
    digits = int(num + denom)
    if base == 10:
        scale = exponent - len(denom)
        if digits and len(str(digits)) + scale > _MAX_DECIMAL_DIGITS:
            raise QuantityError(_ERR_TOO_LARGE)
        unscaled = digits
    else:
        scale = -len(denom)
        unscaled = digits << exponent
    if not positive:
        unscaled = -unscaled

    quantity = Quantity(unscaled, scale, fmt)  # rounds away from zero to 1n
    if fmt is Format.BINARY_SI:
        magnitude = abs(quantity.to_fraction())
        if magnitude > _MAX_INT64:
            quantity = Quantity(_MAX_INT64 if positive else -_MAX_INT64, 0, fmt)
        elif 0 < magnitude < 1:
            quantity = quantity.with_format(Format.DECIMAL_SI)
    if _keeps_text(num, denom, base, exponent, fmt):
        object.__setattr__(quantity, "_text", text)
    return quantity


# --- resource lists ---------------------------------------------------------------------------------

#: A ResourceList on the wire: resource name → quantity string.  (JSON numbers are accepted as input
#: by every function here, as the apiserver accepts them.)
ResourceList: TypeAlias = "dict[str, str]"


class ResourceListError(QuantityError):
    """A quantity in a resource list failed to parse; ``key`` names the resource."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def parse_resource_list(rl: Mapping[str, QuantityInput] | None) -> dict[str, Quantity]:
    """Parse every quantity of ``rl``; :class:`ResourceListError` names the first bad key."""
    parsed: dict[str, Quantity] = {}
    for key, raw in (rl or {}).items():
        try:
            parsed[key] = parse_quantity(raw)
        except (QuantityError, TypeError) as exc:
            raise ResourceListError(key, str(exc)) from None
    return parsed


def add_lists(
    a: Mapping[str, QuantityInput] | None, b: Mapping[str, QuantityInput] | None
) -> dict[str, Quantity]:
    """``a + b`` per resource; a resource missing on one side counts as zero (k8s ``quota.Add``)."""
    left, right = parse_resource_list(a), parse_resource_list(b)
    result = dict(left)
    for key, quantity in right.items():
        result[key] = result[key] + quantity if key in result else quantity
    return result


def subtract_lists(
    a: Mapping[str, QuantityInput] | None, b: Mapping[str, QuantityInput] | None
) -> dict[str, Quantity]:
    """``a - b`` per resource; a resource only in ``b`` comes out negated (k8s ``quota.Subtract``)."""
    left, right = parse_resource_list(a), parse_resource_list(b)
    result = {key: quantity - right[key] if key in right else quantity for key, quantity in left.items()}
    for key, quantity in right.items():
        if key not in result:
            result[key] = -quantity
    return result


def lists_le(a: Mapping[str, QuantityInput] | None, b: Mapping[str, QuantityInput] | None) -> list[str]:
    """The resources, sorted, where ``a`` exceeds ``b``; only resources present in both are compared.

    An empty result means ``a <= b`` (k8s ``quota.LessThanOrEqual``).
    """
    left, right = parse_resource_list(a), parse_resource_list(b)
    return sorted(key for key, limit in right.items() if key in left and left[key] > limit)


def format_list(ql: Mapping[str, QuantityInput] | None) -> dict[str, str]:
    """The wire form of a resource list: each quantity printed as the apiserver prints it, keys sorted."""
    parsed = parse_resource_list(ql)
    return {key: str(parsed[key]) for key in sorted(parsed)}


def format_list_message(ql: Mapping[str, QuantityInput] | None, keys: Iterable[str] | None = None) -> str:
    """``name=quantity`` pairs sorted by name and comma-joined, as Kubernetes quota messages print them."""
    parsed = parse_resource_list(ql)
    names = sorted(parsed if keys is None else (key for key in keys if key in parsed))
    return ",".join(f"{name}={parsed[name]}" for name in names)
