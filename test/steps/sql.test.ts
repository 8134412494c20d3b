// The sql step through the real server against both databases it supports, each a named
// connection in the server's settings: a SQLite file and a fresh PostgreSQL database. The
// cohort query binds values from step params (`:name` and `?`), the rows land in rows.jsonl
// in the attempt's working directory and `row_count` counts them; a statement without rows
// gives 0, a failing query fails the step naming the connection, and an unknown connection
// is refused at deploy with the configured names listed.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus, StepStatus } from "@kaon/proto";
import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FreshDatabase, freshPgDatabase } from "../support/pg.js";
import { explain, type StepsKaon, startStepsKaon } from "./support.js";

const scratch = mkdtempSync(join(tmpdir(), "kaon-steps-sql-"));
const sqliteFile = join(scratch, "warehouse.db");
let pgDb: FreshDatabase;
let k: StepsKaon;

const MEMBERS = [
  [1, "ana", "US", 0.91],
  [2, "bo", "BR", 0.42],
  [3, "cy", "US", 0.77],
  [4, "di", "US", 0.3],
  [5, "ed", "IN", 0.88],
] as const;

beforeAll(async () => {
  const lite = new Database(sqliteFile);
  lite.exec("CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT, region TEXT, score REAL)");
  const insert = lite.prepare("INSERT INTO members VALUES (?, ?, ?, ?)");
  for (const m of MEMBERS) insert.run(...m);
  lite.close();

  pgDb = await freshPgDatabase("steps_sql");
  const client = new pg.Client({ connectionString: pgDb.url });
  await client.connect();
  try {
    await client.query(
      "CREATE TABLE members (id integer PRIMARY KEY, name text, region text, score double precision, joined timestamptz)",
    );
    for (const [id, name, region, score] of MEMBERS) {
      await client.query("INSERT INTO members VALUES ($1, $2, $3, $4, $5)", [
        id,
        name,
        region,
        score,
        new Date(Date.UTC(2024, 0, id)),
      ]);
    }
  } finally {
    await client.end();
  }
  k = await startStepsKaon(
    { sqlConnections: { warehouse: `sqlite:${sqliteFile}`, analytics: pgDb.url } },
    "kaon-steps-sql-",
  );
});
afterAll(async () => {
  await k?.stop();
  await pgDb?.drop();
  rmSync(scratch, { recursive: true, force: true });
});

function cohortWorkflow(id: string, connection: string) {
  return {
    id,
    params: [
      { name: "region", type: "PARAM_TYPE_STRING", value: "US" },
      { name: "min_score", type: "PARAM_TYPE_DOUBLE", value: 0.5 },
    ],
    steps: [
      {
        id: "cohort",
        type: "sql",
        config: {
          connection,
          query:
            "SELECT id, name, score FROM members WHERE region = :region AND score >= :min ORDER BY id",
          params: { region: "${params.region}", min: "${params.min_score}" },
        },
        next: [{ to: "count" }],
      },
      {
        id: "count",
        type: "sql",
        config: {
          connection,
          query: "SELECT count(*) AS n FROM members WHERE region <> ?",
          params: ["${params.region}"],
        },
      },
    ],
  };
}

function rowsOf(file: unknown): unknown[] {
  return readFileSync(String(file), "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));
}

describe("sql step", () => {
  for (const [db, connection] of [
    ["SQLite", "warehouse"],
    ["PostgreSQL", "analytics"],
  ] as const) {
    it(`selects a cohort from ${db} with bound params: row_count and rows.jsonl`, async () => {
      const id = `sql-${connection}`;
      await k.deploy(cohortWorkflow(id, connection));
      const { run } = await k.run(id, { region: "US", min_score: 0.5 });
      expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      const cohort = (await k.step(run.id, "cohort")).step;
      expect(cohort?.outputs.row_count).toBe(2);
      const rowsFile = cohort?.outputs.rows_file;
      expect(rowsFile).toBe(join(k.dataDir, "runs", run.id, "cohort.1", "rows.jsonl"));
      expect(rowsOf(rowsFile)).toEqual([
        { id: 1, name: "ana", score: 0.91 },
        { id: 3, name: "cy", score: 0.77 },
      ]);
      expect(cohort?.reports?.messages.map((m) => m.text)).toContain(
        "2 rows written to rows.jsonl",
      );
      const count = (await k.step(run.id, "count")).step;
      expect(count?.outputs.row_count).toBe(1);
      expect(rowsOf(count?.outputs.rows_file)).toEqual([{ n: 2 }]);

      // Other params, same query text: values are bound, never spliced.
      const other = await k.run(id, { region: "x' OR '1'='1", min_score: 0 });
      expect(other.run.status, await explain(k, other.run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      expect((await k.step(other.run.id, "cohort")).step?.outputs.row_count).toBe(0);
    });
  }

  it("PostgreSQL: timestamps as ISO strings; a statement without rows gives row_count 0", async () => {
    await k.deploy({
      id: "sql-pg-write",
      steps: [
        {
          id: "mark",
          type: "sql",
          config: {
            connection: "analytics",
            query: "CREATE TABLE IF NOT EXISTS picked AS SELECT id FROM members WHERE id = 5",
          },
          next: [{ to: "read" }],
        },
        {
          id: "read",
          type: "sql",
          config: {
            connection: "analytics",
            query: "SELECT m.name, m.joined FROM members m JOIN picked p USING (id)",
          },
        },
      ],
    });
    const { run } = await k.run("sql-pg-write");
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.step(run.id, "mark")).step?.outputs.row_count).toBe(0);
    const read = (await k.step(run.id, "read")).step;
    expect(read?.outputs.row_count).toBe(1);
    expect(rowsOf(read?.outputs.rows_file)).toEqual([
      { name: "ed", joined: "2024-01-05T00:00:00.000Z" },
    ]);
  });

  it("a failing query fails the step, naming the connection and the database's error", async () => {
    await k.deploy({
      id: "sql-fail",
      steps: [
        {
          id: "q",
          type: "sql",
          config: { connection: "warehouse", query: "SELECT * FROM no_such_table" },
        },
      ],
    });
    const { run } = await k.run("sql-fail");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const q = (await k.step(run.id, "q")).step;
    expect(q?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(q?.reason).toContain("sql on connection 'warehouse' failed");
    expect(q?.reason).toContain("no_such_table");
  });

  it("refuses an unknown connection at deploy, listing the configured ones", async () => {
    const details = await k.deployError({
      id: "sql-bad",
      steps: [{ id: "q", type: "sql", config: { connection: "hive", query: "SELECT 1" } }],
    });
    expect(details).toContain("steps[0].config.connection");
    expect(details).toContain("configured connections: warehouse, analytics");
    expect(existsSync(sqliteFile)).toBe(true);
  });
});
