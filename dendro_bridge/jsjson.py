"""JSON text exactly as JavaScript's `JSON.stringify` writes it, with keys sorted.

The Dendro service hashes `JSON.stringify(obj, sortedKeys)` from Node, so the bytes must
match: keys in UTF-16 code-unit order at every level, no whitespace, non-ASCII kept raw,
lone surrogates escaped, and numbers in ECMAScript `Number::toString` form.
"""
from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def js_number(x: int | float) -> str:
    """Format a number as ECMAScript Number::toString does (1.0 -> "1", 1e-07 -> "1e-7")."""
    x = float(x)  # JS has doubles only: big ints round exactly as JSON.parse would round them
    if not math.isfinite(x):
        return "null"  # what JSON.stringify writes for NaN and Infinity
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    # repr gives the shortest round-tripping digits, as ECMAScript requires.
    _, digit_tuple, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    n = len(digits) + int(exponent)  # the decimal point sits after the n-th digit
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e > 0 else "-") + str(abs(e))
    return sign + body


def js_string(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _utf16_key(s: str) -> bytes:
    return s.encode("utf-16-be", "surrogatepass")


def stringify_sorted(value: Any) -> str:
    """`JSON.stringify(value, allKeysSorted)`: deterministic JSON with JS formatting."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, str):
        return js_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(stringify_sorted(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=_utf16_key)
        return "{" + ",".join(js_string(k) + ":" + stringify_sorted(value[k]) for k in keys) + "}"
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")
