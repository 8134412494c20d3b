// The raw client layer (STYLE.md §4): one nice-grpc client per service over one channel, with a
// middleware that adds the bearer token, gives unary calls a deadline, retries idempotent unary
// calls while the server is unavailable, and turns every failure into the SDK's KaonError
// hierarchy (violations decoded from the `kaon-error-details-bin` trailer).
import { readFileSync } from "node:fs";
import { connectivityState } from "@grpc/grpc-js";
import {
  ArtifactServiceDefinition,
  ClusterServiceDefinition,
  ErrorDetails,
  type FieldViolation,
  JobServiceDefinition,
  RunServiceDefinition,
  TriggerServiceDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import {
  type CallOptions,
  type Channel,
  ChannelCredentials,
  ClientError,
  type ClientMiddleware,
  type ClientMiddlewareCall,
  createChannel,
  createClientFactory,
  Metadata,
  Status,
} from "nice-grpc";
import {
  AlreadyExistsError,
  ConnectionError,
  DeadlineExceededError,
  FailedPreconditionError,
  InvalidArgumentError,
  InvalidDefinitionError,
  KaonError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnimplementedError,
} from "../errors.js";

/** The trailer carrying kaon.v1.ErrorDetails on INVALID_ARGUMENT. */
export const ERROR_DETAILS_TRAILER = "kaon-error-details-bin";

/** How the raw layer reaches a server. */
export interface RawClientOptions {
  /** `host:port`. */
  address: string;
  /** Sent as `authorization: Bearer <token>`; omit for an unauthenticated call. */
  token?: string | undefined;
  /** PEM of a certificate to trust; set for a server with TLS. */
  tlsCert?: Buffer | undefined;
  /** Deadline of each unary call attempt in ms; default 30 000. Streams have none. */
  deadlineMs?: number;
  /** Attempts of an idempotent unary call while the server is unavailable; default 4. */
  maxAttempts?: number;
  /** First backoff between attempts in ms (doubling); default 200. */
  initialBackoffMs?: number;
  /** Text appended to ConnectionError messages (how to get a server). */
  connectionHint?: string;
  /** grpc-js channel options, e.g. `{ "grpc.max_reconnect_backoff_ms": 2000 }`. */
  channelOptions?: Record<string, string | number>;
}

function createClients(channel: Channel, middleware: ClientMiddleware) {
  const factory = createClientFactory().use(middleware);
  return {
    workflows: factory.create(WorkflowServiceDefinition, channel),
    runs: factory.create(RunServiceDefinition, channel),
    jobs: factory.create(JobServiceDefinition, channel),
    artifacts: factory.create(ArtifactServiceDefinition, channel),
    triggers: factory.create(TriggerServiceDefinition, channel),
    cluster: factory.create(ClusterServiceDefinition, channel),
  };
}

/** One client per kaon.v1 service over a shared channel. */
export type RawClients = ReturnType<typeof createClients> & {
  readonly address: string;
  /** Resolves once the channel is connected; rejects after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void>;
  close(): void;
};

/** Opens a channel to `address` and returns a client per service. */
export function createRawClients(options: RawClientOptions): RawClients {
  const credentials = options.tlsCert
    ? ChannelCredentials.createSsl(options.tlsCert)
    : ChannelCredentials.createInsecure();
  const channel = createChannel(options.address, credentials, options.channelOptions);
  const clients = createClients(channel, kaonMiddleware(options));
  return {
    ...clients,
    address: options.address,
    waitForReady: (timeoutMs) => waitForReady(channel, timeoutMs),
    close: () => channel.close(),
  };
}

function waitForReady(channel: Channel, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const check = () => {
      const state = channel.getConnectivityState(true);
      if (state === connectivityState.READY) return resolve();
      // Refused or unresolvable: say so now instead of waiting out the timeout.
      if (state === connectivityState.TRANSIENT_FAILURE) {
        return reject(new ConnectionError("connection refused or address unreachable"));
      }
      channel.watchConnectivityState(state, deadline, (err) => {
        if (err) reject(new ConnectionError(`not connected after ${timeoutMs} ms`));
        else check();
      });
    };
    check();
  });
}

/** Reads a PEM file for `tlsCert`, with an error that names the file. */
export function readCertificate(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConnectionError(`cannot read the TLS certificate ${path}: ${(err as Error).message}`);
  }
}

const RETRYABLE = new Set([Status.UNAVAILABLE]);

