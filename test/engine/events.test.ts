// The run's event log as WatchRun delivers it, over the compact rows the journal stores: an
// attempt transition and the step transition that follows it are one row (kind
// attemptAndStep), expanded on read into two events with consecutive seqs. A watch that
// resumes between the two halves must get the second half and nothing twice.
import { AttemptStatus, type RunEvent, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventKind } from "../../core/src/store/runs/rows.js";
import { RunQueries } from "../../core/src/store/runs/run-queries.js";
import { type EngineKaon, startEngineKaon } from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

const describeEvent = (e: RunEvent) =>
  e.kind?.$case === "attempt"
    ? `${e.path} attempt ${AttemptStatus[e.kind.value.status]}`
    : e.kind?.$case === "stepStatus"
      ? `${e.path} step ${StepStatus[e.kind.value]}`
      : `${e.path} ${e.kind?.$case}`;

describe("run events", () => {
  it("folds attempt + step transitions into one row and expands them on read", async () => {
    await k.deploy({
      id: "evfold",
      steps: [
        { id: "a", type: "command", config: { argv: ["true"] }, next: [{ to: "b" }] },
        { id: "b", type: "command", config: { argv: ["false"] } },
      ],
    });
    const { run, events } = await k.run("evfold");
    expect(RunStatus[run.status]).toBe("RUN_STATUS_FAILED");

    // Dense, increasing seqs: nothing lost or repeated by the folding.
    expect(events.map((e) => Number(e.seq))).toEqual(events.map((_, i) => i + 1));
    const a = events.filter((e) => e.path === "a").map(describeEvent);
    expect(a).toEqual([
      "a step STEP_STATUS_QUEUED",
      "a attempt ATTEMPT_STATUS_LAUNCHING",
      "a step STEP_STATUS_LAUNCHING",
      "a attempt ATTEMPT_STATUS_RUNNING",
      "a step STEP_STATUS_RUNNING",
      "a attempt ATTEMPT_STATUS_SUCCEEDED",
      "a step STEP_STATUS_SUCCEEDED",
    ]);
    const bEnd = events.find(
      (e) => e.path === "b" && e.kind?.$case === "attempt" && e.kind.value.status === 4,
    );
    expect(bEnd?.kind?.$case === "attempt" && bEnd.kind.value.exitCode).toBe(1);
    // The attempt half keeps the attempt's own message (the step half has the step's).
    expect(bEnd?.message).toMatch(/^exit code 1/);
    expect(bEnd?.kind?.$case === "attempt" && bEnd.kind.value.message).toBe(bEnd?.message);

    // The rows: fewer than the events, and the pairs are there.
    const rows = (await k.db("run_events").where("run_id", run.id).orderBy("seq")) as Array<{
      seq: number;
      kind: number;
    }>;
    const pairs = rows.filter((r) => r.kind === EventKind.attemptAndStep);
    expect(pairs.length).toBeGreaterThanOrEqual(6);
    expect(rows.length + pairs.length).toBe(events.length);

    // Resuming between the two halves of a pair gives the step half first, once.
    const pair = pairs[0] as { seq: number };
    const q = new RunQueries(k.db);
    const resumed = await q.events(run.id, Number(pair.seq) - 1, 1000);
    expect(Number(resumed[0]?.seq)).toBe(Number(pair.seq));
    expect(resumed[0]?.kind?.$case).toBe("stepStatus");
    expect(resumed.map((e) => Number(e.seq))).toEqual(
      events.filter((e) => Number(e.seq) >= Number(pair.seq)).map((e) => Number(e.seq)),
    );
    // A page limit that cuts a pair in two resumes where it stopped.
    const page = await q.events(run.id, Number(pair.seq) - 2, 1);
    expect(page.map((e) => Number(e.seq))).toEqual([Number(pair.seq) - 1]);
    expect(page[0]?.kind?.$case).toBe("attempt");
  });
});
