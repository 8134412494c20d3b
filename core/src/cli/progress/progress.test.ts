import {
  MessageLevel,
  type ReportItem,
  type Run,
  type RunEvent,
  RunStatus,
  StepStatus,
} from "@kaon/proto";
import { describe, expect, test } from "vitest";
import {
  formatClock,
  formatCounts,
  formatDuration,
  heartbeatLine,
  PLAIN_STYLE,
  PlainLog,
  renderFrame,
  renderOutcome,
} from "./render.js";
import { enclosingContainers, RunProgress } from "./state.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const RUN_ID = "r1";

function run(
  status: RunStatus,
  counts: Record<string, number> = {},
  extra: Partial<Run> = {},
): Run {
  return {
    id: RUN_ID,
    workflowId: "recommendations",
    version: 2,
    namespace: "default",
    status,
    params: {},
    tags: {},
    createdAt: new Date(T0),
    startedAt: new Date(T0),
    message: "",
    stepCounts: counts,
    runTs: T0,
    outputs: {},
    restartCount: 0,
    ...extra,
  };
}

let seq = 0;
function base(path: string, at: number, message = "") {
  seq++;
  return { seq, runId: RUN_ID, time: new Date(T0 + at), path, message };
}
const step = (path: string, status: StepStatus, at: number, message = ""): RunEvent => ({
  ...base(path, at, message),
  kind: { $case: "stepStatus", value: status },
});
const runStatus = (status: RunStatus, at: number, message = ""): RunEvent => ({
  ...base("", at, message),
  kind: { $case: "runStatus", value: status },
});
const report = (path: string, item: ReportItem["kind"], at: number): RunEvent => ({
  ...base(path, at),
  kind: { $case: "report", value: { kind: item } },
});
const progressReport = (path: string, percent: number, message: string, at: number) =>
  report(path, { $case: "progress", value: { percent, message } }, at);

const { RUNNING, SUCCEEDED, QUEUED, FAILED, LAUNCHING } = {
  RUNNING: StepStatus.STEP_STATUS_RUNNING,
  SUCCEEDED: StepStatus.STEP_STATUS_SUCCEEDED,
  QUEUED: StepStatus.STEP_STATUS_QUEUED,
  FAILED: StepStatus.STEP_STATUS_FAILED,
  LAUNCHING: StepStatus.STEP_STATUS_LAUNCHING,
};

/** A run in the middle of the recommendations pipeline's second loop iteration. */
function midRun(): RunProgress {
  seq = 0;
  const p = new RunProgress(RUN_ID);
  p.apply(
    [
      runStatus(RunStatus.RUN_STATUS_RUNNING, 0),
      step("select_users", RUNNING, 100),
      step("select_users", SUCCEEDED, 900),
      step("wrangle", RUNNING, 1_000),
      report("wrangle", { $case: "milestone", value: "reading cohort" }, 1_200),
      step("wrangle", SUCCEEDED, 3_000),
      step("train_loop", RUNNING, 3_000, "iteration 0"),
      step("train_loop@0/regional", RUNNING, 3_000, "5 iterations"),
      step("train_loop@0/regional[0]/train", SUCCEEDED, 9_000),
      step("train_loop@0/validate", SUCCEEDED, 20_000),
      report(
        "train_loop@0/validate",
        {
          $case: "message",
          value: {
            level: MessageLevel.MESSAGE_LEVEL_WARNING,
            text: "mean RMSE 0.95 > target 0.90: not stable, retraining",
          },
        },
        20_000,
      ),
      step("train_loop@1/train_global", RUNNING, 21_000),
      progressReport("train_loop@1/train_global", 40, "fitting", 30_000),
      step("train_loop@1/regional", RUNNING, 21_000, "5 iterations"),
      step("train_loop@1/regional[0]/train", SUCCEEDED, 25_000),
      step("train_loop@1/regional[1]/train", SUCCEEDED, 26_000),
      step("train_loop@1/regional[2]/train", SUCCEEDED, 27_000),
      step("train_loop@1/regional[3]/train", RUNNING, 27_000),
      progressReport("train_loop@1/regional[3]/train", 60, "JP: epoch 6/10", 31_000),
      step("train_loop@1/regional[4]/train", QUEUED, 27_000, "waiting for resources: cpus"),
    ],
    run(RunStatus.RUN_STATUS_RUNNING, {
      STEP_STATUS_SUCCEEDED: 9,
      STEP_STATUS_RUNNING: 4,
      STEP_STATUS_QUEUED: 1,
    }),
    T0 + 32_000,
  );
  return p;
}

