// Enforces the closed error contract (STYLE.md §5) at the edge of every call, for gRPC and the
// HTTP gateway alike: a ServerError reaches the client as thrown (an InvalidArgumentError also
// sends its field violations), and anything else is a bug: logged with its stack, answered as
// INTERNAL without one. Also maps gRPC codes to HTTP statuses for the gateway.
import {
  type CallContext,
  ServerError,
  type ServerMiddleware,
  type ServerMiddlewareCall,
  Status,
} from "nice-grpc";
import type { Logger } from "../log.js";
import { InvalidArgumentError } from "./errors.js";

export const INTERNAL_MESSAGE = "internal error (see server log)";

/**
 * The error a client sees for `err` thrown while serving `methodPath`. Unexpected errors are
 * logged here, once. An error caused by the call's own cancellation is reported as CANCELLED.
 */
export function toServerError(
  err: unknown,
  log: Logger,
  methodPath: string,
  signal?: AbortSignal,
): ServerError {
  if (err instanceof ServerError) return err;
  if (signal?.aborted) return new ServerError(Status.CANCELLED, "call cancelled");
  log.error("unexpected error in handler", { method: methodPath, err });
  return new ServerError(Status.INTERNAL, INTERNAL_MESSAGE);
}

/**
 * nice-grpc middleware implementing the contract. Server-streaming calls are also cancelled
 * when `shutdown` aborts, so a graceful shutdown does not wait for endless watch streams.
 */
export function errorMiddleware(log: Logger, shutdown: AbortSignal): ServerMiddleware {
  return async function* handleErrors<Request, Response>(
    call: ServerMiddlewareCall<Request, Response>,
    context: CallContext,
  ) {
    let callContext = context;
    if (call.responseStream) {
      callContext = { ...context, signal: AbortSignal.any([context.signal, shutdown]) };
    }
    try {
      return yield* call.next(call.request, callContext);
    } catch (err) {
      const error = toServerError(err, log, call.method.path, callContext.signal);
      if (error instanceof InvalidArgumentError) {
        for (const [key, values] of error.trailer()) context.trailer.set(key, values);
      }
      throw error;
    }
  };
}

const HTTP_STATUS: Record<Status, number> = {
  [Status.OK]: 200,
  [Status.CANCELLED]: 499,
  [Status.UNKNOWN]: 500,
  [Status.INVALID_ARGUMENT]: 400,
  [Status.DEADLINE_EXCEEDED]: 504,
  [Status.NOT_FOUND]: 404,
  [Status.ALREADY_EXISTS]: 409,
  [Status.PERMISSION_DENIED]: 403,
  [Status.RESOURCE_EXHAUSTED]: 429,
  [Status.FAILED_PRECONDITION]: 412,
  [Status.ABORTED]: 409,
  [Status.OUT_OF_RANGE]: 400,
  [Status.UNIMPLEMENTED]: 501,
  [Status.INTERNAL]: 500,
  [Status.UNAVAILABLE]: 503,
  [Status.DATA_LOSS]: 500,
  [Status.UNAUTHENTICATED]: 401,
};

export function httpStatusOf(code: Status): number {
  return HTTP_STATUS[code] ?? 500;
}

/** The JSON body of a failed HTTP call: `{code: "NOT_FOUND", message, violations?}`. */
export interface HttpErrorBody {
  code: string;
  message: string;
  violations?: { field: string; description: string; hint: string }[];
}

export function httpErrorBody(error: ServerError): HttpErrorBody {
  const body: HttpErrorBody = { code: Status[error.code] ?? "UNKNOWN", message: error.details };
  if (error instanceof InvalidArgumentError) {
    body.violations = error.violations.map((v) => ({
      field: v.field,
      description: v.description,
      hint: v.hint,
    }));
  }
  return body;
}
