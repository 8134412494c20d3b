// QuotaStore on both databases: upsert (insert, then replace), reload from the table, and
// the "any namespace limited" flag the scheduler uses to skip quota work entirely.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { UNLIMITED } from "../../core/src/scheduler/quota.js";
import { QuotaStore } from "../../core/src/scheduler/quota-store.js";
import { type Db, openDatabase } from "../../core/src/store/db.js";
import { type FreshDatabase, freshPgDatabase } from "../support/pg.js";

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function sqlite(): Promise<Db> {
  const dir = mkdtempSync(join(tmpdir(), "kaon-quota-"));
  const db = await openDatabase({ url: `sqlite:${join(dir, "kaon.db")}` });
  cleanups.push(async () => {
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  return db;
}

async function postgres(): Promise<Db> {
  const fresh: FreshDatabase = await freshPgDatabase("quotas");
  const db = await openDatabase({ url: fresh.url });
  cleanups.push(async () => {
    await db.destroy();
    await fresh.drop();
  });
  return db;
}

describe.each([
  ["SQLite", sqlite],
  ["PostgreSQL", postgres],
])("QuotaStore on %s", (_name, open) => {
  it("stores, replaces and reloads quotas", async () => {
    const db = await open();
    const store = new QuotaStore(db);
    await store.load();
    expect(store.any).toBe(false);
    expect(store.get("ml")).toEqual(UNLIMITED);

    await store.set("ml", { maxTasks: 4, cpus: 2.5, memMb: 2048, gpus: 1, diskMb: 0 });
    expect(store.any).toBe(true);
    await store.set("ml", { ...UNLIMITED, maxTasks: 2 });
    await store.set("web", UNLIMITED);

    const again = new QuotaStore(db);
    await again.load();
    expect(again.get("ml")).toEqual({ ...UNLIMITED, maxTasks: 2 });
    expect(again.namespaces().sort()).toEqual(["ml", "web"]);
    expect(again.any).toBe(true);

    await again.set("ml", UNLIMITED);
    expect(again.any).toBe(false);
  });
});
