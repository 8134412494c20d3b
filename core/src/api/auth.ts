// Authentication and authorization for every gRPC and HTTP call (ARCHITECTURE §9). Auth is on
// by default: the first start writes an admin token (`<data-dir>/admin.token`, 0600) that local
// clients pick up by themselves, and an HMAC secret (`<data-dir>/secret.key`, 0600) that signs
// step-scoped tokens. A step token is handed to one attempt of one step; it can call only
// JobService and stops working when the attempt ends (the engine plugs `isAttemptLive` in).
//
// Future work: namespaced tokens with roles (viewer, operator, admin). They fit as a third
// `AuthContext` kind, `{kind: "user", subject, namespace, role}`, issued and checked by the same
// Authenticator; `authorize` then consults the role per method (reads need viewer, Start/Stop
// need operator). Services already branch on `context.auth.kind`, so adding a kind is additive.
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type CallContext,
  ServerError,
  type ServerMiddleware,
  type ServerMiddlewareCall,
  Status,
} from "nice-grpc";
import { DATA_FILES } from "../config.js";
import type { Logger } from "../log.js";

/** One attempt of one step instance of one run. */
export interface StepIdentity {
  runId: string;
  /** Step instance path, e.g. `train` or `sweep[3].train`. */
  path: string;
  attempt: number;
}

/** Who is calling; set on every authenticated call as `context.auth`. */
export type AuthContext = { kind: "admin" } | ({ kind: "step" } & StepIdentity);

/** The extra call context every kaon service implementation receives. */
export type CallContextExt = { auth: AuthContext };

/** Full name of the only service a step token may call. */
export const JOB_SERVICE = "kaon.v1.JobService";

const STEP_TOKEN_PREFIX = "kst_";
/** Verified step tokens kept by StepTokens (a few hundred bytes each). */
const MAX_CACHED_TOKENS = 10_000;

/** Issues and verifies step-scoped tokens: self-contained, HMAC-signed, no DB lookup. */
export class StepTokens {
  /**
   * Whether the attempt a token names is still running. The engine replaces this so that a
   * token stops working the moment its attempt ends; until then every signed token is live.
   */
  isAttemptLive: (identity: StepIdentity) => boolean;
  private readonly key: Buffer;
  /**
   * Tokens whose signature was verified, with their identity: a job calls Report thousands
   * of times with one token, and the HMAC plus JSON decode was ~10 % of a call's CPU. Only
   * good signatures are cached (a forged token always pays the HMAC); liveness is checked on
   * every call, never cached. Bounded: cleared when full.
   */
  private readonly verified = new Map<string, StepIdentity>();

  constructor(
    secret: Buffer,
    options: { isAttemptLive?: (identity: StepIdentity) => boolean } = {},
  ) {
    if (secret.length < 32) throw new Error("step token secret must be at least 32 bytes");
    // A derived key keeps step tokens from colliding with any other use of secret.key.
    this.key = createHmac("sha256", secret).update("kaon step token v1").digest();
    this.isAttemptLive = options.isAttemptLive ?? (() => true);
  }

  issue(identity: StepIdentity): string {
    const payload = Buffer.from(
      JSON.stringify({ r: identity.runId, p: identity.path, a: identity.attempt }),
    ).toString("base64url");
    return `${STEP_TOKEN_PREFIX}${payload}.${this.sign(payload)}`;
  }

  /** The identity of a well-signed token whose attempt is live, else null. */
  verify(token: string): StepIdentity | null {
    const identity = this.decode(token);
    return identity && this.isAttemptLive(identity) ? identity : null;
  }

  /** The identity of a well-signed token, live or not, else null. */
  decode(token: string): StepIdentity | null {
    const known = this.verified.get(token);
    if (known) return { ...known };
    const identity = this.decodeUncached(token);
    if (identity) {
      if (this.verified.size >= MAX_CACHED_TOKENS) this.verified.clear();
      this.verified.set(token, { ...identity });
    }
    return identity;
  }

  private decodeUncached(token: string): StepIdentity | null {
    if (!token.startsWith(STEP_TOKEN_PREFIX)) return null;
    const [payload, signature, extra] = token.slice(STEP_TOKEN_PREFIX.length).split(".");
    if (payload === undefined || signature === undefined || extra !== undefined) return null;
    if (!equalSecrets(signature, this.sign(payload))) return null;
    try {
      const value: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
      if (value === null || typeof value !== "object") return null;
      const { r, p, a } = value as Record<string, unknown>;
      if (typeof r !== "string" || typeof p !== "string" || typeof a !== "number") return null;
      return { runId: r, path: p, attempt: a };
    } catch {
      return null;
    }
  }

  static isStepToken(token: string): boolean {
    return token.startsWith(STEP_TOKEN_PREFIX);
  }

  private sign(payload: string): string {
    return createHmac("sha256", this.key)
      .update(STEP_TOKEN_PREFIX)
      .update(payload)
      .digest("base64url");
  }
}

/** The secrets of one data directory. */
export interface AuthFiles {
  adminToken: string;
  adminTokenPath: string;
  secret: Buffer;
  secretKeyPath: string;
}

/**
 * Reads the admin token and HMAC secret from the data directory, creating them (0600) on first
 * start. Warns when an existing file is readable by others; does not rewrite it.
 */
