// `sql`: a query through knex against a named connection from server settings — the Hive
// query of Meson's pipelines, for selecting a cohort. Values are bound (`:name` with a
// `params` object, `?` with a `params` list), never spliced into the query text. Rows stream
// to `rows.jsonl` in the attempt's working directory (one JSON object per line), so a large
// cohort never sits in core's memory; the outputs are `row_count` and `rows_file`.

import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import knexFactory, { type Knex } from "knex";
import { ConfigCheck, show } from "../config-check.js";
import type { EndResult, InlineStepType, JsonValue, StepContext } from "../step-type.js";
import { configScope, renderConfigString, StepConfigError } from "../templating.js";

export const ROWS_FILE = "rows.jsonl";
const MAX_QUERY_LENGTH = 1024 * 1024;
const BIND_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** knex configuration for a connection string: a postgres URL, or a SQLite file path. */
export function knexConfigFor(connection: string): Knex.Config {
  if (/^postgres(ql)?:\/\//i.test(connection)) {
    return { client: "pg", connection, pool: { min: 0, max: 4 } };
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

export const sqlStepType: InlineStepType = {
  kind: "inline",
  name: "sql",
  description:
    "Runs a SQL query on a named connection; rows go to rows.jsonl, the count to an output.",
  validate(config, path, settings) {
    const check = new ConfigCheck(config, path, "sql").allowKeys(["connection", "query", "params"]);
    const name = check.string("connection", { required: true });
    if (name !== undefined && name.trim() !== "" && settings.sqlConnections[name] === undefined) {
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
    const connection = ctx.settings.sqlConnections[name];
    if (connection === undefined) {
      throw new StepConfigError(`sql connection '${name}' is not configured on this server`);
    }
    const query = ctx.config.query as string;
    const knex = knexFor(connection);
    const binds = bindings(ctx);
    const raw = binds === undefined ? knex.raw(query) : knex.raw(query, binds as Knex.RawBinding[]);
    const rowsFile = join(ctx.workDir, ROWS_FILE);
    const out = createWriteStream(rowsFile);
    const rows = raw.stream();
    const onAbort = () =>
      rows.destroy(new Error(`sql interrupted: ${String(signal.reason ?? "aborted")}`));
    signal.addEventListener("abort", onAbort, { once: true });
    let count = 0;
    try {
      if (signal.aborted) onAbort();
      for await (const row of rows) {
        if (!out.write(`${jsonRow(row as Record<string, unknown>)}\n`)) await once(out, "drain");
        count++;
      }
    } catch (e) {
      const message = (e as Error).message;
      throw new Error(`sql on connection '${name}' failed: ${message}`);
    } finally {
      signal.removeEventListener("abort", onAbort);
      out.end();
      await once(out, "close").catch(() => {});
    }
    report.message(`${count} rows written to ${ROWS_FILE}`, "info");
    return { succeeded: true, outputs: { row_count: count, rows_file: rowsFile } };
  },
};
