// Backfill: one run per logical time in a range, RUN_TS = that time, initiator BACKFILL,
// idempotent by request id, and a step whose declared outputs already exist is skipped (the
// point of a backfill is to fill the gaps, not to redo what is there).
import { InitiatorKind, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EngineKaon, startEngineKaon } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

const DAY = 86_400_000;
const START = Date.UTC(2026, 10, 18);

describe("backfill", () => {
  it("runs each day once with RUN_TS = that day and skips days whose outputs exist", async () => {
    await k.deploy({
      id: "daily",
      params: [{ name: "day", type: "PARAM_TYPE_INT", expr: "tsToDateInt(RUN_TS)" }],
      steps: [
        {
          id: "build",
          type: "command",
          outputs: [{ name: "daily.table", partitions: { dateint: "${params.day}" } }],
          config: { shell: 'echo "day=$KAON_PARAM_DAY" >> "$KAON_OUTPUT"' },
        },
      ],
    });
    // The middle day already exists: the backfill must not rebuild it.
    await k.artifacts.announce({
      artifact: {
        name: "daily.table",
        partitions: { dateint: "20261119" },
        uri: "file:///tmp/daily/20261119",
        namespace: "",
        producerRunId: "",
        producerPath: "",
        revision: 0,
        metadata: {},
      },
      requestId: "",
    });

    const request = {
      workflowId: "daily",
      startTs: START,
      endTs: START + 2 * DAY,
      stepMs: DAY,
      params: {},
      requestId: "fill-nov",
    };
    const { runs } = await k.runs.backfill(request);
    expect(runs.map((r) => r.runTs)).toEqual([START, START + DAY, START + 2 * DAY]);
    for (const r of runs) expect(r.initiator?.kind).toBe(InitiatorKind.INITIATOR_KIND_BACKFILL);

    const ended = await Promise.all(runs.map((r) => k.watch(r.id)));
    expect(ended.map((e) => e.run.status)).toEqual([
      RunStatus.RUN_STATUS_SUCCEEDED,
      RunStatus.RUN_STATUS_SUCCEEDED,
      RunStatus.RUN_STATUS_SUCCEEDED,
    ]);
    const builds = await Promise.all(
      runs.map(async (r) => (await k.runs.getStep({ runId: r.id, path: "build" })).step),
    );
    expect(builds.map((s) => s?.status)).toEqual([
      StepStatus.STEP_STATUS_SUCCEEDED,
      StepStatus.STEP_STATUS_SKIPPED,
      StepStatus.STEP_STATUS_SUCCEEDED,
    ]);
    expect(builds[0]?.outputs.day).toBe(20261118);
    expect(builds[2]?.outputs.day).toBe(20261120);

    // The same request again returns the same runs instead of starting new ones.
    const again = await k.runs.backfill(request);
    expect(again.runs.map((r) => r.id)).toEqual(runs.map((r) => r.id));
  });

  it("rejects an empty range with the field and the fix", async () => {
    await expect(
      k.runs.backfill({
        workflowId: "daily",
        startTs: START + DAY,
        endTs: START,
        stepMs: DAY,
        params: {},
        requestId: "",
      }),
    ).rejects.toThrow(/end_ts: range .* is empty \(set start_ts <= end_ts/);
  });
});
