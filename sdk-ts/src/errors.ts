// One error hierarchy for the whole SDK (STYLE.md §5): the DSL, the client and the in-job API
// throw only KaonError or a subclass, so callers can catch by meaning (NotFoundError) instead of
// by gRPC status code. The client maps status codes to these classes in ./client/raw.ts.
import type { FieldViolation } from "@kaon/proto";

/** Base class of every error the SDK throws. `code` is the gRPC status name when one applies. */
export class KaonError extends Error {
  readonly code: string;
  constructor(message: string, options: { code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? "UNKNOWN";
  }
}

/** The workflow, version, run or step does not exist (NOT_FOUND). */
export class NotFoundError extends KaonError {}

/** The server rejected a request argument (INVALID_ARGUMENT); `violations` are core's field paths. */
export class InvalidArgumentError extends KaonError {
  readonly violations: FieldViolation[];
  constructor(
    message: string,
    violations: FieldViolation[] = [],
    options: { cause?: unknown } = {},
  ) {
    super(formatViolations(message, violations), { ...options, code: "INVALID_ARGUMENT" });
    this.violations = violations;
  }
}

/** A workflow definition was rejected (Validate, Deploy); `violations` are core's field paths. */
export class InvalidDefinitionError extends InvalidArgumentError {}

/** No token, or the token was refused (UNAUTHENTICATED). */
export class UnauthenticatedError extends KaonError {}

/** The token is valid but may not do this (PERMISSION_DENIED). */
export class PermissionDeniedError extends KaonError {}

/** The server could not be reached (UNAVAILABLE before any answer). Names the address. */
export class ConnectionError extends KaonError {}

/** The operation does not fit the current state, e.g. restarting a running run. */
export class FailedPreconditionError extends KaonError {}

/** The thing already exists (ALREADY_EXISTS). */
export class AlreadyExistsError extends KaonError {}

/** A limit was hit (RESOURCE_EXHAUSTED), e.g. a message too large or a quota. */
export class ResourceExhaustedError extends KaonError {}

/** The call ran out of time (DEADLINE_EXCEEDED). */
export class DeadlineExceededError extends KaonError {}

/** The server does not implement this yet (UNIMPLEMENTED). */
export class UnimplementedError extends KaonError {}

/** A run ended in a status other than SUCCEEDED when the caller asked for success. */
export class RunFailedError extends KaonError {}

/** The in-job API was used outside a kaon job (KAON_ENDPOINT / KAON_TOKEN not set). */
export class NotInJobError extends KaonError {}

/** A value cannot be encoded (an output, a duration, a config value); the message says where and why. */
export class EncodeError extends KaonError {}

/** Renders violations under a summary, one `field: description (hint)` per line. */
export function formatViolations(summary: string, violations: readonly FieldViolation[]): string {
  if (violations.length === 0) return summary;
  const lines = violations.map(
    (v) => `  ${v.field}: ${v.description}${v.hint ? ` (${v.hint})` : ""}`,
  );
  return `${summary}\n${lines.join("\n")}`;
}
