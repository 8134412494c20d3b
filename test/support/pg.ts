// Helpers for tests that need PostgreSQL. The server itself is started once per vitest run
// by test/support/postgres.ts (global setup); these helpers give each test file its own
// database on it, so that files running in parallel never see each other's tables.
import { randomBytes } from "node:crypto";
import pg from "pg";

const PG_URL_ENV = "KAON_TEST_PG_URL";
// PostgreSQL truncates identifiers longer than this many bytes.
const MAX_IDENTIFIER = 63;

/** The URL of the test PostgreSQL server's `kaon_test` database (shared by all tests). */
export function pgUrl(): string {
  const url = process.env[PG_URL_ENV];
  if (!url) {
    throw new Error(
      `${PG_URL_ENV} is not set: the vitest global setup (test/support/postgres.ts) sets it. ` +
        "Run tests through the repo's vitest.config.ts (npx vitest run <path>), or set it to a server you have.",
    );
  }
  return url;
}

export interface FreshDatabase {
  /** The database's name, e.g. `store_1234_9f2c1a`. */
  name: string;
  /** A URL for the new database on the test server. */
  url: string;
  /** Drops the database, disconnecting any clients still on it. */
  drop(): Promise<void>;
}

/**
 * Creates an empty database with a unique name that starts with `prefix` (lower-cased,
 * non-alphanumerics replaced by `_`), e.g. in a `beforeAll`, with `drop()` in `afterAll`.
 */
export async function freshPgDatabase(prefix: string): Promise<FreshDatabase> {
  const base = pgUrl();
  const suffix = `_${process.pid}_${randomBytes(4).toString("hex")}`;
  const stem =
    prefix
      .toLowerCase()
      .replace(/[^a-z0-9_]+/g, "_")
      .replace(/^[^a-z_]+/, "") || "t";
  const name = stem.slice(0, MAX_IDENTIFIER - suffix.length) + suffix;

  await withAdmin(base, (client) => client.query(`CREATE DATABASE "${name}"`));

  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    async drop() {
      await withAdmin(base, (client) =>
        client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`),
      );
    },
  };
}

async function withAdmin<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
