// WorkflowService through the real server (gRPC wire, auth, error trailer) on SQLite and
// PostgreSQL, plus the HTTP gateway for one call.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ErrorDetails,
  type FieldViolation,
  type WorkflowDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import { type Client, ClientError, type Metadata, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freshPgDatabase } from "../../../test/support/pg.js";
import { silentLogger } from "../log.js";
import { parseDefinitionText } from "../model/files.js";
import { type Db, openDatabase } from "../store/db.js";
import { ERROR_DETAILS_TRAILER, failedPrecondition } from "./errors.js";
import { registerService } from "./registration.js";
import { startTestKaon, type TestKaon } from "./testing.js";
import { createWorkflowService } from "./workflow-service.js";

function def(yaml: string): WorkflowDefinition {
  const file = parseDefinitionText(yaml, "t.yaml");
  if (!file.definition) throw new Error(JSON.stringify(file.violations));
  return file.definition;
}

const PIPELINE = `
id: recs
description: first
tags: {team: ml}
steps:
  - {id: prepare, type: noop, next: [{to: train}]}
  - {id: train, type: noop, next: [{to: validate}]}
  - {id: validate, type: noop}
`;

/** Calls `fn` and returns the gRPC error with the violations from the trailer. */
async function rpcError(
  fn: (options: { onTrailer(md: Metadata): void }) => Promise<unknown>,
): Promise<{ code: Status; details: string; violations: FieldViolation[] }> {
  let trailer: Metadata | undefined;
  try {
    await fn({ onTrailer: (md) => (trailer = md) });
  } catch (err) {
    if (!(err instanceof ClientError)) throw err;
    const bytes = trailer?.get(ERROR_DETAILS_TRAILER);
    const violations = bytes instanceof Uint8Array ? ErrorDetails.decode(bytes).violations : [];
    return { code: err.code, details: err.details, violations };
  }
  throw new Error("expected the call to fail");
}

