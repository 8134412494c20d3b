// Step.heartbeat_timeout through the real server and real processes: a job that reports
// nothing for the window is taken as hung — killed, TIMED_OUT naming the heartbeat, retried
// under retry_on TIMEOUT — while a job that keeps reporting outlives the window many times.
import { writeFileSync } from "node:fs";
import { AttemptStatus, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attemptDir } from "../../core/src/engine/attempt-layout.js";
import { type EngineKaon, readJobToken, startEngineKaon } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

describe("heartbeat_timeout", () => {
  it("kills a silent job as TIMED_OUT naming the heartbeat, and retries it under retry_on TIMEOUT", async () => {
    await k.deploy({
      id: "silent",
      steps: [
        {
          id: "hung",
          type: "command",
          config: { shell: "sleep 30" },
          heartbeatTimeout: "0.4s",
          retry: { maxAttempts: 2, initialBackoff: "0.05s", retryOn: ["RETRY_ON_TIMEOUT"] },
        },
      ],
    });
    const started = Date.now();
    const { run } = await k.run("silent");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    expect(Date.now() - started).toBeLessThan(10_000);
    const got = await k.runs.getStep({ runId: run.id, path: "hung" });
    expect(got.step?.status).toBe(StepStatus.STEP_STATUS_TIMED_OUT);
    expect(got.step?.reason).toContain("no heartbeat for 0.4s (heartbeat_timeout)");
    expect(got.attempts.map((a) => a.status)).toEqual([
      AttemptStatus.ATTEMPT_STATUS_TIMED_OUT,
      AttemptStatus.ATTEMPT_STATUS_TIMED_OUT,
    ]);
  });

  it("keeps a job that reports running well past the window", async () => {
    await k.deploy({
      id: "chatty",
      steps: [
        {
          id: "alive",
          type: "command",
          config: {
            shell:
              'echo "$KAON_TOKEN" > token; i=0; while [ ! -f go ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done',
          },
          heartbeatTimeout: "1.5s",
        },
      ],
    });
    const { run } = await k.runs.startRun({ workflowId: "chatty" });
    const runId = run?.id as string;
    const dir = attemptDir(k.dataDir, runId, "alive", 1);
    const token = await readJobToken(dir);
    const job = k.jobClient(token);
    // 4 s of heartbeats every 0.2 s: more than two windows of 1.5 s, none of them silent
    // (the window is wide so that a loaded machine's stalls do not count as silence).
    for (let sequence = 1; sequence <= 20; sequence++) {
      await job.report({ sequence, items: [{ kind: { $case: "heartbeat", value: true } }] });
      await new Promise((r) => setTimeout(r, 200));
    }
    expect((await k.runs.getStep({ runId, path: "alive" })).step?.status).toBe(
      StepStatus.STEP_STATUS_RUNNING,
    );
    writeFileSync(`${dir}/go`, "");
    const done = await k.watch(runId);
    expect(done.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });
});
