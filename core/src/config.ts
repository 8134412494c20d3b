// Server configuration: every knob `kaon server` has, its default, and where it comes from
// (flag, then environment variable, then default). Also the data directory's well-known files,
// among them `server.json`, which a running server writes so local clients (CLI, SDKs) find
// it without being told an address.
//
// | setting      | flag            | env               | default                       |
// |--------------|-----------------|-------------------|-------------------------------|
// | data dir     | --data-dir      | KAON_HOME         | ~/.kaon                       |
// | gRPC listen  | --grpc-listen   | KAON_GRPC_LISTEN  | 127.0.0.1:7070 (port 0 = any) |
// | HTTP listen  | --http-listen   | KAON_HTTP_LISTEN  | 127.0.0.1:7080 (port 0 = any) |
// | database     | --db            | KAON_DB           | sqlite file <data-dir>/kaon.db|
// | TLS cert/key | --tls-cert/-key | KAON_TLS_CERT/KEY | none (plaintext on loopback)  |
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import type { StepTypeSettings } from "./steps/step-type.js";

export const DEFAULT_GRPC_LISTEN = "127.0.0.1:7070";
export const DEFAULT_HTTP_LISTEN = "127.0.0.1:7080";
/** Time in-flight calls get to finish on shutdown before they are cancelled. */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Largest HTTP request body the gateway reads, and largest gRPC message the server accepts. */
export const DEFAULT_MAX_HTTP_BODY_BYTES = 4 * 1024 * 1024;

/** Files in the data directory. */
export const DATA_FILES = {
  serverInfo: "server.json",
  adminToken: "admin.token",
  secretKey: "secret.key",
  sqlite: "kaon.db",
} as const;

/** A configuration value that cannot be used; the message names the setting and the fix. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

export interface ListenAddress {
  host: string;
  /** 0 lets the OS pick a free port; the bound port is reported by the running server. */
  port: number;
}

export type DbConfig = { kind: "sqlite"; file: string } | { kind: "postgres"; url: string };

export interface TlsConfig {
  certFile: string;
  keyFile: string;
}

export interface ServerConfig {
  dataDir: string;
  grpcListen: ListenAddress;
  httpListen: ListenAddress;
  db: DbConfig;
  tls?: TlsConfig;
  shutdownGraceMs: number;
  maxHttpBodyBytes: number;
  /**
   * Settings step types read (named SQL connections, the Python interpreter of python steps,
   * Spark versions, http allow-list); unset keys keep their defaults. Embedders such as
   * `kaon demo` set them; `kaon server` has no flags for them yet.
   */
  stepTypeSettings?: Partial<StepTypeSettings>;
}

/** What the command line may set; unset values fall back to the environment, then defaults. */
export interface ServerFlags {
  dataDir?: string | undefined;
  grpcListen?: string | undefined;
  httpListen?: string | undefined;
  db?: string | undefined;
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
  shutdownGraceMs?: number | undefined;
}

type Env = Record<string, string | undefined>;

/** `--data-dir`, else `KAON_HOME`, else `~/.kaon`; always absolute. */
export function resolveDataDir(flag?: string, env: Env = process.env): string {
  const chosen = nonEmpty(flag) ?? nonEmpty(env.KAON_HOME);
  if (chosen === undefined) return join(homedir(), ".kaon");
  // A quoted `--data-dir "~"` or `KAON_HOME=~/x` in a unit file reaches us unexpanded.
  if (chosen === "~") return homedir();
  if (chosen.startsWith("~/")) return join(homedir(), chosen.slice(2));
  return resolve(chosen);
}

export function resolveServerConfig(flags: ServerFlags = {}, env: Env = process.env): ServerConfig {
  const dataDir = resolveDataDir(flags.dataDir, env);
  const grpcListen = parseListenAddress(
    nonEmpty(flags.grpcListen) ?? nonEmpty(env.KAON_GRPC_LISTEN) ?? DEFAULT_GRPC_LISTEN,
    "--grpc-listen",
  );
  const httpListen = parseListenAddress(
    nonEmpty(flags.httpListen) ?? nonEmpty(env.KAON_HTTP_LISTEN) ?? DEFAULT_HTTP_LISTEN,
    "--http-listen",
  );
  const db = parseDb(nonEmpty(flags.db) ?? nonEmpty(env.KAON_DB), dataDir);
  const certFile = nonEmpty(flags.tlsCert) ?? nonEmpty(env.KAON_TLS_CERT);
  const keyFile = nonEmpty(flags.tlsKey) ?? nonEmpty(env.KAON_TLS_KEY);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    throw new ConfigError(
      `TLS needs both a certificate and a key: got only ${certFile ? "--tls-cert" : "--tls-key"}; pass both --tls-cert FILE and --tls-key FILE, or neither`,
    );
  }
  const config: ServerConfig = {
    dataDir,
    grpcListen,
    httpListen,
    db,
    shutdownGraceMs: flags.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS,
    maxHttpBodyBytes: DEFAULT_MAX_HTTP_BODY_BYTES,
  };
  if (certFile !== undefined && keyFile !== undefined) {
    config.tls = { certFile: resolve(certFile), keyFile: resolve(keyFile) };
  }
  return config;
}

