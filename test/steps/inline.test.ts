// noop and sleep through the real server: a noop succeeds at once as a join point, a short
// sleep waits about its seconds, and a long sleep ends STOPPED promptly when the step is
// stopped (StopStep) or its run is (StopRun), and TIMED_OUT when its step timeout expires —
// the wait inside core is interrupted, never sat out.
import { RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { explain, reached, type StepsKaon, startStepsKaon } from "./support.js";

let k: StepsKaon;
beforeAll(async () => {
  k = await startStepsKaon({}, "kaon-steps-inline-");
});
afterAll(async () => {
  await k?.stop();
});

const ms = (t: Date | undefined) => t?.getTime() ?? Number.NaN;

describe("noop and sleep steps", () => {
  it("noop joins branches and succeeds; sleep waits its seconds", async () => {
    await k.deploy({
      id: "inline-basic",
      steps: [
        { id: "start", type: "noop", next: [{ to: "nap" }, { to: "other" }] },
        { id: "nap", type: "sleep", config: { seconds: 0.3 }, next: [{ to: "join" }] },
        { id: "other", type: "noop", next: [{ to: "join" }] },
        { id: "join", type: "noop" },
      ],
    });
    const { run } = await k.run("inline-basic");
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const { steps } = await k.runs.listSteps({
      runId: run.id,
      statuses: [],
      pathPrefix: "",
      pageSize: 10,
      pageToken: "",
    });
    expect(steps.map((s) => [s.path, s.type, s.status])).toEqual([
      ["start", "noop", StepStatus.STEP_STATUS_SUCCEEDED],
      ["nap", "sleep", StepStatus.STEP_STATUS_SUCCEEDED],
      ["other", "noop", StepStatus.STEP_STATUS_SUCCEEDED],
      ["join", "noop", StepStatus.STEP_STATUS_SUCCEEDED],
    ]);
    const nap = steps.find((s) => s.path === "nap");
    const napped = ms(nap?.endedAt) - ms(nap?.startedAt);
    expect(napped).toBeGreaterThanOrEqual(280);
    expect(napped).toBeLessThan(3_000);
    const join = steps.find((s) => s.path === "join");
    expect(ms(join?.startedAt)).toBeGreaterThanOrEqual(ms(nap?.endedAt));
  });

  it("StopStep ends a running sleep STOPPED at once", async () => {
    await k.deploy({
      id: "inline-stop-step",
      steps: [
        { id: "nap", type: "sleep", config: { seconds: 3600 }, next: [{ to: "after" }] },
        { id: "after", type: "noop" },
      ],
    });
    const runId = await k.start("inline-stop-step");
    await k.watchUntil(runId, (evs) => reached(evs, "nap", StepStatus.STEP_STATUS_RUNNING));
    const asked = Date.now();
    await k.runs.stopStep({ runId, path: "nap" });
    const { run } = await k.finish(runId, 10_000);
    expect(Date.now() - asked).toBeLessThan(3_000);
    const nap = (await k.step(runId, "nap")).step;
    expect(nap?.status, await explain(k, run)).toBe(StepStatus.STEP_STATUS_STOPPED);
    expect(ms(nap?.endedAt) - asked).toBeLessThan(3_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    expect((await k.step(runId, "after")).step?.status).not.toBe(StepStatus.STEP_STATUS_SUCCEEDED);
  });

  it("StopRun ends the run and its running sleep STOPPED at once", async () => {
    await k.deploy({
      id: "inline-stop-run",
      steps: [{ id: "nap", type: "sleep", config: { seconds: 3600 } }],
    });
    const runId = await k.start("inline-stop-run");
    await k.watchUntil(runId, (evs) => reached(evs, "nap", StepStatus.STEP_STATUS_RUNNING));
    const asked = Date.now();
    await k.runs.stopRun({ runId, reason: "not needed any more" });
    const { run } = await k.finish(runId, 10_000);
    expect(Date.now() - asked).toBeLessThan(3_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    expect((await k.step(runId, "nap")).step?.status).toBe(StepStatus.STEP_STATUS_STOPPED);
  });

  it("a step timeout interrupts a sleep: TIMED_OUT", async () => {
    await k.deploy({
      id: "inline-timeout",
      steps: [
        {
          id: "nap",
          type: "sleep",
          config: { seconds: 3600 },
          timeout: "0.3s",
        },
      ],
    });
    const started = Date.now();
    const { run } = await k.run("inline-timeout", {}, 10_000);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    expect((await k.step(run.id, "nap")).step?.status).toBe(StepStatus.STEP_STATUS_TIMED_OUT);
  });

  it("refuses bad configs at deploy with the field path", async () => {
    const details = await k.deployError({
      id: "inline-bad",
      steps: [
        { id: "nap", type: "sleep", config: { seconds: -1 }, next: [{ to: "n" }] },
        { id: "n", type: "noop", config: { x: 1 } },
      ],
    });
    expect(details).toContain("steps[0].config.seconds");
    expect(details).toContain("steps[1].config");
  });
});