describe("paths", () => {
  test("foreach and loop containers are found in step paths, outermost first", () => {
    expect(enclosingContainers("train_loop@1/regional[3]/train")).toEqual([
      { kind: "loop", container: "train_loop", index: 1 },
      { kind: "foreach", container: "train_loop@1/regional", index: 3 },
    ]);
    expect(enclosingContainers("wrangle")).toEqual([]);
  });
});

describe("formatting", () => {
  test("durations and clocks", () => {
    expect(formatDuration(45_400)).toBe("45s");
    expect(formatDuration(65_000)).toBe("1m05s");
    expect(formatDuration(3_725_000)).toBe("1h02m");
    expect(formatClock(65_000)).toBe("01:05");
    expect(formatClock(3_725_000)).toBe("1:02:05");
  });

  test("counts in a fixed order, launching folded into running", () => {
    expect(formatCounts({ FAILED: 1, SUCCEEDED: 12, LAUNCHING: 1, RUNNING: 2 })).toBe(
      "12 succeeded · 3 running · 1 failed",
    );
    expect(formatCounts({})).toBe("no steps yet");
  });
});

describe("RunProgress", () => {
  test("foreach iterations, loop iteration, running steps and notes", () => {
    const p = midRun();
    const fe = p.foreaches.get("train_loop@1/regional");
    expect(fe?.total).toBe(5);
    expect(p.iterationCounts(fe!)).toMatchObject({ succeeded: 3, running: 2, failed: 0 });
    expect(p.loops.get("train_loop")?.iteration).toBe(1);
    expect(p.runningSteps().map((s) => s.path)).toEqual([
      "train_loop@1/regional[3]/train",
      "train_loop@1/train_global",
    ]);
    expect(p.stepCounts()).toEqual({ SUCCEEDED: 9, RUNNING: 4, QUEUED: 1 });
    expect(p.notes.map((n) => n.kind)).toEqual(["milestone", "warning"]);
  });

  test("events already seen (a resumed stream) are ignored", () => {
    const p = midRun();
    const before = p.steps.get("wrangle")?.status;
    seq = 3; // replay an old sequence number with a different status
    p.apply([step("wrangle", FAILED, 40_000)], undefined, T0 + 40_000);
    expect(p.steps.get("wrangle")?.status).toBe(before);
  });
});

