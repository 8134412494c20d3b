// Opens kaon's database — embedded SQLite (the default, a file in the data directory) or
// PostgreSQL — as a knex instance tuned for each, and brings its schema up to date. Everything
// above this module writes portable knex queries; the few dialect differences (row locks,
// 64-bit integer parsing) are answered here once.
import { mkdirSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import knexFactory, { type Knex } from "knex";
import pg from "pg";
import { migrateToLatest } from "./migrations/index.js";

export type Db = Knex;
export type DbDialect = "sqlite" | "postgres";

export interface OpenDatabaseOptions {
  /**
   * Where the data lives:
   * - `postgres://user:pass@host:5432/db` (or `postgresql://`) — PostgreSQL;
   * - `sqlite:/abs/path/kaon.db`, `sqlite:///abs/path/kaon.db`, `sqlite::memory:` or a bare
   *   file path — SQLite (the parent directory is created).
   */
  url: string;
  /** Run pending migrations before returning. Default true. */
  migrate?: boolean;
  /** Largest PostgreSQL connection pool. Default 10. */
  maxConnections?: number;
}

/** The SQLite database file inside a data directory. */
export function defaultDatabaseUrl(dataDir: string): string {
  return `sqlite:${join(resolve(dataDir), "kaon.db")}`;
}

export function dialectOf(db: Db): DbDialect {
  return db.client.config.client === "pg" ? "postgres" : "sqlite";
}

/** Describes a database URL for logs without its password. */
export function redactDatabaseUrl(url: string): string {
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]+):[^@]*@/, "$1:***@");
}

export async function openDatabase(options: OpenDatabaseOptions): Promise<Db> {
  const db = isPostgresUrl(options.url)
    ? openPostgres(options.url, options.maxConnections ?? 10)
    : openSqlite(sqlitePath(options.url));
  try {
    // Fails fast on a wrong URL or password instead of at the first request.
    await db.raw("select 1");
    if (options.migrate ?? true) await migrateToLatest(db);
  } catch (err) {
    await db.destroy();
    throw new Error(
      `cannot open database ${redactDatabaseUrl(options.url)}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return db;
}

function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

function sqlitePath(url: string): string {
  let path = url.startsWith("sqlite:") ? url.slice("sqlite:".length) : url;
  if (path === ":memory:") return path;
  if (path.startsWith("//")) path = path.slice(2); // sqlite:///abs → /abs
  if (path === "") throw new Error("empty SQLite path in database URL");
  return isAbsolute(path) ? path : resolve(path);
}

function openSqlite(filename: string): Db {
  if (filename !== ":memory:") mkdirSync(dirname(filename), { recursive: true });
  return knexFactory({
    client: "better-sqlite3",
    connection: { filename },
    useNullAsDefault: true,
    // better-sqlite3 is synchronous: one connection serializes every statement and
    // transaction of this process, which is what SQLite wants anyway (one writer).
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
        try {
          conn.pragma("journal_mode = WAL");
          conn.pragma("synchronous = NORMAL");
          conn.pragma("foreign_keys = ON");
          conn.pragma("busy_timeout = 5000");
          done(null, conn);
        } catch (err) {
          done(err as Error, conn);
        }
      },
    },
  });
}

interface SqliteConnection {
  pragma(source: string): unknown;
}

function openPostgres(connectionString: string, maxConnections: number): Db {
  return knexFactory({
    client: "pg",
    connection: { connectionString, types: pgTypes },
    pool: { min: 0, max: maxConnections },
  });
}

const INT8_OID = 20;

// Epoch-millisecond timestamps and counts are BIGINT; pg returns those as strings by default.
// Parsing per connection (not via the global pg.types) keeps other pg users in the process
// unaffected. Values beyond 2^53 cannot occur for the columns kaon declares as bigint.
const pgTypes = {
  getTypeParser(oid: number, format: string) {
    if (oid === INT8_OID && format !== "binary") return (text: string) => Number(text);
    return format === "binary"
      ? pg.types.getTypeParser(oid, "binary")
      : pg.types.getTypeParser(oid);
  },
};

/** True when an error is a unique-constraint violation on either database. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  return (
    e.code === "23505" || // PostgreSQL unique_violation
    e.code === "SQLITE_CONSTRAINT_PRIMARYKEY" ||
    e.code === "SQLITE_CONSTRAINT_UNIQUE"
  );
}

/** True when SQLite reports the database busy beyond busy_timeout, or PG a serialization failure. */
export function isTransientConflict(err: unknown): boolean {
  const e = err as { code?: string } | undefined;
  return (
    e?.code === "SQLITE_BUSY" ||
    e?.code === "SQLITE_BUSY_SNAPSHOT" ||
    e?.code === "40001" || // serialization_failure
    e?.code === "40P01" // deadlock_detected
  );
}
