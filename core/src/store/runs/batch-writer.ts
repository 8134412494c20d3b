// The hot-path writer of the run tables. The engine group-commits: everything that happened
// in one tick (thousands of step transitions and events) is written in ONE transaction. knex
// query building per row is far too slow for that (20k step completions/s), so this module
// writes rows directly: on SQLite through prepared better-sqlite3 statements (synchronous and
// fast inside one transaction), on PostgreSQL as multi-row `INSERT .. ON CONFLICT` statements
// in one knex transaction. Both use the portable `ON CONFLICT (pk) DO UPDATE` upsert.
import type { Knex } from "knex";
import { dialectOf } from "../db.js";
import {
  ARTIFACT_COLUMNS,
  ATTEMPT_COLUMNS,
  EVENT_COLUMNS,
  IMAGE_COLUMNS,
  RUN_COLUMNS,
  STEP_COLUMNS,
  type WriteBatch,
} from "./rows.js";

export interface BatchWriter {
  /** Writes the batch in one transaction; resolves once it is durable (committed). */
  write(batch: WriteBatch): Promise<void>;
}

interface TableSpec {
  table: string;
  columns: readonly string[];
  /** Primary-key columns for upserts; empty means plain insert. */
  key: readonly string[];
}

const STEPS: TableSpec = {
  table: "step_instances",
  columns: STEP_COLUMNS,
  key: ["run_id", "path"],
};
const ATTEMPTS: TableSpec = {
  table: "attempts",
  columns: ATTEMPT_COLUMNS,
  key: ["run_id", "path", "number"],
};

const TABLES = {
  runs: { table: "runs", columns: RUN_COLUMNS, key: ["id"] },
  steps: STEPS,
  stepUpdates: STEPS,
  attempts: ATTEMPTS,
  attemptUpdates: ATTEMPTS,
  events: { table: "run_events", columns: EVENT_COLUMNS, key: [] },
  images: { table: "step_images", columns: IMAGE_COLUMNS, key: ["run_id", "path", "name"] },
  artifacts: { table: "artifacts", columns: ARTIFACT_COLUMNS, key: [] },
  requestKeys: {
    table: "request_keys",
    columns: ["key", "result_json", "created_at"],
    key: ["key"],
  },
} satisfies Record<UpsertedTable, TableSpec>;

type UpsertedTable = Exclude<keyof WriteBatch, "stepDeletes">;

const ORDER: UpsertedTable[] = [
  "runs",
  "steps",
  "stepUpdates",
  "attempts",
  "attemptUpdates",
  "events",
  "images",
  "artifacts",
  "requestKeys",
];

function insertSql(spec: TableSpec, rowCount: number, placeholder: (i: number) => string): string {
  const cols = spec.columns.join(", ");
  const rows: string[] = [];
  let n = 0;
  for (let r = 0; r < rowCount; r++) {
    const ph: string[] = [];
    for (let c = 0; c < spec.columns.length; c++) ph.push(placeholder(n++));
    rows.push(`(${ph.join(", ")})`);
  }
  let sql = `INSERT INTO ${spec.table} (${cols}) VALUES ${rows.join(", ")}`;
  if (spec.key.length > 0) {
    const updates = spec.columns
      .filter((c) => !spec.key.includes(c))
      .map((c) => `${c} = excluded.${c}`)
      .join(", ");
    sql += ` ON CONFLICT (${spec.key.join(", ")}) DO UPDATE SET ${updates}`;
  }
  return sql;
}

/** The raw better-sqlite3 handle under a knex SQLite instance (pool of one connection). */
interface SqliteHandle {
  prepare(sql: string): SqliteStatement;
  transaction<F extends (...args: never[]) => unknown>(fn: F): F;
  readonly inTransaction: boolean;
}

interface SqliteStatement {
  run(...params: unknown[]): { changes: number };
}

/** Events per multi-row INSERT: one statement per chunk instead of one per row. */
const EVENT_CHUNK = 32;

/**
 * Step columns an UPDATE of an existing row sets (STEP_COLUMNS from `status` on): the key,
 * `sort_key`, `step_id` and `type` never change once the row exists.
 */
const STEP_HOT_FROM = STEP_COLUMNS.indexOf("status");
/** Attempt columns an UPDATE sets: all but the key. */
const ATTEMPT_HOT_FROM = ATTEMPT_COLUMNS.indexOf("status");

function updateSql(spec: TableSpec, from: number): string {
  const sets = spec.columns
    .slice(from)
    .map((c) => `${c} = ?`)
    .join(", ");
  const where = spec.key.map((c) => `${c} = ?`).join(" AND ");
  return `UPDATE ${spec.table} SET ${sets} WHERE ${where}`;
}

class SqliteBatchWriter implements BatchWriter {
  private writeAll: ((batch: WriteBatch) => void) | undefined;

  constructor(private readonly handle: SqliteHandle) {}

