// The hot-path writer on both databases: new rows, UPDATEs of rows written before (and the
// upsert it falls back to when such a row is missing, e.g. removed by a restart), and events
// in multi-row statements — all in one transaction per batch.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPgDatabase } from "../../../../test/support/pg.js";
import { type Db, openDatabase } from "../db.js";
import { type BatchWriter, createBatchWriter } from "./batch-writer.js";
import { type AttemptRow, type EventRow, emptyBatch, type StepRow } from "./rows.js";

const stepRow = (path: string, status: number, message: string): StepRow => [
  "run1",
  path,
  `k/${path}`,
  path,
  "command",
  status,
  "",
  "{}",
  "{}",
  1,
  -1,
  message,
  1,
  2,
  null,
  "{}",
  0,
  "{}",
  '{"t":[0]}',
];
const attemptRow = (path: string, status: number, exitCode: number): AttemptRow => [
  "run1",
  path,
  1,
  status,
  `task-${path}`,
  "agent",
  '{"cpus":1}',
  exitCode,
  1,
  status > 2 ? 3 : null,
  "",
  0,
];
const eventRow = (seq: number): EventRow => ["run1", seq, seq, "a", 2, 1, `e${seq}`, null];

for (const name of ["sqlite", "postgres"] as const) {
  describe(`batch writer on ${name}`, () => {
    let db: Db;
    let writer: BatchWriter;
    let cleanup: () => Promise<void>;
    beforeAll(async () => {
      if (name === "sqlite") {
        const dir = mkdtempSync(join(tmpdir(), "kaon-bw-"));
        db = await openDatabase({ url: `sqlite:${join(dir, "kaon.db")}` });
        cleanup = async () => {
          await db.destroy();
          rmSync(dir, { recursive: true, force: true });
        };
      } else {
        const pg = await freshPgDatabase("bw");
        db = await openDatabase({ url: pg.url });
        cleanup = async () => {
          await db.destroy();
          await pg.drop();
        };
      }
      writer = await createBatchWriter(db);
    });
    afterAll(async () => {
      await cleanup?.();
    });

    it("inserts, updates, falls back to upserts for missing rows, and writes 70 events", async () => {
      const first = emptyBatch();
      first.steps.push(stepRow("a", 1, "new"));
      first.attempts.push(attemptRow("a", 1, 0));
      await writer.write(first);

      const second = emptyBatch();
      second.stepUpdates.push(stepRow("a", 5, "done"), stepRow("gone", 4, "re-created"));
      second.attemptUpdates.push(attemptRow("a", 3, 0), attemptRow("gone", 4, 2));
      for (let seq = 1; seq <= 70; seq++) second.events.push(eventRow(seq));
      await writer.write(second);

      const steps = await db("step_instances").orderBy("path").select("path", "status", "message");
      expect(steps).toEqual([
        { path: "a", status: 5, message: "done" },
        { path: "gone", status: 4, message: "re-created" },
      ]);
      const attempts = await db("attempts").orderBy("path").select("path", "status", "exit_code");
      expect(attempts).toEqual([
        { path: "a", status: 3, exit_code: 0 },
        { path: "gone", status: 4, exit_code: 2 },
      ]);
      const events = (await db("run_events").orderBy("seq").select("seq", "message")) as Array<{
        seq: number;
        message: string;
      }>;
      expect(events.map((e) => Number(e.seq))).toEqual(Array.from({ length: 70 }, (_, i) => i + 1));
      expect(events[69]?.message).toBe("e70");
      // The key columns an UPDATE leaves alone are still those of the insert.
      const a = await db("step_instances").where({ path: "a" }).first();
      expect(a).toMatchObject({ sort_key: "k/a", step_id: "a", state_json: '{"t":[0]}' });
    });
  });
}
