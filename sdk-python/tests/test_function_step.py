"""Function steps: the DSL ships source + cloudpickle, and `python -m kaon._function_runner`
runs it for real in a fresh interpreter with a work dir laid out as core's python step does."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import kaon

SDK_SRC = Path(__file__).resolve().parents[1] / "src"


def scale(values: list[float], *, factor: float = 2.0) -> dict[str, Any]:
    scaled = [v * factor for v in values]
    return {"scaled": scaled, "total": sum(scaled), "label": f"x{factor:g}"}


def answer() -> int:
    return 42


def explode(message: str) -> None:
    raise RuntimeError(message)


def unencodable() -> dict[str, Any]:
    return {"fine": 1, "model": object()}


def function_config(step: kaon.Step) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(kaon.Workflow("wf", steps=[step]).to_canonical_json())[
        "steps"
    ][0]["config"]
    return config


def run_runner(
    work_dir: Path, config: dict[str, Any], *, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Does what core's python step does: write call.pkl, run the runner in the work dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "call.pkl").write_bytes(base64.b64decode(config["function"]["pickle_b64"]))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KAON_")}
    return subprocess.run(
        [sys.executable, "-m", "kaon._function_runner", str(work_dir)],
        cwd=work_dir,
        env={**clean, "PYTHONPATH": str(SDK_SRC), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_carries_name_source_pickle_and_python_version() -> None:
    config = function_config(kaon.python("s", function=scale, args=([1, 2],), kwargs={"factor": 3}))
    fn = config["function"]
    assert set(fn) == {"name", "source", "pickle_b64", "python"}
    assert fn["name"] == "scale"
    assert fn["source"].startswith("def scale(values: list[float]")
    assert fn["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert len(base64.b64decode(fn["pickle_b64"])) > 0


def test_dict_result_becomes_one_output_per_key(tmp_path: Path) -> None:
    config = function_config(
        kaon.python("s", function=scale, args=([1, 2.5],), kwargs={"factor": 3})
    )
    output_file = tmp_path / "kaon-output.txt"
    done = run_runner(tmp_path / "work", config, env={"KAON_OUTPUT": str(output_file)})
    assert done.returncode == 0, done.stderr
    expected = {"scaled": [3, 7.5], "total": 10.5, "label": "x3"}
    assert json.loads((tmp_path / "work" / "outputs.json").read_text()) == expected
    lines = output_file.read_text().splitlines()
    assert lines == ["scaled=[3,7.5]", "total=10.5", 'label="x3"']


def test_other_results_become_the_output_result(tmp_path: Path) -> None:
    done = run_runner(tmp_path, function_config(kaon.python("s", function=answer)))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "outputs.json").read_text()) == {"result": 42}


def test_closures_and_lambdas_travel_by_value(tmp_path: Path) -> None:
    offset = 10
    config = function_config(kaon.python("s", function=lambda x: {"y": x + offset}, args=(5,)))
    done = run_runner(tmp_path, config)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "outputs.json").read_text()) == {"y": 15}


def test_exception_fails_with_the_traceback_on_stderr(tmp_path: Path) -> None:
    done = run_runner(
        tmp_path, function_config(kaon.python("s", function=explode, args=("boom 123",)))
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: boom 123" in done.stderr
    assert "in explode" in done.stderr


def test_unencodable_result_names_the_output(tmp_path: Path) -> None:
    done = run_runner(tmp_path, function_config(kaon.python("s", function=unencodable)))
    assert done.returncode == 1
    assert "output 'model'" in done.stderr and "builtins.object" in done.stderr
    assert not (tmp_path / "outputs.json").exists()


def test_a_payload_that_cannot_load_exits_2(tmp_path: Path) -> None:
    config = {"function": {"pickle_b64": base64.b64encode(b"not a pickle").decode()}}
    done = run_runner(tmp_path, config)
    assert done.returncode == 2
    assert "cannot load the function call" in done.stderr


def test_a_notebook_function_defined_in_main_runs_elsewhere(tmp_path: Path) -> None:
    # A notebook cell's function lives in __main__; define one there in a separate process.
    notebook = textwrap.dedent(
        """
        import json, sys
        import kaon

        def featurize(n):
            import math
            return {"roots": [math.sqrt(i) for i in range(n)], "n": n}

        wf = kaon.Workflow("nb", steps=[kaon.python("f", function=featurize, args=(3,))])
        print(wf.to_canonical_json())
        """
    )
    script = tmp_path / "notebook.py"
    script.write_text(notebook)
    made = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "PYTHONPATH": str(SDK_SRC)},
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(made.stdout)["steps"][0]["config"]
    assert "def featurize(n):" in config["function"]["source"]
    done = run_runner(tmp_path / "work", config)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "work" / "outputs.json").read_text()) == {
        "roots": [0, 1, 2**0.5],
        "n": 3,
    }


def test_kwargs_without_function_is_refused() -> None:
    import pytest

    with pytest.raises(TypeError, match="only for function= steps"):
        kaon.python("s", module="m", kwargs={"a": 1})
