"""Canonical JSON: the rules of test/vectors/README.md, cross-checked against Node itself."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess

import pytest

import kaon
from kaon._dsl.canonical import canonical_json_text, js_number

NODE = shutil.which("node")


def test_integral_doubles_print_as_integers() -> None:
    assert js_number(2.0) == "2"
    assert js_number(-0.0) == "0"
    assert js_number(1e20) == "100000000000000000000"
    assert canonical_json_text({"a": 2.0, "b": [3.0, 0.5]}) == '{"a":2,"b":[3,0.5]}'


def test_js_exponent_rules() -> None:
    assert js_number(1e21) == "1e+21"
    assert js_number(1e-7) == "1e-7"
    assert js_number(1e-6) == "0.000001"
    assert js_number(1.2345678901234568e20) == "123456789012345680000"
    assert js_number(5e-324) == "5e-324"


def test_keys_sorted_recursively_without_whitespace() -> None:
    text = canonical_json_text({"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": "ü"})
    assert text == '{"a":"ü","b":{"a":[{"x":2,"y":1}],"z":1}}'


def test_keys_sort_by_utf16_code_units_like_javascript() -> None:
    # U+FF5E (BMP, high) sorts after U+1F600 (astral: surrogate 0xD83D) in UTF-16 order,
    # the reverse of code-point order.
    keys = {"\uff5e": 1, "\U0001f600": 2}
    assert canonical_json_text(keys) == '{"\U0001f600":2,"\uff5e":1}'


def test_defaults_are_omitted_and_durations_use_the_proto_json_form() -> None:
    wf = kaon.Workflow("wf", steps=[kaon.noop("a", timeout=1.5, retry=kaon.Retry(max_attempts=1))])
    assert wf.to_canonical_json() == (
        '{"id":"wf","steps":[{"id":"a","retry":{"maxAttempts":1},"timeout":"1.500s","type":"noop"}]}'
    )


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (0.000001, "0.000001s"), (90.5, "90.500s")]
)
def test_duration_text(seconds: float, text: str) -> None:
    wf = kaon.Workflow("wf", timeout=seconds)
    assert f'"timeout":"{text}"' in wf.to_canonical_json()


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_numbers_and_strings_match_node_json_stringify() -> None:
    rng = random.Random(7)
    numbers: list[float] = [0.1, 1 / 3, 2.0, 1e21, 1e-7, 123.456, -5e-324, 2**53, 2.0**70, 1e300]
    numbers += [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(300)]
    numbers += [rng.uniform(-1e6, 1e6) for _ in range(200)]
    numbers += [float(rng.randint(-(10**12), 10**12)) for _ in range(50)]
    numbers = [n for n in numbers if n == n and abs(n) != float("inf")]
    strings = [
        "plain",
        'quote " back \\ slash',
        "ctl \x00\x01\x1f \b\f\n\r\t",
        "ünï 😀",
        "\u2028\u2029",
        "\x7f",
    ]
    value = {
        "numbers": numbers,
        "strings": strings,
        "nested": {"z": [1.0, {"b": 0.5, "a": None}], "a": True},
    }
    # JSON.parse of Python's repr-based dump is exact (both are shortest round-trip).
    script = (
        "const v = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "const sort = (x) => Array.isArray(x) ? x.map(sort) : (x && typeof x === 'object')"
        " ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort(x[k])])) : x;"
        "process.stdout.write(JSON.stringify(sort(v)));"
    )
    done = subprocess.run(
        [str(NODE), "-e", script],
        input=json.dumps(value).encode(),
        capture_output=True,
        check=True,
    )
    assert canonical_json_text(value) == done.stdout.decode("utf-8")
