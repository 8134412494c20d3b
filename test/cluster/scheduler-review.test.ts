// Regression tests for the scheduler review (docs/review-scheduler.md), each through a real
// server (createKaon), the real local agent and real processes over a 4-cpu pool whose one
// agent has the attribute pool=test. Steps that must hold resources wait on a gate file.
import { join } from "node:path";
import { type RunEvent, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BEHIND_MISSES } from "../../core/src/scheduler/matcher.js";
import { type ClusterKaon, openGate, startClusterKaon, waitForGate } from "./support.js";

let k: ClusterKaon;
const gates: string[] = [];

beforeAll(async () => {
  k = await startClusterKaon();
});
afterAll(async () => {
  for (const g of gates) openGate(g); // never leave a job blocked behind a failed assertion
  await k?.stop();
});

function gate(name: string): string {
  const path = join(k.dataDir, `gate-${name}`);
  gates.push(path);
  return path;
}

const reached = (path: string, status: StepStatus) => (events: RunEvent[]) =>
  events.some((e) => e.path === path && e.kind?.$case === "stepStatus" && e.kind.value === status);

/** Starts a run of a one-step workflow holding `cpus` until the gate opens; returns its id. */
async function hog(name: string, cpus: number): Promise<{ runId: string; gate: string }> {
  const g = gate(name);
  await k.deploy({
    id: name,
    steps: [{ id: "hog", type: "command", config: { shell: waitForGate(g) }, resources: { cpus } }],
  });
  const runId = (await k.runs.startRun({ workflowId: name, params: {} })).run?.id as string;
  await k.watchUntil(runId, reached("hog", StepStatus.STEP_STATUS_RUNNING));
  return { runId, gate: g };
}

/** Polls the step's reason (reasons are not events) until it is `want`; deadline-bound. */
async function reasonBecomes(runId: string, path: string, want: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let reason: string | undefined;
  while (Date.now() < deadline) {
    reason = (await k.runs.getStep({ runId, path }).catch(() => undefined))?.step?.reason;
    if (reason === want) return;
  }
  throw new Error(`${runId} ${path}: reason is '${reason}', not '${want}' after ${timeoutMs} ms`);
}

