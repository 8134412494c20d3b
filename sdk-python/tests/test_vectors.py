"""The shared test vectors compile, and their text follows the canonical rules.

Byte equality with the TypeScript vectors is checked by sdk-ts's vitest test (it runs
test/vectors/compile_py.py); here we check what Python alone can: every vector compiles,
the JSON round-trips through the proto3 JSON mapping to the same text, and it is canonical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import json_format

from kaon._dsl.canonical import canonical_json, canonical_json_text
from kaon.v1 import workflow_pb2

VECTORS = Path(__file__).resolve().parents[2] / "test" / "vectors"
sys.path.insert(0, str(VECTORS))
import compile_py  # noqa: E402

NAMES = compile_py.vector_names()


def test_the_agreed_vectors_exist() -> None:
    assert {"linear", "branches", "foreach_loop", "everything"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_vector_is_canonical_and_round_trips(name: str) -> None:
    text = compile_py.compile_vector(name)
    assert text == canonical_json_text(json.loads(text))
    message = json_format.Parse(text, workflow_pb2.WorkflowDefinition())
    assert canonical_json(message) == text
    assert message.id == f"vectors.{name}"


def test_everything_vector_touches_every_settable_field() -> None:
    message = json_format.Parse(
        compile_py.compile_vector("everything"), workflow_pb2.WorkflowDefinition()
    )
    unset_top = [f.name for f in message.DESCRIPTOR.fields if not _is_set(message, f.name)]
    assert unset_top == []
    step_fields = {f.name for f in workflow_pb2.Step.DESCRIPTOR.fields}
    used: set[str] = set()
    stack = list(message.steps)
    while stack:
        step = stack.pop()
        used |= {f.name for f in step.DESCRIPTOR.fields if _is_set(step, f.name)}
        stack.extend(step.foreach.body)
        stack.extend(step.loop.body)
    assert step_fields - used == set()


def _is_set(message: object, name: str) -> bool:
    value = getattr(message, name)
    field = message.DESCRIPTOR.fields_by_name[name]  # type: ignore[attr-defined]
    if field.message_type is not None and not field.is_repeated:
        return bool(message.HasField(name))  # type: ignore[attr-defined]
    return bool(value)


def test_compile_script_writes_files_without_trailing_newline(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(VECTORS / "compile_py.py"), "--out", str(tmp_path), "linear"],
        check=True,
        capture_output=True,
    )
    data = (tmp_path / "linear.json").read_bytes()
    assert data == compile_py.compile_vector("linear").encode("utf-8")
    assert not data.endswith(b"\n")
