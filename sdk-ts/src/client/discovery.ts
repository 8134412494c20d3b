// Finding a server without being told: explicit options, then KAON_ADDRESS / KAON_TOKEN, then
// the data directory a local `kaon server` publishes (`$KAON_HOME` or `~/.kaon`: `server.json`
// with the gRPC address, `admin.token`). Mirrors core/src/config.ts, which writes those files.
// The data directory's admin token is sent only to a local address (`isLocalAddress`): it must
// never travel to whatever host an address names.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** The default gRPC address of `kaon server`. */
export const DEFAULT_ADDRESS = "127.0.0.1:7070";

/** Where to connect and with what, after discovery. */
export interface ServerTarget {
  address: string;
  token: string | undefined;
  /** Path of a certificate to trust when the local server uses TLS. */
  tlsCertPath: string | undefined;
  /** Where each value came from, for error messages. */
  source: string;
  /** The data directory consulted. */
  dataDir: string;
}

/** What the caller may set; anything unset is discovered. */
export interface DiscoveryOptions {
  address?: string;
  token?: string;
  /** Data directory of a local server; default `$KAON_HOME`, else `~/.kaon`. */
  dataDir?: string;
  env?: Record<string, string | undefined>;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

/** The data directory: explicit, else `$KAON_HOME`, else `~/.kaon`. */
export function dataDirectory(
  explicit: string | undefined,
  env: Record<string, string | undefined>,
) {
  const chosen = nonEmpty(explicit) ?? nonEmpty(env.KAON_HOME);
  if (chosen === undefined) return join(homedir(), ".kaon");
  if (chosen.startsWith("~/")) return join(homedir(), chosen.slice(2));
  return resolve(chosen);
}

interface ServerJson {
  grpc?: unknown;
  tls?: unknown;
  tlsCert?: unknown;
}

function readServerJson(dataDir: string): ServerJson | undefined {
  try {
    const value: unknown = JSON.parse(readFileSync(join(dataDir, "server.json"), "utf8"));
    return value !== null && typeof value === "object" ? (value as ServerJson) : undefined;
  } catch {
    return undefined;
  }
}

function readToken(dataDir: string): string | undefined {
  try {
    return nonEmpty(readFileSync(join(dataDir, "admin.token"), "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * True for this machine: a loopback host (localhost, 127.0.0.0/8, ::1), the unspecified address
 * a local server may publish (0.0.0.0, ::), or a unix socket.
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

/** Resolves address and token: options, then environment, then the local data directory. */
export function discoverServer(options: DiscoveryOptions = {}): ServerTarget {
  const env = options.env ?? process.env;
  const dataDir = dataDirectory(options.dataDir, env);
  const info = readServerJson(dataDir);
  const published = typeof info?.grpc === "string" ? info.grpc : undefined;
  const tlsCertPath =
    info?.tls === true && typeof info.tlsCert === "string" ? info.tlsCert : undefined;

  let address: string;
  let source: string;
  if (nonEmpty(options.address)) {
    address = nonEmpty(options.address)!;
    source = "the address option";
  } else if (nonEmpty(env.KAON_ADDRESS)) {
    address = nonEmpty(env.KAON_ADDRESS)!;
    source = "KAON_ADDRESS";
  } else if (published) {
    address = published;
    source = `${join(dataDir, "server.json")}`;
  } else {
    address = DEFAULT_ADDRESS;
    source = `the default (no ${join(dataDir, "server.json")})`;
  }
  const token =
    nonEmpty(options.token) ??
    nonEmpty(env.KAON_TOKEN) ??
    (isLocalAddress(address) ? readToken(dataDir) : undefined);
  // KAON_TLS_CA names a CA for any address; a published certificate applies only to the
  // published address (the same rule as the CLI, core/src/cli/client.ts).
  const cert = nonEmpty(env.KAON_TLS_CA) ?? (address === published ? tlsCertPath : undefined);
  return { address, token, tlsCertPath: cert, source, dataDir };
}