describe("scheduler review", () => {
  it("Q3: StopStep on a step queued for resources frees its step-type slot", async () => {
    const h = await hog("q3-hog", 3);
    await k.deploy({
      id: "q3-limited",
      stepTypeConcurrency: { command: 1 },
      steps: [
        { id: "q", type: "command", config: { shell: "true" }, resources: { cpus: 2 } },
        { id: "r", type: "command", config: { shell: "true" }, resources: { cpus: 1 } },
      ],
    });
    const runId = (await k.runs.startRun({ workflowId: "q3-limited", params: {} })).run
      ?.id as string;
    // q took the one 'command' slot and waits for 2 cpus; r waits for the slot.
    await k.watchUntil(
      runId,
      (evs) =>
        reached("q", StepStatus.STEP_STATUS_QUEUED)(evs) &&
        reached("r", StepStatus.STEP_STATUS_QUEUED)(evs),
    );
    const r = (await k.runs.getStep({ runId, path: "r" })).step;
    expect(r?.reason).toContain("step type 'command' limit 1");
    await k.runs.stopStep({ runId, path: "q" });
    const { run } = await k.finish(runId, 15_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    expect((await k.runs.getStep({ runId, path: "r" })).step?.status).toBe(
      StepStatus.STEP_STATUS_SUCCEEDED,
    );
    openGate(h.gate);
    expect((await k.finish(h.runId)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });

  it("Q1: a step whose constraints no agent meets fails at once and holds up nothing", async () => {
    // More iterations than the matcher's miss limit (32), at a higher priority than the rest.
    await k.deploy({
      id: "q1-gpu",
      priority: 10,
      steps: [
        {
          id: "each",
          type: "foreach",
          foreach: {
            axes: [{ name: "i", values: Array.from({ length: 40 }, (_, i) => i) }],
            body: [
              {
                id: "t",
                type: "command",
                config: { shell: "true" },
                constraints: [
                  { attribute: "pool", operator: "CONSTRAINT_OPERATOR_EQUALS", value: "gpu" },
                ],
              },
            ],
          },
        },
      ],
    });
    await k.deploy({
      id: "q1-tiny",
      steps: [{ id: "t", type: "command", config: { shell: "true" }, resources: { cpus: 0.1 } }],
    });
    const gpu = (await k.runs.startRun({ workflowId: "q1-gpu", params: {} })).run?.id as string;
    const tiny = (await k.runs.startRun({ workflowId: "q1-tiny", params: {} })).run?.id as string;
    expect((await k.finish(tiny, 15_000)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const { run } = await k.finish(gpu, 15_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const step = (await k.runs.getStep({ runId: gpu, path: "each[0]/t" })).step;
    expect(step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(step?.reason).toBe(
      'can never run: no agent meets its constraint pool EQUALS "gpu": agent cluster-test has pool=test',
    );
    const queue = await k.cluster.listQueue({ namespace: "", pageSize: 0, pageToken: "" });
    expect(queue.entries).toEqual([]);
  });

  it("Q5: new work that fits free resources does not wait out a declined offer's refusal", async () => {
    const h = await hog("q5-hog", 3);
    await k.deploy({
      id: "q5-big",
      steps: [{ id: "big", type: "command", config: { shell: "true" }, resources: { cpus: 2 } }],
    });
    await k.deploy({
      id: "q5-small",
      steps: [{ id: "small", type: "command", config: { shell: "true" }, resources: { cpus: 1 } }],
    });
    // big is queued in the same commit as the pass that declined the 1 free cpu for it; the
    // local backend then refuses to offer that cpu again for 5 s unless asked to revive.
    const big = (await k.runs.startRun({ workflowId: "q5-big", params: {} })).run?.id as string;
    await k.watchUntil(big, reached("big", StepStatus.STEP_STATUS_QUEUED));
    const started = Date.now();
    const small = (await k.runs.startRun({ workflowId: "q5-small", params: {} })).run?.id as string;
    expect((await k.finish(small, 15_000)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(Date.now() - started).toBeLessThan(2500);
    openGate(h.gate);
    expect((await k.finish(big)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.finish(h.runId)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });

  it("Q2: a step whose command and environment exceed 1 MiB fails at plan time, never launched", async () => {
    // Each scalar param becomes a KAON_PARAM_* variable: 12 of 100 kB and one of 50 kB.
    await k.deploy({
      id: "q2-huge",
      params: [{ name: "s", type: "PARAM_TYPE_STRING", value: "x".repeat(50_000) }],
      steps: [
        {
          id: "t",
          type: "command",
          config: { shell: "true" },
          params: Array.from({ length: 12 }, (_, i) => ({
            name: `p${i}`,
            type: "PARAM_TYPE_STRING",
            expr: "params.s + params.s",
          })),
        },
      ],
    });
    const runId = (await k.runs.startRun({ workflowId: "q2-huge", params: {} })).run?.id as string;
    const { run } = await k.finish(runId, 15_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const step = (await k.runs.getStep({ runId, path: "t" })).step;
    expect(step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(step?.reason).toMatch(
      /^the launch request is too large: its command and environment take 1\.\d MiB, over the limit of 1 MiB/,
    );
    expect(step?.reason).toContain("KAON_PARAM_");
    expect(step?.attemptCount).toBe(0);
  });

  it("Q4: a stream of low-priority small steps does not starve a higher-priority large one", async () => {
    await k.deploy({
      id: "q4-stream",
      priority: 0,
      steps: [
        {
          id: "each",
          type: "foreach",
          foreach: {
            concurrency: 6,
            axes: [{ name: "i", values: Array.from({ length: 20 }, (_, i) => i) }],
            body: [
              { id: "t", type: "command", config: { shell: "sleep 0.3" }, resources: { cpus: 1 } },
            ],
          },
        },
      ],
    });
    await k.deploy({
      id: "q4-urgent",
      priority: 100,
      steps: [{ id: "big", type: "command", config: { shell: "true" }, resources: { cpus: 4 } }],
    });
    const stream = (await k.runs.startRun({ workflowId: "q4-stream", params: {} })).run
      ?.id as string;
    await k.watchUntil(stream, reached("each[0]/t", StepStatus.STEP_STATUS_RUNNING));
    const urgent = (await k.runs.startRun({ workflowId: "q4-urgent", params: {} })).run
      ?.id as string;
    expect((await k.finish(urgent, 15_000)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    // Before the fix the 4-cpu step ran only once the whole stream had drained.
    // (The last iteration is not even created yet while the foreach's window is further back.)
    const last = await k.runs
      .getStep({ runId: stream, path: "each[19]/t" })
      .then((r) => r.step?.status)
      .catch(() => undefined);
    expect(last).not.toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect((await k.finish(stream, 30_000)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });

  it("Q8: a queued step keeps the reason its last pass gave; steps past the miss limit say so", async () => {
    const h = await hog("q8-hog", 3);
    const twoCpus = { id: "t", type: "command", config: { shell: "true" }, resources: { cpus: 2 } };
    await k.deploy({ id: "q8-big", steps: [twoCpus] });
    await k.deploy({
      id: "q8-many",
      steps: [
        {
          id: "each",
          type: "foreach",
          foreach: {
            axes: [{ name: "i", values: Array.from({ length: 33 }, (_, i) => i) }],
            body: [twoCpus],
          },
        },
      ],
    });
    await k.deploy({ id: "q8-noop", steps: [{ id: "n", type: "noop" }] });
    const big = (await k.runs.startRun({ workflowId: "q8-big", params: {} })).run?.id as string;
    const exact = "waiting for resources: needs cpus 2, 1 free";
    await reasonBecomes(big, "t", exact);
    // The 1-cpu offer was declined; passes without an offer follow (this run's ticks).
    const noop = (await k.runs.startRun({ workflowId: "q8-noop", params: {} })).run?.id as string;
    expect((await k.finish(noop)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.runs.getStep({ runId: big, path: "t" })).step?.reason).toBe(exact);
    // big and 31 iterations miss (the limit is 32): the last 2 iterations are not looked at.
    const many = (await k.runs.startRun({ workflowId: "q8-many", params: {} })).run?.id as string;
    await reasonBecomes(many, "each[32]/t", BEHIND_MISSES);
    expect((await k.runs.getStep({ runId: many, path: "each[30]/t" })).step?.reason).toBe(exact);
    openGate(h.gate);
    expect((await k.finish(big)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.finish(many)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.finish(h.runId)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });

  it("Q6: an idle engine holds no offer: it declines what it is offered and suppresses", async () => {
    const fresh = await startClusterKaon();
    try {
      // The engine's held offers, and whether it suppressed the backend for being idle.
      const engine = fresh.kaon.engine as unknown as {
        offers: Map<string, unknown>;
        idleSuppressed?: boolean;
      };
      const idle = () => engine.offers.size === 0 && engine.idleSuppressed === true;
      const becomesIdle = async (what: string) => {
        const deadline = Date.now() + 10_000;
        while (!idle()) {
          if (Date.now() > deadline) throw new Error(`${what}: the engine still holds an offer`);
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      await becomesIdle("after start");
      // New work revives the backend and is placed at once.
      await fresh.deploy({
        id: "q6-one",
        steps: [{ id: "t", type: "command", config: { shell: "true" }, resources: { cpus: 1 } }],
      });
      const started = Date.now();
      const runId = (await fresh.runs.startRun({ workflowId: "q6-one", params: {} })).run
        ?.id as string;
      expect((await fresh.finish(runId, 15_000)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      expect(Date.now() - started).toBeLessThan(2500);
      await becomesIdle("after a run");
    } finally {
      await fresh.stop();
    }
  });
});
