// The engine end to end through the real server, the real local backend (agent processes)
// and real SQLite: linear chains, AND/XOR splits, ALL/ANY joins with dead-path elimination,
// outputs from $KAON_OUTPUT and from in-job Report calls, logs, and the step list.
import { readFileSync } from "node:fs";
import { RunStatus, StepStatus } from "@kaon/proto";
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

describe("engine basics", () => {
  it("runs a linear chain of commands and noops, with outputs from KAON_OUTPUT", async () => {
    await k.deploy({
      id: "linear",
      params: [{ name: "greeting", type: "PARAM_TYPE_STRING", value: "hello" }],
      steps: [
        {
          id: "a",
          type: "command",
          config: sh(
            'echo "n=41" >> "$KAON_OUTPUT"; echo "word=$KAON_PARAM_GREETING" >> "$KAON_OUTPUT"; echo out-a',
          ),
          next: [{ to: "b" }],
        },
        { id: "b", type: "noop", next: [{ to: "c" }] },
        {
          id: "c",
          type: "command",
          params: [{ name: "m", type: "PARAM_TYPE_INT", expr: "steps.a.outputs.n + 1" }],
          config: sh(
            'echo "m=$KAON_PARAM_M" >> "$KAON_OUTPUT"; echo "bad line" >> "$KAON_OUTPUT"; cat "$KAON_PARAMS_FILE" >&2',
          ),
        },
      ],
    });
    const { run, events } = await k.run("linear");
    expect(RunStatus[run.status]).toBe("RUN_STATUS_SUCCEEDED");
    expect(run.outputs).toEqual({ "c.m": 42 });
    const a = await k.runs.getStep({ runId: run.id, path: "a" });
    expect(a.step?.outputs).toEqual({ n: 41, word: "hello" });
    expect(a.attempts).toHaveLength(1);
    expect(a.attempts[0]?.exitCode).toBe(0);
    const c = await k.runs.getStep({ runId: run.id, path: "c" });
    expect(c.step?.params).toMatchObject({ greeting: "hello", m: 42 });
    expect(c.step?.reports?.messages.map((m) => m.text).join("\n")).toContain(
      'line 2 ignored: expected name=value, got "bad line"',
    );
    expect(stepStatuses(events, "a").map(Number)).toEqual([
      StepStatus.STEP_STATUS_QUEUED,
      StepStatus.STEP_STATUS_LAUNCHING,
      StepStatus.STEP_STATUS_RUNNING,
      StepStatus.STEP_STATUS_SUCCEEDED,
    ]);
    // Logs are served by TailLogs.
    let out = "";
    for await (const chunk of k.runs.tailLogs({
      runId: run.id,
      path: "a",
      attempt: 0,
      offset: 0,
      follow: false,
      stream: 0,
    })) {
      out += Buffer.from(chunk.data).toString();
    }
    expect(out).toBe("out-a\n");
    let err = "";
    for await (const chunk of k.runs.tailLogs({
      runId: run.id,
      path: "c",
      attempt: 1,
      offset: 0,
      follow: false,
      stream: 2,
    })) {
      err += Buffer.from(chunk.data).toString();
    }
    expect(JSON.parse(err)).toMatchObject({ greeting: "hello", m: 42 });
    // Event seqs are dense and ordered.
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
  });

  it("XOR split takes the first true edge, otherwise when none holds; ALL join skips dead branches", async () => {
    await k.deploy({
      id: "xor",
      params: [{ name: "x", type: "PARAM_TYPE_INT", value: 5 }],
      steps: [
        {
          id: "decide",
          type: "noop",
          split: "SPLIT_MODE_XOR",
          next: [
            { to: "big", condition: "params.x > 10" },
            { to: "medium", condition: "params.x > 3" },
            { to: "small", otherwise: true },
          ],
        },
        { id: "big", type: "noop", next: [{ to: "join" }] },
        { id: "medium", type: "noop", next: [{ to: "join" }] },
        { id: "small", type: "noop", next: [{ to: "join" }] },
        { id: "join", type: "noop" },
      ],
    });
    const r1 = await k.run("xor");
    expect(r1.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const statuses = async (runId: string) =>
      Object.fromEntries(
        (
          await k.runs.listSteps({
            runId,
            statuses: [],
            pathPrefix: "",
            pageSize: 100,
            pageToken: "",
          })
        ).steps.map((s) => [s.path, StepStatus[s.status]]),
      );
    expect(await statuses(r1.run.id)).toEqual({
      decide: "STEP_STATUS_SUCCEEDED",
      big: "STEP_STATUS_SKIPPED",
      medium: "STEP_STATUS_SUCCEEDED",
      small: "STEP_STATUS_SKIPPED",
      join: "STEP_STATUS_SUCCEEDED",
    });
    const r2 = await k.run("xor", { x: 1 });
    expect(await statuses(r2.run.id)).toMatchObject({
      big: "STEP_STATUS_SKIPPED",
      medium: "STEP_STATUS_SKIPPED",
      small: "STEP_STATUS_SUCCEEDED",
      join: "STEP_STATUS_SUCCEEDED",
    });
  });

  it("AND split with a skipped branch still joins (dead-path elimination) and shows ACTIVATED", async () => {
    await k.deploy({
      id: "andjoin",
      steps: [
        {
          id: "start",
          type: "noop",
          next: [{ to: "left" }, { to: "right" }, { to: "never", condition: "false" }],
        },
        { id: "left", type: "command", config: sh("exit 0"), next: [{ to: "join" }] },
        { id: "right", type: "command", config: sh("sleep 0.3"), next: [{ to: "join" }] },
        { id: "never", type: "noop", next: [{ to: "after_never" }] },
        { id: "after_never", type: "noop", next: [{ to: "join" }] },
        { id: "join", type: "noop" },
      ],
    });
    const { run, events } = await k.run("andjoin");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const join = stepStatuses(events, "join").map((s) => StepStatus[Number(s)]);
    expect(join[0]).toBe("STEP_STATUS_ACTIVATED");
    expect(join.at(-1)).toBe("STEP_STATUS_SUCCEEDED");
    expect(stepStatuses(events, "never").map((s) => StepStatus[Number(s)])).toEqual([
      "STEP_STATUS_SKIPPED",
    ]);
    expect(stepStatuses(events, "after_never").map((s) => StepStatus[Number(s)])).toEqual([
      "STEP_STATUS_SKIPPED",
    ]);
  });

  it("ANY join starts on the first arrival", async () => {
    await k.deploy({
      id: "anyjoin",
      steps: [
        { id: "start", type: "noop", next: [{ to: "fast" }, { to: "slow" }] },
        { id: "fast", type: "noop", next: [{ to: "first" }] },
        { id: "slow", type: "command", config: sh("sleep 0.5"), next: [{ to: "first" }] },
        { id: "first", type: "command", join: "JOIN_MODE_ANY", config: sh("exit 0") },
      ],
    });
    const { run } = await k.run("anyjoin");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const first = (await k.runs.getStep({ runId: run.id, path: "first" })).step;
    const slow = (await k.runs.getStep({ runId: run.id, path: "slow" })).step;
    expect(first?.startedAt?.getTime()).toBeLessThan(slow?.endedAt?.getTime() ?? 0);
    expect(first?.attemptCount).toBe(1);
  });

  it("a failing step fails the run and skips what it blocks (FINISH_RUNNING)", async () => {
    await k.deploy({
      id: "failing",
      steps: [
        { id: "start", type: "noop", next: [{ to: "bad" }, { to: "good" }] },
        {
          id: "bad",
          type: "command",
          config: sh("echo boom >&2; exit 3"),
          next: [{ to: "after" }],
        },
        { id: "good", type: "command", config: sh("sleep 0.2") },
        { id: "after", type: "noop" },
      ],
    });
    const { run } = await k.run("failing");
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    expect(run.message).toContain("'bad'");
    const steps = (
      await k.runs.listSteps({
        runId: run.id,
        statuses: [],
        pathPrefix: "",
        pageSize: 10,
        pageToken: "",
      })
    ).steps;
    const by = Object.fromEntries(steps.map((s) => [s.path, s]));
    expect(by.bad?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(by.bad?.reason).toBe("exit code 3");
    expect(by.good?.status).toBe(StepStatus.STEP_STATUS_SUCCEEDED);
    expect(by.after?.status).toBe(StepStatus.STEP_STATUS_SKIPPED);
    expect(by.after?.reason).toBe("upstream step failed");
    const failedOnly = await k.runs.listSteps({
      runId: run.id,
      statuses: [StepStatus.STEP_STATUS_FAILED],
      pathPrefix: "",
      pageSize: 10,
      pageToken: "",
    });
    expect(failedOnly.steps.map((s) => s.path)).toEqual(["bad"]);
  });

  it("takes in-job Report calls with the step token, idempotent by sequence, and revokes the token at the end", async () => {
    await k.deploy({
      id: "reporting",
      steps: [
        {
          id: "job",
          type: "command",
          config: sh(
            'echo "$KAON_TOKEN" > token; echo "$KAON_ENDPOINT" > endpoint; i=0; while [ ! -f go ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done',
          ),
        },
      ],
    });
    const { run } = await k.runs.startRun({ workflowId: "reporting" });
    const runId = run?.id as string;
    // Wait (with a deadline) for the job to be running, using WatchRun events.
    const ac = new AbortController();
    for await (const msg of k.runs.watchRun({ runId, afterSeq: 0 }, { signal: ac.signal })) {
      if (
        msg.events.some(
          (e) =>
            e.path === "job" &&
            e.kind?.$case === "stepStatus" &&
            e.kind.value === StepStatus.STEP_STATUS_RUNNING,
        )
      )
        break;
    }
    const dir = `${k.dataDir}/runs/${runId}/job.1`;
    const readWhenThere = async (f: string) => {
      for (;;) {
        try {
          const t = readFileSync(`${dir}/${f}`, "utf8").trim();
          if (t) return t;
        } catch {}
        await new Promise((r) => setImmediate(r));
      }
    };
    const token = await readWhenThere("token");
    expect(await readWhenThere("endpoint")).toBe(k.server.grpcAddress);
    const job = k.jobClient(token);
    const ctx = await job.getContext({});
    expect(ctx).toMatchObject({ runId, path: "job", stepId: "job", attempt: 1 });
    const r1 = await job.report({
      sequence: 1,
      items: [
        { kind: { $case: "output", value: { name: "auc", value: 0.91 } } },
        { kind: { $case: "progress", value: { percent: 50, message: "half" } } },
      ],
    });
    expect(r1.appliedSequence).toBe(1);
    // A repeated batch is acknowledged and ignored.
    const again = await job.report({
      sequence: 1,
      items: [{ kind: { $case: "output", value: { name: "auc", value: 0.1 } } }],
    });
    expect(again.appliedSequence).toBe(1);
    await job.report({
      sequence: 2,
      items: [
        { kind: { $case: "counter", value: { name: "rows", delta: 5 } } },
        { kind: { $case: "counter", value: { name: "rows", delta: 2 } } },
        { kind: { $case: "milestone", value: "loaded" } },
      ],
    });
    await expect(
      job.report({
        sequence: 3,
        items: [{ kind: { $case: "output", value: { name: "bad name", value: 1 } } }],
      }),
    ).rejects.toThrow(/items\[0\].*bad name/);
    // Admin tokens cannot use the job service.
    await expect(k.jobClient(k.adminToken).getContext({})).rejects.toThrow(/step token/);
    const { writeFileSync } = await import("node:fs");
    writeFileSync(`${dir}/go`, "");
    const { run: done } = await k.watch(runId);
    expect(done.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const step = (await k.runs.getStep({ runId, path: "job" })).step;
    expect(step?.outputs).toEqual({ auc: 0.91 });
    expect(step?.progress).toBe(50);
    expect(step?.reports?.counters).toEqual({ rows: 7 });
    expect(step?.reports?.milestones.map((m) => m.name)).toEqual(["loaded"]);
    await expect(job.report({ sequence: 4, items: [] })).rejects.toThrow(
      /no longer valid|not running/,
    );
  });

  it("TailLogs follows an attempt's output until the attempt ends", async () => {
    await k.deploy({
      id: "tail",
      steps: [
        {
          id: "talk",
          type: "command",
          config: sh("for i in 1 2 3; do echo line$i; sleep 0.1; done"),
        },
      ],
    });
    const { run } = await k.runs.startRun({ workflowId: "tail" });
    const runId = run?.id as string;
    for await (const msg of k.runs.watchRun({ runId, afterSeq: 0 })) {
      if (
        msg.events.some(
          (e) =>
            e.path === "talk" &&
            e.kind?.$case === "stepStatus" &&
            e.kind.value === StepStatus.STEP_STATUS_RUNNING,
        )
      )
        break;
    }
    let text = "";
    const signal = AbortSignal.timeout(20_000);
    for await (const chunk of k.runs.tailLogs(
      { runId, path: "talk", attempt: 1, offset: 0, follow: true, stream: 1 },
      { signal },
    )) {
      text += Buffer.from(chunk.data).toString();
    }
    expect(text).toBe("line1\nline2\nline3\n");
  });
});
