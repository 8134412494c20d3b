// The trigger_states table on SQLite and PostgreSQL: overrides, fires and the cron watermark
// upsert without clobbering each other's columns.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPgDatabase } from "../../../test/support/pg.js";
import { type Db, openDatabase } from "../store/db.js";
import { TriggerStateStore } from "./trigger-state-store.js";

const databases = [
  {
    name: "sqlite",
    async open() {
      const dir = mkdtempSync(join(tmpdir(), "kaon-trigstore-"));
      const db = await openDatabase({ url: `sqlite:${join(dir, "kaon.db")}` });
      return { db, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: "postgres",
    async open() {
      const pg = await freshPgDatabase("trigstore");
      const db = await openDatabase({ url: pg.url });
      return { db, cleanup: () => pg.drop() };
    },
  },
];

describe.each(databases)("trigger state store on $name", (database) => {
  let db: Db;
  let cleanup: () => Promise<void>;
  beforeAll(async () => {
    ({ db, cleanup } = await database.open());
  });
  afterAll(async () => {
    await db?.destroy();
    await cleanup?.();
  });

  it("keeps overrides, fires and the cron watermark apart", async () => {
    const store = new TriggerStateStore(db);
    await store.settleNew(
      [
        { workflowId: "wf", triggerId: "nightly" },
        { workflowId: "wf", triggerId: "hourly" },
      ],
      1_000,
    );
    await store.setOverride("wf", "nightly", false, 2_000);
    await store.recordFire("wf", "hourly", { firedAt: 3_000, settledUntil: 2_500 });
    await store.recordFire("other", "on-signal", { firedAt: 4_000 });
    const rows = await store.load("wf");
    const byId = Object.fromEntries(rows.map((r) => [r.triggerId, r]));
    expect(byId.nightly).toEqual({
      workflowId: "wf",
      triggerId: "nightly",
      enabledOverride: false,
      lastFiredAt: undefined,
      cronSettledUntil: 1_000,
    });
    expect(byId.hourly).toEqual({
      workflowId: "wf",
      triggerId: "hourly",
      enabledOverride: undefined,
      lastFiredAt: 3_000,
      cronSettledUntil: 2_500,
    });
    // Enabling again settles the watermark at the given time; other columns stay.
    await store.setOverride("wf", "hourly", true, 5_000, 5_000);
    const hourly = (await store.load("wf")).find((r) => r.triggerId === "hourly");
    expect(hourly).toMatchObject({
      enabledOverride: true,
      lastFiredAt: 3_000,
      cronSettledUntil: 5_000,
    });
    expect((await store.load()).map((r) => r.triggerId).sort()).toEqual([
      "hourly",
      "nightly",
      "on-signal",
    ]);
  });
});
