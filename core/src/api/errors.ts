// The closed error contract (STYLE.md §5): handlers throw only ServerError with a message a
// user can act on; validation failures carry field violations, returned to gRPC clients in
// the `kaon-error-details-bin` trailer (kaon.v1.ErrorDetails) and to HTTP clients as JSON.
import { ErrorDetails, type FieldViolation } from "@kaon/proto";
import { Metadata, ServerError, Status } from "nice-grpc";

export { ServerError, Status };

export const ERROR_DETAILS_TRAILER = "kaon-error-details-bin";

/** A ServerError that also carries field violations. */
export class InvalidArgumentError extends ServerError {
  readonly violations: FieldViolation[];
  constructor(summary: string, violations: FieldViolation[]) {
    super(Status.INVALID_ARGUMENT, formatViolations(summary, violations));
    this.name = "InvalidArgumentError";
    this.violations = violations;
  }
  trailer(): Metadata {
    const md = new Metadata();
    md.set(ERROR_DETAILS_TRAILER, ErrorDetails.encode({ violations: this.violations }).finish());
    return md;
  }
}

export function violation(field: string, description: string, hint = ""): FieldViolation {
  return { field, description, hint };
}

export function formatViolations(summary: string, violations: FieldViolation[]): string {
  if (violations.length === 0) return summary;
  const lines = violations.map(
    (v) => `  ${v.field}: ${v.description}${v.hint ? ` (${v.hint})` : ""}`,
  );
  return `${summary}\n${lines.join("\n")}`;
}

export function notFound(what: string): ServerError {
  return new ServerError(Status.NOT_FOUND, what);
}

export function failedPrecondition(what: string): ServerError {
  return new ServerError(Status.FAILED_PRECONDITION, what);
}
