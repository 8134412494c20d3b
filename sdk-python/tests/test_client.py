"""Client plumbing: finding the server, connection errors, and gRPC status → KaonError."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

import kaon
from kaon._config import resolve_target
from kaon.v1 import common_pb2, workflow_service_pb2, workflow_service_pb2_grpc

from .conftest import Server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("KAON_ADDRESS", "KAON_TOKEN", "KAON_TLS_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAON_HOME", str(tmp_path))
    return tmp_path


def test_discovery_reads_server_json_and_admin_token(clean_env: Path) -> None:
    (clean_env / "server.json").write_text(
        json.dumps({"grpc": "127.0.0.1:4242", "http": "x", "pid": 1})
    )
    (clean_env / "admin.token").write_text("secret\n")
    target = resolve_target()
    assert (target.address, target.token) == ("127.0.0.1:4242", "secret")
    assert target.source == str(clean_env / "server.json")


def test_environment_overrides_discovery(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "server.json").write_text(json.dumps({"grpc": "127.0.0.1:4242", "http": "x"}))
    monkeypatch.setenv("KAON_ADDRESS", "10.0.0.1:1")
    monkeypatch.setenv("KAON_TOKEN", "t")
    target = resolve_target()
    assert (target.address, target.source, target.token) == ("10.0.0.1:1", "KAON_ADDRESS", "t")
    assert resolve_target("h:2", "u").address == "h:2"


def test_the_admin_token_file_goes_to_local_servers_only(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "admin.token").write_text("secret\n")
    for local in ("127.0.0.1:7070", "localhost:1", "[::1]:7070", "0.0.0.0:7070", "unix:/x"):
        assert resolve_target(local).token == "secret", local
    for remote in ("10.0.0.1:7070", "kaon.example.com:443", "localhost.evil.com:1"):
        target = resolve_target(remote)
        assert target.token is None, remote
        assert "not a local server" in target.token_source
        monkeypatch.setenv("KAON_ADDRESS", remote)
        assert resolve_target().token is None
        monkeypatch.delenv("KAON_ADDRESS")
        # An explicit token goes wherever the user sends it.
        assert resolve_target(remote, "t").token == "t"


def test_without_a_server_the_default_address_says_why(clean_env: Path) -> None:
    target = resolve_target()
    assert target.address == "127.0.0.1:7070"
    assert "no server has run with that data directory" in target.source
    assert target.token is None


def test_connection_error_names_the_address_and_how_to_start_a_server(clean_env: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(kaon.ConnectionError) as caught:
        kaon.connect(address, timeout=0.5)
    message = str(caught.value)
    assert address in message and "`kaon server`" in message and "KAON_ADDRESS" in message


class ScriptedWorkflowService(workflow_service_pb2_grpc.WorkflowServiceServicer):
    """Answers with the error a test asks for, the way core's error contract sends it."""

    def Validate(
        self, request: workflow_service_pb2.ValidateRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.ValidateResponse:
        details = common_pb2.ErrorDetails(
            violations=[
                common_pb2.FieldViolation(
                    field="steps[1].next[0].to",
                    description="unknown step 'valdate'",
                    hint="did you mean 'validate'?",
                ),
                common_pb2.FieldViolation(field="id", description="'Bad Id' is not a workflow id"),
            ]
        )
        context.set_trailing_metadata((("kaon-error-details-bin", details.SerializeToString()),))
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "invalid workflow definition: 2 problems")

    def Deploy(
        self, request: workflow_service_pb2.DeployRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.DeployResponse:
        self.Validate(workflow_service_pb2.ValidateRequest(definition=request.definition), context)
        raise AssertionError("unreachable")

    def GetWorkflow(
        self, request: workflow_service_pb2.GetWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.GetWorkflowResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, f"workflow '{request.workflow_id}' does not exist")

    def DeleteWorkflow(
        self, request: workflow_service_pb2.DeleteWorkflowRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.DeleteWorkflowResponse:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "workflow has 1 unfinished run")

    def ListWorkflows(
        self, request: workflow_service_pb2.ListWorkflowsRequest, context: grpc.ServicerContext
    ) -> workflow_service_pb2.ListWorkflowsResponse:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid token")


@pytest.fixture
def scripted() -> Iterator[kaon.Client]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = ScriptedWorkflowService()  # type: ignore[abstract]  # the rest stay unimplemented
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    client = kaon.connect(f"127.0.0.1:{port}", "tok", timeout=5)
    yield client
    client.close()
    server.stop(grace=None)


def test_invalid_definition_carries_the_violations(scripted: kaon.Client) -> None:
    with pytest.raises(kaon.InvalidDefinitionError) as caught:
        scripted.deploy(kaon.Workflow("Bad Id", steps=[kaon.noop("a")]), scm=False)
    error = caught.value
    assert isinstance(error, kaon.InvalidArgumentError) and isinstance(error, kaon.KaonError)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.violations == [
        kaon.Violation("steps[1].next[0].to", "unknown step 'valdate'", "did you mean 'validate'?"),
        kaon.Violation("id", "'Bad Id' is not a workflow id", ""),
    ]
    text = str(error)
    assert text.startswith("deploy workflow 'Bad Id': invalid workflow definition: 2 problems")
    assert "steps[1].next[0].to: unknown step 'valdate' (did you mean 'validate'?)" in text


def test_status_codes_map_to_the_hierarchy(scripted: kaon.Client) -> None:
    with pytest.raises(
        kaon.NotFoundError, match="get workflow 'nope': workflow 'nope' does not exist"
    ):
        scripted.raw.get_workflow(workflow_service_pb2.GetWorkflowRequest(workflow_id="nope"))
    with pytest.raises(kaon.FailedPreconditionError, match="unfinished run"):
        scripted.raw.delete_workflow(workflow_service_pb2.DeleteWorkflowRequest(workflow_id="x"))
    with pytest.raises(
        kaon.UnauthenticatedError, match=r"invalid token \(token from the token argument\)"
    ):
        scripted.workflows()
    with pytest.raises(kaon.UnimplementedError):
        scripted.get_run("r")


@pytest.mark.server
def test_a_wrong_token_is_unauthenticated_on_the_real_server(server: Server) -> None:
    with kaon.connect(server.grpc, "wrong-token") as bad, pytest.raises(kaon.UnauthenticatedError):
        bad.validate(kaon.Workflow("wf", steps=[kaon.noop("a")]))


def test_progress_bar_follows_step_counts() -> None:
    from kaon._api import Run, _ProgressBar
    from kaon.v1 import run_pb2, run_service_pb2

    run = Run(None, run_pb2.Run(id="r1", workflow_id="wf"))  # type: ignore[arg-type]
    bar = _ProgressBar(run)
    response = run_service_pb2.WatchRunResponse(
        run=run_pb2.Run(
            id="r1",
            workflow_id="wf",
            status=run_pb2.RUN_STATUS_RUNNING,
            step_counts={
                "STEP_STATUS_SUCCEEDED": 2,
                "STEP_STATUS_SKIPPED": 1,
                "STEP_STATUS_RUNNING": 1,
            },
        ),
        events=[run_pb2.RunEvent(seq=7, path="train", step_status=run_pb2.STEP_STATUS_RUNNING)],
    )
    bar.update(response)
    assert (bar._bar.n, bar._bar.total) == (3, 4)
    assert "train: RUNNING" in bar._bar.postfix
    bar.close()
