// A lean gRPC path for hot unary methods (JobService: a job may call Report thousands of times a
// second). nice-grpc serves a unary call through an AbortController, two converted Metadata
// objects, listeners on the call, a chain of async-generator middlewares, and grpc-js adds a
// Writable stream per unary call: together about as much CPU as kaon's own work for a Report.
// Methods marked with `leanUnary` are answered instead by a grpc-js server interceptor that
// takes the decoded request from grpc-js, runs the same authentication (`Authenticator`), the
// same implementation function and the same error contract (toServerError, the
// kaon-error-details-bin trailer), and writes the response itself. The nice-grpc registration
// of the service stays (the interceptor needs grpc-js's handler for decoding; the HTTP gateway
// calls the implementation directly), so both paths run the very same code.
//
// A lean method may use only `context.auth`: it gets no metadata, no abort signal, no
// header/trailer objects. That is checked by the types (`LeanContext`).
import {
  Metadata as GrpcMetadata,
  status as GrpcStatus,
  type ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
} from "@grpc/grpc-js";
import type { ServerError } from "nice-grpc";
import type { Logger } from "../log.js";
import type { AuthContext, Authenticator } from "./auth.js";
import { toServerError } from "./error-handling.js";
import { InvalidArgumentError } from "./errors.js";
import type { ServiceRegistration } from "./registration.js";

type InterceptingServerListener = Parameters<ServerInterceptingCallInterface["start"]>[0];
type PartialStatusObject = Parameters<ServerInterceptingCallInterface["sendStatus"]>[0];

/** All a lean method sees of its call. */
export interface LeanContext {
  auth: AuthContext;
}

type LeanFn<Req, Res> = (request: Req, context: LeanContext) => Promise<Res>;

const LEAN = Symbol("kaon.leanUnary");

/**
 * Marks a unary implementation method to be served by the lean path. The function stays a
 * normal nice-grpc method (the gateway and tests call it as one).
 */
export function leanUnary<Req, Res>(fn: LeanFn<Req, Res>): LeanFn<Req, Res> {
  (fn as unknown as Record<symbol, boolean>)[LEAN] = true;
  return fn;
}

function isLean(fn: unknown): fn is LeanFn<unknown, unknown> {
  return typeof fn === "function" && (fn as unknown as Record<symbol, boolean>)[LEAN] === true;
}

/** Full method paths (`/kaon.v1.JobService/Report`) → their lean implementation. */
export function leanMethods(
  services: readonly ServiceRegistration[],
): Map<string, LeanFn<unknown, unknown>> {
  const methods = new Map<string, LeanFn<unknown, unknown>>();
  for (const { definition, implementation } of services) {
    for (const [name, method] of Object.entries(definition.methods)) {
      const fn = (implementation as Record<string, unknown>)[name];
      if (method.requestStream || method.responseStream || !isLean(fn)) continue;
      methods.set(`/${definition.fullName}/${method.name}`, fn.bind(implementation));
    }
  }
  return methods;
}

/** The grpc-js server interceptor answering the lean methods; other calls pass through. */
export function leanUnaryInterceptor(options: {
  methods: Map<string, LeanFn<unknown, unknown>>;
  authenticator: Authenticator;
  log: Logger;
}): ServerInterceptor {
  const { methods, authenticator, log } = options;
  return (descriptor, call) => {
    const fn = methods.get(descriptor.path);
    if (!fn) return call as ServerInterceptingCall;
    // grpc-js types an interceptor's result as its ServerInterceptingCall class, but it uses
    // only ServerInterceptingCallInterface (the type of the `call` it passes in, too).
    return new LeanUnaryCall(
      call,
      descriptor.path,
      fn,
      authenticator,
      log,
    ) as unknown as ServerInterceptingCall;
  };
}

const OK_STATUS: PartialStatusObject = { code: GrpcStatus.OK, details: "OK", metadata: null };

/**
 * Wraps grpc-js's call object. grpc-js's unary handler calls `start` with its own listener;
 * that listener is never called, so the handler (and nice-grpc behind it) never runs.
 */
class LeanUnaryCall implements ServerInterceptingCallInterface {
  private authorization: string | undefined;
  private request: unknown;
  private received = false;
  private cancelled = false;

  constructor(
    private readonly base: ServerInterceptingCallInterface,
    private readonly path: string,
    private readonly fn: LeanFn<unknown, unknown>,
    private readonly authenticator: Authenticator,
    private readonly log: Logger,
  ) {}

  start(_listener: InterceptingServerListener): void {
    this.base.start(this);
  }

  // The listener of the base call (this object is both the call and its listener).
  onReceiveMetadata(metadata: GrpcMetadata): void {
    const values = metadata.get("authorization");
    // nice-grpc joins repeated text headers with ", "; keep the same view of the header.
    this.authorization =
      values.length === 0
        ? undefined
        : values.length === 1
          ? String(values[0])
          : values.map(String).join(", ");
    this.base.startRead();
  }

  onReceiveMessage(message: unknown): void {
    if (this.received) {
      this.base.sendStatus({
        code: GrpcStatus.UNIMPLEMENTED,
        details: `Received a second request message for server streaming method ${this.path}`,
        metadata: null,
      });
      return;
    }
    this.request = message;
    this.received = true;
    this.base.startRead();
  }

  onReceiveHalfClose(): void {
    if (!this.received) {
      this.base.sendStatus({
        code: GrpcStatus.UNIMPLEMENTED,
        details: `Received no request message for server streaming method ${this.path}`,
        metadata: null,
      });
      return;
    }
    let result: Promise<unknown>;
    try {
      const auth = this.authenticator.authenticate(this.authorization, this.path);
      result = this.fn(this.request, { auth });
    } catch (err) {
      this.fail(err);
      return;
    }
    result.then(
      (response) => {
        if (response == null) {
          this.fail(new Error(`${this.path} returned no response`));
          return;
        }
        this.base.sendMessage(response, () => this.base.sendStatus(OK_STATUS));
      },
      (err: unknown) => this.fail(err),
    );
  }

  onCancel(): void {
    this.cancelled = true;
  }

  private fail(err: unknown): void {
    const error: ServerError = toServerError(
      err,
      this.log,
      this.path,
      this.cancelled ? AbortSignal.abort() : undefined,
    );
    let metadata: GrpcMetadata | null = null;
    if (error instanceof InvalidArgumentError) {
      metadata = new GrpcMetadata();
      for (const [key, values] of error.trailer()) {
        for (const value of values) {
          metadata.add(key, typeof value === "string" ? value : Buffer.from(value));
        }
      }
    }
    this.base.sendStatus({ code: error.code, details: error.details, metadata });
  }

  // The rest is the base call's.
  sendMetadata(metadata: GrpcMetadata): void {
    this.base.sendMetadata(metadata);
  }
  sendMessage(message: unknown, callback: () => void): void {
    this.base.sendMessage(message, callback);
  }
  sendStatus(status: PartialStatusObject): void {
    this.base.sendStatus(status);
  }
  startRead(): void {
    this.base.startRead();
  }
  getPeer() {
    return this.base.getPeer();
  }
  getDeadline() {
    return this.base.getDeadline();
  }
  getHost() {
    return this.base.getHost();
  }
  getAuthContext() {
    return this.base.getAuthContext();
  }
  getConnectionInfo() {
    return this.base.getConnectionInfo();
  }
  getMetricsRecorder() {
    return this.base.getMetricsRecorder();
  }
}
