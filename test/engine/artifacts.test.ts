// Data artifacts: WAITING_FOR_DATA until an input is announced (by ArtifactService.Announce or
// by a producing step), output artifacts with partitions rendered from params, skip-if-outputs-
// exist on restart, and Get/List/History. Plus run strategies between runs of one workflow.
import { RestartFrom, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EngineKaon, startEngineKaon, stepStatuses } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

const sh = (script: string) => ({ shell: script });

async function waitForStatus(runId: string, path: string, status: StepStatus): Promise<void> {
  const signal = AbortSignal.timeout(20_000);
  for await (const msg of k.runs.watchRun({ runId, afterSeq: 0 }, { signal })) {
    if (
      msg.events.some(
        (e) => e.path === path && e.kind?.$case === "stepStatus" && e.kind.value === status,
      )
    )
      return;
  }
  throw new Error(`run ${runId} ended before ${path} reached ${StepStatus[status]}`);
}

describe("artifacts", () => {
  it("a step waits for its input until it is announced, then runs; outputs are announced on success", async () => {
    await k.deploy({
      id: "consumer",
      params: [{ name: "day", type: "PARAM_TYPE_INT", value: 20261121 }],
      steps: [
        {
          id: "use",
          type: "command",
          inputs: [{ name: "raw.events", partitions: { dateint: "${params.day}" } }],
          outputs: [
            {
              name: "clean.events",
              partitions: { dateint: "${params.day}", region: "US" },
              uri: "file:///tmp/clean/${params.day}",
            },
          ],
          config: sh("true"),
        },
      ],
    });
    const { run } = await k.runs.startRun({ workflowId: "consumer" });
    const runId = run?.id as string;
    await waitForStatus(runId, "use", StepStatus.STEP_STATUS_WAITING_FOR_DATA);
    const waiting = (await k.runs.getStep({ runId, path: "use" })).step;
    expect(waiting?.reason).toBe("waiting for data: raw.events{dateint=20261121}");
    // A different partition does not wake it.
    await k.artifacts.announce({
      artifact: {
        name: "raw.events",
        partitions: { dateint: "20261120" },
        uri: "x",
        namespace: "",
        producerRunId: "",
        producerPath: "",
        revision: 0,
        metadata: {},
      },
      requestId: "",
    });
    const a = await k.artifacts.announce({
      artifact: {
        name: "raw.events",
        partitions: { dateint: "20261121" },
        uri: "s3://raw/20261121",
        namespace: "",
        producerRunId: "",
        producerPath: "",
        revision: 0,
        metadata: { rows: 10 },
      },
      requestId: "ann-1",
    });
    expect(a.artifact?.revision).toBe(1);
    const { run: done, events } = await k.watch(runId);
    expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(stepStatuses(events, "use").map((s) => StepStatus[Number(s)])[0]).toBe(
      "STEP_STATUS_WAITING_FOR_DATA",
    );
    const out = await k.artifacts.getArtifact({
      name: "clean.events",
      partitions: { region: "US", dateint: "20261121" },
      namespace: "",
    });
    expect(out.artifact).toMatchObject({
      uri: "file:///tmp/clean/20261121",
      producerRunId: runId,
      producerPath: "use",
      revision: 1,
    });
    expect(events.some((e) => e.kind?.$case === "artifact")).toBe(true);
    // Idempotent announce by request id.
    const again = await k.artifacts.announce({
      artifact: {
        name: "raw.events",
        partitions: { dateint: "20261121" },
        uri: "s3://raw/20261121",
        namespace: "",
        producerRunId: "",
        producerPath: "",
        revision: 0,
        metadata: {},
      },
      requestId: "ann-1",
    });
    expect(again.artifact?.revision).toBe(1);
    await k.artifacts.announce({
      artifact: {
        name: "raw.events",
        partitions: { dateint: "20261121" },
        uri: "s3://raw/20261121-v2",
        namespace: "",
        producerRunId: "",
        producerPath: "",
        revision: 0,
        metadata: { rows: 12 },
      },
      requestId: "",
    });
    const history = await k.artifacts.history({
      name: "raw.events",
      partitions: { dateint: "20261121" },
      namespace: "",
      limit: 0,
    });
    expect(history.artifacts.map((h) => [h.revision, h.metadata?.rows])).toEqual([
      [1, 10],
      [2, 12],
    ]);
    const list = await k.artifacts.listArtifacts({
      name: "raw.events",
      partitions: {},
      namespace: "",
      pageSize: 1,
      pageToken: "",
    });
    expect(list.artifacts).toHaveLength(1);
    expect(list.nextPageToken).not.toBe("");
    await expect(
      k.artifacts.getArtifact({ name: "raw.events", partitions: { dateint: "1" }, namespace: "" }),
    ).rejects.toThrow(/never announced/);

    // Restart from the beginning: the step's outputs exist, so it is skipped.
    await k.runs.restartRun({
      runId,
      from: RestartFrom.RESTART_FROM_BEGINNING,
      stepId: "",
      params: {},
      requestId: "",
    });
    const restarted = await k.watch(runId);
    expect(restarted.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const use = (await k.runs.getStep({ runId, path: "use" })).step;
    expect(use?.status).toBe(StepStatus.STEP_STATUS_SKIPPED);
    expect(use?.reason).toBe("its output artifacts already exist");
  });
});

describe("run strategies", () => {
  it("sequential runs queue and go one at a time; skip-if-running returns the running run", async () => {
    await k.deploy({
      id: "seq",
      runStrategy: { mode: "RUN_STRATEGY_MODE_SEQUENTIAL" },
      steps: [{ id: "s", type: "command", config: sh("sleep 0.2") }],
    });
    const r1 = (await k.runs.startRun({ workflowId: "seq" })).run?.id as string;
    const second = await k.runs.startRun({ workflowId: "seq" });
    expect(second.run?.status).toBe(RunStatus.RUN_STATUS_QUEUED);
    expect(second.run?.message).toContain("sequential");
    const a = await k.watch(r1);
    const b = await k.watch(second.run?.id as string);
    expect(b.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(b.run.startedAt?.getTime()).toBeGreaterThanOrEqual(a.run.endedAt?.getTime() ?? 0);

    await k.deploy({
      id: "skipper",
      runStrategy: { mode: "RUN_STRATEGY_MODE_SKIP_IF_RUNNING" },
      steps: [{ id: "s", type: "command", config: sh("sleep 0.2") }],
    });
    const s1 = await k.runs.startRun({ workflowId: "skipper" });
    const s2 = await k.runs.startRun({ workflowId: "skipper" });
    expect(s2.created).toBe(false);
    expect(s2.run?.id).toBe(s1.run?.id);
    await k.watch(s1.run?.id as string);

    await k.deploy({
      id: "canceller",
      runStrategy: { mode: "RUN_STRATEGY_MODE_CANCEL_PREVIOUS" },
      steps: [{ id: "s", type: "command", config: sh("sleep 30") }],
    });
    const c1 = await k.runs.startRun({ workflowId: "canceller" });
    const c2 = await k.runs.startRun({ workflowId: "canceller" });
    const first = await k.watch(c1.run?.id as string);
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    expect(first.run.message).toContain(c2.run?.id);
    await k.runs.stopRun({ runId: c2.run?.id as string, reason: "" });
    await k.watch(c2.run?.id as string);
  });

  it("StartRun is idempotent by request_id", async () => {
    await k.deploy({ id: "idem", steps: [{ id: "s", type: "noop" }] });
    const [a, b] = await Promise.all([
      k.runs.startRun({ workflowId: "idem", requestId: "same" }),
      k.runs.startRun({ workflowId: "idem", requestId: "same" }),
    ]);
    expect(a.run?.id).toBe(b.run?.id);
    expect([a.created, b.created].sort()).toEqual([false, true]);
    const c = await k.runs.startRun({ workflowId: "idem", requestId: "same" });
    expect(c.run?.id).toBe(a.run?.id);
    expect(c.created).toBe(false);
  });
});
