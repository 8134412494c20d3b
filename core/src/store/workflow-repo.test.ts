// The same storage tests against SQLite (a temp file) and PostgreSQL (a real server).
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPgDatabase } from "../../../test/support/pg.js";
import { type Db, dialectOf, openDatabase } from "./db.js";
import { appliedMigrations, migrations, rollbackAll } from "./migrations/index.js";
import {
  ACTIVE_VERSION,
  LATEST_VERSION,
  NamespaceConflictError,
  type NewVersion,
  WorkflowRepo,
} from "./workflow-repo.js";

interface Backend {
  name: string;
  open(): Promise<{ db: Db; url: string; cleanup(): Promise<void> }>;
}

const backends: Backend[] = [
  {
    name: "sqlite",
    async open() {
      const dir = mkdtempSync(join(tmpdir(), "kaon-store-"));
      const url = `sqlite:${join(dir, "data", "kaon.db")}`;
      const db = await openDatabase({ url });
      return {
        db,
        url,
        async cleanup() {
          await db.destroy();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: "postgres",
    async open() {
      const pg = await freshPgDatabase("store");
      const db = await openDatabase({ url: pg.url });
      return {
        db,
        url: pg.url,
        async cleanup() {
          await db.destroy();
          await pg.drop();
        },
      };
    },
  },
];

function version(workflowId: string, content: string, extra: Partial<NewVersion> = {}): NewVersion {
  return {
    workflowId,
    namespace: "default",
    description: `desc ${content}`,
    owner: "ml-team",
    tags: {},
    definitionJson: JSON.stringify({ id: workflowId, description: content }),
    contentHash: createHash("sha256").update(content).digest("hex"),
    activate: true,
    ...extra,
  };
}

describe.each(backends)("store on $name", (backend) => {
  let db: Db;
  let url: string;
  let repo: WorkflowRepo;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    ({ db, url, cleanup } = await backend.open());
    repo = new WorkflowRepo(db);
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it("applies every listed migration, and applying again is a no-op", async () => {
    expect(dialectOf(db)).toBe(backend.name);
    expect(await appliedMigrations(db)).toEqual(migrations.map((m) => m.name));
    const again = await openDatabase({ url });
    expect(await appliedMigrations(again)).toEqual(migrations.map((m) => m.name));
    await again.destroy();
  });

  it("deploys version 1 active, then N+1 for changed content, identical content returns the existing version", async () => {
    const first = await repo.deploy(version("wf-a", "one", { now: 1000 }));
    expect(first.created).toBe(true);
    expect(first.version).toMatchObject({ version: 1, active: true, createdAt: 1000 });
    expect(first.workflow).toMatchObject({ activeVersion: 1, latestVersion: 1, createdAt: 1000 });

    const second = await repo.deploy(version("wf-a", "two", { now: 2000, activate: false }));
    expect(second.created).toBe(true);
    expect(second.version).toMatchObject({ version: 2, active: false });
    expect(second.workflow).toMatchObject({ activeVersion: 1, latestVersion: 2 });

    const again = await repo.deploy(version("wf-a", "two", { now: 3000, activate: false }));
    expect(again.created).toBe(false);
    expect(again.version.version).toBe(2);
    expect(again.version.definitionJson).toBe(second.version.definitionJson);
    expect(again.workflow.latestVersion).toBe(2);
  });

  it("records scm and client metadata and round-trips big timestamps", async () => {
    const now = Date.UTC(2030, 0, 1, 12, 0, 0, 123);
    await repo.deploy(
      version("wf-scm", "x", {
        now,
        scm: { commit: "abc123", branch: "main", dirty: true, author: "A <a@x>", repository: "" },
        client: { name: "kaon-cli", version: "0.1.0", user: "me", host: "h" },
      }),
    );
    const got = await repo.getVersion("wf-scm", LATEST_VERSION);
    expect(got?.version?.createdAt).toBe(now);
    expect(typeof got?.version?.createdAt).toBe("number");
    expect(got?.version?.scm).toEqual({
      commit: "abc123",
      branch: "main",
      dirty: true,
      author: "A <a@x>",
      repository: "",
    });
    expect(got?.version?.client?.name).toBe("kaon-cli");
  });

  it("selects active, latest and numbered versions; activate rolls back and updates the summary", async () => {
    await repo.deploy(version("wf-b", "one", { tags: { team: "a" } }));
    await repo.deploy(version("wf-b", "two", { tags: { team: "b" } }));
    expect((await repo.getVersion("wf-b", ACTIVE_VERSION))?.version?.version).toBe(2);
    expect((await repo.getVersion("wf-b", LATEST_VERSION))?.version?.version).toBe(2);
    expect((await repo.getVersion("wf-b", 1))?.version?.active).toBe(false);
    expect((await repo.getVersion("wf-b", 7))?.version).toBeUndefined();
    expect(await repo.getVersion("nope", 0)).toBeUndefined();

    const rolled = await repo.activate("wf-b", 1, 5000);
    expect(rolled).toMatchObject({ ok: true, changed: true });
    if (!rolled.ok) throw new Error("unreachable");
    expect(rolled.workflow).toMatchObject({
      activeVersion: 1,
      latestVersion: 2,
      description: "desc one",
      tags: { team: "a" },
      updatedAt: 5000,
    });
    expect((await repo.getVersion("wf-b", ACTIVE_VERSION))?.version?.version).toBe(1);
    expect(await repo.activate("wf-b", 1)).toMatchObject({ ok: true, changed: false });
    expect(await repo.activate("wf-b", 9)).toEqual({ ok: false, missing: "version" });
    expect(await repo.activate("missing", 1)).toEqual({ ok: false, missing: "workflow" });

    // Tag filters follow the active version.
    const byOldTag = await repo.listWorkflows({ tags: { team: "a" }, idContains: "wf-b" }, 10);
    expect(byOldTag.items.map((w) => w.id)).toEqual(["wf-b"]);
    const byNewTag = await repo.listWorkflows({ tags: { team: "b" }, idContains: "wf-b" }, 10);
    expect(byNewTag.items).toEqual([]);
  });

  it("redeploying old content re-activates the existing version instead of adding one", async () => {
    await repo.deploy(version("wf-c", "one"));
    await repo.deploy(version("wf-c", "two"));
    const back = await repo.deploy(version("wf-c", "one"));
    expect(back.created).toBe(false);
    expect(back.version).toMatchObject({ version: 1, active: true });
    expect(back.workflow).toMatchObject({ activeVersion: 1, latestVersion: 2 });
  });

  it("refuses to move a workflow to another namespace", async () => {
    await repo.deploy(version("wf-ns", "one", { namespace: "team-a" }));
    await expect(
      repo.deploy(version("wf-ns", "two", { namespace: "team-b" })),
    ).rejects.toBeInstanceOf(NamespaceConflictError);
    expect((await repo.getWorkflow("wf-ns"))?.latestVersion).toBe(1);
  });

  it("never hands out the same version number to concurrent deploys", async () => {
    const n = 12;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => repo.deploy(version("wf-race", `c${i}`))),
    );
    const numbers = results.map((r) => r.version.version).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    expect((await repo.getWorkflow("wf-race"))?.latestVersion).toBe(n);

    // Identical content deployed concurrently makes exactly one version.
    const same = await Promise.all(
      Array.from({ length: 6 }, () => repo.deploy(version("wf-race2", "same"))),
    );
    expect(same.filter((r) => r.created)).toHaveLength(1);
    expect(new Set(same.map((r) => r.version.version))).toEqual(new Set([1]));
  });

  it("concurrent deploys through two separate connection pools do not collide", async (ctx) => {
    // Two pools on one SQLite file in one process would block each other's synchronous
    // busy-wait; SQLite serves one server process per data directory, PostgreSQL many.
    if (backend.name === "sqlite") ctx.skip();
    const other = await openDatabase({ url });
    try {
      const repo2 = new WorkflowRepo(other);
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? repo : repo2).deploy(version("wf-two-pools", `p${i}`)),
        ),
      );
      const numbers = results.map((r) => r.version.version).sort((a, b) => a - b);
      expect(numbers).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    } finally {
      await other.destroy();
    }
  });

  it("lists workflows newest deploy first with keyset pages and filters", async () => {
    for (let i = 0; i < 7; i++) {
      await repo.deploy(
        version(`list-${i}`, "v", {
          now: 10_000 + i,
          namespace: i % 2 ? "odd" : "even",
          tags: { parity: i % 2 ? "odd" : "even", n: String(i) },
        }),
      );
    }
    const seen: string[] = [];
    let page = await repo.listWorkflows({ idContains: "list-" }, 3);
    seen.push(...page.items.map((w) => w.id));
    while (page.next) {
      page = await repo.listWorkflows({ idContains: "list-" }, 3, page.next);
      seen.push(...page.items.map((w) => w.id));
    }
    expect(seen).toEqual(["list-6", "list-5", "list-4", "list-3", "list-2", "list-1", "list-0"]);

    const odd = await repo.listWorkflows({ namespace: "odd", idContains: "LIST" }, 100);
    expect(odd.items.map((w) => w.id)).toEqual(["list-5", "list-3", "list-1"]);
    const tagged = await repo.listWorkflows({ tags: { parity: "even", n: "4" } }, 100);
    expect(tagged.items.map((w) => w.id)).toEqual(["list-4"]);
    // `_` and `%` are literal in id_contains, not LIKE wildcards.
    expect((await repo.listWorkflows({ idContains: "list_" }, 100)).items).toEqual([]);
    expect((await repo.listWorkflows({ idContains: "%" }, 100)).items).toEqual([]);
  });

  it("lists versions newest first in pages, without definitions", async () => {
    for (let i = 0; i < 5; i++) await repo.deploy(version("wf-v", `v${i}`, { activate: i === 2 }));
    const page1 = await repo.listVersions("wf-v", 2);
    expect(page1?.items.map((v) => v.version)).toEqual([5, 4]);
    expect(page1?.items[0]?.definitionJson).toBeUndefined();
    const page2 = await repo.listVersions("wf-v", 2, page1?.next);
    expect(page2?.items.map((v) => [v.version, v.active])).toEqual([
      [3, true],
      [2, false],
    ]);
    const page3 = await repo.listVersions("wf-v", 2, page2?.next);
    expect(page3?.items.map((v) => v.version)).toEqual([1]);
    expect(page3?.next).toBeUndefined();
    expect(await repo.listVersions("missing", 2)).toBeUndefined();
  });

  it("deletes a workflow with its versions and tags", async () => {
    await repo.deploy(version("wf-del", "one", { tags: { k: "v" } }));
    await repo.deploy(version("wf-del", "two", { tags: { k: "v" } }));
    expect(await repo.delete("wf-del")).toBe(true);
    expect(await repo.getWorkflow("wf-del")).toBeUndefined();
    expect(await db("workflow_versions").where({ workflow_id: "wf-del" })).toEqual([]);
    expect(await db("workflow_tags").where({ workflow_id: "wf-del" })).toEqual([]);
    expect(await repo.delete("wf-del")).toBe(false);
    // The id can be reused from version 1.
    const again = await repo.deploy(version("wf-del", "three"));
    expect(again.version.version).toBe(1);
  });

  it("rolls every migration back and forward again", async () => {
    const scratch = await backend.open();
    try {
      await rollbackAll(scratch.db);
      expect(await scratch.db.schema.hasTable("workflows")).toBe(false);
      expect(await appliedMigrations(scratch.db)).toEqual([]);
    } finally {
      await scratch.cleanup();
    }
  });
});
