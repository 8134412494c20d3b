// Regression tests for the second round of engine review fixes (docs/review-engine.md): each
// drives the real server (gRPC, engine, SQLite, the local agent) into the situation the
// finding describes and checks the outcome a user sees.
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { type Run, RunStatus, StepStatus } from "@kaon/proto";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFINITION_CACHE_SIZE, type DefinitionSource } from "../../core/src/engine/engine.js";
import { createLogger } from "../../core/src/log.js";
import type { StepTypeRegistry } from "../../core/src/steps/registry.js";
import { type EngineKaon, startEngineKaon, waitForStepStatus } from "./support/harness.js";

/** Error lines the engine logged, and a way to wait for one. */
const logged: string[] = [];
const logWaiters: Array<{ match: string; resolve: () => void }> = [];
function waitForLog(match: string, timeoutMs = 10_000): Promise<void> {
  if (logged.some((l) => l.includes(match))) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no log line containing '${match}' within ${timeoutMs} ms`)),
      timeoutMs,
    );
    logWaiters.push({
      match,
      resolve: () => {
        clearTimeout(timer);
        resolve();
      },
    });
  });
}

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon({
    log: createLogger({
      level: "error",
      pretty: false,
      write: (line) => {
        logged.push(line);
        for (const w of [...logWaiters]) {
          if (line.includes(w.match)) {
            logWaiters.splice(logWaiters.indexOf(w), 1);
            w.resolve();
          }
        }
      },
    }),
  });
});
afterAll(async () => {
  await k?.stop();
});

function registry(): StepTypeRegistry {
  return (k.engine as unknown as { opts: { stepTypes: StepTypeRegistry } }).opts.stepTypes;
}

const waitForStatus = (runId: string, path: string, status: StepStatus) =>
  waitForStepStatus(k.runs, runId, path, status);

describe("engine review fixes, round 2", () => {
  it("C4: a background path that rejects is logged and does not end the server", async () => {
    // A plugin bug: interpretEnd resolves with nothing, so the engine's handler throws inside
    // a promise callback nobody awaits (before the fix: an unhandled rejection, which ends
    // the process on Node 20 and fails this test run).
    registry().register({
      kind: "process",
      name: "robust-bad-end",
      description: "interprets its end with nothing",
      validate: () => [],
      plan: () => ({ command: { kind: "shell", script: "true" } }),
      interpretEnd: async () => undefined as unknown as { succeeded: boolean },
    });
    await k.deploy({ id: "robust-c4", steps: [{ id: "s", type: "robust-bad-end" }] });
    const { run } = await k.runs.startRun({ workflowId: "robust-c4" });
    const runId = run?.id as string;
    await waitForLog("ending step 's'");
    // The server still serves: another run succeeds, and the broken one can be stopped.
    await k.deploy({ id: "robust-c4-ok", steps: [{ id: "a", type: "noop" }] });
    const { run: ok } = await k.run("robust-c4-ok");
    expect(ok.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    await k.runs.stopRun({ runId, reason: "" });
    const { run: stopped } = await k.watch(runId);
    expect(stopped.status).toBe(RunStatus.RUN_STATUS_STOPPED);
  });

  it("J3: a subworkflow step recovered before its child was recorded re-attaches to that child", async () => {
    const first = await startEngineKaon();
    const dataDir = first.dataDir;
    const counter = join(dataDir, "child-executions.log");
    await first.deploy({
      id: "robust-j3-child",
      steps: [
        {
          id: "w",
          type: "command",
          config: { shell: `echo w >> "${counter}"; sleep 1; echo "y=7" >> "$KAON_OUTPUT"` },
        },
      ],
    });
    await first.deploy({
      id: "robust-j3",
      steps: [{ id: "sub", type: "subworkflow", subworkflow: { workflowId: "robust-j3-child" } }],
    });
    const { run } = await first.runs.startRun({ workflowId: "robust-j3" });
    const runId = (run as Run).id;
    const listChildren = async (k2: EngineKaon) =>
      (
        await k2.runs.listRuns({
          workflowId: "robust-j3-child",
          namespace: "",
          statuses: [],
          pageSize: 10,
          pageToken: "",
        })
      ).runs;
    // The child is committed by its own StartRun; wait (commit by commit) until it is listed.
    let children = await listChildren(first);
    for (const deadline = Date.now() + 10_000; children.length === 0 && Date.now() < deadline; ) {
      await first.engine.flushed();
      children = await listChildren(first);
    }
    expect(children).toHaveLength(1);
    const childId = children[0]?.id as string;
    await first.engine.flushed();
    await first.stop({ keepDataDir: true });
    // The state a crash leaves between committing the child run and recording it on the parent
    // step (a later tick): the parent step RUNNING, no child id, no attempt row.
    {
      const db = await (await import("../../core/src/store/db.js")).openDatabase({
        url: `sqlite:${join(dataDir, "kaon.db")}`,
      });
      const row = await db("step_instances").where({ run_id: runId, path: "sub" }).first();
      expect(row?.status).toBe(StepStatus.STEP_STATUS_RUNNING);
      const book = JSON.parse(row.state_json) as Record<string, unknown>;
      expect(book.c).toBe(childId);
      delete book.c;
      await db("step_instances")
        .where({ run_id: runId, path: "sub" })
        .update({ state_json: JSON.stringify(book) });
      await db("attempts").where({ run_id: runId, path: "sub" }).delete();
      await db.destroy();
    }
    const second = await startEngineKaon({ dataDir });
    try {
      const { run: done } = await second.watch(runId, 30_000);
      expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      expect(done.outputs).toEqual({ "sub.w.y": 7 });
      expect((await listChildren(second)).map((r) => r.id)).toEqual([childId]);
      expect(readFileSync(counter, "utf8").trim().split("\n")).toEqual(["w"]);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("S5: subworkflows that start each other stop at 16 levels, naming the chain", async () => {
    await k.deploy({
      id: "robust-s5-a",
      steps: [{ id: "sub", type: "subworkflow", subworkflow: { workflowId: "robust-s5-b" } }],
    });
    await k.deploy({
      id: "robust-s5-b",
      steps: [{ id: "sub", type: "subworkflow", subworkflow: { workflowId: "robust-s5-a" } }],
    });
    const { run } = await k.run("robust-s5-a", {}, 30_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const all: Run[] = [];
    for (const workflowId of ["robust-s5-a", "robust-s5-b"]) {
      const listed = await k.runs.listRuns({
        workflowId,
        namespace: "",
        statuses: [],
        pageSize: 100,
        pageToken: "",
      });
      all.push(...listed.runs);
    }
    expect(all).toHaveLength(16);
    expect(all.every((r) => r.status === RunStatus.RUN_STATUS_FAILED)).toBe(true);
    const reasons = await Promise.all(
      all.map(async (r) => (await k.runs.getStep({ runId: r.id, path: "sub" })).step?.reason ?? ""),
    );
    const deepest = reasons.filter((r) => r.includes("deeper than 16 levels"));
    expect(deepest).toHaveLength(1);
    expect(deepest[0]).toContain(
      "robust-s5-a → robust-s5-b → robust-s5-a → robust-s5-b → robust-s5-a",
    );
  });

  it("S5: a child that would queue behind its own ancestor (sequential) fails instead of waiting for ever", async () => {
    await k.deploy({
      id: "robust-s5-seq",
      runStrategy: { mode: "RUN_STRATEGY_MODE_SEQUENTIAL" },
      steps: [{ id: "sub", type: "subworkflow", subworkflow: { workflowId: "robust-s5-mid" } }],
    });
    await k.deploy({
      id: "robust-s5-mid",
      steps: [{ id: "sub", type: "subworkflow", subworkflow: { workflowId: "robust-s5-seq" } }],
    });
    const { run } = await k.run("robust-s5-seq", {}, 15_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const mid = (
      await k.runs.listRuns({
        workflowId: "robust-s5-mid",
        namespace: "",
        statuses: [],
        pageSize: 10,
        pageToken: "",
      })
    ).runs;
    expect(mid).toHaveLength(1);
    const step = (await k.runs.getStep({ runId: mid[0]?.id as string, path: "sub" })).step;
    expect(step?.reason).toContain("would wait for its own ancestor run");
  });

  /**
   * Makes the backend lose tasks before they start: `launch` records the task and, with
   * `loseAtLaunch`, reports it LOST at once; `kill` of a recorded task reports it LOST (the
   * backend never started it). Statuses go through the engine's real backend callbacks.
   */
  function losingBackend(loseAtLaunch: boolean) {
    const backend = k.backend as unknown as {
      launch(offerIds: string[], tasks: Array<{ taskId: string }>): void;
      kill(taskId: string): void;
      decline(offerIds: string[], refuseSeconds: number): void;
      callbacks: { onStatus(s: { taskId: string; state: string; timestamp: number }): void };
    };
    const original = { launch: backend.launch, kill: backend.kill };
    const launched: string[] = [];
    const lose = (taskId: string) =>
      backend.callbacks.onStatus({
        taskId,
        state: "LOST",
        timestamp: Date.now(),
        message: "agent lost the task",
      } as never);
    backend.launch = (offers, tasks) => {
      // Nothing started: the offer goes back to the backend, which offers again at once.
      backend.decline(offers, 0);
      for (const t of tasks) {
        launched.push(t.taskId);
        if (loseAtLaunch) setImmediate(() => lose(t.taskId));
      }
    };
    backend.kill = (taskId) => {
      if (launched.includes(taskId)) setImmediate(() => lose(taskId));
      else original.kill.call(backend, taskId);
    };
    return {
      launched,
      restore() {
        backend.launch = original.launch;
        backend.kill = original.kill;
      },
    };
  }

  it("S1: StopStep on a LAUNCHING task the backend then reports LOST stops it, no relaunch", async () => {
    await k.deploy({
      id: "robust-s1-stop",
      steps: [{ id: "t", type: "command", config: { shell: "sleep 30" } }],
    });
    const lossy = losingBackend(false);
    try {
      const { run } = await k.runs.startRun({ workflowId: "robust-s1-stop" });
      const runId = run?.id as string;
      await waitForStatus(runId, "t", StepStatus.STEP_STATUS_LAUNCHING);
      await k.runs.stopStep({ runId, path: "t" });
      const { run: done } = await k.watch(runId, 15_000);
      expect(done.status).toBe(RunStatus.RUN_STATUS_STOPPED);
      const t = await k.runs.getStep({ runId, path: "t" });
      expect(t.step?.status).toBe(StepStatus.STEP_STATUS_STOPPED);
      expect(lossy.launched.filter((id) => id.startsWith(runId))).toHaveLength(1);
    } finally {
      lossy.restore();
    }
  });

  it("S1: a backend that keeps losing launches gets 3 free relaunches, then the step fails", async () => {
    await k.deploy({
      id: "robust-s1-loop",
      steps: [{ id: "t", type: "command", config: { shell: "true" } }],
    });
    const lossy = losingBackend(true);
    try {
      const { run } = await k.run("robust-s1-loop", {}, 15_000);
      expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
      expect(lossy.launched.filter((id) => id.startsWith(run.id))).toHaveLength(4);
      const t = await k.runs.getStep({ runId: run.id, path: "t" });
      expect(t.step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
      expect(t.step?.reason).toContain("agent lost the task");
    } finally {
      lossy.restore();
    }
  });

  it("S2: after a restart of core, a queued step does not take the type slot a running step holds", async () => {
    const first = await startEngineKaon();
    const dataDir = first.dataDir;
    const order = join(dataDir, "order.log");
    await first.deploy({
      id: "robust-s2",
      stepTypeConcurrency: { command: 1 },
      steps: [
        { id: "first", type: "noop", next: [{ to: "q" }] },
        // Listed before `r`, so recovery meets it first; it queues behind `r` for the slot.
        { id: "q", type: "command", config: { shell: `echo q-start >> "${order}"` } },
        {
          id: "r",
          type: "command",
          config: { shell: `echo r-start >> "${order}"; sleep 1.5; echo r-end >> "${order}"` },
        },
      ],
    });
    const { run } = await first.runs.startRun({ workflowId: "robust-s2" });
    const runId = (run as Run).id;
    const seen = new Set<string>();
    for await (const msg of first.runs.watchRun(
      { runId, afterSeq: 0 },
      { signal: AbortSignal.timeout(15_000) },
    )) {
      for (const e of msg.events) {
        if (e.kind?.$case === "stepStatus") seen.add(`${e.path}:${e.kind.value}`);
      }
      if (
        seen.has(`r:${StepStatus.STEP_STATUS_RUNNING}`) &&
        seen.has(`q:${StepStatus.STEP_STATUS_QUEUED}`)
      )
        break;
    }
    await first.stop({ keepDataDir: true });
    const second = await startEngineKaon({ dataDir });
    try {
      const { run: done } = await second.watch(runId, 30_000);
      expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      expect(readFileSync(order, "utf8").trim().split("\n")).toEqual([
        "r-start",
        "r-end",
        "q-start",
      ]);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("J2: a restart whose commit fails keeps the old iteration rows (deleted in the same commit)", async () => {
    let fatal: Error | undefined;
    const k2 = await startEngineKaon({
      onFatal: (err) => {
        fatal = err;
      },
    });
    try {
      await k2.deploy({
        id: "robust-j2",
        steps: [
          {
            id: "fe",
            type: "foreach",
            foreach: { axes: [{ values: [0, 1] }], body: [{ id: "work", type: "noop" }] },
          },
        ],
      });
      const { run } = await k2.run("robust-j2");
      expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      const paths = async () =>
        (await k2.db("step_instances").where({ run_id: run.id }).orderBy("path")).map(
          (r: { path: string }) => r.path,
        );
      expect(await paths()).toEqual(["fe", "fe[0]/work", "fe[1]/work"]);
      // The commit recording the reopened run fails (as a crash at that moment would lose it).
      await k2.db.raw(`CREATE TRIGGER j2_refuse BEFORE INSERT ON runs WHEN NEW.restart_count > 0
        BEGIN SELECT RAISE(ABORT, 'simulated crash'); END`);
      await expect(k2.engine.restartRun({ runId: run.id, from: "beginning" })).rejects.toThrow(
        /simulated crash/,
      );
      expect(fatal?.message).toContain("simulated crash");
      // Nothing of the restart is in the database: the run is finished with all its rows.
      expect(await paths()).toEqual(["fe", "fe[0]/work", "fe[1]/work"]);
      const row = await k2.db("runs").where({ id: run.id }).first();
      expect(row?.restart_count).toBe(0);
      expect(row?.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    } finally {
      await k2.stop();
    }
  });

  it("C3: page tokens of the wrong shape are INVALID_ARGUMENT naming page_token, not INTERNAL", async () => {
    const token = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const refused = async (call: Promise<unknown>) => {
      const err = await call.then(
        () => undefined,
        (e: { code?: number; details?: string }) => e,
      );
      expect(err?.code).toBe(Status.INVALID_ARGUMENT);
      expect(err?.details).toContain("page_token");
    };
    const runs = (pageToken: string) =>
      k.runs.listRuns({ workflowId: "", namespace: "", statuses: [], pageSize: 5, pageToken });
    await refused(runs(token("5")));
    await refused(runs(token({ c: "x", i: "y" })));
    await refused(runs(token({ c: 1 })));
    await refused(runs(token(null)));
    await refused(
      k.runs.listSteps({
        runId: "r",
        statuses: [],
        pathPrefix: "",
        pageSize: 5,
        pageToken: token({ k: 5 }),
      }),
    );
    await refused(
      k.artifacts.listArtifacts({
        name: "",
        namespace: "",
        partitions: {},
        pageSize: 5,
        pageToken: token({ id: "x" }),
      }),
    );
    // A real token still pages.
    await k.deploy({ id: "robust-c3", steps: [{ id: "a", type: "noop" }] });
    await k.run("robust-c3");
    await k.run("robust-c3");
    const page1 = await k.runs.listRuns({
      workflowId: "robust-c3",
      namespace: "",
      statuses: [],
      pageSize: 1,
      pageToken: "",
    });
    const page2 = await k.runs.listRuns({
      workflowId: "robust-c3",
      namespace: "",
      statuses: [],
      pageSize: 1,
      pageToken: page1.nextPageToken,
    });
    expect(page2.runs).toHaveLength(1);
    expect(page2.runs[0]?.id).not.toBe(page1.runs[0]?.id);
  });

  it("S3: a RETRYING step recovered after a long outage retries when its backoff from the last attempt's end is over", async () => {
    const first = await startEngineKaon();
    const dataDir = first.dataDir;
    await first.deploy({
      id: "robust-s3",
      steps: [
        {
          id: "t",
          type: "command",
          config: { shell: '[ "$KAON_ATTEMPT" -ge 2 ] || exit 1' },
          retry: { maxAttempts: 2, initialBackoff: "60s" },
        },
      ],
    });
    const { run } = await first.runs.startRun({ workflowId: "robust-s3" });
    const runId = (run as Run).id;
    await waitForStepStatus(first.runs, runId, "t", StepStatus.STEP_STATUS_RETRYING);
    await first.stop({ keepDataDir: true });
    // Core was down for ten minutes: the 60 s backoff after attempt 1 is long over.
    {
      const { openDatabase } = await import("../../core/src/store/db.js");
      const db = await openDatabase({ url: `sqlite:${join(dataDir, "kaon.db")}` });
      const updated = await db("attempts")
        .where({ run_id: runId, path: "t", number: 1 })
        .update({ ended_at: Date.now() - 600_000 });
      expect(updated).toBe(1);
      await db.destroy();
    }
    const second = await startEngineKaon({ dataDir });
    try {
      const { run: done } = await second.watch(runId, 20_000);
      expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      const t = await second.runs.getStep({ runId, path: "t" });
      expect(t.attempts.map((a) => a.number)).toEqual([1, 2]);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("S6: a loop whose iterations end at once does not overflow the stack", async () => {
    // Each iteration's body (a foreach over an empty list) ends synchronously.
    await k.deploy({
      id: "robust-s6",
      steps: [
        {
          id: "outer",
          type: "loop",
          loop: {
            maxIterations: 1000,
            body: [
              {
                id: "inner",
                type: "loop",
                loop: {
                  maxIterations: 20,
                  body: [
                    {
                      id: "e",
                      type: "foreach",
                      foreach: { axes: [{ values: [] }], body: [{ id: "w", type: "noop" }] },
                    },
                  ],
                },
              },
            ],
          },
        },
      ],
    });
    const { run } = await k.run("robust-s6", {}, 60_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const outer = await k.runs.getStep({ runId: run.id, path: "outer" });
    expect(outer.step?.reason).toBe("reached max iterations (1000)");
  }, 90_000);

  it("S7: a step type whose interpretEnd throws synchronously fails the attempt with the error", async () => {
    registry().register({
      kind: "process",
      name: "robust-sync-throw",
      description: "interpretEnd throws before returning a promise",
      validate: () => [],
      plan: () => ({ command: { kind: "shell", script: "true" } }),
      interpretEnd: () => {
        throw new Error("boom in interpretEnd");
      },
    });
    await k.deploy({ id: "robust-s7", steps: [{ id: "s", type: "robust-sync-throw" }] });
    const { run } = await k.run("robust-s7", {}, 15_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const s = await k.runs.getStep({ runId: run.id, path: "s" });
    expect(s.step?.reason).toContain("boom in interpretEnd");
  });

  it("J5: a StopStep whose KILLED end arrives after a restart of core ends the step STOPPED, not retried", async () => {
    const first = await startEngineKaon();
    const dataDir = first.dataDir;
    await first.deploy({
      id: "robust-j5",
      steps: [
        {
          id: "t",
          type: "command",
          // Ignores SIGTERM: it dies by SIGKILL after the kill grace (2 s), i.e. after core
          // restarted.
          config: { shell: "trap '' TERM; sleep 30 & wait; sleep 30" },
          retry: { maxAttempts: 3, retryOn: ["RETRY_ON_EXIT_CODE"], initialBackoff: "0.05s" },
        },
      ],
    });
    const { run } = await first.runs.startRun({ workflowId: "robust-j5" });
    const runId = (run as Run).id;
    await waitForStepStatus(first.runs, runId, "t", StepStatus.STEP_STATUS_RUNNING);
    await first.runs.stopStep({ runId, path: "t" });
    await first.stop({ keepDataDir: true });
    const second = await startEngineKaon({ dataDir });
    try {
      const { run: done } = await second.watch(runId, 20_000);
      expect(done.status).toBe(RunStatus.RUN_STATUS_STOPPED);
      const t = await second.runs.getStep({ runId, path: "t" });
      expect(t.step?.status).toBe(StepStatus.STEP_STATUS_STOPPED);
      expect(t.attempts.map((a) => a.number)).toEqual([1]);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("L1: the definition cache keeps at most DEFINITION_CACHE_SIZE versions", async () => {
    // Many deployed versions over a long-lived server: every one a run used stayed cached.
    const engine = k.engine as unknown as {
      opts: { definitions: DefinitionSource };
      definitionCache: Map<string, unknown>;
      loadDefinition(id: string, selector: number): Promise<unknown>;
    };
    const real = engine.opts.definitions;
    engine.opts.definitions = {
      load: async (workflowId, selector) => ({
        version: selector,
        namespace: "default",
        definition: { id: workflowId } as never,
      }),
    };
    try {
      for (let v = 1; v <= DEFINITION_CACHE_SIZE + 200; v++) await engine.loadDefinition("many", v);
      expect(engine.definitionCache.size).toBe(DEFINITION_CACHE_SIZE);
      // Least recently used goes first: 201 (the oldest) was used again, so 202 goes.
      await engine.loadDefinition("many", 201);
      await engine.loadDefinition("many", 10_000);
      expect(engine.definitionCache.has("many@201")).toBe(true);
      expect(engine.definitionCache.has("many@202")).toBe(false);
      expect(engine.definitionCache.size).toBe(DEFINITION_CACHE_SIZE);
    } finally {
      engine.opts.definitions = real;
    }
  });

  it("L2: a child run recovery cannot rebuild is failed, and its parent step fails naming it", async () => {
    const first = await startEngineKaon();
    const dataDir = first.dataDir;
    await first.deploy({
      id: "robust-l2-child",
      steps: [{ id: "w", type: "command", config: { shell: "sleep 1" } }],
    });
    await first.deploy({
      id: "robust-l2",
      steps: [{ id: "sub", type: "subworkflow", subworkflow: { workflowId: "robust-l2-child" } }],
    });
    const { run } = await first.runs.startRun({ workflowId: "robust-l2" });
    const runId = (run as Run).id;
    let childId = "";
    for (const deadline = Date.now() + 10_000; !childId && Date.now() < deadline; ) {
      await first.engine.flushed();
      const row = await first.db("step_instances").where({ run_id: runId, path: "sub" }).first();
      childId = (JSON.parse(row?.state_json ?? "{}") as { c?: string }).c ?? "";
    }
    expect(childId).not.toBe("");
    await first.stop({ keepDataDir: true });
    {
      // The child's workflow version disappears while core is down.
      const { openDatabase } = await import("../../core/src/store/db.js");
      const db = await openDatabase({ url: `sqlite:${join(dataDir, "kaon.db")}` });
      expect(await db("workflow_versions").where({ workflow_id: "robust-l2-child" }).delete()).toBe(
        1,
      );
      await db.destroy();
    }
    const second = await startEngineKaon({ dataDir });
    try {
      const { run: done } = await second.watch(runId, 15_000);
      expect(done.status).toBe(RunStatus.RUN_STATUS_FAILED);
      const child = (await second.runs.getRun({ runId: childId })).run;
      expect(child?.status).toBe(RunStatus.RUN_STATUS_FAILED);
      expect(child?.message).toContain("no longer exists");
      const sub = await second.runs.getStep({ runId, path: "sub" });
      expect(sub.step?.reason).toContain(`run ${childId} failed: cannot be recovered`);
    } finally {
      await second.stop();
    }
  }, 60_000);

  it("S8: a container's own timeout stops it and ends it TIMED_OUT (foreach, loop, subworkflow)", async () => {
    const slow = [{ id: "w", type: "command", config: { shell: "sleep 30" } }];
    await k.deploy({ id: "robust-s8-child", steps: slow });
    await k.deploy({
      id: "robust-s8",
      steps: [
        {
          id: "fe",
          type: "foreach",
          timeout: "1s",
          foreach: { axes: [{ values: [1, 2] }], body: slow },
        },
        { id: "lp", type: "loop", timeout: "1s", loop: { maxIterations: 3, body: slow } },
        {
          id: "sub",
          type: "subworkflow",
          timeout: "1s",
          subworkflow: { workflowId: "robust-s8-child" },
        },
      ],
    });
    const { run } = await k.run("robust-s8", {}, 20_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    for (const path of ["fe", "lp", "sub"]) {
      const got = (await k.runs.getStep({ runId: run.id, path })).step;
      expect(got?.status, path).toBe(StepStatus.STEP_STATUS_TIMED_OUT);
      expect(got?.reason, path).toBe("timed out after 1s");
    }
  }, 30_000);

  it("S4: an inline attempt lost to a restart of core does not spend a retry", async () => {
    // An HTTP service under the test's control: the first call hangs (core restarts under
    // it), the second fails, the third succeeds.
    const calls: Array<(status: number) => void> = [];
    let callArrived: () => void = () => {};
    const firstCall = new Promise<void>((r) => {
      callArrived = r;
    });
    const server = createServer((_req, res) => {
      const n = calls.length + 1;
      calls.push((status) => res.writeHead(status).end("{}"));
      if (n === 1) callArrived();
      else (calls[n - 1] as (s: number) => void)(n === 2 ? 500 : 200);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const first = await startEngineKaon();
    const dataDir = first.dataDir;
    let second: EngineKaon | undefined;
    try {
      await first.deploy({
        id: "robust-s4",
        steps: [
          {
            id: "h",
            type: "http",
            config: { url: `http://127.0.0.1:${port}/` },
            retry: { maxAttempts: 2, initialBackoff: "0.05s" },
          },
        ],
      });
      const { run } = await first.runs.startRun({ workflowId: "robust-s4" });
      const runId = (run as Run).id;
      await firstCall;
      await first.engine.flushed();
      await first.stop({ keepDataDir: true });
      second = await startEngineKaon({ dataDir });
      const { run: done } = await second.watch(runId, 20_000);
      // Attempt 1 was lost with core; attempts 2 (failed) and 3 (succeeded) are the two tries
      // max_attempts allows.
      expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
      const h = await second.runs.getStep({ runId, path: "h" });
      expect(h.attempts.map((a) => a.number)).toEqual([1, 2, 3]);
    } finally {
      await second?.stop();
      server.closeAllConnections();
      server.close();
    }
  }, 60_000);

  it("L3: an attempt whose end the backend never reports is reconciled, not waited on for ever", async () => {
    const k3 = await startEngineKaon({ reconcileIntervalMs: 300 });
    const backend = k3.backend as unknown as {
      launch(offerIds: string[], tasks: Array<{ taskId: string }>): void;
      decline(offerIds: string[], refuseSeconds: number): void;
    };
    const launched: string[] = [];
    // The launch vanishes on its way (no agent got it) and nobody ever reports on it.
    backend.launch = (offers, tasks) => {
      backend.decline(offers, 0);
      for (const t of tasks) launched.push(t.taskId);
    };
    try {
      await k3.deploy({
        id: "robust-l3",
        steps: [{ id: "t", type: "command", config: { shell: "true" } }],
      });
      const { run } = await k3.run("robust-l3", {}, 20_000);
      expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
      const t = await k3.runs.getStep({ runId: run.id, path: "t" });
      expect(t.step?.reason).toContain("unknown to the local backend");
      expect(launched).toHaveLength(4);
    } finally {
      await k3.stop();
    }
  }, 30_000);
});
