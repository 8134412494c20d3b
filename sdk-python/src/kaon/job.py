"""The in-job API: what a running step reports about itself.

    import kaon.job as job
    country = job.params()["country"]
    job.progress(50, "half way")
    job.output("auc", 0.91)

Inside a job kaon sets `KAON_ENDPOINT` (the server's gRPC address) and `KAON_TOKEN` (a token
for this attempt only). Reports are batched and sent from a background thread, flushed at
exit, and retried while core is briefly away. Outside a job every call raises
`kaon.NotInJobError`. Jobs in languages without an SDK write `name=value` lines to the file
named by `$KAON_OUTPUT` instead, or call `kaon job output ...`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from google.protobuf import timestamp_pb2

from kaon._client import RawClient
from kaon._config import Target
from kaon._dsl.policies import set_value
from kaon._dsl.values import EncodeError, from_value, to_plain, to_struct
from kaon._errors import NotInJobError
from kaon._reporter import Reporter
from kaon.v1 import artifact_pb2, job_service_pb2, run_pb2

__all__ = [
    "JobContext",
    "artifact",
    "context",
    "counter",
    "flush",
    "heartbeat",
    "image",
    "in_job",
    "link",
    "message",
    "milestone",
    "output",
    "params",
    "progress",
]

STEP_TOKEN_PREFIX = "kst_"

_lock = threading.Lock()
_state: dict[str, Any] = {}


@dataclass(frozen=True)
class JobContext:
    """Who this job is.

    Attributes:
        run_id: Run id.
        workflow_id: Workflow id.
        path: Step instance path, e.g. `regional[2]/train`.
        step_id: Step id.
        attempt: Attempt number (1-based).
        params: Resolved params (workflow params overlaid by step params).
        run_ts: The run's logical time (RUN_TS).
    """

    run_id: str
    workflow_id: str
    path: str
    step_id: str
    attempt: int
    params: dict[str, Any]
    run_ts: datetime


def _endpoint() -> tuple[str, str] | None:
    token = os.environ.get("KAON_TOKEN", "")
    endpoint = os.environ.get("KAON_ENDPOINT", "")
    if not endpoint and token.startswith(STEP_TOKEN_PREFIX):
        endpoint = os.environ.get("KAON_ADDRESS", "")
    if endpoint and token:
        return endpoint.removeprefix("http://").removeprefix("grpc://"), token
    return None


def in_job() -> bool:
    """True when this process runs as a kaon step (KAON_ENDPOINT and KAON_TOKEN are set)."""
    return _endpoint() is not None


def _raw() -> RawClient:
    with _lock:
        raw = _state.get("raw")
        if raw is None:
            found = _endpoint()
            if found is None:
                raise NotInJobError(
                    "not inside a kaon job: KAON_ENDPOINT and KAON_TOKEN are not set (kaon sets "
                    "them for every step it launches). Run this code as a step, or guard it "
                    "with kaon.job.in_job()."
                )
            raw = RawClient(Target(found[0], "KAON_ENDPOINT", found[1], "KAON_TOKEN"))
            _state["raw"] = raw
        return raw


def _reporter() -> Reporter:
    raw = _raw()
    with _lock:
        reporter = _state.get("reporter")
        if reporter is None:
            reporter = Reporter(raw)
            _state["reporter"] = reporter
        return reporter


def _reset_for_tests() -> None:
    """Forgets the connection and reporter (tests switch servers within one process)."""
    with _lock:
        reporter = _state.pop("reporter", None)
        raw = _state.pop("raw", None)
        _state.clear()
    if reporter is not None:
        reporter.close()
    if raw is not None:
        raw.close()


def context() -> JobContext:
    """Who this job is and its resolved params (read once, then cached)."""
    cached = _state.get("context")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    response = _raw().get_context(job_service_pb2.GetContextRequest())
    ctx = JobContext(
        run_id=response.run_id,
        workflow_id=response.workflow_id,
        path=response.path,
        step_id=response.step_id,
        attempt=response.attempt,
        params={k: from_value(v) for k, v in response.params.items()},
        run_ts=datetime.fromtimestamp(response.run_ts / 1000, tz=timezone.utc),
    )
    _state["context"] = ctx
    return ctx


def params() -> dict[str, Any]:
    """The step's resolved params (workflow params included)."""
    return dict(context().params)


