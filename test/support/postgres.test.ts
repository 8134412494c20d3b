// Proves the PostgreSQL harness gives tests a real, working server: the global setup's URL
// reaches the test worker, queries run on it, and fresh databases are isolated and droppable.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { type FreshDatabase, freshPgDatabase, pgUrl } from "./pg.js";

async function query<R extends pg.QueryResultRow>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe("test PostgreSQL server", () => {
  it("is reachable at KAON_TEST_PG_URL from a test worker", async () => {
    expect(pgUrl()).toBe(inject("kaonTestPgUrl"));
    const rows = await query<{ one: number; version: string }>(
      pgUrl(),
      "select 1 as one, current_setting('server_version') as version",
    );
    expect(rows).toEqual([{ one: 1, version: expect.stringMatching(/^\d+/) }]);
  });

  describe("freshPgDatabase", () => {
    let db: FreshDatabase;
    beforeAll(async () => {
      db = await freshPgDatabase("Harness Self-Test");
    });
    afterAll(async () => {
      await db?.drop();
    });

    it("creates an empty database of its own, named after the prefix", async () => {
      expect(db.name).toMatch(/^harness_self_test_\d+_[0-9a-f]{8}$/);
      await query(db.url, "create table t (id int primary key)");
      await query(db.url, "insert into t values (1), (2)");
      expect(await query<{ n: string }>(db.url, "select count(*) as n from t")).toEqual([
        { n: "2" },
      ]);
      const names = await query<{ datname: string }>(
        pgUrl(),
        "select current_database() as datname",
      );
      expect(names[0]?.datname).not.toBe(db.name);
    });

    it("drops the database, even with a client still connected", async () => {
      const other = await freshPgDatabase("dropme");
      const client = new pg.Client({ connectionString: other.url });
      await client.connect();
      client.on("error", () => {}); // the forced drop terminates this connection
      await other.drop();
      const left = await query(
        pgUrl(),
        `select 1 from pg_database where datname = '${other.name}'`,
      );
      expect(left).toEqual([]);
      await client.end().catch(() => {});
    });
  });
});
