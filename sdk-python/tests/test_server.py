"""End to end against the real server: deploy, validate, run, wait, outputs, logs, restart,
watch, and in-job reports from a Python function step and a script using kaon.job.

These skip (naming the missing RPC) while core lacks the services; KAON_REQUIRE_SERVER=1
turns the skips into failures.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import kaon
from kaon.v1 import workflow_service_pb2

pytestmark = pytest.mark.server

SDK_SRC = str(Path(__file__).resolve().parents[1] / "src")
# Jobs run our interpreter with this SDK importable, whatever the server's default python is.
PY = {"interpreter": sys.executable, "env": {"PYTHONPATH": SDK_SRC}}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def featurize(n: int, *, scale: float = 1.0) -> dict[str, Any]:
    import kaon.job as job

    job.progress(50, "half way")
    job.milestone("features")
    job.counter("rows", n)
    print(f"featurizing {n} rows")
    return {"n": n, "mean": scale * (n - 1) / 2, "names": [f"f{i}" for i in range(n)]}


def test_validate_reports_core_violations(client: kaon.Client) -> None:
    with kaon.Workflow("sdk-py-invalid") as wf:
        a = kaon.command("a", argv=["true"])
        b = kaon.command("b", argv=["true"])
        a >> b
    a.next[0].target = kaon.noop("valdate")  # a dangling edge only core can judge
    violations = client.validate(wf)
    assert any(v.field.startswith("steps[0].next[0]") for v in violations), violations
    with pytest.raises(kaon.InvalidDefinitionError) as caught:
        client.deploy(wf)
    assert caught.value.violations and any(
        "valdate" in v.description for v in caught.value.violations
    )


def test_deploy_is_idempotent_and_records_the_checkout(client: kaon.Client) -> None:
    wf_id = unique("sdk-py-deploy")
    wf = kaon.Workflow(wf_id, steps=[kaon.command("a", argv=["true"])])
    first = client.deploy(wf)
    again = client.deploy(wf)
    assert first.created and not again.created
    assert (first.version, again.version) == (1, 1)
    changed = client.deploy(kaon.Workflow(wf_id, steps=[kaon.command("a", argv=["false"])]))
    assert changed.created and changed.version == 2
    request = workflow_service_pb2.GetWorkflowRequest(workflow_id=wf_id, version=1)
    version = client.raw.get_workflow(request).version
    assert version.client.name == "kaon-python"
    assert len(version.scm.commit) == 40  # the tests run inside the kaon checkout


def test_function_step_run_wait_outputs_logs_and_reports(client: kaon.Client) -> None:
    with kaon.Workflow(unique("sdk-py-fn")) as wf:
        prep = kaon.python("prep", function=featurize, args=(4,), kwargs={"scale": 2.0}, **PY)  # type: ignore[arg-type]
        check = kaon.command(
            "check", argv=["sh", "-c", "echo checked; echo 'ok=true' >> \"$KAON_OUTPUT\""]
        )
        prep >> check
    run = client.run(wf, tags={"suite": "sdk-python"})
    run.wait(timeout=120, progress=False, check=True)
    assert run.succeeded
    steps = {s.path: s for s in run.steps()}
    assert steps["prep"].outputs == {"n": 4, "mean": 3, "names": ["f0", "f1", "f2", "f3"]}
    assert steps["check"].outputs == {"ok": True}
    assert run.outputs == {"check.ok": True}
    assert "featurizing 4 rows" in run.logs("prep")
    assert "checked" in run.logs("check")
    reports = run.step("prep").proto.reports
    assert [m.name for m in reports.milestones] == ["features"]
    assert reports.counters["rows"] == 4
    html = run._repr_html_()
    assert "prep" in html and "SUCCEEDED" in html


def test_script_step_uses_the_in_job_api(client: kaon.Client) -> None:
    script = (
        "import kaon.job as job\n"
        "p = job.params()\n"
        "job.output('greeting', 'hello ' + p['who'])\n"
        "job.link('docs', 'http://example.invalid/docs')\n"
        "job.message('almost done', 'warning')\n"
        "job.progress(100)\n"
    )
    with kaon.Workflow(unique("sdk-py-job"), params={"who": "world"}) as wf:
        kaon.python("hello", script=script, **PY)  # type: ignore[arg-type]
    run = client.run(wf).wait(timeout=120, progress=False, check=True)
    step = run.step("hello")
    assert step.outputs == {"greeting": "hello world"}
    assert [link.url for link in step.proto.reports.links] == ["http://example.invalid/docs"]
    assert step.progress == 100


def test_a_refused_report_item_is_dropped_and_the_rest_of_its_batch_arrives(
    client: kaon.Client,
) -> None:
    # One batch: a good output, one whose name core refuses (over 256 characters), another
    # good one. Core applies none of a batch it refuses; the SDK drops the named item and
    # sends the rest again.
    script = (
        "import kaon.job as job\n"
        "job.output('before', 1)\n"
        "job.output('x' * 300, 2)\n"
        "job.output('after', 3)\n"
    )
    with kaon.Workflow(unique("sdk-py-refused")) as wf:
        kaon.python("reports", script=script, **PY)  # type: ignore[arg-type]
    run = client.run(wf).wait(timeout=120, progress=False, check=True)
    step = run.step("reports")
    assert step.outputs == {"before": 1, "after": 3}
    assert "a report was refused and dropped" in run.logs("reports", stream="stderr")


def test_failed_run_restart_and_watch(client: kaon.Client, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    with kaon.Workflow(unique("sdk-py-restart")) as wf:
        first = kaon.command("first", argv=["true"])
        flaky = kaon.command(
            "flaky", argv=["sh", "-c", f"test -f {flag} || {{ echo broken >&2; exit 3; }}"]
        )
        first >> flaky
    run = client.run(wf)
    with pytest.raises(kaon.RunFailedError, match="ended FAILED"):
        run.wait(timeout=120, progress=False, check=True)
    assert "broken" in run.logs("flaky", stream="stderr")
    assert [s.status for s in run.steps()] == ["SUCCEEDED", "FAILED"]
    flag.write_text("yes")
    run.restart()
    run.wait(timeout=120, progress=False, check=True)
    assert run.proto.restart_count == 1
    events = list(run.watch())
    assert events[-1].kind == "run_status" and events[-1].status == "SUCCEEDED"
    assert any(e.path == "flaky" and e.status == "FAILED" for e in events)


def test_stop_a_running_run(client: kaon.Client) -> None:
    with kaon.Workflow(unique("sdk-py-stop")) as wf:
        kaon.command("long", argv=["sleep", "600"])
    run = client.run(wf)
    for event in run.watch(timeout=60):
        if event.path == "long" and event.status == "RUNNING":
            break
    run.stop("test is done")
    run.wait(timeout=60, progress=False)
    assert run.status == "STOPPED"


def test_unknown_run_is_not_found(client: kaon.Client) -> None:
    with pytest.raises(kaon.NotFoundError):
        client.get_run("no-such-run")
