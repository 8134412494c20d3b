// `sql`: a query through knex against a named connection from server settings — the Hive
// query of Meson's pipelines, for selecting a cohort. Values are bound (`:name` with a
// `params` object, `?` with a `params` list), never spliced into the query text. Rows stream
// to `rows.jsonl` in the attempt's working directory (one JSON object per line), so a large
// cohort never sits in core's memory; the outputs are `row_count` and `rows_file`.

import { once } from "node:events";
import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";
import knexFactory, { type Knex } from "knex";
import pg from "pg";
import { ConfigCheck, show } from "../config-check.js";
import type { EndResult, InlineStepType, JsonValue, StepContext } from "../step-type.js";
import { configScope, renderConfigString, StepConfigError } from "../templating.js";

export const ROWS_FILE = "rows.jsonl";
const MAX_QUERY_LENGTH = 1024 * 1024;
const BIND_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

// node-pg hands 64-bit integers (int8: count(*), bigint, bigserial) over as text; rows.jsonl
// promises numbers when exact (as SQLite's rows have them), so this client parses them.
const PG_INT8_OID = 20;
const pgTypes: Knex.PgCustomTypesConfig = {
  getTypeParser(oid, format) {
    if (oid === PG_INT8_OID && format !== "binary") {
      return (text: string) => {
        const n = Number(text);
        return Number.isSafeInteger(n) ? n : text;
      };
    }
    return pg.types.getTypeParser(oid, format === "binary" ? "binary" : "text");
  },
};

/** knex configuration for a connection string: a postgres URL, or a SQLite file path. */
export function knexConfigFor(connection: string): Knex.Config {
  if (/^postgres(ql)?:\/\//i.test(connection)) {
    return {
      client: "pg",
      connection: { connectionString: connection, types: pgTypes },
      pool: { min: 0, max: 4 },
    };
  }
  const filename = connection.replace(/^sqlite:(\/\/)?/i, "");
  return {
    client: "better-sqlite3",
    connection: { filename },
    useNullAsDefault: true,
    pool: { min: 1, max: 1 },
  };
}

// One knex instance (and pool) per connection string, for the life of the process.
const instances = new Map<string, Knex>();

function knexFor(connection: string): Knex {
  let k = instances.get(connection);
  if (!k) {
    k = knexFactory(knexConfigFor(connection));
    instances.set(connection, k);
  }
  return k;
}

/** Closes every cached connection pool (server shutdown, tests). */
export async function closeSqlConnections(): Promise<void> {
  const all = [...instances.values()];
  instances.clear();
  await Promise.all(all.map((k) => k.destroy()));
}

/** Makes a row value JSON: bytes as base64, 64-bit ints as numbers when exact. */
function jsonCell(value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array)
    return Buffer.from(value).toString("base64");
  if (typeof value === "bigint")
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  if (typeof value === "object") return JSON.parse(JSON.stringify(value)) as JsonValue;
  return value as JsonValue;
}

function jsonRow(row: Record<string, unknown>): string {
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(row)) out[k] = jsonCell(v);
  return JSON.stringify(out);
}

function bindValue(v: JsonValue, scope: ReturnType<typeof configScope>, field: string): Knex.Value {
  if (typeof v === "string") return renderConfigString(v, scope, field);
  if (v !== null && typeof v === "object") return JSON.stringify(v);
  return v;
}

function bindings(ctx: StepContext): Knex.RawBinding[] | Record<string, Knex.Value> | undefined {
  const params = ctx.config.params;
  if (params === undefined || params === null) return undefined;
  const scope = configScope(ctx);
  if (Array.isArray(params)) return params.map((v, i) => bindValue(v, scope, `params[${i}]`));
  const out: Record<string, Knex.Value> = {};
  for (const [k, v] of Object.entries(params as Record<string, JsonValue>)) {
    out[k] = bindValue(v, scope, `params.${k}`);
  }
  return out;
}

function interrupted(signal: AbortSignal): Error {
  return new Error(`sql interrupted: ${String(signal.reason ?? "aborted")}`);
}

type Binds = Knex.RawBinding[] | Record<string, Knex.Value> | undefined;
type RowSink = (row: Record<string, unknown>) => Promise<void>;

/** PostgreSQL: rows stream through a cursor (pg-query-stream), with backpressure. */
async function runStreaming(
  knex: Knex,
  query: string,
  binds: Binds,
  write: RowSink,
  signal: AbortSignal,
) {
  const raw = binds === undefined ? knex.raw(query) : knex.raw(query, binds as Knex.RawBinding[]);
  const rows = raw.stream();
  const onAbort = () => rows.destroy(interrupted(signal));
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const row of rows) await write(row as Record<string, unknown>);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** The subset of better-sqlite3 used here. */
interface SqliteDatabase {
  prepare(sql: string): {
    reader: boolean;
    iterate(...binds: unknown[]): IterableIterator<Record<string, unknown>>;
    run(...binds: unknown[]): unknown;
  };
}

/**
 * SQLite: knex's stream cannot run statements that return no rows, so the statement is
 * prepared on the pooled better-sqlite3 connection directly: readers are iterated (yielding to
 * the event loop every 1,000 rows), everything else is run.
 */
