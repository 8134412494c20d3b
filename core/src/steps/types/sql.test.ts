// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import knexFactory from "knex";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FreshDatabase, freshPgDatabase } from "../../../../test/support/pg.js";
import { defaultStepTypeSettings } from "../registry.js";
import type { JsonObject, StepTypeSettings } from "../step-type.js";
import { makeStepContext, recordingReporter } from "../testing.js";
import { closeSqlConnections, knexConfigFor, sqlStepType } from "./sql.js";

const v = (config: unknown, settings: StepTypeSettings) =>
  sqlStepType
    .validate(config as JsonObject, "steps[1].config", settings)
    .map((x) => `${x.field}: ${x.description}${x.hint ? ` (${x.hint})` : ""}`);

const SEED = [
  "create table users (id integer primary key, name text, country text, score real, avatar blob)",
  "insert into users (id, name, country, score, avatar) values (1, 'ana', 'US', 0.5, null), (2, 'bo', 'BR', 0.9, null), (3, 'cy', 'US', 0.7, null)",
];

afterAll(async () => {
  await closeSqlConnections();
});

describe("sql: validation", () => {
  const settings = {
    ...defaultStepTypeSettings(),
    sqlConnections: { warehouse: "/tmp/w.db", pg: "postgres://x/y" },
  };

  it("accepts a query with named or positional binds", () => {
    expect(
      v(
        {
          connection: "warehouse",
          query: "select * from t where c = :country",
          params: { country: "${params.country}" },
        },
        settings,
      ),
    ).toEqual([]);
    expect(v({ connection: "pg", query: "select ?", params: [1] }, settings)).toEqual([]);
  });

  it("names the known connections for an unknown one", () => {
    expect(v({ connection: "warehose", query: "select 1" }, settings)).toEqual([
      'steps[1].config.connection: unknown sql connection "warehose" (configured connections: warehouse, pg)',
    ]);
    // Names of Object.prototype members are not connections.
    expect(v({ connection: "constructor", query: "select 1" }, settings)[0]).toContain(
      'unknown sql connection "constructor"',
    );
    expect(v({ connection: "w", query: "select 1" }, defaultStepTypeSettings())).toEqual([
      'steps[1].config.connection: unknown sql connection "w" (the server has no sql connections configured (settings.sqlConnections))',
    ]);
  });

  it("checks query and params", () => {
    expect(v({ connection: "pg" }, settings)).toEqual([
      "steps[1].config.query: sql config needs 'query'",
    ]);
    expect(v({ connection: "pg", query: " " }, settings)).toEqual([
      "steps[1].config.query: must not be empty",
    ]);
    expect(v({ connection: "pg", query: "select 1", params: "x" }, settings)[0]).toContain(
      "'params' must be an object (for :name) or a list (for ?)",
    );
    expect(
      v(
        { connection: "pg", query: "select 1", params: { "bad-name": 1, ok: "${parms.x}" } },
        settings,
      ),
    ).toEqual([
      "steps[1].config.params.bad-name: 'bad-name' is not a bind name (letters, digits, _)",
      expect.stringContaining("steps[1].config.params.ok: bad template"),
    ]);
  });

  it("maps connection strings to knex clients", () => {
    expect(knexConfigFor("postgresql://u@h/db").client).toBe("pg");
    expect(knexConfigFor("sqlite:/data/x.db")).toMatchObject({
      client: "better-sqlite3",
      connection: { filename: "/data/x.db" },
    });
    expect(knexConfigFor("/data/x.db")).toMatchObject({
      client: "better-sqlite3",
      connection: { filename: "/data/x.db" },
    });
  });
});

