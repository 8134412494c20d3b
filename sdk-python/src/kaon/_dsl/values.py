"""Conversions from Python values to protobuf values shared by the DSL and the in-job API.

Kept in one place so that a literal param, a step config and a job output encode the same
way, and so that an unencodable value is reported with the path to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeAlias

from google.protobuf import duration_pb2, struct_pb2

from kaon._errors import KaonError

JsonValue: TypeAlias = Any
"""A value that encodes as JSON: None, bool, int, float, str, lists and str-keyed dicts."""

Seconds: TypeAlias = "int | float | timedelta"


@dataclass(frozen=True)
class Expr:
    """A CEL expression evaluated by core at run time, e.g. `expr("tsToDateInt(RUN_TS)")`."""

    source: str

    def __str__(self) -> str:
        return self.source


def expr(source: str) -> Expr:
    """Marks a string as a CEL expression (for params and foreach `over`)."""
    return Expr(source)


@dataclass(frozen=True)
class OutputRef:
    """An upstream step's output, e.g. `wrangle.outputs["regions"]`.

    `str(ref)` is the CEL path `steps.<step>.outputs.<name>`, so refs can be embedded in
    conditions with f-strings: `f"{train.outputs['auc']} > 0.8"`.
    """

    step_id: str
    name: str

    @property
    def path(self) -> str:
        """The CEL path of this output."""
        return f"steps.{self.step_id}.outputs.{self.name}"

    def __str__(self) -> str:
        return self.path


class EncodeError(KaonError, TypeError):
    """A value cannot be encoded (an output, a duration, a config value); the message names
    where and why. A `KaonError` like everything the SDK raises, and a `TypeError`.
    """


def to_plain(value: object, where: str) -> JsonValue:
    """Returns `value` as plain JSON data, converting array-likes (numpy) on the way.

    Raises:
        EncodeError: naming `where` (e.g. "output 'auc'") and the offending part.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise EncodeError(f"{where}: {value!r} is not a JSON number; use None or a string")
        return value
    if isinstance(value, (Expr, OutputRef)):
        raise EncodeError(
            f"{where}: an expression ({value}) cannot be used as a literal value here"
        )
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeError(
                    f"{where}: map key {key!r} has type {type(key).__name__}; "
                    "JSON keys must be strings"
                )
            out[key] = to_plain(item, f"{where}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [to_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    # numpy scalars and arrays, pandas objects: anything that offers a plain-data view.
    for converter in ("tolist", "item"):
        method = getattr(value, converter, None)
        if callable(method):
            try:
                converted = method()
            except Exception:  # a failing view just means "not convertible this way"
                continue
            if converted is not value:
                return to_plain(converted, where)
    raise EncodeError(
        f"{where}: a value of type {type(value).__module__}.{type(value).__qualname__} is not "
        "JSON-encodable; use None, bool, int, float, str, list or dict with str keys"
    )


def to_value(value: object, where: str) -> struct_pb2.Value:
    """Encodes a Python value as `google.protobuf.Value`."""
    out = struct_pb2.Value()
    _fill_value(out, to_plain(value, where))
    return out


def to_struct(value: Mapping[str, object], where: str) -> struct_pb2.Struct:
    """Encodes a str-keyed mapping as `google.protobuf.Struct`."""
    plain = to_plain(value, where)
    out = struct_pb2.Struct()
    for key, item in plain.items():
        _fill_value(out.fields[key], item)
    return out


def fill_list(out: struct_pb2.ListValue, items: list[JsonValue] | tuple[JsonValue, ...]) -> None:
    """Appends already-plain items to a ListValue."""
    for item in items:
        _fill_value(out.values.add(), item)


def _fill_value(out: struct_pb2.Value, plain: JsonValue) -> None:
    if plain is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(plain, bool):
        out.bool_value = plain
    elif isinstance(plain, (int, float)):
        out.number_value = float(plain)
    elif isinstance(plain, str):
        out.string_value = plain
    elif isinstance(plain, dict):
        out.struct_value.SetInParent()
        for key, item in plain.items():
            _fill_value(out.struct_value.fields[key], item)
    else:
        out.list_value.SetInParent()
        fill_list(out.list_value, plain)


def from_value(value: struct_pb2.Value) -> JsonValue:
    """Decodes `google.protobuf.Value` into plain Python data (integral numbers as int)."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: from_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [from_value(v) for v in value.list_value.values]
    return None


def to_duration(value: Seconds, where: str) -> duration_pb2.Duration:
    """Seconds or a timedelta as a Duration: floor seconds, rounded nanos (as the TS SDK)."""
    if isinstance(value, timedelta):
        micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
        seconds, rest = divmod(micros, 1_000_000)
        return duration_pb2.Duration(seconds=seconds, nanos=rest * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EncodeError(
            f"{where}: expected seconds (a number) or a datetime.timedelta, got {value!r}"
        )
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        raise EncodeError(f"{where}: {value!r} is not a duration")
    whole = math.floor(value)
    nanos = round((value - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return duration_pb2.Duration(seconds=int(whole), nanos=int(nanos))


def enum_value(enum_prefix: str, names: Mapping[str, int], value: str | int, where: str) -> int:
    """Maps a lowercase DSL name ("xor") or a full enum name ("SPLIT_MODE_XOR") to its number."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    key = str(value).upper()
    if not key.startswith(enum_prefix):
        key = enum_prefix + key
    if key not in names:
        choices = ", ".join(
            repr(n[len(enum_prefix) :].lower()) for n in names if not n.endswith("UNSPECIFIED")
        )
        raise ValueError(f"{where}: unknown value {value!r}; expected one of {choices}")
    return names[key]
