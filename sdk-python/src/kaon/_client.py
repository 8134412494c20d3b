"""The raw client: one method per RPC over one channel, with auth metadata, deadlines,
retries for idempotent calls, and gRPC errors turned into `KaonError`s.

The friendly layer (`kaon._api`) builds on this; nothing here knows about DSL objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from kaon._config import Target
from kaon._errors import ConnectionError, KaonError, from_rpc_error
from kaon.v1 import (
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    cluster_service_pb2,
    cluster_service_pb2_grpc,
    job_service_pb2,
    job_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    trigger_service_pb2,
    trigger_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

DEFAULT_TIMEOUT = 30.0
"""Deadline of a unary call, seconds."""
_RETRY_CODES = {grpc.StatusCode.UNAVAILABLE}
_RETRY_BACKOFFS = (0.1, 0.3, 1.0, 2.0)
_MAX_MESSAGE = 64 * 1024 * 1024


def open_channel(target: Target) -> grpc.Channel:
    """A channel to `target` (TLS when it has a root certificate)."""
    options = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        ("grpc.max_send_message_length", _MAX_MESSAGE),
        ("grpc.enable_retries", 0),  # retries are ours, and only for idempotent calls
    ]
    if target.tls_root_cert is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=target.tls_root_cert)
        return grpc.secure_channel(target.address, creds, options=options)
    return grpc.insecure_channel(target.address, options=options)


class RawClient:
    """One method per kaon.v1 RPC. Every method raises `KaonError` subclasses, never grpc's.

    Args:
        target: Address, token and TLS settings (see `kaon._config.resolve_target`).
        timeout: Default deadline of unary calls, seconds.
        channel: An existing channel to use instead of opening one.
    """

    def __init__(
        self,
        target: Target,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        channel: grpc.Channel | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.channel = channel or open_channel(target)
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {target.token}"),) if target.token else ()
        )
        self.workflows = workflow_service_pb2_grpc.WorkflowServiceStub(self.channel)
        self.runs = run_service_pb2_grpc.RunServiceStub(self.channel)
        self.jobs = job_service_pb2_grpc.JobServiceStub(self.channel)
        self.artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(self.channel)
        self.triggers = trigger_service_pb2_grpc.TriggerServiceStub(self.channel)
        self.cluster = cluster_service_pb2_grpc.ClusterServiceStub(self.channel)

    # -- plumbing ------------------------------------------------------------------------

    def wait_ready(self, timeout: float) -> None:
        """Waits until the channel connects.

        Raises:
            ConnectionError: naming the address, where it came from, and how to start a server.
        """
        try:
            grpc.channel_ready_future(self.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise ConnectionError(
                f"no kaon server answers at {self.target.address} (address from "
                f"{self.target.source}) within {timeout:g}s. Start one with `kaon server` "
                "(in another terminal), or point at a running one with "
                "kaon.connect(address=...) or KAON_ADDRESS.",
                code=grpc.StatusCode.UNAVAILABLE,
            ) from None

    def close(self) -> None:
        """Closes the channel."""
        self.channel.close()

    def unary(
        self,
        method: Callable[..., Resp],
        request: Any,
        *,
        what: str,
        idempotent: bool,
        definition: bool = False,
        timeout: float | None = None,
    ) -> Resp:
        """Calls a unary RPC, retrying UNAVAILABLE when the call is idempotent."""
        backoffs = _RETRY_BACKOFFS if idempotent else ()
        attempt = 0
        while True:
            try:
                return method(request, timeout=timeout or self.timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                if code in _RETRY_CODES and attempt < len(backoffs):
                    time.sleep(backoffs[attempt])
                    attempt += 1
                    continue
                raise self._error(error, what, definition) from None

    def stream(
        self,
        method: Callable[..., Any],
        request: Any,
        *,
        what: str,
        timeout: float | None = None,
    ) -> Iterator[Any]:
        """Calls a server-streaming RPC; errors while iterating become `KaonError`s."""
        try:
            responses: Iterator[Any] = method(request, timeout=timeout, metadata=self._metadata)
            yield from responses
        except grpc.RpcError as error:
            raise self._error(error, what, False) from None

    def _error(self, error: grpc.RpcError, what: str, definition: bool) -> KaonError:
        err = from_rpc_error(error, address=self.target.address, what=what, definition=definition)
        if err.code == grpc.StatusCode.UNAUTHENTICATED:
            err.message += f" (token from {self.target.token_source})"
            err.args = (err.message,)
        return err

    # -- WorkflowService -----------------------------------------------------------------

    def validate(
        self, request: workflow_service_pb2.ValidateRequest
    ) -> workflow_service_pb2.ValidateResponse:
        """WorkflowService.Validate."""
        what = f"validate workflow '{request.definition.id}'"
        return self.unary(
            self.workflows.Validate, request, what=what, idempotent=True, definition=True
        )

    def deploy(
        self, request: workflow_service_pb2.DeployRequest
    ) -> workflow_service_pb2.DeployResponse:
        """WorkflowService.Deploy."""
        what = f"deploy workflow '{request.definition.id}'"
        return self.unary(
            self.workflows.Deploy, request, what=what, idempotent=True, definition=True
        )

    def get_workflow(
        self, request: workflow_service_pb2.GetWorkflowRequest
    ) -> workflow_service_pb2.GetWorkflowResponse:
        """WorkflowService.GetWorkflow."""
        what = f"get workflow '{request.workflow_id}'"
        return self.unary(self.workflows.GetWorkflow, request, what=what, idempotent=True)

    def list_workflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        """WorkflowService.ListWorkflows."""
        return self.unary(
            self.workflows.ListWorkflows, request, what="list workflows", idempotent=True
        )

    def list_versions(
        self, request: workflow_service_pb2.ListVersionsRequest
    ) -> workflow_service_pb2.ListVersionsResponse:
        """WorkflowService.ListVersions."""
        what = f"list versions of '{request.workflow_id}'"
        return self.unary(self.workflows.ListVersions, request, what=what, idempotent=True)

    def activate(
        self, request: workflow_service_pb2.ActivateRequest
    ) -> workflow_service_pb2.ActivateResponse:
        """WorkflowService.Activate."""
        what = f"activate version {request.version} of '{request.workflow_id}'"
        return self.unary(self.workflows.Activate, request, what=what, idempotent=True)

    def delete_workflow(
        self, request: workflow_service_pb2.DeleteWorkflowRequest
    ) -> workflow_service_pb2.DeleteWorkflowResponse:
        """WorkflowService.DeleteWorkflow."""
        what = f"delete workflow '{request.workflow_id}'"
        return self.unary(self.workflows.DeleteWorkflow, request, what=what, idempotent=True)

    # -- RunService ----------------------------------------------------------------------

    def start_run(
        self, request: run_service_pb2.StartRunRequest
    ) -> run_service_pb2.StartRunResponse:
        """RunService.StartRun (retried only when it carries a request_id)."""
        what = f"start a run of '{request.workflow_id}'"
        return self.unary(
            self.runs.StartRun, request, what=what, idempotent=bool(request.request_id)
        )

    def get_run(self, request: run_service_pb2.GetRunRequest) -> run_service_pb2.GetRunResponse:
        """RunService.GetRun."""
        return self.unary(
            self.runs.GetRun, request, what=f"get run '{request.run_id}'", idempotent=True
        )

    def list_runs(
        self, request: run_service_pb2.ListRunsRequest
    ) -> run_service_pb2.ListRunsResponse:
        """RunService.ListRuns."""
        return self.unary(self.runs.ListRuns, request, what="list runs", idempotent=True)

    def watch_run(
        self, request: run_service_pb2.WatchRunRequest, *, timeout: float | None = None
    ) -> Iterator[run_service_pb2.WatchRunResponse]:
        """RunService.WatchRun (server stream)."""
        what = f"watch run '{request.run_id}'"
        return self.stream(self.runs.WatchRun, request, what=what, timeout=timeout)

    def stop_run(self, request: run_service_pb2.StopRunRequest) -> run_service_pb2.StopRunResponse:
        """RunService.StopRun."""
        return self.unary(
            self.runs.StopRun, request, what=f"stop run '{request.run_id}'", idempotent=True
        )

    def restart_run(
        self, request: run_service_pb2.RestartRunRequest
    ) -> run_service_pb2.RestartRunResponse:
        """RunService.RestartRun (retried only when it carries a request_id)."""
        return self.unary(
            self.runs.RestartRun,
            request,
            what=f"restart run '{request.run_id}'",
            idempotent=bool(request.request_id),
        )

    def backfill(
        self, request: run_service_pb2.BackfillRequest
    ) -> run_service_pb2.BackfillResponse:
        """RunService.Backfill (retried only when it carries a request_id)."""
        return self.unary(
            self.runs.Backfill,
            request,
            what=f"backfill '{request.workflow_id}'",
            idempotent=bool(request.request_id),
        )

    def get_step(self, request: run_service_pb2.GetStepRequest) -> run_service_pb2.GetStepResponse:
        """RunService.GetStep."""
        what = f"get step '{request.path}' of run '{request.run_id}'"
        return self.unary(self.runs.GetStep, request, what=what, idempotent=True)

    def list_steps(
        self, request: run_service_pb2.ListStepsRequest
    ) -> run_service_pb2.ListStepsResponse:
        """RunService.ListSteps."""
        what = f"list steps of run '{request.run_id}'"
        return self.unary(self.runs.ListSteps, request, what=what, idempotent=True)

    def stop_step(
        self, request: run_service_pb2.StopStepRequest
    ) -> run_service_pb2.StopStepResponse:
        """RunService.StopStep."""
        what = f"stop step '{request.path}' of run '{request.run_id}'"
        return self.unary(self.runs.StopStep, request, what=what, idempotent=True)

    def retry_step(
        self, request: run_service_pb2.RetryStepRequest
    ) -> run_service_pb2.RetryStepResponse:
        """RunService.RetryStep."""
        what = f"retry step '{request.path}' of run '{request.run_id}'"
        return self.unary(self.runs.RetryStep, request, what=what, idempotent=True)

    def tail_logs(
        self, request: run_service_pb2.TailLogsRequest, *, timeout: float | None = None
    ) -> Iterator[run_service_pb2.TailLogsResponse]:
        """RunService.TailLogs (server stream)."""
        what = f"read logs of '{request.path}' in run '{request.run_id}'"
        return self.stream(self.runs.TailLogs, request, what=what, timeout=timeout)

    # -- JobService (step-scoped token) ---------------------------------------------------

    def get_context(
        self, request: job_service_pb2.GetContextRequest
    ) -> job_service_pb2.GetContextResponse:
        """JobService.GetContext."""
        return self.unary(
            self.jobs.GetContext, request, what="read the job context", idempotent=True
        )

    def report(self, request: job_service_pb2.ReportRequest) -> job_service_pb2.ReportResponse:
        """JobService.Report."""
        return self.unary(self.jobs.Report, request, what="send job reports", idempotent=True)

    def announce_job_artifact(
        self, request: job_service_pb2.AnnounceArtifactRequest
    ) -> job_service_pb2.AnnounceArtifactResponse:
        """JobService.AnnounceArtifact."""
        what = f"announce artifact '{request.artifact.name}'"
        return self.unary(self.jobs.AnnounceArtifact, request, what=what, idempotent=True)

    # -- ArtifactService -----------------------------------------------------------------

    def announce(
        self, request: artifact_service_pb2.AnnounceRequest
    ) -> artifact_service_pb2.AnnounceResponse:
        """ArtifactService.Announce."""
        return self.unary(
            self.artifacts.Announce, request, what="announce an artifact", idempotent=True
        )

    def get_artifact(
        self, request: artifact_service_pb2.GetArtifactRequest
    ) -> artifact_service_pb2.GetArtifactResponse:
        """ArtifactService.GetArtifact."""
        return self.unary(
            self.artifacts.GetArtifact, request, what="get an artifact", idempotent=True
        )

    def list_artifacts(
        self, request: artifact_service_pb2.ListArtifactsRequest
    ) -> artifact_service_pb2.ListArtifactsResponse:
        """ArtifactService.ListArtifacts."""
        return self.unary(
            self.artifacts.ListArtifacts, request, what="list artifacts", idempotent=True
        )

    def artifact_history(
        self, request: artifact_service_pb2.HistoryRequest
    ) -> artifact_service_pb2.HistoryResponse:
        """ArtifactService.History."""
        return self.unary(
            self.artifacts.History, request, what="read artifact history", idempotent=True
        )

    # -- TriggerService ------------------------------------------------------------------

    def signal(
        self, request: trigger_service_pb2.SignalRequest
    ) -> trigger_service_pb2.SignalResponse:
        """TriggerService.Signal."""
        return self.unary(
            self.triggers.Signal,
            request,
            what=f"send signal '{request.name}'",
            idempotent=bool(request.request_id),
        )

    def list_triggers(
        self, request: trigger_service_pb2.ListTriggersRequest
    ) -> trigger_service_pb2.ListTriggersResponse:
        """TriggerService.ListTriggers."""
        return self.unary(
            self.triggers.ListTriggers, request, what="list triggers", idempotent=True
        )

    def enable_trigger(
        self, request: trigger_service_pb2.EnableTriggerRequest
    ) -> trigger_service_pb2.EnableTriggerResponse:
        """TriggerService.EnableTrigger."""
        return self.unary(
            self.triggers.EnableTrigger, request, what="enable a trigger", idempotent=True
        )

    def disable_trigger(
        self, request: trigger_service_pb2.DisableTriggerRequest
    ) -> trigger_service_pb2.DisableTriggerResponse:
        """TriggerService.DisableTrigger."""
        return self.unary(
            self.triggers.DisableTrigger, request, what="disable a trigger", idempotent=True
        )

    # -- ClusterService ------------------------------------------------------------------

    def list_agents(
        self, request: cluster_service_pb2.ListAgentsRequest
    ) -> cluster_service_pb2.ListAgentsResponse:
        """ClusterService.ListAgents."""
        return self.unary(self.cluster.ListAgents, request, what="list agents", idempotent=True)

    def list_queue(
        self, request: cluster_service_pb2.ListQueueRequest
    ) -> cluster_service_pb2.ListQueueResponse:
        """ClusterService.ListQueue."""
        return self.unary(self.cluster.ListQueue, request, what="list the queue", idempotent=True)

    def list_tenants(
        self, request: cluster_service_pb2.ListTenantsRequest
    ) -> cluster_service_pb2.ListTenantsResponse:
        """ClusterService.ListTenants."""
        return self.unary(self.cluster.ListTenants, request, what="list tenants", idempotent=True)

    def set_quota(
        self, request: cluster_service_pb2.SetQuotaRequest
    ) -> cluster_service_pb2.SetQuotaResponse:
        """ClusterService.SetQuota."""
        return self.unary(self.cluster.SetQuota, request, what="set a quota", idempotent=True)
