"""One exception hierarchy for everything the SDK raises.

gRPC status codes become subclasses of `KaonError` (see `from_rpc_error`), so user code
catches `kaon.NotFoundError` instead of inspecting `grpc.RpcError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from kaon.v1 import common_pb2

ERROR_DETAILS_TRAILER = "kaon-error-details-bin"


@dataclass(frozen=True)
class Violation:
    """One problem core found in a request.

    Attributes:
        field: Path of the offending field, e.g. `steps[2].next[0].to`.
        description: What is wrong, naming the bad value.
        hint: How to fix it; empty when there is no obvious fix.
    """

    field: str
    description: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.field}: {self.description}"
        return f"{text} ({self.hint})" if self.hint else text


class KaonError(Exception):
    """Base of every error the kaon SDK raises.

    Attributes:
        code: The gRPC status code when the error came from the server, else None.
    """

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidArgumentError(KaonError):
    """The server rejected a request argument (INVALID_ARGUMENT)."""

    def __init__(
        self,
        message: str,
        *,
        violations: list[Violation] | None = None,
        code: grpc.StatusCode | None = grpc.StatusCode.INVALID_ARGUMENT,
    ) -> None:
        self.violations: list[Violation] = list(violations or [])
        if self.violations:
            lines = "\n".join(f"  - {v}" for v in self.violations)
            message = f"{message}\n{lines}"
        super().__init__(message, code=code)


class InvalidDefinitionError(InvalidArgumentError):
    """A workflow definition is invalid; `violations` lists core's field paths."""


class NotFoundError(KaonError):
    """The workflow, version, run or step does not exist (NOT_FOUND)."""


class AlreadyExistsError(KaonError):
    """The thing being created already exists (ALREADY_EXISTS)."""


class FailedPreconditionError(KaonError):
    """The request is not allowed in the current state, e.g. restarting a running run."""


class UnauthenticatedError(KaonError):
    """The token is missing, wrong or expired (UNAUTHENTICATED)."""


class PermissionDeniedError(KaonError):
    """The token may not do this (PERMISSION_DENIED)."""


class ResourceExhaustedError(KaonError):
    """A quota or size limit was hit (RESOURCE_EXHAUSTED)."""


class DeadlineExceededError(KaonError):
    """The call did not finish before its deadline (DEADLINE_EXCEEDED)."""


class UnimplementedError(KaonError):
    """The server does not implement this call (UNIMPLEMENTED): core is older than the SDK."""


class ConnectionError(KaonError):
    """No kaon server answers at the address (UNAVAILABLE or nothing listening)."""


class RunFailedError(KaonError):
    """`Run.wait(check=True)` saw the run end in a status other than SUCCEEDED."""


class NotInJobError(KaonError):
    """The in-job API was used outside a kaon job."""


_BY_CODE: dict[grpc.StatusCode, type[KaonError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
}


def violations_from_trailers(metadata: object) -> list[Violation]:
    """Decodes `kaon.v1.ErrorDetails` from the `kaon-error-details-bin` trailer, if present."""
    if not metadata:
        return []
    out: list[Violation] = []
    for item in metadata:  # type: ignore[attr-defined]
        key, value = item[0], item[1]
        if key != ERROR_DETAILS_TRAILER or not isinstance(value, bytes):
            continue
        details = common_pb2.ErrorDetails()
        try:
            details.ParseFromString(value)
        except Exception:  # a garbled trailer must not hide the status message
            continue
        out.extend(Violation(v.field, v.description, v.hint) for v in details.violations)
    return out


def from_rpc_error(
    error: grpc.RpcError, *, address: str, what: str, definition: bool = False
) -> KaonError:
    """Turns a failed gRPC call into the matching `KaonError` subclass.

    Args:
        error: The error grpc raised (a `grpc.Call` in practice).
        address: The server address, named in connection errors.
        what: The operation, e.g. "deploy workflow 'etl'", used as the message prefix.
        definition: True when the request carried a workflow definition, so that
            INVALID_ARGUMENT becomes `InvalidDefinitionError`.
    """
    code: grpc.StatusCode = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details: str = (error.details() if hasattr(error, "details") else None) or str(error)
    if code == grpc.StatusCode.UNAVAILABLE:
        return ConnectionError(
            f"{what}: no kaon server answers at {address} ({details}). "
            "Start one with `kaon server`, or point KAON_ADDRESS at a running server.",
            code=code,
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
        violations = violations_from_trailers(trailers)
        cls = InvalidDefinitionError if definition else InvalidArgumentError
        return cls(f"{what}: {details}", violations=violations, code=code)
    cls2 = _BY_CODE.get(code, KaonError)
    return cls2(f"{what}: {details}", code=code)
