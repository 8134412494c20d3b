"""Compute-side runner of function steps: `python -m kaon._function_runner <workDir>`.

Core's `python` step type writes the decoded `config.function.pickle_b64` to
`<workDir>/call.pkl` and runs this module. It unpickles `(function, args, kwargs)`, calls the
function and turns the return value into outputs: a dict with string keys gives one output
per key, None gives none, any other value gives the output `result`. Outputs go to core
through the in-job API (live) and to `$KAON_OUTPUT` (read by core when the process ends), and
are always written to `<workDir>/outputs.json` as well. An exception exits 1 with the traceback on
stderr; a payload that cannot be loaded exits 2.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

CALL_FILE = "call.pkl"
OUTPUTS_FILE = "outputs.json"


def _outputs_of(result: Any) -> dict[str, Any]:
    from kaon._dsl.values import to_plain

    if result is None:
        return {}
    if isinstance(result, dict) and all(isinstance(k, str) for k in result):
        return {k: to_plain(v, f"output {k!r}") for k, v in result.items()}
    return {"result": to_plain(result, "output 'result'")}


def main(argv: list[str]) -> int:
    """Runs the call in `argv[0]` (the work dir); returns the exit code."""
    if len(argv) != 1:
        print("usage: python -m kaon._function_runner <workDir>", file=sys.stderr)
        return 2
    work_dir = Path(argv[0])
    call_path = work_dir / CALL_FILE
    try:
        import cloudpickle

        payload = cloudpickle.loads(call_path.read_bytes())
        fn, args, kwargs = payload
    except Exception:
        traceback.print_exc()
        print(
            f"kaon: cannot load the function call from {call_path}. The pickle needs the same "
            f"Python minor version as the client (here {sys.version_info.major}."
            f"{sys.version_info.minor}) and cloudpickle installed.",
            file=sys.stderr,
        )
        return 2
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:  # the step fails with the user's traceback
        traceback.print_exc()
        code = error.code if isinstance(error, SystemExit) and isinstance(error.code, int) else 1
        return code or 1
    try:
        outputs = _outputs_of(result)
    except TypeError as error:
        print(f"kaon: function {name} returned a value kaon cannot store: {error}", file=sys.stderr)
        return 1
    _deliver(outputs, work_dir)
    return 0


def _deliver(outputs: dict[str, Any], work_dir: Path) -> None:
    from kaon import job
    from kaon._dsl.canonical import canonical_json_text

    (work_dir / OUTPUTS_FILE).write_text(canonical_json_text(outputs), "utf-8")
    if not outputs:
        return
    if job.in_job():
        for key, value in outputs.items():
            job.output(key, value)
        job.flush()
    if os.environ.get("KAON_OUTPUT"):  # also read by core at exit: survives a lost report
        with open(os.environ["KAON_OUTPUT"], "a", encoding="utf-8") as out:
            for key, value in outputs.items():
                out.write(f"{key}={canonical_json_text(value)}\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