def output(name: str, value: Any) -> None:
    """Sets an output of this step (usable in conditions, foreach and by later steps).

    Raises:
        kaon.EncodeError: the value is not JSON-encodable; the message names the output.
    """
    plain = to_plain(value, f"output {name!r}")
    item = run_pb2.ReportItem(output=run_pb2.Output(name=name))
    set_value(item.output.value, plain)
    _reporter().add(item)


def outputs(values: Mapping[str, Any]) -> None:
    """Sets several outputs at once."""
    for name, value in values.items():
        output(name, value)


def progress(percent: float, message: str = "") -> None:
    """Reports percent complete (0-100) and what is going on."""
    _reporter().add(
        run_pb2.ReportItem(progress=run_pb2.Progress(percent=float(percent), message=message))
    )


def milestone(name: str) -> None:
    """Marks a named point in time (now)."""
    _reporter().add(run_pb2.ReportItem(milestone=name))


def link(name: str, url: str) -> None:
    """Attaches a named URL (a dashboard, a notebook, a model card)."""
    _reporter().add(run_pb2.ReportItem(link=run_pb2.Link(name=name, url=url)))


def counter(name: str, delta: float = 1) -> None:
    """Adds `delta` to a named counter."""
    _reporter().add(run_pb2.ReportItem(counter=run_pb2.Counter(name=name, delta=float(delta))))


def image(name: str, data: bytes, mime_type: str | None = None) -> None:
    """Shows a small image (PNG or SVG, max 1 MiB) in the UI; a later one of the same name
    replaces it.

    Args:
        name: Image name.
        data: PNG or SVG bytes (e.g. `fig.savefig(buf, format="png")`).
        mime_type: "image/png" or "image/svg+xml"; detected from the bytes when omitted.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EncodeError(f"image {name!r}: expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    if mime_type is None:
        head = raw[:256].lstrip()
        mime_type = "image/svg+xml" if head.startswith((b"<svg", b"<?xml")) else "image/png"
    _reporter().add(
        run_pb2.ReportItem(image=run_pb2.Image(name=name, mime_type=mime_type, data=raw))
    )


_LEVELS = {
    "debug": run_pb2.MESSAGE_LEVEL_DEBUG,
    "info": run_pb2.MESSAGE_LEVEL_INFO,
    "warning": run_pb2.MESSAGE_LEVEL_WARNING,
    "warn": run_pb2.MESSAGE_LEVEL_WARNING,
    "error": run_pb2.MESSAGE_LEVEL_ERROR,
}


def message(text: str, level: str = "info") -> None:
    """Shows a line of text in the UI at "debug", "info", "warning" or "error" level."""
    if level.lower() not in _LEVELS:
        raise ValueError(f"message level {level!r}: use one of {', '.join(_LEVELS)}")
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    _reporter().add(
        run_pb2.ReportItem(
            message=run_pb2.JobMessage(level=_LEVELS[level.lower()], text=text, time=now)
        )
    )


def heartbeat() -> None:
    """Proof of life for long silent work; resets the heartbeat timeout."""
    _reporter().add(run_pb2.ReportItem(heartbeat=True))


def artifact(
    name: str,
    partitions: Mapping[str, str] | None = None,
    uri: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Announces a data artifact partition produced by this job (after sending queued reports).

    Args:
        name: Artifact name, e.g. "models.regional".
        partitions: Partition keys, e.g. `{"region": "US", "dateint": "20261121"}`.
        uri: Where the data lives.
        metadata: Free JSON metadata; numbers can be plotted across partitions.
    """
    message_ = artifact_pb2.Artifact(name=name, partitions=dict(partitions or {}), uri=uri)
    if metadata:
        message_.metadata.CopyFrom(to_struct(metadata, f"artifact {name!r} metadata"))
    raw = _raw()
    flush()
    raw.announce_job_artifact(job_service_pb2.AnnounceArtifactRequest(artifact=message_))


def flush(timeout: float | None = None) -> bool:
    """Sends every queued report now; returns False if `timeout` seconds passed first.

    Reports are flushed at exit anyway; call this before a long silent phase.
    """
    reporter = _state.get("reporter")
    if reporter is None:
        return True
    return bool(reporter.flush(timeout))
