// Retries with backoff, step and run timeouts, stop, ignore_failure, STOP_ALL, bad params,
// CEL errors at run time, step-type concurrency with its reason, and a step that can never fit.
import { RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EngineKaon, startEngineKaon, stepStatuses } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon({ resources: { cpus: 2 } });
});
afterAll(async () => {
  await k?.stop();
});

const sh = (script: string) => ({ shell: script });
const name = (s: string | number) => StepStatus[Number(s)]?.replace("STEP_STATUS_", "");

describe("engine control", () => {
  it("retries a failing step with exponential backoff, then succeeds", async () => {
    await k.deploy({
      id: "retry",
      steps: [
        {
          id: "flaky",
          type: "command",
          // Fails on attempts 1 and 2, succeeds on 3.
          config: sh('[ "$KAON_ATTEMPT" -ge 3 ] || exit 7'),
          retry: {
            maxAttempts: 3,
            initialBackoff: "0.1s",
            backoffMultiplier: 2,
            retryOn: ["RETRY_ON_EXIT_CODE"],
            exitCodes: [7],
          },
        },
      ],
    });
    const { run, events } = await k.run("retry");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const got = await k.runs.getStep({ runId: run.id, path: "flaky" });
    expect(got.attempts.map((a) => a.exitCode)).toEqual([7, 7, 0]);
    const seq = stepStatuses(events, "flaky").map(name);
    expect(seq.filter((s) => s === "RETRYING")).toHaveLength(2);
    // Backoff: ~100ms then ~200ms between attempts.
    const [a1, a2, a3] = got.attempts;
    expect((a2?.startedAt?.getTime() ?? 0) - (a1?.endedAt?.getTime() ?? 0)).toBeGreaterThanOrEqual(
      90,
    );
    expect((a3?.startedAt?.getTime() ?? 0) - (a2?.endedAt?.getTime() ?? 0)).toBeGreaterThanOrEqual(
      190,
    );
  });

  it("does not retry exit codes outside the policy", async () => {
    await k.deploy({
      id: "noretry",
      steps: [
        {
          id: "x",
          type: "command",
          config: sh("exit 2"),
          retry: { maxAttempts: 3, initialBackoff: "0.05s", exitCodes: [7] },
        },
      ],
    });
    const { run } = await k.run("noretry");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    expect((await k.runs.getStep({ runId: run.id, path: "x" })).attempts).toHaveLength(1);
  });

  it("times out a step (TIMED_OUT) and retries timeouts when asked", async () => {
    await k.deploy({
      id: "timeout",
      steps: [
        {
          id: "slow",
          type: "command",
          config: sh("sleep 30"),
          timeout: "0.3s",
          retry: { maxAttempts: 2, initialBackoff: "0.05s", retryOn: ["RETRY_ON_TIMEOUT"] },
        },
      ],
    });
    const { run } = await k.run("timeout");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const got = await k.runs.getStep({ runId: run.id, path: "slow" });
    expect(got.step?.status).toBe(StepStatus.STEP_STATUS_TIMED_OUT);
    expect(got.attempts).toHaveLength(2);
    expect(got.step?.reason).toContain("timed out after 0.3s");
  });

  it("times out a whole run", async () => {
    await k.deploy({
      id: "runtimeout",
      timeout: "0.4s",
      steps: [
        { id: "slow", type: "command", config: sh("sleep 30") },
        { id: "sleeper", type: "sleep", config: { seconds: 30 } },
      ],
    });
    const { run } = await k.run("runtimeout");
    expect(run.status).toBe(RunStatus.RUN_STATUS_TIMED_OUT);
    expect(run.message).toContain("timed out");
  });

  it("stops a run: running attempts are killed, nothing new starts", async () => {
    await k.deploy({
      id: "stoppable",
      steps: [
        { id: "long", type: "command", config: sh("sleep 30"), next: [{ to: "after" }] },
        { id: "after", type: "noop" },
      ],
    });
    const { run } = await k.runs.startRun({ workflowId: "stoppable" });
    const runId = run?.id as string;
    for await (const msg of k.runs.watchRun({ runId, afterSeq: 0 })) {
      if (
        msg.events.some(
          (e) =>
            e.path === "long" &&
            e.kind?.$case === "stepStatus" &&
            e.kind.value === StepStatus.STEP_STATUS_RUNNING,
        )
      )
        break;
    }
    await k.runs.stopRun({ runId, reason: "enough" });
    const { run: done } = await k.watch(runId);
    expect(done.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    expect(done.message).toBe("enough");
    const steps = (
      await k.runs.listSteps({ runId, statuses: [], pathPrefix: "", pageSize: 10, pageToken: "" })
    ).steps;
    expect(steps.map((s) => [s.path, name(s.status)])).toEqual([
      ["long", "STOPPED"],
      ["after", "STOPPED"],
    ]);
    // Stopping a finished run is a no-op; restarting a running one is refused elsewhere.
    const again = await k.runs.stopRun({ runId, reason: "" });
    expect(again.run?.status).toBe(RunStatus.RUN_STATUS_STOPPED);
  });

  it("ignore_failure lets successors run and the run succeed; STOP_ALL stops siblings", async () => {
    await k.deploy({
      id: "ignored",
      steps: [
        {
          id: "bad",
          type: "command",
          config: sh("exit 1"),
          ignoreFailure: true,
          next: [{ to: "next" }],
        },
        { id: "next", type: "noop" },
      ],
    });
    const r = await k.run("ignored");
    expect(r.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    await k.deploy({
      id: "stopall",
      failureMode: "FAILURE_MODE_STOP_ALL",
      steps: [
        { id: "start", type: "noop", next: [{ to: "bad" }, { to: "long" }] },
        { id: "bad", type: "command", config: sh("exit 1") },
        { id: "long", type: "command", config: sh("sleep 30") },
      ],
    });
    const s = await k.run("stopall");
    expect(s.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const long = (await k.runs.getStep({ runId: s.run.id, path: "long" })).step;
    expect(long?.status).toBe(StepStatus.STEP_STATUS_STOPPED);
  });

  it("rejects unknown and mistyped params at start, naming them", async () => {
    await k.deploy({
      id: "typed",
      params: [{ name: "n", type: "PARAM_TYPE_INT", required: true }],
      steps: [{ id: "a", type: "noop" }],
    });
    await expect(k.runs.startRun({ workflowId: "typed", params: { n: "abc" } })).rejects.toThrow(
      /param 'n' expects/,
    );
    await expect(k.runs.startRun({ workflowId: "typed", params: { n: 1, m: 2 } })).rejects.toThrow(
      /unknown param 'm'/,
    );
    await expect(k.runs.startRun({ workflowId: "typed", params: {} })).rejects.toThrow(
      /missing required param 'n'/,
    );
    await expect(k.runs.startRun({ workflowId: "nope", params: {} })).rejects.toThrow(
      /workflow 'nope' does not exist/,
    );
  });

  it("a CEL error at run time fails that step with the expression in its messages", async () => {
    await k.deploy({
      id: "celerr",
      steps: [
        {
          id: "a",
          type: "noop",
          params: [{ name: "p", type: "PARAM_TYPE_INT", expr: "steps.nope.outputs.x + 1" }],
        },
      ],
    });
    const { run } = await k.run("celerr");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const step = (await k.runs.getStep({ runId: run.id, path: "a" })).step;
    expect(step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(step?.reports?.messages[0]?.text).toContain("steps.nope.outputs.x + 1");
  });

  it("a step that can never fit fails at once with a clear reason", async () => {
    await k.deploy({
      id: "huge",
      steps: [{ id: "big", type: "command", config: sh("true"), resources: { cpus: 64 } }],
    });
    const { run } = await k.run("huge");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const step = (await k.runs.getStep({ runId: run.id, path: "big" })).step;
    expect(step?.reason).toContain("can never run");
    expect(step?.reason).toContain("cpus 64");
  });

  it("queued steps say why they wait (step-type limit)", async () => {
    await k.deploy({
      id: "typelimit",
      stepTypeConcurrency: { command: 1 },
      steps: [
        { id: "start", type: "noop", next: [{ to: "a" }, { to: "b" }] },
        { id: "a", type: "command", config: sh("sleep 0.3") },
        { id: "b", type: "command", config: sh("sleep 0.3") },
      ],
    });
    const { run, events } = await k.run("typelimit");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const queued = events.filter(
      (e) =>
        e.kind?.$case === "stepStatus" &&
        e.kind.value === StepStatus.STEP_STATUS_QUEUED &&
        e.message.includes("step type 'command' limit 1"),
    );
    expect(queued).toHaveLength(1);
    const a = (await k.runs.getStep({ runId: run.id, path: "a" })).step;
    const b = (await k.runs.getStep({ runId: run.id, path: "b" })).step;
    const [first, second] =
      (a?.startedAt?.getTime() ?? 0) < (b?.startedAt?.getTime() ?? 0) ? [a, b] : [b, a];
    expect(second?.startedAt?.getTime()).toBeGreaterThanOrEqual(first?.endedAt?.getTime() ?? 0);
  });
});
