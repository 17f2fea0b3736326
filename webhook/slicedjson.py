"""``json.loads`` in short slices: the same result and the same errors, never holding the GIL for long.

The standard library's C decoder parses a whole document in one call, holding the GIL throughout:
a 3.5 MB AdmissionReview of 250,000 labels takes about 0.2 s on an idle core, and no other thread
of the process (the gevent hub serving every other connection of a worker) runs meanwhile, wherever
the call is made.  This decoder walks objects and arrays itself with an explicit stack and leaves
only scalars (strings, numbers, literals) and keys to the C scanner, so each C call is short and the
interpreter can hand the GIL to another thread at its switch interval, and a caller on an event loop
can let the loop run every few milliseconds (``pause``).  It costs about three times the C decoder's
time, which is why only large bodies are decoded with it.

Results are equal to ``json.loads``; errors are the same :class:`json.JSONDecodeError` messages at
the same positions.  Nesting deeper than the interpreter's recursion limit raises
:class:`RecursionError`, as the C decoder does.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from json import decoder
from json.decoder import JSONDecodeError
from typing import Any

__all__ = ["loads"]

# The C scanners behind json.loads (the stubs do not declare them): a string's rest after its
# opening quote, and any one value at an index (called here for scalars only).
scanstring: Callable[[str, int, bool], tuple[str, int]] = getattr(decoder, "scanstring")  # noqa: B009
_scalar: Callable[[str, int], tuple[Any, int]] = getattr(json.JSONDecoder(), "scan_once")  # noqa: B009
_WS = re.compile(r"[ \t\n\r]*")
_SPACE = " \t\n\r"
_KEY = "Expecting property name enclosed in double quotes"


def _skip(s: str, idx: int) -> int:
    if s[idx : idx + 1] in _SPACE and idx < len(s):
        return _WS.match(s, idx).end()  # type: ignore[union-attr]  # [ \t\n\r]* always matches
    return idx


def _key(s: str, idx: int) -> tuple[str, int]:
    """The member name at ``idx`` (its opening quote) and the index of its value."""
    if s[idx : idx + 1] != '"':
        raise JSONDecodeError(_KEY, s, idx)
    key, idx = scanstring(s, idx + 1, True)
    idx = _skip(s, idx)
    if s[idx : idx + 1] != ":":
        raise JSONDecodeError("Expecting ':' delimiter", s, idx)
    return key, _skip(s, idx + 1)


def loads(data: bytes | str, pause: Callable[[], None] | None = None, every: float = 0.002) -> Any:
    """Decode ``data`` as :func:`json.loads` does (bytes in UTF-8, -16 or -32, detected the same way).

    ``pause`` is called whenever ``every`` seconds of decoding have passed since the last call (or
    the start): a greenlet passes ``gevent.sleep(0)`` to let its event loop run in between.
    """
    if isinstance(data, bytes):
        s = data.decode(json.detect_encoding(data), "surrogatepass")
    else:
        s = data
        if s.startswith("\ufeff"):
            raise JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", s, 0)
    limit = sys.getrecursionlimit()
    # Open containers, innermost last: [the dict or list, the key its next value goes under].
    stack: list[list[Any]] = []
    value: Any
    idx = _skip(s, 0)
    count = 0
    last = time.perf_counter()
    while True:
        count += 1
        if pause is not None and not count & 255 and time.perf_counter() - last >= every:
            pause()
            last = time.perf_counter()
        # A value starts at idx.
        char = s[idx : idx + 1]
        if char == "{":
            idx = _skip(s, idx + 1)
            if s[idx : idx + 1] != "}":
                key, idx = _key(s, idx)
                stack.append([{}, key])
                if len(stack) > limit:
                    raise RecursionError("maximum recursion depth exceeded while decoding a JSON object")
                continue
            value, idx = {}, idx + 1
        elif char == "[":
            idx = _skip(s, idx + 1)
            if s[idx : idx + 1] != "]":
                stack.append([[], None])
                if len(stack) > limit:
                    raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")
                continue
            value, idx = [], idx + 1
        else:
            try:
                value, idx = _scalar(s, idx)
            except StopIteration as err:
                raise JSONDecodeError("Expecting value", s, err.value) from None
        # A value ends at idx: store it, then close every container that ends here.
        while stack:
            frame = stack[-1]
            container = frame[0]
            idx = _skip(s, idx)
            char = s[idx : idx + 1]
            if frame[1] is None:
                container.append(value)
                if char == "]":
                    stack.pop()
                    value, idx = container, idx + 1
                    continue
            else:
                container[frame[1]] = value
                if char == "}":
                    stack.pop()
                    value, idx = container, idx + 1
                    continue
            if char != ",":
                raise JSONDecodeError("Expecting ',' delimiter", s, idx)
            idx = _skip(s, idx + 1)
            if frame[1] is not None:
                frame[1], idx = _key(s, idx)
            break
        else:
            idx = _skip(s, idx)
            if idx != len(s):
                raise JSONDecodeError("Extra data", s, idx)
            return value
