// Durability: kill -9 the server in the middle of a run, start it again on the same data
// directory, and the run completes with every step executed exactly once — running jobs are
// re-adopted from the local agent, not re-run, and no completion is lost or applied twice.
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
import { createChannel, createClient, Metadata } from "nice-grpc";
import { afterAll, describe, expect, it } from "vitest";
import { openDatabase } from "../../core/src/store/db.js";
import { WorkflowRepo } from "../../core/src/store/workflow-repo.js";
import { killQuietly } from "./support/harness.js";

const here = new URL("./support/server-process.ts", import.meta.url).pathname;

const dataDir = mkdtempSync(join(tmpdir(), "kaon-crash-"));
let agentPid: number | undefined;
const children: ChildProcess[] = [];
const channels: Array<ReturnType<typeof createChannel>> = [];

afterAll(() => {
  for (const ch of channels) ch.close();
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  if (agentPid) killQuietly(agentPid);
  rmSync(dataDir, { recursive: true, force: true });
});

async function startServerProcess(): Promise<{
  child: ChildProcess;
  grpc: string;
  adminToken: string;
}> {
  // node itself, not the tsx wrapper script: SIGKILL must hit the server, not a parent that
  // would leave the real server running.
  const child = spawn(process.execPath, ["--import", "tsx", here, dataDir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once("line", resolve);
    child.once("exit", (code) => reject(new Error(`server process exited with ${code}`)));
  });
  const info = JSON.parse(first) as { grpc: string; adminToken: string; agentPid: number };
  agentPid = info.agentPid;
  return { child, grpc: info.grpc, adminToken: info.adminToken };
}

function client(grpc: string, token: string) {
  const md = Metadata();
  md.set("authorization", `Bearer ${token}`);
  const channel = createChannel(grpc);
  channels.push(channel);
  return createClient(RunServiceDefinition, channel, { "*": { metadata: md } });
}

describe("recovery after kill -9", () => {
  it("completes the run with every step executed exactly once", async () => {
    const counter = join(dataDir, "executions.log");
    const record = (label: string, sleep: number) => ({
      shell: `echo "${label}" >> "${counter}"; sleep ${sleep}; echo "done=1" >> "$KAON_OUTPUT"`,
    });
    const def = messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", {
      id: "crashy",
      steps: [
        { id: "first", type: "command", config: record("first", 0.05), next: [{ to: "fan" }] },
        {
          id: "fan",
          type: "foreach",
          foreach: {
            axes: [{ values: [0, 1, 2, 3, 4, 5] }],
            concurrency: 3,
            body: [
              {
                id: "work",
                type: "command",
                config: { shell: `echo "work-$KAON_PATH" >> "${counter}"; sleep 0.6` },
              },
            ],
          },
          next: [{ to: "last" }],
        },
        { id: "last", type: "command", config: record("last", 0.05) },
      ],
    });
    // Deploy straight into the database before the server starts.
    const db = await openDatabase({ url: `sqlite:${join(dataDir, "kaon.db")}` });
    const text = JSON.stringify(
      messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", def),
    );
    await new WorkflowRepo(db).deploy({
      workflowId: "crashy",
      namespace: "default",
      description: "",
      owner: "",
      tags: {},
      definitionJson: text,
      contentHash: createHash("sha256").update(text).digest("hex"),
      activate: true,
    });
    await db.destroy();

    const s1 = await startServerProcess();
    const c1 = client(s1.grpc, s1.adminToken);
    const { run } = await c1.startRun({ workflowId: "crashy" });
    const runId = (run as Run).id;
    // Wait until iterations are running, then crash the server.
    let running = 0;
    for await (const msg of c1.watchRun({ runId, afterSeq: 0 })) {
      for (const e of msg.events) {
        if (
          e.path.startsWith("fan[") &&
          e.kind?.$case === "stepStatus" &&
          e.kind.value === StepStatus.STEP_STATUS_RUNNING
        )
          running++;
      }
      if (running >= 3) break;
    }
    s1.child.kill("SIGKILL");
    await new Promise((r) => s1.child.once("exit", r));

    const s2 = await startServerProcess();
    const c2 = client(s2.grpc, s2.adminToken);
    const deadline = AbortSignal.timeout(30_000);
    let final: Run | undefined;
    for await (const msg of c2.watchRun({ runId, afterSeq: 0 }, { signal: deadline }))
      final = msg.run;
    expect(final?.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const lines = readFileSync(counter, "utf8").trim().split("\n").sort();
    expect(lines).toEqual([
      "first",
      "last",
      "work-fan[0]/work",
      "work-fan[1]/work",
      "work-fan[2]/work",
      "work-fan[3]/work",
      "work-fan[4]/work",
      "work-fan[5]/work",
    ]);
    // Every step instance has exactly one attempt: re-adopted, never re-run.
    for (const path of ["first", "fan[0]/work", "fan[1]/work", "fan[2]/work", "last"]) {
      const got = await c2.getStep({ runId, path });
      expect(
        got.attempts.map((a) => a.number),
        path,
      ).toEqual([1]);
    }
    // Events stay dense across the crash.
    const events = [];
    for await (const msg of c2.watchRun({ runId, afterSeq: 0 })) events.push(...msg.events);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    s2.child.kill("SIGKILL");
  });
});