/** Parses `host:port` (`[::1]:7070` for IPv6). `what` names the setting in errors. */
export function parseListenAddress(text: string, what: string): ListenAddress {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || host === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(
      `${what}: '${text}' is not a listen address; use host:port, e.g. 127.0.0.1:7070 (port 0 picks a free port; [::1]:7070 for IPv6)`,
    );
  }
  return { host, port };
}

export function formatAddress(address: ListenAddress): string {
  return address.host.includes(":")
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}

/**
 * `postgres://…` / `postgresql://…` selects PostgreSQL; `sqlite:FILE`, a plain path or
 * `:memory:` selects SQLite. Default: `<data-dir>/kaon.db`.
 */
export function parseDb(text: string | undefined, dataDir: string): DbConfig {
  if (text === undefined) return { kind: "sqlite", file: join(dataDir, DATA_FILES.sqlite) };
  if (/^postgres(ql)?:\/\//.test(text)) return { kind: "postgres", url: text };
  const file = text.startsWith("sqlite:") ? text.slice("sqlite:".length) : text;
  if (file === ":memory:") return { kind: "sqlite", file };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(file) || file === "") {
    throw new ConfigError(
      `--db: '${text}' is not a supported database; use postgres://user:pass@host:5432/db for PostgreSQL, or a file path (or sqlite:FILE) for SQLite`,
    );
  }
  return { kind: "sqlite", file: isAbsolute(file) ? file : resolve(file) };
}

/** Creates the data directory (mode 0700: it holds the admin token) if it does not exist. */
export function ensureDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
}

/** What a running server publishes in `<data-dir>/server.json` for local clients. */
export interface ServerInfo {
  /** gRPC address clients dial, `host:port`. */
  grpc: string;
  /** HTTP gateway address, `host:port`. */
  http: string;
  pid: number;
  /** Whether both listeners use TLS (clients then verify against `tlsCert`). */
  tls?: boolean;
  tlsCert?: string;
  startedAt?: string;
}

export function serverInfoPath(dataDir: string): string {
  return join(dataDir, DATA_FILES.serverInfo);
}

/** Written atomically (temp file + rename) so a reader never sees half a file. */
export function writeServerInfo(dataDir: string, info: ServerInfo): void {
  const path = serverInfoPath(dataDir);
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o644 });
  chmodSync(tmp, 0o644);
  renameSync(tmp, path);
}

/** The published info, or undefined when no server has written one (or it is unreadable). */
export function readServerInfo(dataDir: string): ServerInfo | undefined {
  let text: string;
  try {
    text = readFileSync(serverInfoPath(dataDir), "utf8");
  } catch {
    return undefined;
  }
  try {
    const value: unknown = JSON.parse(text);
    if (
      value !== null &&
      typeof value === "object" &&
      "grpc" in value &&
      typeof value.grpc === "string" &&
      "http" in value &&
      typeof value.http === "string"
    ) {
      return value as ServerInfo;
    }
  } catch {
    // fall through: a corrupt file is the same as none
  }
  return undefined;
}

/** Removes server.json if it is ours (another server may have taken over the data dir). */
export function removeServerInfo(dataDir: string, pid = process.pid): void {
  const info = readServerInfo(dataDir);
  if (info && info.pid !== pid) return;
  rmSync(serverInfoPath(dataDir), { force: true });
}

/** Turns a bound wildcard host into one a local client can dial. */
export function dialableHost(host: string): string {
  if (host === "0.0.0.0" || host === "") return "127.0.0.1";
  if (host === "::" || host === "[::]") return "::1";
  return host;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value;
}
