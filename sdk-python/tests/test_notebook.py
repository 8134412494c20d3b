"""The quickstart notebook runs, headless, against a real server, as a data scientist would
run it: nbclient drives an ipykernel on this interpreter (the repo venv's Python) whose
environment points `kaon.connect()` at the session's server. Afterwards the run the notebook
started is checked through the client, and the plot cell must have drawn a PNG.

Skips (naming the missing RPC) while core lacks the run services, like test_server.py;
KAON_REQUIRE_SERVER=1 turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

import kaon

from .conftest import Server

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parents[2]
SDK_SRC = REPO / "sdk-python" / "src"
NOTEBOOK = REPO / "examples" / "notebooks" / "quickstart.ipynb"
WORKFLOW_ID = "quickstart.regional"
REGIONS = ["east", "north", "south", "west"]
CELL_TIMEOUT = 180  # seconds per cell; the whole notebook does well under 30 s of work
MAJOR, MINOR = sys.version_info[:2]
BARE_PYTHON = {"python", f"python{MAJOR}", f"python{MAJOR}.{MINOR}"}


def kernel_manager() -> KernelManager:
    """A manager for an ipykernel on this interpreter, ignoring kernelspecs found elsewhere
    (a user-level `python3` spec could point at another Python without kaon)."""
    kernels = Path(sys.prefix) / "share" / "jupyter" / "kernels"
    if not (kernels / "python3" / "kernel.json").is_file():
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix"], check=True)
    specs = KernelSpecManager(kernel_dirs=[str(kernels)])
    argv0 = specs.get_kernel_spec("python3").argv[0]
    # jupyter_client replaces a bare `python` with sys.executable; an absolute path must be ours.
    if argv0 not in BARE_PYTHON and Path(argv0).resolve() != Path(sys.executable).resolve():
        pytest.fail(
            f"kernelspec {kernels / 'python3'} runs {argv0}, not {sys.executable}; "
            f"reinstall it with `{sys.executable} -m ipykernel install --sys-prefix`"
        )
    return KernelManager(kernel_name="python3", kernel_spec_manager=specs)


def kernel_env(server: Server) -> dict[str, str]:
    """This process's environment, with kaon pointed at the test server and nowhere else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAON_")}
    env.pop("MPLBACKEND", None)  # the notebook's inline backend, not a headless override
    env.update(
        KAON_ADDRESS=server.grpc,
        KAON_TOKEN=server.token,
        KAON_HOME=str(server.data_dir),
        PYTHONPATH=os.pathsep.join(filter(None, [str(SDK_SRC), env.get("PYTHONPATH")])),
    )
    return env


def tagged(nb: Any, tag: str) -> Any:
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{NOTEBOOK.name} should have exactly one cell tagged {tag!r}"
    return cells[0]


def output_text(cell: Any) -> str:
    """Stream text and text/plain renderings of a cell's outputs (a tqdm widget or bar too)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(str(out.data.get("text/plain", "")))
    return "".join(parts)


def failed_step_logs(client: kaon.Client) -> str:
    """The stderr of the failed steps of the notebook's latest run, to explain a failure."""
    runs = client.runs(workflow_id=WORKFLOW_ID, limit=1)
    if not runs:
        return "the notebook started no run"
    run = runs[0]
    parts = [f"run {run.id}: {run.status} {run.message}"]
    for step in run.steps(status=["FAILED", "TIMED_OUT"]):
        parts.append(f"--- {step.path} ({step.status}: {step.reason or step.message}) stderr:")
        parts.append(run.logs(step.path, stream="stderr", offset=-4000))
    return "\n".join(parts)


def test_quickstart_notebook_runs_against_the_server(server: Server, client: kaon.Client) -> None:
    client.runs(limit=1)  # UNIMPLEMENTED while core lacks RunService: skips, naming the RPC
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(nb)
    runner = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        km=kernel_manager(),
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    try:
        runner.execute(env=kernel_env(server))
    except CellExecutionError as error:
        if error.ename == "UnimplementedError":  # the conftest hook turns this into a skip
            raise kaon.UnimplementedError(f"in {NOTEBOOK.name}: {error.evalue}") from None
        if error.ename == "RunFailedError":
            try:
                details = failed_step_logs(client)
            except kaon.KaonError as failure:
                details = f"(cannot read the failed run: {failure})"
            raise AssertionError(f"{error}\n{details}") from None
        raise

    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors == []

    run_cell = tagged(nb, "run")
    found = re.search(r"run id: (\S+)", output_text(run_cell))
    assert found, f"the run cell did not print its run id:\n{output_text(run_cell)}"
    assert WORKFLOW_ID in output_text(run_cell), "run.wait() drew no progress bar"

    run = client.get_run(found.group(1))
    assert (run.workflow_id, run.status) == (WORKFLOW_ID, "SUCCEEDED"), run.message
    trained = [s for s in run.steps(path_prefix="per_region[") if s.step_id == "train"]
    assert sorted(s.outputs["region"] for s in trained) == REGIONS
    assert all(s.status == "SUCCEEDED" for s in trained)
    best = min(trained, key=lambda s: float(s.outputs["rmse"]))
    assert run.outputs["compare.best_region"] == best.outputs["region"]
    assert run.outputs["compare.best_rmse"] == best.outputs["rmse"]
    assert "trained on 320 rows" in run.logs(best.path)

    plot = tagged(nb, "plot")
    images = [o for o in plot.outputs if "image/png" in o.get("data", {})]
    assert images, f"the plot cell drew no image/png; outputs: {plot.outputs}"