/** The middleware: auth, deadline, retries for idempotent calls, error mapping. */
export function kaonMiddleware(options: RawClientOptions): ClientMiddleware {
  const deadlineMs = options.deadlineMs ?? 30_000;
  const maxAttempts = Math.max(1, options.maxAttempts ?? 4);
  const initialBackoffMs = options.initialBackoffMs ?? 200;

  return async function* middleware<Req, Res>(
    call: ClientMiddlewareCall<Req, Res>,
    callOptions: CallOptions,
  ) {
    const metadata = Metadata(callOptions.metadata);
    if (options.token && !metadata.has("authorization")) {
      metadata.set("authorization", `Bearer ${options.token}`);
    }
    const idempotent = call.method.options.idempotencyLevel !== undefined;

    if (call.responseStream || call.requestStream) {
      let trailer: Metadata | undefined;
      try {
        return yield* call.next(call.request, {
          ...callOptions,
          metadata,
          onTrailer: (t) => {
            trailer = t;
            callOptions.onTrailer?.(t);
          },
        });
      } catch (err) {
        throw toKaonError(err, call.method.path, options, trailer);
      }
    }

    for (let attempt = 1; ; attempt++) {
      let trailer: Metadata | undefined;
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(), deadlineMs);
      const onUserAbort = () => deadline.abort();
      callOptions.signal?.addEventListener("abort", onUserAbort);
      try {
        return yield* call.next(call.request, {
          ...callOptions,
          metadata,
          signal: deadline.signal,
          onTrailer: (t) => {
            trailer = t;
            callOptions.onTrailer?.(t);
          },
        });
      } catch (err) {
        if (isAbortError(err) && callOptions.signal?.aborted) throw err;
        if (isAbortError(err)) {
          throw new DeadlineExceededError(
            `${call.method.path} to ${options.address} took longer than ${deadlineMs} ms`,
            { code: "DEADLINE_EXCEEDED", cause: err },
          );
        }
        const retry =
          idempotent &&
          attempt < maxAttempts &&
          err instanceof ClientError &&
          RETRYABLE.has(err.code) &&
          !callOptions.signal?.aborted;
        if (!retry) throw toKaonError(err, call.method.path, options, trailer);
        await backoff(initialBackoffMs * 2 ** (attempt - 1), callOptions.signal);
      } finally {
        clearTimeout(timer);
        callOptions.signal?.removeEventListener("abort", onUserAbort);
      }
    }
  };
}

function isAbortError(err: unknown): boolean {
  return (
    typeof err === "object" && err !== null && (err as { name?: unknown }).name === "AbortError"
  );
}

function backoff(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done);
  });
}

/** Decodes the violations of a trailer; empty when there are none. */
export function violationsFromTrailer(trailer: Metadata | undefined): FieldViolation[] {
  const raw = trailer?.get(ERROR_DETAILS_TRAILER);
  if (raw === undefined || typeof raw === "string") return [];
  try {
    return ErrorDetails.decode(raw).violations;
  } catch {
    return [];
  }
}

const DEFINITION_METHODS = new Set([
  "/kaon.v1.WorkflowService/Validate",
  "/kaon.v1.WorkflowService/Deploy",
]);

/** Maps a failed call to the KaonError hierarchy. Non-gRPC errors pass through unchanged. */
export function toKaonError(
  err: unknown,
  methodPath: string,
  options: Pick<RawClientOptions, "address" | "connectionHint">,
  trailer?: Metadata,
): unknown {
  if (!(err instanceof ClientError)) return err;
  const details = err.details;
  const code = Status[err.code] ?? String(err.code);
  const opts = { code, cause: err };
  switch (err.code) {
    case Status.NOT_FOUND:
      return new NotFoundError(details, opts);
    case Status.INVALID_ARGUMENT: {
      const violations = violationsFromTrailer(trailer);
      // The server's message already lists the violations; keep only its summary line.
      const summary = violations.length > 0 ? (details.split("\n")[0] ?? details) : details;
      // Only calls that carry a definition say the definition is wrong (as in the Python SDK).
      return DEFINITION_METHODS.has(methodPath)
        ? new InvalidDefinitionError(summary, violations, { cause: err })
        : new InvalidArgumentError(summary, violations, { cause: err });
    }
    case Status.RESOURCE_EXHAUSTED:
      return new ResourceExhaustedError(details, opts);
    case Status.UNAUTHENTICATED:
      return new UnauthenticatedError(details, opts);
    case Status.PERMISSION_DENIED:
      return new PermissionDeniedError(details, opts);
    case Status.FAILED_PRECONDITION:
      return new FailedPreconditionError(details, opts);
    case Status.ALREADY_EXISTS:
      return new AlreadyExistsError(details, opts);
    case Status.DEADLINE_EXCEEDED:
      return new DeadlineExceededError(details, opts);
    case Status.UNIMPLEMENTED:
      return new UnimplementedError(details, opts);
    case Status.UNAVAILABLE:
      return new ConnectionError(
        `cannot reach the kaon server at ${options.address} (${details})` +
          (options.connectionHint ? `; ${options.connectionHint}` : ""),
        opts,
      );
    default:
      return new KaonError(`${methodPath}: ${details}`, opts);
  }
}
