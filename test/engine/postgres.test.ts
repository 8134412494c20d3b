// The engine on PostgreSQL: the same batch writer (multi-row upserts), journal, recovery-free
// paths and reads as on SQLite, for a representative subset — branches and joins, foreach
// with outputs, retries, in-job reports, restart from a step, artifacts.
import { RestartFrom, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FreshDatabase, freshPgDatabase } from "../support/pg.js";
import { type EngineKaon, startEngineKaon } from "./support/harness.js";

let pgdb: FreshDatabase;
let k: EngineKaon;
beforeAll(async () => {
  pgdb = await freshPgDatabase("engine");
  k = await startEngineKaon({ dbUrl: pgdb.url });
});
afterAll(async () => {
  await k?.stop();
  await pgdb?.drop();
});

const sh = (script: string) => ({ shell: script });

describe("engine on PostgreSQL", () => {
  it("runs branches, joins, a foreach with outputs and a retried step", async () => {
    await k.deploy({
      id: "pg_mix",
      steps: [
        {
          id: "start",
          type: "command",
          config: sh(`echo 'items=[1,2,3]' >> "$KAON_OUTPUT"`),
          split: "SPLIT_MODE_XOR",
          next: [
            { to: "fe", condition: "size(steps.start.outputs.items) == 3" },
            { to: "other", otherwise: true },
          ],
        },
        {
          id: "fe",
          type: "foreach",
          foreach: {
            axes: [{ expr: "steps.start.outputs.items" }],
            concurrency: 2,
            body: [
              {
                id: "sq",
                type: "command",
                params: [{ name: "v", type: "PARAM_TYPE_INT", expr: "foreach.value" }],
                config: sh(`echo "sq=$((KAON_PARAM_V * KAON_PARAM_V))" >> "$KAON_OUTPUT"`),
              },
            ],
          },
          next: [{ to: "join" }],
        },
        { id: "other", type: "noop", next: [{ to: "join" }] },
        {
          id: "join",
          type: "command",
          config: sh('[ "$KAON_ATTEMPT" -ge 2 ] || exit 1'),
          retry: { maxAttempts: 2, initialBackoff: "0.05s" },
        },
      ],
    });
    const { run } = await k.run("pg_mix");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const fe = (await k.runs.getStep({ runId: run.id, path: "fe" })).step;
    expect(fe?.outputs).toEqual({ sq: [1, 4, 9] });
    expect((await k.runs.getStep({ runId: run.id, path: "other" })).step?.status).toBe(
      StepStatus.STEP_STATUS_SKIPPED,
    );
    expect((await k.runs.getStep({ runId: run.id, path: "join" })).attempts).toHaveLength(2);
    const page = await k.runs.listSteps({
      runId: run.id,
      statuses: [StepStatus.STEP_STATUS_SUCCEEDED],
      pathPrefix: "fe[",
      pageSize: 2,
      pageToken: "",
    });
    expect(page.steps.map((s) => s.path)).toEqual(["fe[0]/sq", "fe[1]/sq"]);
    const page2 = await k.runs.listSteps({
      runId: run.id,
      statuses: [StepStatus.STEP_STATUS_SUCCEEDED],
      pathPrefix: "fe[",
      pageSize: 2,
      pageToken: page.nextPageToken,
    });
    expect(page2.steps.map((s) => s.path)).toEqual(["fe[2]/sq"]);
  });

  it("restarts from a step and announces artifacts", async () => {
    await k.deploy({
      id: "pg_restart",
      params: [{ name: "ok", type: "PARAM_TYPE_BOOL", value: false }],
      steps: [
        { id: "a", type: "noop", next: [{ to: "b" }] },
        {
          id: "b",
          type: "command",
          config: sh('[ "$KAON_PARAM_OK" = true ]'),
          outputs: [{ name: "pg.out", partitions: { ok: "${string(params.ok)}" } }],
        },
      ],
    });
    const first = await k.run("pg_restart");
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    await k.runs.restartRun({
      runId: first.run.id,
      from: RestartFrom.RESTART_FROM_STEP,
      stepId: "b",
      params: { ok: true },
      requestId: "",
    });
    const { run } = await k.watch(first.run.id);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const art = await k.artifacts.getArtifact({
      name: "pg.out",
      partitions: { ok: "true" },
      namespace: "",
    });
    expect(art.artifact?.producerPath).toBe("b");
  });

  it("restarting a foreach replaces its iteration rows (deleted in the journal's transaction)", async () => {
    await k.deploy({
      id: "pg_restart_fe",
      steps: [
        {
          id: "fe",
          type: "foreach",
          foreach: { axes: [{ values: [0, 1, 2] }], body: [{ id: "w", type: "noop" }] },
        },
      ],
    });
    const first = await k.run("pg_restart_fe");
    expect(first.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    await k.runs.restartRun({
      runId: first.run.id,
      from: RestartFrom.RESTART_FROM_BEGINNING,
      stepId: "",
      params: {},
      requestId: "",
    });
    const { run } = await k.watch(first.run.id);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const listed = await k.runs.listSteps({
      runId: run.id,
      statuses: [],
      pathPrefix: "",
      pageSize: 10,
      pageToken: "",
    });
    expect(listed.steps.map((s) => s.path)).toEqual(["fe", "fe[0]/w", "fe[1]/w", "fe[2]/w"]);
    const w = await k.runs.getStep({ runId: run.id, path: "fe[1]/w" });
    expect(w.attempts.map((a) => a.number)).toEqual([1, 2]);
  });
});