const databases = [
  {
    name: "sqlite",
    async open() {
      const dir = mkdtempSync(join(tmpdir(), "kaon-wfsvc-"));
      const db = await openDatabase({ url: `sqlite:${join(dir, "kaon.db")}` });
      return { db, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
    },
  },
  {
    name: "postgres",
    async open() {
      const pg = await freshPgDatabase("wfsvc");
      const db = await openDatabase({ url: pg.url });
      return { db, cleanup: () => pg.drop() };
    },
  },
];

describe.each(databases)("WorkflowService over gRPC on $name", (database) => {
  let kaon: TestKaon;
  let db: Db;
  let cleanup: () => Promise<void>;
  let client: Client<typeof WorkflowServiceDefinition>;
  const unfinished = new Set<string>();

  beforeAll(async () => {
    ({ db, cleanup } = await database.open());
    const impl = createWorkflowService({
      db,
      log: silentLogger,
      whileNoRuns: async (id, deleteIt) => {
        if (unfinished.has(id)) throw failedPrecondition(`workflow '${id}' has unfinished runs`);
        return deleteIt();
      },
    });
    kaon = await startTestKaon({ services: [registerService(WorkflowServiceDefinition, impl)] });
    client = kaon.client(WorkflowServiceDefinition);
  });
  afterAll(async () => {
    await kaon?.stop();
    await db?.destroy();
    await cleanup?.();
  });

  it("Validate returns violations with paths, or the canonical form and hash", async () => {
    const bad = await client.validate({
      definition: def(PIPELINE.replace("{to: validate}", "{to: valdate}")),
    });
    expect(bad.violations).toEqual([
      {
        field: "steps[1].next[0].to",
        description: "step 'train': unknown successor 'valdate'",
        hint: "did you mean 'validate'?",
      },
    ]);
    expect(bad.contentHash).toBe("");

    const good = await client.validate({ definition: def(PIPELINE) });
    expect(good.violations).toEqual([]);
    expect(good.contentHash).toMatch(/^[0-9a-f]{64}$/);
    expect(good.canonical?.namespace).toBe("default");

    const none = await client.validate({});
    expect(none.violations[0]?.field).toBe("definition");
  });

  it("Deploy rejects an invalid definition with INVALID_ARGUMENT and the violations trailer", async () => {
    const err = await rpcError((options) =>
      client.deploy(
        {
          definition: def(
            `
            id: broken
            steps:
              - {id: a, type: comand, resources: {cpus: -2}}
          `.replace(/^ {12}/gm, ""),
          ),
        },
        options,
      ),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain("workflow definition 'broken' is invalid (2 problems)");
    expect(err.details).toContain("steps[0].type: step 'a': unknown step type 'comand'");
    expect(err.violations.map((v) => v.field)).toEqual([
      "steps[0].type",
      "steps[0].resources.cpus",
    ]);
    const missing = await client.getWorkflow({ workflowId: "broken" }).catch((e: ClientError) => e);
    expect((missing as ClientError).code).toBe(Status.NOT_FOUND);
  });

  it("Deploy makes immutable versions, returns the existing one for identical content, and records metadata", async () => {
    const scm = {
      commit: "abc123",
      branch: "main",
      dirty: true,
      author: "Ann <ann@x>",
      repository: "",
    };
    const clientInfo = { name: "kaon-cli", version: "0.1.0", user: "ann", host: "box" };
    const first = await client.deploy({ definition: def(PIPELINE), scm, client: clientInfo });
    expect(first.created).toBe(true);
    expect(first.version).toMatchObject({
      workflowId: "recs",
      version: 1,
      active: true,
      scm,
      client: clientInfo,
    });
    expect(first.version?.definition?.steps.map((s) => s.id)).toEqual([
      "prepare",
      "train",
      "validate",
    ]);

    // Same content, spelled differently: same version, nothing new.
    const respelled = def(PIPELINE.replace("id: recs", "id: recs\nnamespace: default"));
    const again = await client.deploy({ definition: respelled });
    expect(again.created).toBe(false);
    expect(again.version?.version).toBe(1);
    expect(again.version?.contentHash).toBe(first.version?.contentHash);
    expect(again.version?.scm).toEqual(scm);

    const second = await client.deploy({
      definition: def(PIPELINE.replace("description: first", "description: second")),
      activate: false,
    });
    expect(second.created).toBe(true);
    expect(second.version).toMatchObject({ version: 2, active: false });

    const active = await client.getWorkflow({ workflowId: "recs" });
    expect(active.version?.version).toBe(1);
    expect(active.workflow).toMatchObject({
      activeVersion: 1,
      latestVersion: 2,
      description: "first",
    });
    const latest = await client.getWorkflow({ workflowId: "recs", version: -1 });
    expect(latest.version?.definition?.description).toBe("second");
    const numbered = await client.getWorkflow({ workflowId: "recs", version: 2 });
    expect(numbered.version?.active).toBe(false);

    const noSuch = await rpcError(() => client.getWorkflow({ workflowId: "recs", version: 9 }));
    expect(noSuch.code).toBe(Status.NOT_FOUND);
    expect(noSuch.details).toContain("has no version 9 (versions are 1-2)");
    const badSelector = await rpcError(() =>
      client.getWorkflow({ workflowId: "recs", version: -5 }),
    );
    expect(badSelector.code).toBe(Status.INVALID_ARGUMENT);
  });

  it("refuses to move a workflow to another namespace", async () => {
    await client.deploy({
      definition: def("id: ns-wf\nnamespace: a\nsteps: [{id: x, type: noop}]"),
    });
    const err = await rpcError(() =>
      client.deploy({ definition: def("id: ns-wf\nnamespace: b\nsteps: [{id: x, type: noop}]") }),
    );
    expect(err.code).toBe(Status.FAILED_PRECONDITION);
    expect(err.details).toContain("belongs to namespace 'a'");
  });

  it("concurrent deploys of one workflow get distinct version numbers", async () => {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        client.deploy({
          definition: def(`id: racy\ndescription: v${i}\nsteps: [{id: x, type: noop}]`),
        }),
      ),
    );
    expect(results.map((r) => r.version?.version).sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it("Activate rolls back and forward; errors name the problem", async () => {
    await client.deploy({ definition: def(PIPELINE.replace("id: recs", "id: rollback")) });
    await client.deploy({
      definition: def(PIPELINE.replace("id: recs", "id: rollback").replace("first", "newer")),
    });
    const back = await client.activate({ workflowId: "rollback", version: 1 });
    expect(back.workflow).toMatchObject({
      activeVersion: 1,
      latestVersion: 2,
      description: "first",
    });
    const forward = await client.activate({ workflowId: "rollback", version: 2 });
    expect(forward.workflow?.activeVersion).toBe(2);

    expect(
      (await rpcError(() => client.activate({ workflowId: "rollback", version: 3 }))).details,
    ).toContain("has no version 3");
    expect((await rpcError(() => client.activate({ workflowId: "nope", version: 1 }))).code).toBe(
      Status.NOT_FOUND,
    );
    const zero = await rpcError((o) => client.activate({ workflowId: "rollback", version: 0 }, o));
    expect(zero.code).toBe(Status.INVALID_ARGUMENT);
    expect(zero.violations[0]?.field).toBe("version");
  });

  it("lists workflows and versions in pages, with filters and checked page tokens", async () => {
    for (let i = 0; i < 5; i++) {
      await client.deploy({
        definition: def(
          `id: page-${i}\ntags: {parity: ${i % 2 ? "odd" : "even"}}\nnamespace: paging\nsteps: [{id: x, type: noop}]`,
        ),
      });
    }
    const ids: string[] = [];
    let pageToken = "";
    do {
      const page = await client.listWorkflows({ pageSize: 2, pageToken, namespace: "paging" });
      expect(page.workflows.length).toBeLessThanOrEqual(2);
      ids.push(...page.workflows.map((w) => w.id));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(ids).toEqual(["page-4", "page-3", "page-2", "page-1", "page-0"]);

    const odd = await client.listWorkflows({ namespace: "paging", tags: { parity: "odd" } });
    expect(odd.workflows.map((w) => w.id)).toEqual(["page-3", "page-1"]);
    const contains = await client.listWorkflows({ idContains: "page-2" });
    expect(contains.workflows.map((w) => w.id)).toEqual(["page-2"]);

    const first = await client.listWorkflows({ pageSize: 1, namespace: "paging" });
    const otherFilter = await rpcError((o) =>
      client.listWorkflows({ pageSize: 1, pageToken: first.nextPageToken, namespace: "other" }, o),
    );
    expect(otherFilter.code).toBe(Status.INVALID_ARGUMENT);
    expect(otherFilter.violations[0]).toMatchObject({ field: "page_token" });
    expect(otherFilter.details).toContain("different query");
    const garbage = await rpcError(() => client.listWorkflows({ pageToken: "not-a-token" }));
    expect(garbage.code).toBe(Status.INVALID_ARGUMENT);
    const tooBig = await rpcError((o) => client.listWorkflows({ pageSize: 1001 }, o));
    expect(tooBig.violations[0]?.field).toBe("page_size");

    for (let i = 0; i < 3; i++) {
      await client.deploy({
        definition: def(`id: versions\ndescription: v${i}\nsteps: [{id: x, type: noop}]`),
      });
    }
    const v1 = await client.listVersions({ workflowId: "versions", pageSize: 2 });
    expect(v1.versions.map((v) => v.version)).toEqual([3, 2]);
    expect(v1.versions[0]?.definition).toBeUndefined();
    const v2 = await client.listVersions({
      workflowId: "versions",
      pageSize: 2,
      pageToken: v1.nextPageToken,
    });
    expect(v2.versions.map((v) => [v.version, v.active])).toEqual([[1, false]]);
    expect(v2.nextPageToken).toBe("");
    const wrongWorkflow = await rpcError(() =>
      client.listVersions({ workflowId: "recs", pageToken: v1.nextPageToken }),
    );
    expect(wrongWorkflow.code).toBe(Status.INVALID_ARGUMENT);
    expect((await rpcError(() => client.listVersions({ workflowId: "nope" }))).code).toBe(
      Status.NOT_FOUND,
    );
  });

  it("answers ids that cannot exist (NUL, overlong) with NOT_FOUND or nothing, never INTERNAL", async () => {
    // PostgreSQL refuses NUL bytes in text; such ids must not reach it as a query.
    for (const workflowId of ["a\u0000b", "x".repeat(5000)]) {
      for (const call of [
        () => client.getWorkflow({ workflowId }),
        () => client.listVersions({ workflowId }),
        () => client.activate({ workflowId, version: 1 }),
        () => client.deleteWorkflow({ workflowId }),
      ]) {
        const err = await rpcError(() => call());
        expect(err.code).toBe(Status.NOT_FOUND);
      }
    }
    const none = await client.listWorkflows({ idContains: "\u0000", namespace: "n\u0000" });
    expect(none.workflows).toEqual([]);
    const tagged = await client.listWorkflows({ tags: { "t\u0000": "v\u0000" } });
    expect(tagged.workflows).toEqual([]);

    // ... nor can a definition bring one in through its text fields.
    const withNul = def(PIPELINE.replace("id: recs", "id: nul-text"));
    withNul.description = "a\u0000b";
    withNul.tags = { team: "m\u0000l" };
    const err = await rpcError((options) => client.deploy({ definition: withNul }, options));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.violations.map((v) => v.field)).toEqual(["description", "tags.team"]);
  });

  it("DeleteWorkflow refuses while runs are unfinished, then deletes everything", async () => {
    await client.deploy({ definition: def("id: doomed\nsteps: [{id: x, type: noop}]") });
    unfinished.add("doomed");
    const refused = await rpcError(() => client.deleteWorkflow({ workflowId: "doomed" }));
    expect(refused.code).toBe(Status.FAILED_PRECONDITION);
    expect(refused.details).toContain("unfinished runs");
    unfinished.delete("doomed");
    await client.deleteWorkflow({ workflowId: "doomed" });
    expect((await rpcError(() => client.getWorkflow({ workflowId: "doomed" }))).code).toBe(
      Status.NOT_FOUND,
    );
    expect((await rpcError(() => client.deleteWorkflow({ workflowId: "doomed" }))).code).toBe(
      Status.NOT_FOUND,
    );
    const noId = await rpcError((o) => client.deleteWorkflow({ workflowId: "" }, o));
    expect(noId.violations[0]?.field).toBe("workflow_id");
  });

  it("answers through the HTTP gateway too, violations included", async () => {
    const bad = await kaon.http("/v1/WorkflowService/Deploy", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        definition: { id: "http-wf", steps: [{ id: "a", type: "noop", next: [{ to: "b" }] }] },
      }),
    });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(await bad.json())).toContain("steps[0].next[0].to");

    const ok = await kaon.http("/v1/WorkflowService/Deploy", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ definition: { id: "http-wf", steps: [{ id: "a", type: "noop" }] } }),
    });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { created: boolean; version: { version: number } };
    expect(body).toMatchObject({ created: true, version: { version: 1 } });
  });
});