async function runSqlite(
  knex: Knex,
  query: string,
  binds: Binds,
  write: RowSink,
  signal: AbortSignal,
) {
  const client = knex.client as {
    acquireConnection(): Promise<SqliteDatabase>;
    releaseConnection(c: SqliteDatabase): Promise<void>;
  };
  const db = await client.acquireConnection();
  try {
    const stmt = db.prepare(query);
    // Positional values are spread; named ones go as one object (`:name` in the query).
    const spread: unknown[] =
      binds === undefined ? [] : Array.isArray(binds) ? binds.map(sqliteValue) : [mapValues(binds)];
    if (!stmt.reader) {
      stmt.run(...spread);
      return;
    }
    let n = 0;
    for (const row of stmt.iterate(...spread)) {
      await write(row);
      if (++n % 1000 === 0) {
        await new Promise((r) => setImmediate(r));
        if (signal.aborted) throw interrupted(signal);
      }
    }
  } finally {
    await client.releaseConnection(db);
  }
}

/** better-sqlite3 binds numbers, strings, bigints, buffers and null; not booleans. */
function sqliteValue(v: unknown): unknown {
  return typeof v === "boolean" ? (v ? 1 : 0) : v;
}

function mapValues(binds: Record<string, Knex.Value>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(binds)) out[k] = sqliteValue(v);
  return out;
}

export const sqlStepType: InlineStepType = {
  kind: "inline",
  name: "sql",
  description:
    "Runs a SQL query on a named connection; rows go to rows.jsonl, the count to an output.",
  validate(config, path, settings) {
    const check = new ConfigCheck(config, path, "sql").allowKeys(["connection", "query", "params"]);
    const name = check.string("connection", { required: true });
    if (name !== undefined && name.trim() !== "" && !Object.hasOwn(settings.sqlConnections, name)) {
      const known = Object.keys(settings.sqlConnections);
      check.add(
        check.field("connection"),
        `unknown sql connection ${show(name)}`,
        known.length > 0
          ? `configured connections: ${known.join(", ")}`
          : "the server has no sql connections configured (settings.sqlConnections)",
      );
    }
    check.string("query", { required: true, maxLength: MAX_QUERY_LENGTH });
    const params = check.value("params");
    if (params !== undefined && params !== null) {
      const f = check.field("params");
      if (Array.isArray(params)) {
        params.forEach((v, i) => {
          if (typeof v === "string") check.template(v, `${f}[${i}]`);
        });
      } else if (typeof params === "object") {
        for (const [k, v] of Object.entries(params)) {
          if (!BIND_NAME.test(k))
            check.add(`${f}.${k}`, `'${k}' is not a bind name (letters, digits, _)`);
          if (typeof v === "string") check.template(v, `${f}.${k}`);
        }
      } else {
        check.add(
          f,
          `'params' must be an object (for :name) or a list (for ?), got ${show(params)}`,
        );
      }
    }
    return check.violations;
  },
  async run(ctx, report, signal): Promise<EndResult> {
    const name = ctx.config.connection as string;
    // Own keys only: "constructor" must not find Object.prototype's function.
    const connection = Object.hasOwn(ctx.settings.sqlConnections, name)
      ? ctx.settings.sqlConnections[name]
      : undefined;
    if (typeof connection !== "string") {
      throw new StepConfigError(`sql connection '${name}' is not configured on this server`);
    }
    const query = ctx.config.query as string;
    const knex = knexFor(connection);
    const binds = bindings(ctx);
    const rowsFile = join(ctx.workDir, ROWS_FILE);
    try {
      mkdirSync(ctx.workDir, { recursive: true });
    } catch {
      // Opening the file below reports the real problem (e.g. ENOTDIR) with context.
    }
    const out = createWriteStream(rowsFile);
    // A file that cannot be written (missing directory, full disk) must fail the attempt: an
    // 'error' event without a listener would crash core, and one swallowed would report rows
    // that were never written.
    let writeError: Error | undefined;
    out.on("error", (e) => {
      writeError ??= e;
    });
    let count = 0;
    const write = async (row: Record<string, unknown>) => {
      if (writeError) throw writeError;
      if (!out.write(`${jsonRow(row)}\n`)) await once(out, "drain");
      count++;
    };
    const closeRows = async () => {
      if (!out.closed) {
        out.end();
        await once(out, "close").catch(() => {});
      }
      if (writeError) throw writeError;
    };
    try {
      if (signal.aborted) throw interrupted(signal);
      if (knex.client.config.client === "better-sqlite3") {
        await runSqlite(knex, query, binds, write, signal);
      } else {
        await runStreaming(knex, query, binds, write, signal);
      }
      await closeRows();
    } catch (e) {
      await closeRows().catch(() => {});
      if (signal.aborted) throw interrupted(signal);
      if (writeError) {
        throw new Error(
          `sql on connection '${name}': cannot write ${ROWS_FILE}: ${writeError.message}`,
        );
      }
      throw new Error(`sql on connection '${name}' failed: ${(e as Error).message}`);
    }
    report.message(`${count} rows written to ${ROWS_FILE}`, "info");
    return { succeeded: true, outputs: { row_count: count, rows_file: rowsFile } };
  },
};
