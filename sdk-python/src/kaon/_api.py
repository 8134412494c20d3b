"""The friendly client: `kaon.connect()`, `Client.deploy/validate/run`, and `Run` objects
with `wait()` (a progress bar driven by WatchRun events), `steps()`, `outputs`, `logs()`,
`stop()`, `restart()` and `watch()`.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import grpc

from kaon import __version__
from kaon._client import RawClient
from kaon._config import resolve_target
from kaon._dsl.values import from_value, to_value
from kaon._dsl.workflow import Workflow
from kaon._errors import ConnectionError as KaonConnectionError
from kaon._errors import (
    DeadlineExceededError,
    KaonError,
    RunFailedError,
    Violation,
)
from kaon._scm import scm_info
from kaon.v1 import (
    common_pb2,
    run_pb2,
    run_service_pb2,
    workflow_pb2,
    workflow_service_pb2,
)

if TYPE_CHECKING:
    from typing_extensions import Self

TERMINAL_RUN_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED", "TIMED_OUT"})
TERMINAL_STEP_STATUSES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "STOPPED", "TIMED_OUT"})


def _run_status(value: int) -> str:
    return run_pb2.RunStatus.Name(value).removeprefix("RUN_STATUS_")  # type: ignore[arg-type]


def _step_status(value: int) -> str:
    return run_pb2.StepStatus.Name(value).removeprefix("STEP_STATUS_")  # type: ignore[arg-type]


def _time(ts: Any) -> datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    result: datetime = ts.ToDatetime().astimezone()
    return result


def client_info() -> common_pb2.ClientInfo:
    """Who is calling: this SDK, its version, the user and the host."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = ""
    return common_pb2.ClientInfo(
        name="kaon-python", version=__version__, user=user, host=socket.gethostname()
    )


