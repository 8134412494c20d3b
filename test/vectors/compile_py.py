"""Compiles the Python test vectors to canonical JSON (see README.md in this directory).

    python test/vectors/compile_py.py [--out DIR] [--stdout] [NAME ...]

Writes `<out>/<name>.json` (default out: test/vectors/out/py) for every `<name>.py` here that
defines `workflow()`, or only for the NAMEs given. No trailing newline, UTF-8.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SDK_SRC = HERE.parent.parent / "sdk-python" / "src"
NOT_VECTORS = {"compile_py"}


def vector_names() -> list[str]:
    """Every vector defined in Python here, sorted."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem not in NOT_VECTORS)


def compile_vector(name: str) -> str:
    """Canonical JSON of one vector."""
    if str(SDK_SRC) not in sys.path:
        sys.path.insert(0, str(SDK_SRC))
    path = HERE / f"{name}.py"
    if not path.is_file():
        raise SystemExit(
            f"no vector {name!r}: {path} does not exist (have: {vector_names()})"
        )
    spec = importlib.util.spec_from_file_location(f"kaon_vector_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text: str = module.workflow().to_canonical_json()
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="vectors to compile (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "py")
    parser.add_argument(
        "--stdout", action="store_true", help="print instead of writing files"
    )
    args = parser.parse_args(argv)
    names = args.names or vector_names()
    for name in names:
        text = compile_vector(name)
        if args.stdout:
            sys.stdout.write(text + "\n")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.json").write_bytes(text.encode("utf-8"))
        print(f"wrote {args.out / f'{name}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
