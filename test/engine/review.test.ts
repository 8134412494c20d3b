// Regression tests for defects found in the engine review (docs/review-engine.md): StopStep on
// a foreach container, a foreach whose iterations end synchronously, concurrent restarts of one
// run, a backfill with a negative step, and a task end acknowledged before it is recorded.
import { AttemptStatus, RestartFrom, RunStatus, StepStatus } from "@kaon/proto";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StepTypeRegistry } from "../../core/src/steps/registry.js";
import { type EngineKaon, startEngineKaon, waitForStepStatus } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

const AttemptStatusName = (s: unknown) => AttemptStatus[Number(s)]?.replace("ATTEMPT_STATUS_", "");
const name = (s: string | number) => StepStatus[Number(s)]?.replace("STEP_STATUS_", "");

const waitForStatus = (runId: string, path: string, status: StepStatus) =>
  waitForStepStatus(k.runs, runId, path, status);

describe("engine review regressions", () => {
  it("StopStep on a foreach stops it: no further iterations start, the foreach ends STOPPED", async () => {
    await k.deploy({
      id: "review-fe-stop",
      steps: [
        {
          id: "fe",
          type: "foreach",
          foreach: {
            axes: [{ name: "x", values: [0, 1, 2] }],
            concurrency: 1,
            body: [{ id: "work", type: "command", config: { shell: "sleep 30" } }],
          },
        },
      ],
    });
    const { run } = await k.runs.startRun({ workflowId: "review-fe-stop" });
    const runId = run?.id as string;
    await waitForStatus(runId, "fe[0]/work", StepStatus.STEP_STATUS_RUNNING);
    await k.runs.stopStep({ runId, path: "fe" });
    const { run: done } = await k.watch(runId, 15_000);
    const steps = (
      await k.runs.listSteps({ runId, statuses: [], pathPrefix: "", pageSize: 10, pageToken: "" })
    ).steps;
    expect(steps.map((s) => [s.path, name(s.status)])).toEqual([
      ["fe", "STOPPED"],
      ["fe[0]/work", "STOPPED"],
    ]);
    expect(done.status).toBe(RunStatus.RUN_STATUS_STOPPED);
  });

  it("a large foreach whose iterations end at once does not overflow the stack", async () => {
    const values = Array.from({ length: 20_000 }, (_, i) => i);
    await k.deploy({
      id: "review-fe-sync",
      steps: [
        {
          id: "fe",
          type: "foreach",
          foreach: {
            axes: [{ name: "x", values }],
            // Every iteration fails while its params resolve, i.e. synchronously.
            body: [
              {
                id: "bad",
                type: "noop",
                params: [{ name: "y", type: "PARAM_TYPE_INT", expr: "1 / 0" }],
              },
            ],
          },
        },
      ],
    });
    const { run } = await k.run("review-fe-sync", {}, 60_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const fe = await k.runs.getStep({ runId: run.id, path: "fe" });
    expect(fe.step?.childCounts).toEqual({ FAILED: 20_000 });
  }, 90_000);

  it("two concurrent restarts of one run: one wins, the other is refused", async () => {
    await k.deploy({ id: "review-restart-race", steps: [{ id: "a", type: "noop" }] });
    const { run } = await k.run("review-restart-race");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const results = await Promise.allSettled([
      k.engine.restartRun({ runId: run.id, from: "beginning" }),
      k.engine.restartRun({ runId: run.id, from: "beginning" }),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "rejected"]);
    const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect((refused.reason as { code?: string }).code).toBe("FAILED_PRECONDITION");
    const { run: again } = await k.watch(run.id);
    expect(again.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(again.restartCount).toBe(1);
    const got = await k.runs.getStep({ runId: run.id, path: "a" });
    expect(got.attempts.map((a) => a.number)).toEqual([1, 2]);
    // The gRPC path refuses the same way (and names the state).
    await expect(
      k.runs.restartRun({
        runId: run.id,
        from: RestartFrom.RESTART_FROM_BEGINNING,
        stepId: "",
        params: {},
        requestId: "",
      }),
    ).resolves.toBeDefined();
    await k.watch(run.id);
  });

  it("rejects a backfill with a negative or zero step instead of starting runs forever", async () => {
    await k.deploy({ id: "review-backfill", steps: [{ id: "a", type: "noop" }] });
    const start = Date.UTC(2026, 0, 1);
    const err = await k.runs
      .backfill(
        {
          workflowId: "review-backfill",
          startTs: start,
          endTs: start + 86_400_000,
          stepMs: -86_400_000,
          params: {},
          requestId: "",
        },
        { signal: AbortSignal.timeout(5_000) },
      )
      .then(
        () => undefined,
        (e: { code?: number; details?: string }) => e,
      );
    expect(err?.code).toBe(Status.INVALID_ARGUMENT);
    expect(err?.details).toContain("step_ms");
    const listed = await k.runs.listRuns({
      workflowId: "review-backfill",
      namespace: "",
      statuses: [],
      pageSize: 10,
      pageToken: "",
    });
    expect(listed.runs).toHaveLength(0);
  });

  it("acknowledges a task's end only after the attempt's outcome is committed (async interpretEnd)", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let interpreting: () => void = () => {};
    const interpretingStarted = new Promise<void>((r) => {
      interpreting = r;
    });
    const registry = (k.engine as unknown as { opts: { stepTypes: StepTypeRegistry } }).opts
      .stepTypes;
    registry.register({
      kind: "process",
      name: "review-slow-end",
      description: "a process whose end is interpreted asynchronously (like spark)",
      validate: () => [],
      plan: () => ({ command: { kind: "shell", script: "true" } }),
      interpretEnd: async () => {
        interpreting();
        await gate;
        return { succeeded: true };
      },
    });
    const acked: string[] = [];
    const backend = k.backend as unknown as { acknowledge(taskId: string): void };
    const original = backend.acknowledge.bind(backend);
    backend.acknowledge = (taskId: string) => {
      acked.push(taskId);
      original(taskId);
    };
    try {
      await k.deploy({ id: "review-ack", steps: [{ id: "s", type: "review-slow-end" }] });
      const { run } = await k.runs.startRun({ workflowId: "review-ack" });
      const runId = run?.id as string;
      await interpretingStarted;
      // Everything recorded so far (the task ended, outcome not yet known) is committed now.
      await k.engine.flushed();
      await k.engine.flushed();
      const row = await k.db("attempts").where({ run_id: runId, path: "s" }).first();
      expect(AttemptStatusName(row?.status)).toBe("RUNNING");
      // Acknowledging now would let the backend forget a task whose end core never recorded.
      expect(acked.filter((t) => t.startsWith(runId))).toEqual([]);
      release();
      const { run: done } = await k.watch(runId);
      expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      await k.engine.flushed();
      expect(acked.filter((t) => t.startsWith(runId))).toHaveLength(1);
    } finally {
      release();
      backend.acknowledge = original;
    }
  });
});