def _values(mapping: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    return {k: to_value(v, f"{where}.{k}") for k, v in (mapping or {}).items()}


def connect(
    address: str | None = None,
    token: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    timeout: float = 5.0,
) -> Client:
    """Connects to a kaon server and checks that it answers.

    Args:
        address: gRPC `host:port`; default `KAON_ADDRESS`, else the local server's
            `server.json` in the data dir, else 127.0.0.1:7070.
        token: API token; default `KAON_TOKEN`, else the data dir's `admin.token`.
        data_dir: The server's data dir; default `KAON_HOME`, else `~/.kaon`.
        timeout: Seconds to wait for the server to answer.

    Raises:
        kaon.ConnectionError: nothing answers; the message names the address and how to
            start a server.
    """
    client = Client(RawClient(resolve_target(address, token, data_dir)))
    try:
        client.raw.wait_ready(timeout)
    except KaonConnectionError:
        client.close()
        raise
    return client


@dataclass(frozen=True)
class Deployment:
    """The result of `Client.deploy`.

    Attributes:
        workflow_id: The workflow.
        version: The stored version (new, or the existing identical one).
        created: True when this deploy made a new version.
        content_hash: SHA-256 of the canonical definition.
        active: Whether the version is the active one.
    """

    workflow_id: str
    version: int
    created: bool
    content_hash: str
    active: bool


class Client:
    """A connection to a kaon server. Create it with `kaon.connect()`."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw

    @property
    def address(self) -> str:
        """The server's gRPC address."""
        return self.raw.target.address

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection."""
        self.raw.close()

    @staticmethod
    def _definition(
        workflow: Workflow | workflow_pb2.WorkflowDefinition,
    ) -> workflow_pb2.WorkflowDefinition:
        if isinstance(workflow, Workflow):
            return workflow.to_definition()
        return workflow

    def validate(self, workflow: Workflow | workflow_pb2.WorkflowDefinition) -> list[Violation]:
        """Asks core whether a definition is valid; returns its violations (empty: valid)."""
        response = self.raw.validate(
            workflow_service_pb2.ValidateRequest(definition=self._definition(workflow))
        )
        return [Violation(v.field, v.description, v.hint) for v in response.violations]

    def deploy(
        self,
        workflow: Workflow | workflow_pb2.WorkflowDefinition,
        *,
        activate: bool = True,
        scm: bool | common_pb2.ScmInfo = True,
    ) -> Deployment:
        """Stores a workflow version (identical content returns the existing version).

        Args:
            workflow: The workflow (or a compiled definition).
            activate: Make the new version the active one (the first is always activated).
            scm: Send git metadata of the current directory's checkout (True), none (False),
                or the given `ScmInfo`.

        Raises:
            kaon.InvalidDefinitionError: with `.violations` naming core's field paths.
        """
        request = workflow_service_pb2.DeployRequest(
            definition=self._definition(workflow), client=client_info(), activate=activate
        )
        info = scm_info() if scm is True else (scm or None)
        if info is not None:
            request.scm.CopyFrom(info)
        response = self.raw.deploy(request)
        version = response.version
        return Deployment(
            version.workflow_id,
            version.version,
            response.created,
            version.content_hash,
            version.active,
        )

    def run(
        self,
        workflow: str | Workflow,
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        version: int | str | None = None,
        request_id: str | None = None,
        run_ts: datetime | int | None = None,
    ) -> Run:
        """Starts a run.

        Args:
            workflow: A workflow id, or a `Workflow` (deployed first; the run uses exactly the
                version that deploy returned).
            params: Workflow params; missing ones take their defaults.
            tags: Labels for the run.
            version: A version number, "active" (default) or "latest".
            request_id: Idempotency key; a repeated call returns the same run. Default: a new
                random key, so that retries after a lost connection never start two runs.
            run_ts: Logical time (RUN_TS): a datetime or epoch ms; default now.
        """
        request = run_service_pb2.StartRunRequest(
            params=_values(params, "params"),
            tags=dict(tags or {}),
            request_id=request_id or uuid.uuid4().hex,
            client=client_info(),
        )
        if isinstance(workflow, Workflow):
            deployed = self.deploy(workflow)
            request.workflow_id = deployed.workflow_id
            if version is None:
                request.version.number = deployed.version
        else:
            request.workflow_id = workflow
        if version == "latest":
            request.version.latest = True
        elif version == "active":
            request.version.active = True
        elif isinstance(version, int):
            request.version.number = version
        if isinstance(run_ts, datetime):
            request.run_ts = int(run_ts.timestamp() * 1000)
        elif run_ts is not None:
            request.run_ts = int(run_ts)
        return Run(self, self.raw.start_run(request).run)

    def get_run(self, run_id: str) -> Run:
        """Returns a run by id.

        Raises:
            kaon.NotFoundError: no such run.
        """
        return Run(self, self.raw.get_run(run_service_pb2.GetRunRequest(run_id=run_id)).run)

    def runs(
        self,
        *,
        workflow_id: str = "",
        statuses: Sequence[str] = (),
        limit: int = 100,
    ) -> list[Run]:
        """Lists runs, newest first.

        Args:
            workflow_id: Only runs of this workflow.
            statuses: Only these statuses ("RUNNING", "FAILED", ...).
            limit: At most this many.
        """
        out: list[Run] = []
        token = ""
        codes = [run_pb2.RunStatus.Value(f"RUN_STATUS_{s.upper()}") for s in statuses]
        while len(out) < limit:
            response = self.raw.list_runs(
                run_service_pb2.ListRunsRequest(
                    workflow_id=workflow_id,
                    statuses=codes,
                    page_size=min(limit - len(out), 1000),
                    page_token=token,
                )
            )
            out.extend(Run(self, r) for r in response.runs)
            token = response.next_page_token
            if not token:
                break
        return out[:limit]

    def workflows(
        self, *, namespace: str = "", id_contains: str = ""
    ) -> list[workflow_pb2.Workflow]:
        """Lists deployed workflows, newest deploy first (summaries across versions)."""
        out: list[workflow_pb2.Workflow] = []
        token = ""
        while True:
            response = self.raw.list_workflows(
                workflow_service_pb2.ListWorkflowsRequest(
                    namespace=namespace, id_contains=id_contains, page_token=token
                )
            )
            out.extend(response.workflows)
            token = response.next_page_token
            if not token:
                return out


@dataclass(frozen=True)
class StepInfo:
    """One step instance of a run, as plain Python data.

    Attributes:
        path: Position path, e.g. `regional[3]/train`.
        step_id: The step id.
        type: Step type.
        status: "RUNNING", "SUCCEEDED", ...
        reason: Why it waits or why it ended.
        params: Resolved params.
        outputs: Outputs reported by the job.
        attempt_count: Attempts made so far.
        progress: Latest progress 0-100, or -1.
        message: Latest progress or status message.
        started_at: First attempt started.
        ended_at: Reached a terminal status.
        proto: The `kaon.v1.StepInstance` message, for everything else.
    """

    path: str
    step_id: str
    type: str
    status: str
    reason: str
    params: dict[str, Any]
    outputs: dict[str, Any]
    attempt_count: int
    progress: float
    message: str
    started_at: datetime | None
    ended_at: datetime | None
    proto: run_pb2.StepInstance = field(repr=False)

    @classmethod
    def from_proto(cls, step: run_pb2.StepInstance) -> StepInfo:
        """Converts a `kaon.v1.StepInstance`."""
        return cls(
            path=step.path,
            step_id=step.step_id,
            type=step.type,
            status=_step_status(step.status),
            reason=step.reason,
            params={k: from_value(v) for k, v in step.params.items()},
            outputs={k: from_value(v) for k, v in step.outputs.items()},
            attempt_count=step.attempt_count,
            progress=step.progress,
            message=step.message,
            started_at=_time(step.started_at if step.HasField("started_at") else None),
            ended_at=_time(step.ended_at if step.HasField("ended_at") else None),
            proto=step,
        )


@dataclass(frozen=True)
class Event:
    """One entry of a run's event log.

    Attributes:
        seq: Position in the log.
        time: When it happened.
        path: Step instance path; empty for run-level events.
        kind: "run_status", "step_status", "attempt", "report" or "artifact".
        status: The new status for status events, else "".
        message: Free text (reason for a status change).
        proto: The `kaon.v1.RunEvent` message.
    """

    seq: int
    time: datetime | None
    path: str
    kind: str
    status: str
    message: str
    proto: run_pb2.RunEvent = field(repr=False)

    @classmethod
    def from_proto(cls, event: run_pb2.RunEvent) -> Event:
        """Converts a `kaon.v1.RunEvent`."""
        kind = event.WhichOneof("kind") or ""
        status = ""
        if kind == "run_status":
            status = _run_status(event.run_status)
        elif kind == "step_status":
            status = _step_status(event.step_status)
        return cls(
            seq=event.seq,
            time=_time(event.time if event.HasField("time") else None),
            path=event.path,
            kind=kind,
            status=status,
            message=event.message,
            proto=event,
        )

    def __str__(self) -> str:
        where = self.path or "run"
        what = self.status or self.kind
        return f"{where}: {what}" + (f" ({self.message})" if self.message else "")


class Run:
    """One run of a workflow. Returned by `Client.run` and `Client.get_run`."""

    def __init__(self, client: Client, proto: run_pb2.Run) -> None:
        self._client = client
        self._proto = proto
        self._last_seq = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def proto(self) -> run_pb2.Run:
        """The latest `kaon.v1.Run` message seen."""
        return self._proto

    @property
    def id(self) -> str:
        """Run id."""
        return self._proto.id

    @property
    def workflow_id(self) -> str:
        """Workflow id."""
        return self._proto.workflow_id

    @property
    def version(self) -> int:
        """Workflow version the run executes."""
        return self._proto.version

    @property
    def status(self) -> str:
        """Status name: QUEUED, RUNNING, SUCCEEDED, FAILED, STOPPED or TIMED_OUT."""
        return _run_status(self._proto.status)

    @property
    def message(self) -> str:
        """Why the run ended or waits."""
        return self._proto.message

    @property
    def done(self) -> bool:
        """True once the run reached a terminal status (as of the last refresh)."""
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def succeeded(self) -> bool:
        """True when the run SUCCEEDED (as of the last refresh)."""
        return self.status == "SUCCEEDED"

    @property
    def params(self) -> dict[str, Any]:
        """Resolved workflow params."""
        return {k: from_value(v) for k, v in self._proto.params.items()}

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the run (`<step>.<name>`), refreshed from the server when not done."""
        if not self.done:
            self.refresh()
        return {k: from_value(v) for k, v in self._proto.outputs.items()}

    def refresh(self) -> Run:
        """Re-reads the run from the server."""
        self._proto = self._client.raw.get_run(run_service_pb2.GetRunRequest(run_id=self.id)).run
        return self

    # -- observing -----------------------------------------------------------------------

    def watch(self, *, after_seq: int = 0, timeout: float | None = None) -> Iterator[Event]:
        """Yields the run's events from the start (or after `after_seq`) until it ends.

        Resumes transparently when the connection drops (the server is briefly away).
        """
        for response in self._responses(after_seq, timeout):
            for event in response.events:
                yield Event.from_proto(event)

    def _responses(
        self, after_seq: int, timeout: float | None
    ) -> Iterator[run_service_pb2.WatchRunResponse]:
        deadline = None if timeout is None else time.monotonic() + timeout
        seq = after_seq
        backoff = 0.2
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceededError(
                    f"run {self.id} is still {self.status} after {timeout:g}s",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                )
            request = run_service_pb2.WatchRunRequest(run_id=self.id, after_seq=seq)
            try:
                for response in self._client.raw.watch_run(request, timeout=remaining):
                    backoff = 0.2
                    if response.HasField("run"):
                        self._proto = response.run
                    if response.events:
                        seq = response.events[-1].seq
                        self._last_seq = max(self._last_seq, seq)
                    yield response
            except KaonConnectionError:
                time.sleep(backoff)  # the server is restarting: resume where we were
                backoff = min(backoff * 2, 5.0)
                continue
            except DeadlineExceededError:
                raise DeadlineExceededError(
                    f"run {self.id} is still {self.status} after {timeout:g}s",
                    code=grpc.StatusCode.DEADLINE_EXCEEDED,
                ) from None
            if self.done:
                return
            self.refresh()
            if self.done:
                return

    def wait(
        self,
        *,
        timeout: float | None = None,
        progress: bool | None = None,
        check: bool = False,
    ) -> Run:
        """Waits until the run ends, showing a progress bar driven by the run's events.

        Args:
            timeout: Give up after this many seconds (raises `kaon.DeadlineExceededError`).
            progress: Show a tqdm bar; default: when stderr is a terminal or in Jupyter.
            check: Raise `kaon.RunFailedError` unless the run SUCCEEDED.

        Returns:
            This run, refreshed.
        """
        if progress is None:
            progress = sys.stderr.isatty() or "ipykernel" in sys.modules
        bar = _ProgressBar(self) if progress else None
        try:
            if not self.done:
                for response in self._responses(self._last_seq, timeout):
                    if bar is not None:
                        bar.update(response)
        finally:
            if bar is not None:
                bar.close()
        if check and not self.succeeded:
            raise RunFailedError(
                f"run {self.id} of '{self.workflow_id}' ended {self.status}"
                + (f": {self.message}" if self.message else "")
            )
        return self

    def steps(self, *, status: Sequence[str] = (), path_prefix: str = "") -> list[StepInfo]:
        """The run's step instances in graph order.

        Args:
            status: Only these statuses ("FAILED", ...).
            path_prefix: Only paths starting with this, e.g. `regional[`.
        """
        codes = [run_pb2.StepStatus.Value(f"STEP_STATUS_{s.upper()}") for s in status]
        out: list[StepInfo] = []
        token = ""
        while True:
            response = self._client.raw.list_steps(
                run_service_pb2.ListStepsRequest(
                    run_id=self.id,
                    statuses=codes,
                    path_prefix=path_prefix,
                    page_size=1000,
                    page_token=token,
                )
            )
            out.extend(StepInfo.from_proto(s) for s in response.steps)
            token = response.next_page_token
            if not token:
                return out

    def step(self, path: str) -> StepInfo:
        """One step instance (with report images).

        Raises:
            kaon.NotFoundError: no step at this path.
        """
        response = self._client.raw.get_step(
            run_service_pb2.GetStepRequest(run_id=self.id, path=path)
        )
        return StepInfo.from_proto(response.step)

    def logs(self, path: str, *, attempt: int = 0, stream: str = "stdout", offset: int = 0) -> str:
        """The log of one attempt of a step as text.

        Args:
            path: Step instance path.
            attempt: Attempt number; 0 means the latest.
            stream: "stdout" or "stderr".
            offset: Start at this byte; negative means that many bytes before the end.
        """
        return "".join(self.iter_logs(path, attempt=attempt, stream=stream, offset=offset))

    def iter_logs(
        self,
        path: str,
        *,
        attempt: int = 0,
        stream: str = "stdout",
        offset: int = 0,
        follow: bool = False,
    ) -> Iterator[str]:
        """Yields log text as it arrives; with `follow`, until the attempt ends."""
        request = run_service_pb2.TailLogsRequest(
            run_id=self.id,
            path=path,
            attempt=attempt,
            stream=run_service_pb2.LogStream.Value(f"LOG_STREAM_{stream.upper()}"),
            offset=offset,
            follow=follow,
        )
        for chunk in self._client.raw.tail_logs(request):
            yield chunk.data.decode("utf-8", errors="replace")

    # -- steering ------------------------------------------------------------------------

    def stop(self, reason: str = "") -> Run:
        """Stops the run (no-op when it has ended)."""
        response = self._client.raw.stop_run(
            run_service_pb2.StopRunRequest(run_id=self.id, reason=reason)
        )
        self._proto = response.run
        return self

    def restart(
        self,
        *,
        from_: str = "failed",
        step: str = "",
        params: Mapping[str, Any] | None = None,
    ) -> Run:
        """Restarts the finished run in place.

        Args:
            from_: "failed" (re-run failed steps and what they blocked), "step" (re-run `step`
                and everything downstream) or "beginning".
            step: For from_="step": the top-level step id.
            params: Param overrides.

        Raises:
            kaon.FailedPreconditionError: the run is still going.
        """
        response = self._client.raw.restart_run(
            run_service_pb2.RestartRunRequest(
                run_id=self.id,
                step_id=step,
                params=_values(params, "params"),
                request_id=uuid.uuid4().hex,
                **{"from": run_service_pb2.RestartFrom.Value(f"RESTART_FROM_{from_.upper()}")},
            )
        )
        self._proto = response.run
        return self

    def retry_step(self, path: str) -> StepInfo:
        """Makes a failed, stopped or timed-out step instance try again."""
        response = self._client.raw.retry_step(
            run_service_pb2.RetryStepRequest(run_id=self.id, path=path)
        )
        return StepInfo.from_proto(response.step)

    def _repr_html_(self) -> str:
        from kaon._html import run_html

        try:
            return run_html(self)
        except KaonError as error:
            return f"<pre>run {self.id}: {error}</pre>"

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, workflow_id={self.workflow_id!r}, status={self.status!r})"


class _ProgressBar:
    """A tqdm bar over a run's step instances: n = finished, total = known so far."""

    def __init__(self, run: Run) -> None:
        try:
            from tqdm.auto import tqdm

            self._bar: Any = tqdm(total=0, desc=f"{run.workflow_id} {run.id}", unit="step")
        except ImportError:  # Jupyter without ipywidgets: the plain bar still works
            from tqdm import tqdm as plain_tqdm

            self._bar = plain_tqdm(total=0, desc=f"{run.workflow_id} {run.id}", unit="step")

    def update(self, response: run_service_pb2.WatchRunResponse) -> None:
        counts = response.run.step_counts
        total = sum(counts.values())
        done = sum(
            n
            for name, n in counts.items()
            if name.removeprefix("STEP_STATUS_") in TERMINAL_STEP_STATUSES
        )
        self._bar.total = max(total, done)
        self._bar.n = done
        last = response.events[-1] if response.events else None
        if last is not None:
            self._bar.set_postfix_str(str(Event.from_proto(last)), refresh=False)
        self._bar.set_description(
            f"{response.run.workflow_id} {_run_status(response.run.status)}", refresh=False
        )
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