  private prepare(): (batch: WriteBatch) => void {
    const statements = new Map<UpsertedTable, SqliteStatement>();
    for (const name of ORDER) {
      statements.set(name, this.handle.prepare(insertSql(TABLES[name], 1, () => "?")));
    }
    const stepUpsert = statements.get("steps") as SqliteStatement;
    const attemptUpsert = statements.get("attempts") as SqliteStatement;
    const eventInsert = statements.get("events") as SqliteStatement;
    const stepUpdate = this.handle.prepare(updateSql(STEPS, STEP_HOT_FROM));
    const attemptUpdate = this.handle.prepare(updateSql(ATTEMPTS, ATTEMPT_HOT_FROM));
    if (STEP_HOT_FROM !== 5 || ATTEMPT_HOT_FROM !== 3) {
      throw new Error("batch-writer: the UPDATE argument lists below follow rows.ts; update them");
    }
    const eventChunks: SqliteStatement[] = [];
    const eventChunk = (n: number) => {
      let stmt = eventChunks[n];
      if (!stmt) {
        stmt = this.handle.prepare(insertSql(TABLES.events, n, () => "?"));
        eventChunks[n] = stmt;
      }
      return stmt;
    };
    const bindings: unknown[] = [];
    const deleteStep = this.handle.prepare(
      "DELETE FROM step_instances WHERE run_id = ? AND path = ?",
    );
    return this.handle.transaction((batch: WriteBatch) => {
      for (const [runId, path] of batch.stepDeletes ?? []) deleteStep.run(runId, path);
      for (const name of ORDER) {
        const rows = batch[name] as unknown[][];
        if (rows.length === 0) continue;
        if (name === "stepUpdates") {
          // Arguments in updateSql's order: the hot columns, then the key.
          for (const r of batch.stepUpdates) {
            const done = stepUpdate.run(
              r[5],
              r[6],
              r[7],
              r[8],
              r[9],
              r[10],
              r[11],
              r[12],
              r[13],
              r[14],
              r[15],
              r[16],
              r[17],
              r[18],
              r[0],
              r[1],
            );
            if (done.changes === 0) stepUpsert.run(...r);
          }
        } else if (name === "attemptUpdates") {
          for (const r of batch.attemptUpdates) {
            const done = attemptUpdate.run(
              r[3],
              r[4],
              r[5],
              r[6],
              r[7],
              r[8],
              r[9],
              r[10],
              r[11],
              r[0],
              r[1],
              r[2],
            );
            if (done.changes === 0) attemptUpsert.run(...r);
          }
        } else if (name === "events" && rows.length > 1) {
          for (let i = 0; i < rows.length; i += EVENT_CHUNK) {
            const n = Math.min(EVENT_CHUNK, rows.length - i);
            bindings.length = 0;
            for (let j = i; j < i + n; j++) for (const v of rows[j] as unknown[]) bindings.push(v);
            eventChunk(n).run(...bindings);
          }
          bindings.length = 0;
        } else {
          const stmt = name === "events" ? eventInsert : statements.get(name);
          if (!stmt) continue;
          for (const row of rows) stmt.run(...row);
        }
      }
    });
  }

  async write(batch: WriteBatch): Promise<void> {
    // A knex transaction on the shared connection may be open across an await (a deploy, a
    // migration); our statements would then join it. Wait for it to finish instead.
    while (this.handle.inTransaction) await new Promise((r) => setImmediate(r));
    this.writeAll ??= this.prepare();
    this.writeAll(batch);
  }
}

// PostgreSQL allows 65535 bind parameters per statement.
const PG_MAX_PARAMS = 30_000;

class PostgresBatchWriter implements BatchWriter {
  private readonly sqlCache = new Map<string, string>();
  constructor(private readonly db: Knex) {}

  private sql(name: UpsertedTable, rowCount: number): string {
    const cacheKey = `${name}:${rowCount}`;
    let sql = this.sqlCache.get(cacheKey);
    if (!sql) {
      sql = insertSql(TABLES[name], rowCount, () => "?");
      if (this.sqlCache.size > 2000) this.sqlCache.clear();
      this.sqlCache.set(cacheKey, sql);
    }
    return sql;
  }

  async write(batch: WriteBatch): Promise<void> {
    await this.db.transaction(async (trx) => {
      const deletes = batch.stepDeletes ?? [];
      for (let i = 0; i < deletes.length; i += 1000) {
        const chunk = deletes.slice(i, i + 1000);
        await trx.raw(
          `DELETE FROM step_instances WHERE (run_id, path) IN (${chunk.map(() => "(?, ?)").join(", ")})`,
          chunk.flat(),
        );
      }
      for (const name of ORDER) {
        const rows = batch[name] as unknown[][];
        if (rows.length === 0) continue;
        const perStatement = Math.max(1, Math.floor(PG_MAX_PARAMS / TABLES[name].columns.length));
        for (let i = 0; i < rows.length; i += perStatement) {
          const chunk = rows.slice(i, i + perStatement);
          const bindings: unknown[] = [];
          for (const row of chunk) for (const v of row) bindings.push(v);
          await trx.raw(this.sql(name, chunk.length), bindings as Knex.RawBinding[]);
        }
      }
    });
  }
}

export async function createBatchWriter(db: Knex): Promise<BatchWriter> {
  if (dialectOf(db) === "postgres") return new PostgresBatchWriter(db);
  const client = db.client as {
    acquireConnection(): Promise<SqliteHandle>;
    releaseConnection(conn: SqliteHandle): Promise<void>;
  };
  // The pool holds exactly one connection for the process lifetime; borrowing its handle
  // lets the writer run synchronously without queueing behind knex's pool for every batch.
  const handle = await client.acquireConnection();
  await client.releaseConnection(handle);
  return new SqliteBatchWriter(handle);
}
