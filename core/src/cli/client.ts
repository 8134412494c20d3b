// What every CLI command shares: finding the server and its token, building authenticated
// nice-grpc clients, printing results (tables for people, JSON for scripts) and turning
// failures into a readable message and an exit code. Commands never parse global options or
// catch RPC errors themselves; they call `ctx.client(...)` and `ctx.print(...)`.
//
// Server discovery: --address, else KAON_ADDRESS, else `<data-dir>/server.json` (written by a
// running `kaon server`), else 127.0.0.1:7070. Token: --token, else KAON_TOKEN, else
// `<data-dir>/admin.token` — the last only for a local server (see `isLocalAddress`): the admin
// token of this machine's server must never travel to whatever host an address names.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type BinaryCodec, ErrorDetails, type FieldViolation, messageToJson } from "@kaon/proto";
import {
  type CallOptions,
  type Channel,
  ChannelCredentials,
  type Client,
  ClientError,
  type ClientMiddlewareCall,
  createChannel,
  createClientFactory,
  Metadata,
  Status,
  type TsProtoServiceDefinition,
} from "nice-grpc";
import { ERROR_DETAILS_TRAILER } from "../api/errors.js";
import { DATA_FILES, DEFAULT_GRPC_LISTEN, readServerInfo, resolveDataDir } from "../config.js";

/** Options every command accepts (defined on the program in main.ts). */
export interface GlobalOptions {
  address?: string;
  token?: string;
  json?: boolean;
  dataDir?: string;
}

type Env = Record<string, string | undefined>;

/** Where the CLI will connect, and why (shown when the connection fails). */
export interface ServerTarget {
  address: string;
  /** e.g. "--address", "KAON_ADDRESS", "/home/me/.kaon/server.json", "default". */
  source: string;
  /** PEM root certificate to verify a TLS server with; plaintext when absent. */
  tlsRootCert?: string;
}

export function resolveTarget(options: GlobalOptions, env: Env = process.env): ServerTarget {
  const tlsCa = env.KAON_TLS_CA;
  const withTls = (target: ServerTarget, cert?: string): ServerTarget =>
    cert ? { ...target, tlsRootCert: cert } : target;
  if (options.address) return withTls({ address: options.address, source: "--address" }, tlsCa);
  if (env.KAON_ADDRESS)
    return withTls({ address: env.KAON_ADDRESS, source: "KAON_ADDRESS" }, tlsCa);
  const dataDir = resolveDataDir(options.dataDir, env);
  const info = readServerInfo(dataDir);
  if (info) {
    return withTls(
      { address: info.grpc, source: join(dataDir, DATA_FILES.serverInfo) },
      info.tls ? (tlsCa ?? info.tlsCert) : undefined,
    );
  }
  return withTls(
    {
      address: DEFAULT_GRPC_LISTEN,
      source: `the default (no ${join(dataDir, DATA_FILES.serverInfo)}: no server has run with that data directory)`,
    },
    tlsCa,
  );
}

export interface TokenSource {
  token: string;
  source: string;
}

/**
 * True for an address on this machine: a loopback host (localhost, 127.0.0.0/8, ::1), the
 * unspecified address a local server may publish (0.0.0.0, ::) or a unix socket. Only such
 * servers get the admin token read from the data directory.
 */
