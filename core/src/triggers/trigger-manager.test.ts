// The trigger manager's handling of fires that cannot start a run, over a real SQLite store:
// a transient failure (the database, the engine not accepting work) is retried with backoff
// until a run starts, a refusal is recorded and not retried, and stop() ends a retry's wait.
// The engine is a stand-in that fails as scripted — the subject here is the manager's policy;
// test/triggers runs the whole server.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { messageToJson, WorkflowDefinition } from "@kaon/proto";
import { ServerError, Status } from "nice-grpc";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { workflowRepoDefinitions } from "../engine/definitions.js";
import { EngineError, type StartRunInput } from "../engine/engine.js";
import { parseDefinitionText } from "../model/files.js";
import { type Db, openDatabase } from "../store/db.js";
import { WorkflowRepo } from "../store/workflow-repo.js";
import { type AnnouncedArtifact, TriggerManager } from "./trigger-manager.js";

const YAML = `
id: consumer
params:
  - { name: uri, type: PARAM_TYPE_STRING, required: true }
steps:
  - { id: use, type: noop }
triggers:
  - id: on-table
    artifact: { name: table.daily }
    params:
      - { name: uri, expr: "trigger.artifact.uri" }
`;

/** Starts runs as scripted: each call takes the next outcome (an error, or "ok"). */
class ScriptedEngine {
  readonly artifactListeners: Array<(a: AnnouncedArtifact) => void> = [];
  readonly calls: StartRunInput[] = [];
  constructor(private readonly script: Array<Error | "ok">) {}
  async startRun(input: StartRunInput): Promise<{ runId: string; created: boolean }> {
    this.calls.push(input);
    const next = this.script.shift() ?? "ok";
    if (next !== "ok") throw next;
    return { runId: `run-${this.calls.length}`, created: true };
  }
  announce(revision: number): void {
    for (const l of this.artifactListeners) {
      l({
        namespace: "default",
        name: "table.daily",
        partitions: {},
        uri: `s3://t/${revision}`,
        metadata: {},
        revision,
      });
    }
  }
}

describe("trigger fires that cannot start a run", () => {
  let dir: string;
  let db: Db;
  let repo: WorkflowRepo;
  const managers: TriggerManager[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "kaon-trigmgr-"));
    db = await openDatabase({ url: `sqlite:${join(dir, "kaon.db")}` });
    repo = new WorkflowRepo(db);
    const file = parseDefinitionText(YAML, "consumer.yaml");
    if (!file.definition) throw new Error(JSON.stringify(file.violations));
    const json = JSON.stringify(
      messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", file.definition),
    );
    await repo.deploy({
      workflowId: "consumer",
      namespace: "default",
      description: "",
      owner: "",
      tags: {},
      definitionJson: json,
      contentHash: createHash("sha256").update(json).digest("hex"),
      activate: true,
    });
  });

  afterEach(async () => {
    for (const m of managers.splice(0)) await m.stop();
    await db.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  async function manager(engine: ScriptedEngine, retryDelaysMs: number[]) {
    const m = new TriggerManager({
      db,
      engine,
      repo,
      definitions: workflowRepoDefinitions(repo),
      retryDelaysMs,
    });
    managers.push(m);
    await m.start();
    return m;
  }

  const lastError = async (m: TriggerManager) => (await m.list("consumer"))[0]?.lastError?.message;

  it("retries a transient failure with the same request id until a run starts, then clears the error", async () => {
    const engine = new ScriptedEngine([
      new Error("SQLITE_BUSY: database is locked"),
      new ServerError(Status.UNAVAILABLE, "the engine is not accepting work"),
      "ok",
    ]);
    const m = await manager(engine, [5, 5, 5]);
    engine.announce(1);
    await m.idle();
    expect(engine.calls).toHaveLength(3);
    expect(new Set(engine.calls.map((c) => c.requestId)).size).toBe(1);
    expect(engine.calls[0]?.params).toEqual({ uri: "s3://t/1" });
    expect(await lastError(m)).toBeUndefined();
    const rows = await db("trigger_states").select("last_error", "last_fired_at");
    expect(rows).toEqual([{ last_error: null, last_fired_at: expect.any(Number) }]);
  });

  it("gives up after the last delay and keeps the error, saying so", async () => {
    const busy = () => new Error("SQLITE_BUSY: database is locked");
    const engine = new ScriptedEngine([busy(), busy(), busy()]);
    const m = await manager(engine, [5, 5]);
    engine.announce(1);
    await m.idle();
    expect(engine.calls).toHaveLength(3);
    expect(await lastError(m)).toBe("SQLITE_BUSY: database is locked (gave up after 3 attempts)");
  });

  it("does not retry a refusal, and a new manager reads the recorded error", async () => {
    const engine = new ScriptedEngine([
      new ServerError(Status.INVALID_ARGUMENT, "param 'uri': expected a string"),
    ]);
    const m = await manager(engine, [5, 5, 5]);
    engine.announce(1);
    await m.idle();
    expect(engine.calls).toHaveLength(1);
    expect(await lastError(m)).toBe("param 'uri': expected a string");
    await m.stop();
    const again = await manager(new ScriptedEngine([]), [5]);
    expect(await lastError(again)).toBe("param 'uri': expected a string");
  });

  it("does not retry the engine's own refusals, but retries while it is unavailable", async () => {
    const refused = new ScriptedEngine([
      new EngineError("INVALID_ARGUMENT", "param 'uri': expected a string"),
    ]);
    const m = await manager(refused, [5, 5]);
    refused.announce(1);
    await m.idle();
    expect(refused.calls).toHaveLength(1);
    await m.stop();
    const unavailable = new ScriptedEngine([
      new EngineError("UNAVAILABLE", "the server could not write to its database"),
      "ok",
    ]);
    const again = await manager(unavailable, [5, 5]);
    unavailable.announce(2);
    await again.idle();
    expect(unavailable.calls).toHaveLength(2);
    expect(await lastError(again)).toBeUndefined();
  });

  it("stops retrying when the manager stops", async () => {
    const engine = new ScriptedEngine([new Error("connection refused")]);
    const m = await manager(engine, [60_000]);
    engine.announce(1);
    // The first attempt fails and the retry waits a minute; stop() ends the wait at once.
    await expect.poll(async () => await lastError(m)).toContain("retrying in 60 s");
    await m.stop();
    expect(engine.calls).toHaveLength(1);
  });
});
