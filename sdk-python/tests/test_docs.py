"""Runs the code blocks of docs/python.md so the guide cannot rot.

A ```python block preceded by `<!-- test -->` runs offline; `<!-- test: server -->` runs
against the real server (with `client` defined). Blocks run in order in one namespace.
"""

from __future__ import annotations

import linecache
import re
from pathlib import Path
from typing import Any

import pytest

import kaon

DOC = Path(__file__).resolve().parents[2] / "docs" / "python.md"
BLOCK = re.compile(
    r"<!-- test(?:: (?P<kind>\w+))? -->\s*\n```python\n(?P<code>.*?)\n```", re.DOTALL
)


def blocks(kind: str | None) -> list[tuple[int, str]]:
    text = DOC.read_text("utf-8")
    return [
        (text.count("\n", 0, m.start()) + 2, m.group("code"))
        for m in BLOCK.finditer(text)
        if m.group("kind") == kind
    ]


def run_blocks(found: list[tuple[int, str]], namespace: dict[str, Any]) -> None:
    for line, code in found:
        filename = f"<docs/python.md:{line}>"
        # Register the source the way IPython registers a cell, so inspect.getsource works.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        try:
            exec(compile(code, filename, "exec"), namespace)
        except kaon.KaonError:
            raise  # server errors keep their type (UNIMPLEMENTED skips while core is partial)
        except Exception as error:
            raise AssertionError(
                f"docs/python.md block at line {line} failed: {error!r}"
            ) from error


def test_the_doc_has_tested_blocks() -> None:
    assert len(blocks(None)) >= 8
    assert len(blocks("server")) >= 1


def test_offline_blocks() -> None:
    run_blocks(blocks(None), {"__name__": "__main__"})


@pytest.mark.server
def test_server_blocks(client: kaon.Client) -> None:
    run_blocks(blocks("server"), {"__name__": "__main__", "kaon": kaon, "client": client})
