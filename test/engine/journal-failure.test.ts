// J1 (docs/review-engine.md): a failed journal write. The database refuses one batch (a real
// SQLite error, raised by a trigger another connection installs under the running server);
// the server must answer calls at once with UNAVAILABLE naming the cause — never hang, never
// go on with memory ahead of the database — and exit so that a restart recovers exactly the
// committed state: the run that was RUNNING continues with its step executed once, the run
// whose creation failed does not exist.
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import {
  messageFromJson,
  messageToJson,
  type Run,
  RunServiceDefinition,
  RunStatus,
  StepStatus,
  WorkflowDefinition,
} from "@kaon/proto";
import { createChannel, createClient, Metadata, Status } from "nice-grpc";
import { afterAll, describe, expect, it } from "vitest";
import { EXIT_JOURNAL_FAILURE } from "../../core/src/engine/engine.js";
import { openDatabase } from "../../core/src/store/db.js";
import { WorkflowRepo } from "../../core/src/store/workflow-repo.js";
import { killQuietly } from "./support/harness.js";

const here = new URL("./support/server-process.ts", import.meta.url).pathname;

const dataDir = mkdtempSync(join(tmpdir(), "kaon-j1-"));
const dbUrl = `sqlite:${join(dataDir, "kaon.db")}`;
let agentPid: number | undefined;
const children: ChildProcess[] = [];
const channels: Array<ReturnType<typeof createChannel>> = [];

afterAll(() => {
  for (const ch of channels) ch.close();
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (agentPid) killQuietly(agentPid);
  rmSync(dataDir, { recursive: true, force: true });
});

async function startServerProcess() {
  const child = spawn(process.execPath, ["--import", "tsx", here, dataDir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`server process exited with ${code}`)));
  });
  const info = JSON.parse(first) as { grpc: string; adminToken: string; agentPid: number };
  agentPid = info.agentPid;
  const md = Metadata();
  md.set("authorization", `Bearer ${info.adminToken}`);
  const channel = createChannel(info.grpc);
  channels.push(channel);
  const runs = createClient(RunServiceDefinition, channel, { "*": { metadata: md } });
  return { child, runs, exited, stderr: () => stderr };
}

async function deploy(json: unknown): Promise<void> {
  const def = messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", json);
  const text = JSON.stringify(messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", def));
  const db = await openDatabase({ url: dbUrl });
  try {
    await new WorkflowRepo(db).deploy({
      workflowId: def.id,
      namespace: "default",
      description: "",
      owner: "",
      tags: {},
      definitionJson: text,
      contentHash: createHash("sha256").update(text).digest("hex"),
      activate: true,
    });
  } finally {
    await db.destroy();
  }
}

/** Runs SQL on the server's database through a second connection. */
async function sql(statement: string): Promise<void> {
  const db = await openDatabase({ url: dbUrl });
  try {
    await db.raw(statement);
  } finally {
    await db.destroy();
  }
}

async function failure(call: Promise<unknown>): Promise<{ code?: number; details?: string }> {
  return call.then(
    () => ({}),
    (e: { code?: number; details?: string }) => e,
  );
}

describe("a failed journal write (J1)", () => {
  it("refuses calls at once with the cause, exits, and a restart recovers the committed state", async () => {
    const counter = join(dataDir, "executions.log");
    await deploy({
      id: "j1-long",
      steps: [
        {
          id: "a",
          type: "command",
          config: { shell: `echo a >> "${counter}"; sleep 2` },
          next: [{ to: "b" }],
        },
        { id: "b", type: "command", config: { shell: `echo b >> "${counter}"` } },
      ],
    });
    await deploy({ id: "j1-boom", steps: [{ id: "x", type: "noop" }] });

    const s1 = await startServerProcess();
    const { run } = await s1.runs.startRun({ workflowId: "j1-long" });
    const runId = (run as Run).id;
    for await (const msg of s1.runs.watchRun({ runId, afterSeq: 0 })) {
      if (
        msg.events.some(
          (e) =>
            e.path === "a" &&
            e.kind?.$case === "stepStatus" &&
            e.kind.value === StepStatus.STEP_STATUS_RUNNING,
        )
      )
        break;
    }

    await sql(`CREATE TRIGGER j1_refuse BEFORE INSERT ON runs WHEN NEW.workflow_id = 'j1-boom'
      BEGIN SELECT RAISE(ABORT, 'simulated write failure'); END`);
    const fast = () => ({ signal: AbortSignal.timeout(5_000) });
    // The call whose batch fails is answered with the cause (it used to hang for ever).
    const first = await failure(s1.runs.startRun({ workflowId: "j1-boom" }, fast()));
    expect(first.code).toBe(Status.UNAVAILABLE);
    expect(first.details).toContain("simulated write failure");
    // Every later call that needs the journal is refused at once, naming the same cause.
    const later = await failure(s1.runs.startRun({ workflowId: "j1-long" }, fast()));
    expect(later.code).toBe(Status.UNAVAILABLE);
    expect(later.details).toContain("simulated write failure");
    const stop = await failure(s1.runs.stopRun({ runId, reason: "" }, fast()));
    expect(stop.code).toBe(Status.UNAVAILABLE);
    // The process exits so that the state in memory (ahead of the database) is discarded.
    expect(await s1.exited).toBe(EXIT_JOURNAL_FAILURE);
    expect(s1.stderr()).toContain("simulated write failure");

    await sql("DROP TRIGGER j1_refuse");
    const s2 = await startServerProcess();
    let final: Run | undefined;
    for await (const msg of s2.runs.watchRun(
      { runId, afterSeq: 0 },
      { signal: AbortSignal.timeout(30_000) },
    ))
      final = msg.run;
    // The stop was refused, not half-applied: the run went on and succeeded.
    expect(final?.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(readFileSync(counter, "utf8").trim().split("\n")).toEqual(["a", "b"]);
    const a = await s2.runs.getStep({ runId, path: "a" });
    expect(a.attempts.map((x) => x.number)).toEqual([1]);
    const boom = await s2.runs.listRuns({
      workflowId: "j1-boom",
      namespace: "",
      statuses: [],
      pageSize: 10,
      pageToken: "",
    });
    expect(boom.runs).toHaveLength(0);
    s2.child.kill("SIGKILL");
  }, 60_000);
});