export function loadOrCreateAuthFiles(dataDir: string, log?: Logger): AuthFiles {
  const adminTokenPath = join(dataDir, DATA_FILES.adminToken);
  const secretKeyPath = join(dataDir, DATA_FILES.secretKey);
  const adminToken = readOrCreate(adminTokenPath, () => randomBytes(32).toString("base64url"), log);
  const secretText = readOrCreate(secretKeyPath, () => randomBytes(32).toString("base64url"), log);
  const secret = Buffer.from(secretText, "base64url");
  if (adminToken.length < 16) {
    throw new Error(
      `${adminTokenPath} holds a token too short to be safe; delete the file and restart to generate a new one`,
    );
  }
  if (secret.length < 32) {
    throw new Error(
      `${secretKeyPath} holds fewer than 32 bytes; delete the file and restart to generate a new one (running steps lose their tokens)`,
    );
  }
  return { adminToken, adminTokenPath, secret, secretKeyPath };
}

function readOrCreate(path: string, generate: () => string, log?: Logger): string {
  try {
    // "wx" fails if the file exists, so two servers starting at once never overwrite each other.
    writeFileSync(path, `${generate()}\n`, { mode: 0o600, flag: "wx" });
    log?.info("generated secret", { file: path });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    const mode = statSync(path).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      log?.warn("secret file is readable by other users; run chmod 600 on it", {
        file: path,
        mode: mode.toString(8),
      });
    }
  }
  return readFileSync(path, "utf8").trim();
}

export interface AuthenticatorOptions {
  adminToken: string;
  stepTokens: StepTokens;
  /** Shown in UNAUTHENTICATED messages so the user knows where the token lives. */
  adminTokenPath: string;
}

/** Decides who a caller is (authentication) and whether it may call a method (authorization). */
export class Authenticator {
  readonly stepTokens: StepTokens;
  readonly adminTokenPath: string;
  private readonly adminDigest: Buffer;

  constructor(options: AuthenticatorOptions) {
    this.stepTokens = options.stepTokens;
    this.adminTokenPath = options.adminTokenPath;
    this.adminDigest = digest(options.adminToken);
  }

  /**
   * Authenticates an `authorization` header value for a call of `methodPath`
   * (`/kaon.v1.RunService/GetRun`). Throws UNAUTHENTICATED or PERMISSION_DENIED ServerErrors.
   */
  authenticate(authorization: string | undefined, methodPath: string): AuthContext {
    const auth = this.identify(authorization);
    authorize(auth, methodPath);
    return auth;
  }

  /** Who the `authorization` header value names; throws UNAUTHENTICATED if nobody valid. */
  identify(authorization: string | undefined): AuthContext {
    const token = bearerToken(authorization);
    if (token === undefined) {
      throw new ServerError(
        Status.UNAUTHENTICATED,
        `missing credentials: send the header "authorization: Bearer <token>"; ${this.whereIsTheToken()}`,
      );
    }
    return this.identifyToken(token);
  }

  private identifyToken(token: string): AuthContext {
    if (StepTokens.isStepToken(token)) {
      const identity = this.stepTokens.decode(token);
      if (identity === null) {
        throw new ServerError(
          Status.UNAUTHENTICATED,
          "invalid step token: the signature does not match this server (was the data directory's secret.key replaced?)",
        );
      }
      if (!this.stepTokens.isAttemptLive(identity)) {
        throw new ServerError(
          Status.UNAUTHENTICATED,
          `step token of run '${identity.runId}' step '${identity.path}' attempt ${identity.attempt} is no longer valid: the attempt has ended`,
        );
      }
      return { kind: "step", ...identity };
    }
    if (equalDigests(digest(token), this.adminDigest)) return { kind: "admin" };
    throw new ServerError(
      Status.UNAUTHENTICATED,
      `invalid token: it is not this server's admin token; ${this.whereIsTheToken()}`,
    );
  }

  private whereIsTheToken(): string {
    return `the admin token of this server is in ${this.adminTokenPath} (clients read it from there, or from the KAON_TOKEN environment variable)`;
  }
}

/** Throws PERMISSION_DENIED when `auth` may not call `methodPath`. */
export function authorize(auth: AuthContext, methodPath: string): void {
  if (auth.kind === "admin") return;
  const service = serviceOfPath(methodPath);
  if (service !== JOB_SERVICE) {
    throw new ServerError(
      Status.PERMISSION_DENIED,
      `a step token may call only ${JOB_SERVICE}; ${methodPath.replace(/^\//, "")} needs an admin token`,
    );
  }
}

/** `/kaon.v1.RunService/GetRun` → `kaon.v1.RunService`. */
export function serviceOfPath(methodPath: string): string {
  const parts = methodPath.split("/");
  return parts[1] ?? "";
}

/** nice-grpc middleware: authenticates the call and sets `context.auth`. */
export function authMiddleware(authenticator: Authenticator): ServerMiddleware<CallContextExt> {
  return async function* authenticate<Request, Response>(
    call: ServerMiddlewareCall<Request, Response, CallContextExt>,
    context: CallContext,
  ) {
    const auth = authenticator.authenticate(
      context.metadata.get("authorization"),
      call.method.path,
    );
    return yield* call.next(call.request, { ...context, auth });
  };
}

function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const match = /^\s*bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

function equalDigests(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function equalSecrets(a: string, b: string): boolean {
  return equalDigests(digest(a), digest(b));
}