async function exercise(settings: StepTypeSettings, connection: string) {
  const run = (config: JsonObject, params: Record<string, string> = {}) => {
    const ctx = makeStepContext({ config: { connection, ...config }, params, settings });
    return sqlStepType
      .run(ctx, recordingReporter().reporter, new AbortController().signal)
      .then((r) => ({ r, ctx }));
  };

  // Named binds from a templated param; the injection attempt is just a value.
  const { r, ctx } = await run(
    {
      query: "select id, name, score from users where country = :country order by id",
      params: { country: "${params.country}" },
    },
    { country: "US" },
  );
  expect(r).toEqual({
    succeeded: true,
    outputs: { row_count: 2, rows_file: join(ctx.workDir, "rows.jsonl") },
  });
  const lines = readFileSync(join(ctx.workDir, "rows.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines).toEqual([
    { id: 1, name: "ana", score: 0.5 },
    { id: 3, name: "cy", score: 0.7 },
  ]);

  const evil = await run(
    {
      query: "select count(*) as n from users where name = :name",
      params: { name: "${params.name}" },
    },
    {
      name: "x' or '1'='1",
    },
  );
  expect(readFileSync(evil.r.outputs?.rows_file as string, "utf8")).toMatch(/^\{"n":"?0"?\}\n$/);

  // Positional binds; statements without rows; bytes come out as base64.
  await run({
    query: "update users set avatar = ? where id = ?",
    params: [Buffer.from("hi").toString("base64"), 1],
  });
  const positional = await run({
    query: "select id from users where score > ? order by id",
    params: [0.6],
  });
  expect(positional.r.outputs?.row_count).toBe(2);
  const empty = await run({ query: "select * from users where 1 = 0" });
  expect(empty.r.outputs?.row_count).toBe(0);
  expect(readFileSync(empty.r.outputs?.rows_file as string, "utf8")).toBe("");

  await expect(run({ query: "select * from no_such_table" })).rejects.toThrow(
    new RegExp(`sql on connection '${connection}' failed: .*no_such_table`),
  );
}

describe("sql: SQLite file", () => {
  const file = join(mkdtempSync(join(tmpdir(), "kaon-sql-")), "warehouse.db");
  const settings = { ...defaultStepTypeSettings(), sqlConnections: { warehouse: file } };

  beforeAll(async () => {
    const k = knexFactory(knexConfigFor(file));
    for (const s of SEED) await k.raw(s);
    await k.destroy();
  });

  it("runs queries with bound values and writes rows.jsonl", async () => {
    await exercise(settings, "warehouse");
  });

  it("runs statements that return no rows", async () => {
    const ctx = makeStepContext({
      config: { connection: "warehouse", query: "create table if not exists cohorts (id integer)" },
      settings,
    });
    const r = await sqlStepType.run(
      ctx,
      recordingReporter().reporter,
      new AbortController().signal,
    );
    expect(r.outputs?.row_count).toBe(0);
  });

  it("fails the attempt (and never crashes core) when rows.jsonl cannot be written", async () => {
    // A working directory that is a file: opening rows.jsonl fails with ENOTDIR. Before the
    // stream had an error listener this was an uncaught 'error' event, i.e. a core crash.
    const notADir = join(mkdtempSync(join(tmpdir(), "kaon-sql-")), "file");
    writeFileSync(notADir, "");
    const ctx = makeStepContext({
      config: { connection: "warehouse", query: "select * from users" },
      settings,
      workDir: notADir,
    });
    await expect(
      sqlStepType.run(ctx, recordingReporter().reporter, new AbortController().signal),
    ).rejects.toThrow(/sql on connection 'warehouse': cannot write rows\.jsonl: ENOTDIR/);
  });

  it("stops when aborted", async () => {
    const ac = new AbortController();
    ac.abort("stopped by user");
    const ctx = makeStepContext({
      config: { connection: "warehouse", query: "select * from users" },
      settings,
    });
    await expect(sqlStepType.run(ctx, recordingReporter().reporter, ac.signal)).rejects.toThrow(
      "sql interrupted: stopped by user",
    );
  });
});

describe.runIf(process.env.KAON_TEST_PG_URL)("sql: PostgreSQL", () => {
  let db: FreshDatabase;
  let settings: StepTypeSettings;

  beforeAll(async () => {
    db = await freshPgDatabase("steps_sql");
    const k = knexFactory(knexConfigFor(db.url));
    await k.raw(SEED[0]!.replace("blob", "bytea").replace("real", "double precision"));
    await k.raw(SEED[1]!);
    await k.destroy();
    settings = { ...defaultStepTypeSettings(), sqlConnections: { pg: db.url } };
  });

  afterAll(async () => {
    await closeSqlConnections();
    await db?.drop();
  });

  it("runs queries with bound values and writes rows.jsonl", async () => {
    await exercise(settings, "pg");
  });
});