describe("TTY frame", () => {
  test("shows status, counts, the loop, foreach counts, running steps and latest notes", () => {
    const p = midRun();
    const frame = renderFrame(p, T0 + 83_000, { style: PLAIN_STYLE, width: 0 });
    expect(frame[0]).toBe("recommendations  v2  run r1  RUNNING  1m23s");
    expect(frame[1]).toBe("steps    9 succeeded · 4 running · 1 queued");
    expect(frame).toContain("loop     train_loop  iteration 2");
    expect(frame).toContain("foreach  train_loop@1/regional 3/5 ✓ · 2 running");
    const running = frame.indexOf("running");
    expect(frame[running + 1]).toMatch(
      /^ {2}● train_loop@1\/regional\[3\]\/train +█{6}░{4} {2}60% {2}JP: epoch 6\/10$/,
    );
    expect(frame[running + 2]).toMatch(/train_loop@1\/train_global +█{4}░{6} {2}40% {2}fitting$/);
    expect(frame.some((l) => l.startsWith("waiting  1 (train_loop@1/regional[4]/train"))).toBe(
      true,
    );
    expect(frame.at(-1)).toBe(
      "  00:20 train_loop@0/validate ⚠ mean RMSE 0.95 > target 0.90: not stable, retraining",
    );
  });

  test("lines are clipped to the terminal width, colours included", () => {
    const p = midRun();
    const frame = renderFrame(p, T0 + 83_000, { style: { color: true, unicode: true }, width: 30 });
    for (const line of frame) {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colour codes
      const visible = line.replace(/\x1b\[[0-9;]*m/g, "");
      expect(visible.length).toBeLessThanOrEqual(30);
    }
    expect(frame[0]).toContain("\x1b[");
  });
});

describe("plain lines", () => {
  test("one line per meaningful event; launching is left out", () => {
    seq = 0;
    const p = new RunProgress(RUN_ID);
    const log = new PlainLog();
    p.apply(
      [
        runStatus(RunStatus.RUN_STATUS_RUNNING, 0),
        step("select_users", QUEUED, 10),
        step("select_users", LAUNCHING, 20),
        step("select_users", RUNNING, 30),
        report("select_users", { $case: "milestone", value: "cohort selected" }, 500),
        step("select_users", SUCCEEDED, 1_000, "exit 0"),
        {
          ...base("wrangle", 1_100),
          kind: { $case: "artifact", value: "cohort{dateint=20260101}" },
        },
      ],
      run(RunStatus.RUN_STATUS_RUNNING),
      T0 + 1_100,
    );
    expect(log.lines(p, T0 + 1_100)).toEqual([
      "[00:00] run r1 RUNNING",
      "[00:00] select_users QUEUED",
      "[00:00] select_users RUNNING",
      "[00:00] select_users ◆ cohort selected",
      "[00:01] select_users SUCCEEDED (exit 0)",
      "[00:01] wrangle ▣ artifact cohort{dateint=20260101}",
    ]);
  });

  test("progress prints at most every 10 points or 5 s per step", () => {
    seq = 0;
    const p = new RunProgress(RUN_ID);
    const log = new PlainLog();
    const feed = (events: RunEvent[], at: number) => {
      p.apply(events, run(RunStatus.RUN_STATUS_RUNNING), T0 + at);
      return log.lines(p, T0 + at);
    };
    feed([step("train", RUNNING, 0)], 0);
    expect(feed([progressReport("train", 1, "epoch 1", 100)], 100)).toEqual([
      "[00:00] train 1% epoch 1",
    ]);
    expect(feed([progressReport("train", 5, "epoch 5", 200)], 200)).toEqual([]);
    expect(feed([progressReport("train", 11, "epoch 11", 300)], 300)).toEqual([
      "[00:00] train 11% epoch 11",
    ]);
    expect(feed([progressReport("train", 14, "epoch 14", 6_000)], 6_000)).toEqual([
      "[00:06] train 14% epoch 14",
    ]);
    expect(feed([progressReport("train", 100, "done", 6_100)], 6_100)).toEqual([
      "[00:06] train 100% done",
    ]);
  });

  test("never silent for more than the heartbeat interval while running", () => {
    const p = midRun();
    const log = new PlainLog({ heartbeatMs: 10_000 });
    log.lines(p, T0 + 32_000);
    expect(log.tick(p, T0 + 41_000)).toEqual([]);
    const [beat] = log.tick(p, T0 + 42_000);
    expect(beat).toBe(heartbeatLine(p, T0 + 42_000));
    expect(beat).toContain("9 succeeded · 4 running · 1 queued");
    expect(beat).toContain("train_loop@1/regional 3/5 ✓ · 2 running");
    expect(beat).toContain("train_loop iteration 2");
    expect(beat).toContain("running: train_loop@1/regional[3]/train 60%");
    expect(log.tick(p, T0 + 43_000)).toEqual([]);
  });

  test("deep foreach iterations print only failures", () => {
    seq = 0;
    const p = new RunProgress(RUN_ID);
    const log = new PlainLog({ iterationLines: 2 });
    p.apply(
      [
        step("fan[1]/x", RUNNING, 0),
        step("fan[2]/x", RUNNING, 0),
        step("fan[3]/x", FAILED, 10, "exit 3"),
      ],
      run(RunStatus.RUN_STATUS_RUNNING),
      T0 + 10,
    );
    expect(log.lines(p, T0 + 10)).toEqual([
      "[00:00] fan[1]/x RUNNING",
      "[00:00] fan[3]/x FAILED (exit 3)",
    ]);
  });
});

describe("outcome", () => {
  test("names the failed steps with their reasons", () => {
    const p = midRun();
    p.apply(
      [
        step("train_loop@1/regional[4]/train", FAILED, 40_000, "exit code 1"),
        runStatus(RunStatus.RUN_STATUS_FAILED, 41_000),
      ],
      run(
        RunStatus.RUN_STATUS_FAILED,
        { STEP_STATUS_SUCCEEDED: 9, STEP_STATUS_FAILED: 1 },
        { endedAt: new Date(T0 + 41_000), message: "step train_loop@1/regional[4]/train failed" },
      ),
      T0 + 41_000,
    );
    expect(renderOutcome(p, T0 + 99_000, PLAIN_STYLE)).toEqual([
      "run r1 FAILED in 41s · 9 succeeded · 1 failed",
      "  step train_loop@1/regional[4]/train failed",
      "  ✗ train_loop@1/regional[4]/train: exit code 1",
    ]);
  });
});
