"""Canonical JSON text of a definition, byte-identical with the TypeScript SDK.

The proto3 JSON mapping (lowerCamelCase names, defaults omitted) serialised the way
`JSON.stringify` does after sorting keys: the TS SDK runs protobuf-es `toJson` and
`canonicalJsonText` (proto/ts/json.ts). Two details need care in Python: numbers must be
printed as JS prints them (`2.0` → `2`, `1e21`, `1e-7`), and keys sort by UTF-16 code units.
The rules are listed in test/vectors/README.md.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message


def message_to_json_data(message: Message) -> Any:
    """The proto3 JSON mapping of `message` as Python data (defaults omitted)."""
    return json_format.MessageToDict(message, preserving_proto_field_name=False)


def canonical_json(message: Message) -> str:
    """Canonical JSON text of a message: sorted keys, no whitespace, JS number formatting."""
    return canonical_json_text(message_to_json_data(message))


def canonical_json_text(value: Any) -> str:
    """Serialises plain JSON data exactly like `JSON.stringify(sortKeys(value))`."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _utf16_key(text: str) -> bytes:
    return text.encode("utf-16-be", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(js_number(float(value)) if abs(value) >= 2**53 else str(value))
    elif isinstance(value, float):
        out.append(js_number(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"not JSON data: {value!r}")


def js_number(value: float) -> str:
    """Formats a double exactly as ECMAScript `Number.prototype.toString()` does.

    JSON.stringify writes NaN and infinities as `null`; so does this.
    """
    if math.isnan(value) or math.isinf(value):
        return "null"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr gives the shortest round-trip digits, as JS does; only the layout differs.
    mantissa, _, exp_text = repr(abs(value)).partition("e")
    int_part, _, frac_part = mantissa.partition(".")
    exponent = int(exp_text) if exp_text else 0
    digits = (int_part + frac_part).lstrip("0")
    # value = 0.digits * 10**n (ECMAScript's n); count leading zeros lost to lstrip.
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    n = len(int_part) - lead_zeros + exponent
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        exp = f"e{'+' if e >= 0 else '-'}{abs(e)}"
        text = (digits if k == 1 else digits[0] + "." + digits[1:]) + exp
    return sign + text
