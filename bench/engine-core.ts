// Core's own CPU per command task — engine, journal, group commit, SQLite — without the agent,
// its processes and the socket between them: an in-process backend answers every launch at
// once (RUNNING in the next tick, FINISHED in the one after), so A/B comparisons of engine and
// store changes are not drowned in the agent's and the jobs' noise on a shared machine. It
// complements engine-commands.ts (which measures the whole path) and asserts nothing.
// Prints, per repetition: core CPU µs per task (fan-out, concurrency 8) and commits per task;
// then for a chain: CPU µs and commits per hop. The first repetition includes JIT warm-up.
// Run: npx tsx bench/engine-core.ts [fanout] [repetitions] [chainLength]
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { messageFromJson, messageToJson, WorkflowDefinition } from "@kaon/proto";
import { loadOrCreateAuthFiles, StepTokens } from "../core/src/api/auth.js";
import type {
  BackendCallbacks,
  ComputeBackend,
  Offer,
  ResourceAmounts,
  TaskSpec,
} from "../core/src/backends/backend.js";
import { workflowRepoDefinitions } from "../core/src/engine/definitions.js";
import { Engine } from "../core/src/engine/engine.js";
import { RUN_ENDED } from "../core/src/engine/notifier.js";
import { silentLogger } from "../core/src/log.js";
import { StepTypeRegistry } from "../core/src/steps/registry.js";
import { openDatabase } from "../core/src/store/db.js";
import { WorkflowRepo } from "../core/src/store/workflow-repo.js";

/** One agent with 2 cpus whose tasks start and succeed at once. */
class InstantBackend implements ComputeBackend {
  readonly name = "instant";
  private callbacks: BackendCallbacks | undefined;
  private readonly free: ResourceAmounts = { cpus: 2, memMb: 4096, gpus: 0, diskMb: 100_000 };
  private offer: Offer | undefined;
  private seq = 0;
  private suppressed = false;
  private scheduled = false;

  async start(callbacks: BackendCallbacks): Promise<void> {
    this.callbacks = callbacks;
    this.offerSoon();
  }
  private offerSoon(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      if (this.suppressed || this.offer || !this.callbacks) return;
      this.offer = {
        id: `o${++this.seq}`,
        agentId: "a1",
        hostname: "instant",
        resources: { ...this.free },
        attributes: {},
      };
      this.callbacks.onOffers([this.offer]);
    });
  }
  launch(_offerIds: string[], tasks: TaskSpec[]): void {
    this.offer = undefined;
    for (const t of tasks) {
      this.free.cpus -= t.resources.cpus;
      this.free.memMb -= t.resources.memMb;
    }
    this.offerSoon();
    const cb = this.callbacks as BackendCallbacks;
    setImmediate(() => {
      for (const t of tasks)
        cb.onStatus({ taskId: t.taskId, state: "RUNNING", agentId: "a1", timestamp: Date.now() });
      setImmediate(() => {
        for (const t of tasks) {
          this.free.cpus += t.resources.cpus;
          this.free.memMb += t.resources.memMb;
          cb.onStatus({
            taskId: t.taskId,
            state: "FINISHED",
            agentId: "a1",
            exitCode: 0,
            timestamp: Date.now(),
          });
        }
        this.offerSoon();
      });
    });
  }
  decline(): void {
    this.offer = undefined;
  }
  acknowledge(): void {}
  fitsEver(): boolean {
    return true;
  }
  kill(): void {}
  reconcile(): void {}
  suppress(): void {
    this.suppressed = true;
  }
  revive(): void {
    this.suppressed = false;
    this.offerSoon();
  }
  async stop(): Promise<void> {}
}

const fanout = Number(process.argv[2] ?? 10_000);
const repetitions = Number(process.argv[3] ?? 3);
const chainLength = Number(process.argv[4] ?? 200);

const dataDir = mkdtempSync(join(tmpdir(), "kaon-core-bench-"));
const db = await openDatabase({ url: `sqlite:${join(dataDir, "kaon.db")}` });
const repo = new WorkflowRepo(db);
const engine = new Engine({
  db,
  definitions: workflowRepoDefinitions(repo),
  stepTypes: new StepTypeRegistry(),
  backend: new InstantBackend(),
  tokens: new StepTokens(loadOrCreateAuthFiles(dataDir).secret),
  dataDir,
  endpoint: () => "127.0.0.1:1",
  log: silentLogger,
});
await engine.start();

async function deploy(json: unknown): Promise<void> {
  const def = messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", json);
  const text = JSON.stringify(messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", def));
  await repo.deploy({
    workflowId: def.id,
    namespace: def.namespace || "default",
    description: def.description,
    owner: def.owner,
    tags: def.tags,
    definitionJson: text,
    contentHash: createHash("sha256").update(text).digest("hex"),
    activate: true,
  });
}

async function runToEnd(workflowId: string): Promise<void> {
  let runId = "";
  const ended = new Promise<void>((resolve) => {
    const off = engine.notifier.subscribe(RUN_ENDED, () => {
      if (runId && !engine.isLive(runId)) {
        off();
        resolve();
      }
    });
  });
  ({ runId } = await engine.startRun({ workflowId, version: 0, params: {} }));
  if (engine.isLive(runId)) await ended;
}

const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
async function measure(workflowId: string, n: number) {
  const c0 = cpuUs();
  const f0 = engine.journalFlushes;
  const t0 = performance.now();
  await runToEnd(workflowId);
  return {
    cpuUs: Math.round((cpuUs() - c0) / n),
    commits: Number(((engine.journalFlushes - f0) / n).toFixed(3)),
    ms: Math.round(performance.now() - t0),
  };
}

const tiny = { cpus: 0.1, memMb: 16 };
try {
  await deploy({
    id: "fanout",
    steps: [
      {
        id: "fe",
        type: "foreach",
        foreach: {
          axes: [{ values: Array.from({ length: fanout }, (_, i) => i) }],
          concurrency: 8,
          body: [{ id: "t", type: "command", config: { argv: ["true"] }, resources: tiny }],
        },
      },
    ],
  });
  await deploy({
    id: "chain",
    steps: Array.from({ length: chainLength }, (_, i) => ({
      id: `s${i}`,
      type: "command",
      config: { argv: ["true"] },
      resources: tiny,
      ...(i + 1 < chainLength ? { next: [{ to: `s${i + 1}` }] } : {}),
    })),
  });
  const fan = [];
  const chain = [];
  for (let r = 0; r < repetitions; r++) fan.push(await measure("fanout", fanout));
  for (let r = 0; r < repetitions; r++) chain.push(await measure("chain", chainLength));
  console.log(
    JSON.stringify({
      bench: "engine-core",
      fanout: {
        tasks: fanout,
        cpuUsPerTask: fan.map((f) => f.cpuUs),
        commitsPerTask: fan[0]?.commits,
      },
      chain: {
        steps: chainLength,
        cpuUsPerHop: chain.map((c) => c.cpuUs),
        commitsPerHop: chain[0]?.commits,
      },
    }),
  );
} finally {
  await engine.shutdown();
  await db.destroy();
  rmSync(dataDir, { recursive: true, force: true });
}
