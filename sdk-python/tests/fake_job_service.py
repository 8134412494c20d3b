"""A JobService with core's documented Report semantics, for testing the reporter's batching,
sequencing and retries in isolation (the end-to-end path runs against the real server in
test_server.py). Like core, Report refuses a sequence below 1 and GetContext tells the
highest applied sequence. Scripted faults: `unavailable_first` calls (of any method) fail
with UNAVAILABLE; `lose_response_of` applies a batch and then fails, as if the response were
lost."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from kaon.v1 import job_service_pb2, job_service_pb2_grpc, run_pb2


@dataclass
class JobServiceState:
    applied_sequence: int = 0
    context_calls: int = 0
    items: list[run_pb2.ReportItem] = field(default_factory=list)
    requests: list[job_service_pb2.ReportRequest] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    unavailable_first: int = 0
    lose_response_of: set[int] = field(default_factory=set)
    artifacts: list[job_service_pb2.AnnounceArtifactRequest] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for_items(self, count: int, timeout: float = 10) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.items) >= count, timeout)


class FakeJobService(job_service_pb2_grpc.JobServiceServicer):
    def __init__(self, state: JobServiceState) -> None:
        self.state = state

    def _auth(self, context: grpc.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata())
        self.state.tokens.append(str(metadata.get("authorization", "")))

    def GetContext(
        self, request: job_service_pb2.GetContextRequest, context: grpc.ServicerContext
    ) -> job_service_pb2.GetContextResponse:
        self._auth(context)
        with self.state.changed:
            self.state.context_calls += 1
            if self.state.unavailable_first > 0:
                self.state.unavailable_first -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "core is restarting")
            applied = self.state.applied_sequence
        response = job_service_pb2.GetContextResponse(
            run_id="r1",
            workflow_id="wf",
            path="train",
            step_id="train",
            attempt=1,
            run_ts=1_700_000_000_000,
            applied_sequence=applied,
        )
        response.params["country"].string_value = "US"
        response.params["n"].number_value = 3
        return response

    def Report(
        self, request: job_service_pb2.ReportRequest, context: grpc.ServicerContext
    ) -> job_service_pb2.ReportResponse:
        self._auth(context)
        state = self.state
        with state.changed:
            state.requests.append(request)
            if state.unavailable_first > 0:
                state.unavailable_first -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "core is restarting")
            if request.sequence < 1:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"sequence {request.sequence} must be 1 or more",
                )
            if request.sequence > state.applied_sequence:
                state.applied_sequence = request.sequence
                state.items.extend(request.items)
                state.changed.notify_all()
                if request.sequence in state.lose_response_of:
                    state.lose_response_of.discard(request.sequence)
                    context.abort(grpc.StatusCode.UNAVAILABLE, "response lost")
            return job_service_pb2.ReportResponse(applied_sequence=state.applied_sequence)

    def AnnounceArtifact(
        self, request: job_service_pb2.AnnounceArtifactRequest, context: grpc.ServicerContext
    ) -> job_service_pb2.AnnounceArtifactResponse:
        self._auth(context)
        with self.state.changed:
            self.state.artifacts.append(request)
        return job_service_pb2.AnnounceArtifactResponse(artifact=request.artifact)


@contextmanager
def fake_job_service() -> Iterator[tuple[str, JobServiceState]]:
    state = JobServiceState()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    job_service_pb2_grpc.add_JobServiceServicer_to_server(FakeJobService(state), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", state
    finally:
        server.stop(grace=None)
