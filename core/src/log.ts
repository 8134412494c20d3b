// Structured logging for the server: one JSON object per line on stderr ({level, time, msg,
// ...fields}) so logs can be shipped and queried, and a readable one-line form when a person
// watches the terminal. Deliberately tiny and dependency-free: the hot path (engine, scheduler)
// checks `enabled(level)` before building fields, and writing is a single `write` call.

export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (e.g. `{component: "gateway"}`). */
  child(fields: LogFields): Logger;
  /** Whether a line at `level` would be written; lets callers skip building costly fields. */
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  /** Minimum level written. Default: `KAON_LOG_LEVEL`, else "info". */
  level?: LogLevel;
  /** Where lines go. Default: process.stderr. */
  write?: (line: string) => void;
  /** Human-friendly lines instead of JSON. Default: true when stderr is a TTY. */
  pretty?: boolean;
  /** Fields added to every line. */
  fields?: LogFields;
}

export function isLogLevel(value: string): value is LogLevel {
  // Own keys only: `"toString" in LEVEL_RANK` is true and would disable every line.
  return Object.hasOwn(LEVEL_RANK, value);
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const envLevel = process.env.KAON_LOG_LEVEL;
  const level: LogLevel = options.level ?? (envLevel && isLogLevel(envLevel) ? envLevel : "info");
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const pretty = options.pretty ?? (options.write === undefined && process.stderr.isTTY === true);
  return makeLogger(LEVEL_RANK[level], write, pretty, options.fields ?? {});
}

/** A logger that drops everything; for tests and embedding. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
  enabled() {
    return false;
  },
};

function makeLogger(
  minRank: number,
  write: (line: string) => void,
  pretty: boolean,
  base: LogFields,
): Logger {
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (LEVEL_RANK[level] < minRank) return;
    const time = new Date().toISOString();
    const all = fields ? { ...base, ...fields } : base;
    write(pretty ? prettyLine(level, time, msg, all) : jsonLine(level, time, msg, all));
  };
  return {
    debug: (msg, fields) => emit("debug", msg, fields),
    info: (msg, fields) => emit("info", msg, fields),
    warn: (msg, fields) => emit("warn", msg, fields),
    error: (msg, fields) => emit("error", msg, fields),
    child: (fields) => makeLogger(minRank, write, pretty, { ...base, ...fields }),
    enabled: (level) => LEVEL_RANK[level] >= minRank,
  };
}

function jsonLine(level: LogLevel, time: string, msg: string, fields: LogFields): string {
  const record: LogFields = { level, time, msg };
  for (const [key, value] of Object.entries(fields)) {
    if (!(key in record)) record[key] = serializable(value);
  }
  return `${safeStringify(record)}\n`;
}

const COLORS: Record<LogLevel, string> = {
  debug: "\x1b[90m",
  info: "\x1b[36m",
  warn: "\x1b[33m",
  error: "\x1b[31m",
};

function prettyLine(level: LogLevel, time: string, msg: string, fields: LogFields): string {
  let stack = "";
  const parts: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    const v = serializable(value);
    if (key === "stack" && typeof v === "string") stack = v;
    else if (v !== null && typeof v === "object" && "stack" in v && typeof v.stack === "string") {
      stack = v.stack;
      parts.push(`${key}=${safeStringify({ ...v, stack: undefined })}`);
    } else parts.push(`${key}=${typeof v === "string" ? quoteIfNeeded(v) : safeStringify(v)}`);
  }
  const clock = time.slice(11, 23);
  const tag = `${COLORS[level]}${level.toUpperCase().padEnd(5)}\x1b[0m`;
  const rest = parts.length > 0 ? ` \x1b[90m${parts.join(" ")}\x1b[0m` : "";
  return `${clock} ${tag} ${msg}${rest}\n${stack ? `${stack}\n` : ""}`;
}

function quoteIfNeeded(s: string): string {
  return /^[^\s"=]*$/.test(s) && s !== "" ? s : JSON.stringify(s);
}

/** Errors become {name, message, stack, code?} so they survive JSON. */
function serializable(value: unknown): unknown {
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: value.message };
    if ("code" in value) out.code = value.code;
    if (value.stack) out.stack = value.stack;
    return out;
  }
  return value;
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value, (_key, v) => (typeof v === "bigint" ? v.toString() : v)) ?? "";
  } catch {
    return JSON.stringify(String(value));
  }
}
