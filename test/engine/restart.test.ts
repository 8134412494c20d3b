// Restart in place (from failed, from a step with param overrides, from the beginning) and
// RetryStep: earlier attempts stay visible, kept steps keep their outcome, attempt numbers
// keep increasing, and the preconditions are enforced.
import { RestartFrom, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EngineKaon, startEngineKaon } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

const sh = (script: string) => ({ shell: script });

describe("restart and retry", () => {
  it("restarts from a step with param overrides; upstream steps keep their outcome", async () => {
    await k.deploy({
      id: "rs",
      params: [{ name: "ok", type: "PARAM_TYPE_BOOL", value: false }],
      steps: [
        {
          id: "prep",
          type: "command",
          config: sh('echo "v=7" >> "$KAON_OUTPUT"'),
          next: [{ to: "train" }],
        },
        {
          id: "train",
          type: "command",
          config: sh(
            '[ "$KAON_PARAM_OK" = true ] || exit 1; echo "got=$KAON_PARAM_OK" >> "$KAON_OUTPUT"',
          ),
          next: [{ to: "publish" }],
        },
        {
          id: "publish",
          type: "noop",
          params: [{ name: "v", type: "PARAM_TYPE_INT", expr: "steps.prep.outputs.v" }],
        },
      ],
    });
    const first = await k.run("rs");
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    await expect(
      k.runs.restartRun({
        runId: first.run.id,
        from: RestartFrom.RESTART_FROM_STEP,
        stepId: "nope",
        params: {},
        requestId: "",
      }),
    ).rejects.toThrow(/no top-level step 'nope'/);
    await k.runs.restartRun({
      runId: first.run.id,
      from: RestartFrom.RESTART_FROM_STEP,
      stepId: "train",
      params: { ok: true },
      requestId: "r1",
    });
    const { run } = await k.watch(first.run.id);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(run.restartCount).toBe(1);
    expect(run.params.ok).toBe(true);
    const prep = await k.runs.getStep({ runId: run.id, path: "prep" });
    expect(prep.attempts).toHaveLength(1);
    const train = await k.runs.getStep({ runId: run.id, path: "train" });
    expect(train.attempts.map((a) => [a.number, a.exitCode])).toEqual([
      [1, 1],
      [2, 0],
    ]);
    expect((await k.runs.getStep({ runId: run.id, path: "publish" })).step?.params.v).toBe(7);
    // The same request id does not restart again.
    await k.runs.restartRun({
      runId: first.run.id,
      from: RestartFrom.RESTART_FROM_STEP,
      stepId: "train",
      params: {},
      requestId: "r1",
    });
    expect((await k.runs.getRun({ runId: run.id })).run?.restartCount).toBe(1);
  });

  it("restart from failed re-runs failed steps and what they blocked; refuses a running run", async () => {
    await k.deploy({
      id: "rf",
      steps: [
        { id: "a", type: "command", config: sh("true"), next: [{ to: "b" }] },
        {
          id: "b",
          type: "command",
          config: sh('[ "$KAON_ATTEMPT" -ge 2 ] || exit 1'),
          next: [{ to: "c" }],
        },
        { id: "c", type: "noop" },
      ],
    });
    const first = await k.run("rf");
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    await k.runs.restartRun({
      runId: first.run.id,
      from: RestartFrom.RESTART_FROM_FAILED,
      stepId: "",
      params: {},
      requestId: "",
    });
    const { run, events } = await k.watch(first.run.id);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.runs.getStep({ runId: run.id, path: "a" })).attempts).toHaveLength(1);
    expect((await k.runs.getStep({ runId: run.id, path: "b" })).attempts).toHaveLength(2);
    expect(
      events.filter(
        (e) => e.kind?.$case === "runStatus" && e.kind.value === RunStatus.RUN_STATUS_SUCCEEDED,
      ),
    ).toHaveLength(1);

    await k.deploy({
      id: "longrun",
      steps: [{ id: "x", type: "command", config: sh("sleep 30") }],
    });
    const { run: live } = await k.runs.startRun({ workflowId: "longrun" });
    await expect(
      k.runs.restartRun({
        runId: live?.id as string,
        from: 0,
        stepId: "",
        params: {},
        requestId: "",
      }),
    ).rejects.toThrow(/FAILED_PRECONDITION|only a finished run/);
    await k.runs.stopRun({ runId: live?.id as string, reason: "" });
    await k.watch(live?.id as string);
  });

  it("a restarted step gets its whole retry budget again, top-level and in a foreach", async () => {
    // Fails on attempts 1-2 (the first run spends its 2 attempts), fails attempt 3, succeeds
    // from attempt 4: only a fresh budget of 2 after the restart lets it succeed.
    const flaky = sh('[ "$KAON_ATTEMPT" -ge 4 ] || exit 1');
    const retry = { maxAttempts: 2, initialBackoff: "0.01s" };
    await k.deploy({
      id: "budget",
      steps: [
        { id: "top", type: "command", config: flaky, retry, next: [{ to: "fe" }] },
        {
          id: "fe",
          type: "foreach",
          foreach: {
            axes: [{ name: "i", values: [1] }],
            body: [{ id: "inner", type: "command", config: flaky, retry }],
          },
        },
      ],
    });
    const first = await k.run("budget");
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    expect((await k.runs.getStep({ runId: first.run.id, path: "top" })).attempts).toHaveLength(2);
    const restart = () =>
      k.runs.restartRun({
        runId: first.run.id,
        from: RestartFrom.RESTART_FROM_FAILED,
        stepId: "",
        params: {},
        requestId: "",
      });
    await restart();
    const second = await k.watch(first.run.id);
    // top: attempts 3 (fails) and 4 (succeeds); the foreach then runs for the first time.
    expect((await k.runs.getStep({ runId: first.run.id, path: "top" })).attempts).toHaveLength(4);
    expect(second.run.status).toBe(RunStatus.RUN_STATUS_FAILED); // inner spent attempts 1-2
    await restart();
    const third = await k.watch(first.run.id);
    expect(third.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });

  it("restart from the beginning reruns a foreach; RetryStep retries one failed iteration", async () => {
    await k.deploy({
      id: "rb",
      steps: [
        {
          id: "fe",
          type: "foreach",
          foreach: {
            axes: [{ values: [0, 1, 2] }],
            body: [
              {
                id: "w",
                type: "command",
                config: sh('[ "$KAON_PATH" != "fe[1]/w" ] || [ "$KAON_ATTEMPT" -ge 2 ] || exit 4'),
              },
            ],
          },
          next: [{ to: "end" }],
        },
        { id: "end", type: "noop" },
      ],
    });
    const first = await k.run("rb");
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const failed = await k.runs.listSteps({
      runId: first.run.id,
      statuses: [StepStatus.STEP_STATUS_FAILED],
      pathPrefix: "fe[",
      pageSize: 10,
      pageToken: "",
    });
    expect(failed.steps.map((s) => s.path)).toEqual(["fe[1]/w"]);
    await expect(k.runs.retryStep({ runId: first.run.id, path: "fe[0]/w" })).rejects.toThrow(
      /SUCCEEDED/,
    );
    await k.runs.retryStep({ runId: first.run.id, path: "fe[1]/w" });
    const { run } = await k.watch(first.run.id);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect((await k.runs.getStep({ runId: run.id, path: "fe[0]/w" })).attempts).toHaveLength(1);
    expect(
      (await k.runs.getStep({ runId: run.id, path: "fe[1]/w" })).attempts.map((a) => a.number),
    ).toEqual([1, 2]);
    expect((await k.runs.getStep({ runId: run.id, path: "end" })).step?.status).toBe(
      StepStatus.STEP_STATUS_SUCCEEDED,
    );

    await k.runs.restartRun({
      runId: run.id,
      from: RestartFrom.RESTART_FROM_BEGINNING,
      stepId: "",
      params: {},
      requestId: "",
    });
    const again = await k.watch(run.id);
    expect(again.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(
      (await k.runs.getStep({ runId: run.id, path: "fe[0]/w" })).attempts.map((a) => a.number),
    ).toEqual([1, 2]);
  });
});