export function isLocalAddress(address: string): boolean {
  const text = address
    .trim()
    .toLowerCase()
    .replace(/^dns:(\/\/\/)?/, "");
  if (text.startsWith("unix:")) return true;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(text);
  const host = bracketed ? bracketed[1] : text.includes("::") ? text : text.replace(/:\d+$/, "");
  if (host === undefined) return false;
  return ["localhost", "::1", "::", "0.0.0.0"].includes(host) || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * The token to send to `address` (the resolved target's when omitted). The data directory's
 * admin token is used only for a local address; for a remote one the caller must pass
 * --token or KAON_TOKEN.
 */
export function resolveToken(
  options: GlobalOptions,
  env: Env = process.env,
  address: string = resolveTarget(options, env).address,
): TokenSource | undefined {
  if (options.token) return { token: options.token, source: "--token" };
  if (env.KAON_TOKEN) return { token: env.KAON_TOKEN, source: "KAON_TOKEN" };
  if (!isLocalAddress(address)) return undefined;
  const path = join(resolveDataDir(options.dataDir, env), DATA_FILES.adminToken);
  try {
    const token = readFileSync(path, "utf8").trim();
    return token ? { token, source: path } : undefined;
  } catch {
    return undefined;
  }
}

/** A ClientError that carries the server's field violations (INVALID_ARGUMENT). */
export class KaonClientError extends ClientError {
  readonly violations: FieldViolation[];
  constructor(error: ClientError, violations: FieldViolation[]) {
    super(error.path, error.code, error.details);
    this.violations = violations;
  }
}

/** Client middleware: decodes the `kaon-error-details-bin` trailer into the thrown error. */
async function* errorDetails<Request, Response>(
  call: ClientMiddlewareCall<Request, Response>,
  options: CallOptions,
) {
  let trailer: Metadata | undefined;
  try {
    return yield* call.next(call.request, {
      ...options,
      onTrailer(received) {
        trailer = received;
        options.onTrailer?.(received);
      },
    });
  } catch (err) {
    const bytes = trailer?.get(ERROR_DETAILS_TRAILER);
    if (err instanceof ClientError && bytes instanceof Uint8Array) {
      throw new KaonClientError(err, ErrorDetails.decode(bytes).violations);
    }
    throw err;
  }
}

/** A user-facing failure a command reports itself (e.g. a file that does not parse). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Process exit codes of `kaon`. */
export const EXIT = {
  ok: 0,
  /** The server (or the command) reported an error. */
  failure: 1,
  /** Bad command line. */
  usage: 2,
  /** No server reachable at the resolved address. */
  unreachable: 3,
} as const;

export interface Column<Row> {
  header: string;
  value: (row: Row) => unknown;
}

/** Handed to every command module's `register(program, ctx)`. */
export class CliContext {
  private channel: Channel | undefined;
  private readonly clients = new Map<TsProtoServiceDefinition, unknown>();

  constructor(
    private readonly globalsOf: () => GlobalOptions,
    readonly out: (text: string) => void = (text) => process.stdout.write(text),
    readonly err: (text: string) => void = (text) => process.stderr.write(text),
    private readonly env: Env = process.env,
  ) {}

  globals(): GlobalOptions {
    return this.globalsOf();
  }

  /** Whether the user asked for machine-readable output. */
  get json(): boolean {
    return this.globals().json === true;
  }

  target(): ServerTarget {
    return resolveTarget(this.globals(), this.env);
  }

  /** An authenticated client of `definition` for the resolved server. */
  client<Definition extends TsProtoServiceDefinition>(definition: Definition): Client<Definition> {
    const cached = this.clients.get(definition);
    if (cached) return cached as Client<Definition>;
    const target = this.target();
    const credentials = target.tlsRootCert
      ? ChannelCredentials.createSsl(readFileSync(target.tlsRootCert))
      : ChannelCredentials.createInsecure();
    this.channel ??= createChannel(target.address, credentials);
    const token = resolveToken(this.globals(), this.env, target.address);
    const metadata = Metadata();
    if (token) metadata.set("authorization", `Bearer ${token.token}`);
    const client = createClientFactory()
      .use(errorDetails)
      .create(definition, this.channel, { "*": { metadata } });
    this.clients.set(definition, client);
    return client;
  }

  /** Prints `value` as JSON with --json, else what `human` returns. */
  print(value: unknown, human: () => string): void {
    this.out(this.json ? `${JSON.stringify(value, null, 2)}\n` : ensureNewline(human()));
  }

  /** Prints a kaon.v1 message: proto3 JSON with --json, else what `human` returns. */
  printMessage<T>(codec: BinaryCodec<T>, typeName: string, message: T, human: () => string) {
    this.print(this.json ? messageToJson(codec, typeName, message) : undefined, human);
  }

  /** Closes the connection so the process can exit. */
  close(): void {
    this.channel?.close();
    this.channel = undefined;
    this.clients.clear();
  }

  /** The message and exit code for a failure, written to stderr by main. */
  describeError(error: unknown): { message: string; exitCode: number } {
    if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
    if (error instanceof ClientError) return this.describeRpcError(error);
    const message = error instanceof Error ? error.message : String(error);
    return { message, exitCode: EXIT.failure };
  }

  private describeRpcError(error: ClientError): { message: string; exitCode: number } {
    const violations = error instanceof KaonClientError ? error.violations : [];
    if (this.json) {
      return {
        message: JSON.stringify({
          error: { code: Status[error.code], message: error.details, violations },
        }),
        exitCode: error.code === Status.UNAVAILABLE ? EXIT.unreachable : EXIT.failure,
      };
    }
    if (error.code === Status.UNAVAILABLE) {
      const target = this.target();
      return {
        message: `cannot reach a kaon server at ${target.address} (address from ${target.source}): ${error.details}\nStart one with \`kaon server\` (in another terminal), or point at a running one with --address host:port or KAON_ADDRESS.`,
        exitCode: EXIT.unreachable,
      };
    }
    if (error.code === Status.UNAUTHENTICATED) {
      const target = this.target();
      const token = resolveToken(this.globals(), this.env, target.address);
      const used = token
        ? `the token from ${token.source} was refused`
        : isLocalAddress(target.address)
          ? "no token was found"
          : `no token was sent: ${target.address} is not a local server, so the admin token of the data directory is not sent to it; pass --token or set KAON_TOKEN`;
      return { message: `not authenticated (${used}): ${error.details}`, exitCode: EXIT.failure };
    }
    if (violations.length > 0) {
      const summary = error.details.split("\n")[0] ?? "";
      return { message: `${summary}\n${formatViolationList(violations)}`, exitCode: EXIT.failure };
    }
    return { message: `${Status[error.code]}: ${error.details}`, exitCode: EXIT.failure };
  }
}

/** `  steps[2].next[0].to: unknown step 'valdate' (did you mean 'validate'?)`, one a line. */
export function formatViolationList(violations: readonly FieldViolation[]): string {
  return violations
    .map((v) => `  ${v.field || "(request)"}: ${v.description}${v.hint ? ` (${v.hint})` : ""}`)
    .join("\n");
}

/** A plain-text table with a header row; columns padded to their widest cell. */
export function formatTable<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): string {
  const cells = rows.map((row) => columns.map((c) => cellText(c.value(row))));
  const widths = columns.map((c, i) =>
    Math.max(c.header.length, ...cells.map((r) => (r[i] ?? "").length)),
  );
  const line = (values: string[]) =>
    values
      .map((v, i) => (i === values.length - 1 ? v : v.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(columns.map((c) => c.header.toUpperCase())), ...cells.map(line)].join("\n");
}

function cellText(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (value instanceof Date) return value.toISOString().replace(/\.\d{3}Z$/, "Z");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value).replace(/\s+/g, " ");
}

function ensureNewline(text: string): string {
  return text.endsWith("\n") || text === "" ? text : `${text}\n`;
}
