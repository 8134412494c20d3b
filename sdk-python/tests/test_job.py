"""The in-job API: clear errors outside a job, encoding errors that name the output, and a
reporter that batches, numbers batches, retries while core is away and flushes at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import kaon
import kaon.job as job
from kaon._client import RawClient
from kaon._config import Target
from kaon._reporter import Reporter
from kaon.v1 import run_pb2

from .fake_job_service import JobServiceState, fake_job_service

SDK_SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture
def no_job_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("KAON_ENDPOINT", "KAON_TOKEN", "KAON_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    job._reset_for_tests()
    yield
    job._reset_for_tests()


@pytest.fixture
def in_fake_job(monkeypatch: pytest.MonkeyPatch) -> Iterator[JobServiceState]:
    with fake_job_service() as (address, state):
        monkeypatch.setenv("KAON_ENDPOINT", address)
        monkeypatch.setenv("KAON_TOKEN", "kst_test")
        job._reset_for_tests()
        yield state
        job._reset_for_tests()


def test_outside_a_job_every_call_says_so(no_job_env: None) -> None:
    assert not job.in_job()
    for call in (lambda: job.params(), lambda: job.output("x", 1), lambda: job.progress(5)):
        with pytest.raises(
            kaon.NotInJobError, match="not inside a kaon job: KAON_ENDPOINT and KAON_TOKEN"
        ):
            call()


def test_an_admin_token_alone_is_not_a_job(
    no_job_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAON_TOKEN", "admin-token")
    monkeypatch.setenv("KAON_ADDRESS", "127.0.0.1:7070")
    assert not job.in_job()
    monkeypatch.setenv("KAON_TOKEN", "kst_step")
    assert job.in_job()


def test_an_unencodable_output_names_the_output_and_why(no_job_env: None) -> None:
    with pytest.raises(
        kaon.EncodeError,
        match=r"output 'model': a value of type builtins.object is not JSON-encodable",
    ):
        job.output("model", object())
    # One hierarchy: an encoding problem is a KaonError too (as in the TypeScript SDK).
    with pytest.raises(kaon.KaonError, match=r"output 'auc': nan is not a JSON number"):
        job.output("auc", float("nan"))
    with pytest.raises(
        kaon.EncodeError, match=r"output 'm': map key 3 has type int; JSON keys must be strings"
    ):
        job.output("m", {3: "x"})


def test_context_and_params(in_fake_job: JobServiceState) -> None:
    ctx = job.context()
    assert (ctx.run_id, ctx.path, ctx.attempt) == ("r1", "train", 1)
    assert job.params() == {"country": "US", "n": 3}
    assert ctx.run_ts.year == 2023
    assert in_fake_job.tokens[0] == "Bearer kst_test"


def test_every_report_kind_arrives_in_order(in_fake_job: JobServiceState) -> None:
    job.output("auc", 0.91)
    job.outputs({"rows": 10, "tags": ["a"]})
    job.progress(50, "half")
    job.milestone("trained")
    job.link("dashboard", "http://x/d")
    job.counter("rows_read", 5)
    job.image("roc", b"\x89PNG....")
    job.image("svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    job.message("careful", "warning")
    job.heartbeat()
    assert job.flush(10)
    kinds = [item.WhichOneof("kind") for item in in_fake_job.items]
    assert kinds == [
        "output",
        "output",
        "output",
        "progress",
        "milestone",
        "link",
        "counter",
        "image",
        "image",
        "message",
        "heartbeat",
    ]
    items = in_fake_job.items
    assert items[0].output.name == "auc" and items[0].output.value.number_value == 0.91
    assert items[7].image.mime_type == "image/png" and items[8].image.mime_type == "image/svg+xml"
    assert items[9].message.level == run_pb2.MESSAGE_LEVEL_WARNING
    with pytest.raises(ValueError, match="message level 'loud'"):
        job.message("x", "loud")


def test_artifact_is_announced_after_queued_reports(in_fake_job: JobServiceState) -> None:
    job.output("before", 1)
    job.artifact("models.regional", {"region": "US"}, "s3://m/US", {"auc": 0.9})
    assert [i.output.name for i in in_fake_job.items] == ["before"]
    announced = in_fake_job.artifacts[0].artifact
    assert announced.name == "models.regional" and announced.partitions["region"] == "US"
    assert announced.metadata.fields["auc"].number_value == 0.9


def _reporter(address: str, **kwargs: float) -> Reporter:
    raw = RawClient(Target(address, "test", "kst_test", "test"))
    return Reporter(raw, **kwargs)  # type: ignore[arg-type]


def test_batches_are_numbered_and_split_by_size() -> None:
    with fake_job_service() as (address, state):
        reporter = _reporter(address, max_batch=100, interval=60)
        for i in range(250):
            reporter.add(run_pb2.ReportItem(counter=run_pb2.Counter(name="n", delta=i)))
        assert state.wait_for_items(200)  # two full batches go without waiting for the interval
        reporter.close()
        sequences = [r.sequence for r in state.requests]
        assert sequences == [1, 2, 3]  # GetContext said 0 were applied; then one per batch
        assert state.context_calls == 1
        assert [i.counter.delta for i in state.items] == list(range(250))


def test_retries_while_core_is_away() -> None:
    with fake_job_service() as (address, state):
        state.unavailable_first = 3
        reporter = _reporter(address, interval=0.01)
        reporter.add(run_pb2.ReportItem(milestone="m"))
        assert reporter.flush(30)
        reporter.close()
        assert [i.milestone for i in state.items] == ["m"]
        assert [r.sequence for r in state.requests if r.items] == [1]


def test_a_batch_resent_after_a_lost_response_is_applied_once() -> None:
    with fake_job_service() as (address, state):
        state.lose_response_of = {1}
        reporter = _reporter(address, interval=0.01)
        reporter.add(run_pb2.ReportItem(milestone="once"))
        assert reporter.flush(30)
        reporter.add(run_pb2.ReportItem(milestone="next"))
        reporter.close()
        assert [i.milestone for i in state.items] == ["once", "next"]
        assert [r.sequence for r in state.requests] == [1, 1, 2]


def test_a_second_process_continues_the_sequence() -> None:
    with fake_job_service() as (address, state):
        state.applied_sequence = 5
        reporter = _reporter(address, interval=0.01)
        reporter.add(run_pb2.ReportItem(milestone="later"))
        reporter.close()
        assert [i.milestone for i in state.items] == ["later"]
        assert [r.sequence for r in state.requests] == [6]  # GetContext's applied_sequence + 1


def test_reporters_one_after_another_in_one_attempt_all_count() -> None:
    # A shell step calling `kaon job output` twice, or Python then a TS helper: each reporter
    # asks where the count stands, so nothing it sends is ignored as a duplicate.
    with fake_job_service() as (address, state):
        for name in ("first", "second", "third"):
            reporter = _reporter(address, interval=0.01)
            reporter.add(run_pb2.ReportItem(milestone=name))
            reporter.close()
        assert [i.milestone for i in state.items] == ["first", "second", "third"]
        assert [r.sequence for r in state.requests] == [1, 2, 3]


def test_reports_are_flushed_when_the_process_exits() -> None:
    with fake_job_service() as (address, state):
        script = textwrap.dedent(
            """
            import kaon.job as job
            for i in range(5):
                job.progress(i * 20, f"step {i}")
            job.output("done", True)
            """
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(SDK_SRC),
            "KAON_ENDPOINT": address,
            "KAON_TOKEN": "kst_x",
        }
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
        kinds = [i.WhichOneof("kind") for i in state.items]
        assert kinds == ["progress"] * 5 + ["output"]
