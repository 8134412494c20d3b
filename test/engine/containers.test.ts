// foreach (literal list, upstream output, cross product, concurrency limit, nesting), loop
// (until a condition over the body's outputs, and hitting max iterations) and subworkflow.
import { readFileSync } from "node:fs";
import { RunStatus, StepStatus } from "@kaon/proto";
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

async function allSteps(runId: string) {
  const out = [];
  let pageToken = "";
  do {
    const page = await k.runs.listSteps({
      runId,
      statuses: [],
      pathPrefix: "",
      pageSize: 3,
      pageToken,
    });
    out.push(...page.steps);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

describe("containers", () => {
  it("foreach over an upstream step's output with concurrency 2", async () => {
    await k.deploy({
      id: "fe",
      steps: [
        {
          id: "wrangle",
          type: "command",
          config: sh(`echo 'regions=["US","BR","IN","FR","JP"]' >> "$KAON_OUTPUT"`),
          next: [{ to: "regional" }],
        },
        {
          id: "regional",
          type: "foreach",
          foreach: {
            axes: [{ name: "region", expr: "steps.wrangle.outputs.regions" }],
            concurrency: 2,
            body: [
              {
                id: "train",
                type: "command",
                params: [
                  { name: "region", type: "PARAM_TYPE_STRING", expr: "foreach.value" },
                  { name: "i", type: "PARAM_TYPE_INT", expr: "foreach.index" },
                ],
                config: sh(
                  `echo "start $(date +%s%N)" >> "$KAON_OUTPUT.log"; echo "score=\\"$KAON_PARAM_REGION-$KAON_PARAM_I\\"" >> "$KAON_OUTPUT"; sleep 0.1`,
                ),
              },
            ],
          },
          next: [{ to: "publish" }],
        },
        { id: "publish", type: "noop" },
      ],
    });
    const { run, events } = await k.run("fe");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const steps = await allSteps(run.id);
    expect(steps.map((s) => s.path)).toEqual([
      "wrangle",
      "regional",
      "regional[0]/train",
      "regional[1]/train",
      "regional[2]/train",
      "regional[3]/train",
      "regional[4]/train",
      "publish",
    ]);
    const regional = steps.find((s) => s.path === "regional");
    expect(regional?.childCounts).toEqual({ SUCCEEDED: 5 });
    expect(regional?.outputs).toEqual({ score: ["US-0", "BR-1", "IN-2", "FR-3", "JP-4"] });
    // Never more than 2 iterations running at once.
    let running = 0;
    let peak = 0;
    for (const e of events) {
      if (!e.path.startsWith("regional[") || e.kind?.$case !== "stepStatus") continue;
      if (e.kind.value === StepStatus.STEP_STATUS_QUEUED) running++;
      if (e.kind.value === StepStatus.STEP_STATUS_SUCCEEDED) running--;
      peak = Math.max(peak, running);
    }
    expect(peak).toBe(2);
    const prefixed = await k.runs.listSteps({
      runId: run.id,
      statuses: [],
      pathPrefix: "regional[",
      pageSize: 100,
      pageToken: "",
    });
    expect(prefixed.steps).toHaveLength(5);
  });

  it("nested foreach over a cross product", async () => {
    await k.deploy({
      id: "nested",
      steps: [
        {
          id: "outer",
          type: "foreach",
          foreach: {
            axes: [{ name: "a", values: [1, 2] }],
            body: [
              {
                id: "inner",
                type: "foreach",
                foreach: {
                  axes: [
                    { name: "x", values: ["p", "q"] },
                    { name: "y", values: [10, 20, 30] },
                  ],
                  body: [
                    {
                      id: "leaf",
                      type: "noop",
                      params: [
                        {
                          name: "v",
                          type: "PARAM_TYPE_STRING",
                          expr: "foreach.values.x + string(foreach.values.y)",
                        },
                      ],
                    },
                  ],
                },
              },
            ],
          },
        },
      ],
    });
    const { run } = await k.run("nested");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const steps = await allSteps(run.id);
    const leaves = steps.filter((s) => s.stepId === "leaf");
    expect(leaves).toHaveLength(12);
    expect(leaves[0]?.path).toBe("outer[0]/inner[0]/leaf");
    expect(leaves.slice(0, 6).map((s) => s.params.v)).toEqual([
      "p10",
      "p20",
      "p30",
      "q10",
      "q20",
      "q30",
    ]);
    expect(run.stepCounts).toMatchObject({ STEP_STATUS_SUCCEEDED: 1 + 2 + 12 });
  });

  it("loop repeats until a condition over the body's outputs holds", async () => {
    await k.deploy({
      id: "loop_until",
      steps: [
        {
          id: "tune",
          type: "loop",
          loop: {
            until: "steps.validate.outputs.stable",
            maxIterations: 10,
            body: [
              { id: "train", type: "noop", next: [{ to: "validate" }] },
              {
                id: "validate",
                type: "command",
                params: [{ name: "it", type: "PARAM_TYPE_INT", expr: "loop.iteration" }],
                config: sh(
                  `if [ "$KAON_PARAM_IT" -ge 2 ]; then echo stable=true; else echo stable=false; fi >> "$KAON_OUTPUT"`,
                ),
              },
            ],
          },
          next: [{ to: "publish" }],
        },
        {
          id: "publish",
          type: "noop",
          params: [{ name: "n", type: "PARAM_TYPE_INT", expr: "steps.tune.outputs.iterations" }],
        },
      ],
    });
    const { run } = await k.run("loop_until");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const steps = await allSteps(run.id);
    expect(steps.map((s) => s.path)).toEqual([
      "tune",
      "tune@0/train",
      "tune@0/validate",
      "tune@1/train",
      "tune@1/validate",
      "tune@2/train",
      "tune@2/validate",
      "publish",
    ]);
    expect(steps.find((s) => s.path === "tune")?.reason).toContain(
      "'until' held after iteration 2",
    );
    expect(steps.find((s) => s.path === "publish")?.params.n).toBe(3);
  });

  it("loop ends successfully at its max iterations", async () => {
    await k.deploy({
      id: "loop_max",
      steps: [
        {
          id: "l",
          type: "loop",
          loop: { until: "false", maxIterations: 3, body: [{ id: "b", type: "noop" }] },
        },
      ],
    });
    const { run } = await k.run("loop_max");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const l = (await k.runs.getStep({ runId: run.id, path: "l" })).step;
    expect(l?.reason).toContain("reached max iterations (3)");
    expect(l?.loopIteration).toBe(2);
  });

  it("subworkflow starts a child run, waits, and surfaces its outputs", async () => {
    await k.deploy({
      id: "child",
      params: [{ name: "x", type: "PARAM_TYPE_INT", required: true }],
      steps: [
        {
          id: "double",
          type: "command",
          config: sh(`echo "y=$((KAON_PARAM_X * 2))" >> "$KAON_OUTPUT"`),
        },
      ],
    });
    await k.deploy({
      id: "parent",
      steps: [
        {
          id: "sub",
          type: "subworkflow",
          subworkflow: {
            workflowId: "child",
            params: [{ name: "x", type: "PARAM_TYPE_INT", expr: "20 + 1" }],
          },
          next: [{ to: "use" }],
        },
        {
          id: "use",
          type: "noop",
          params: [{ name: "y", type: "PARAM_TYPE_INT", expr: "steps.sub.outputs['double.y']" }],
        },
      ],
    });
    const { run } = await k.run("parent");
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const use = (await k.runs.getStep({ runId: run.id, path: "use" })).step;
    expect(use?.params.y).toBe(42);
    const children = await k.runs.listRuns({
      workflowId: "child",
      statuses: [],
      pageSize: 10,
      pageToken: "",
      namespace: "",
    });
    expect(children.runs[0]?.initiator?.parentRunId).toBe(run.id);
    // A failing child fails the parent step.
    await k.deploy({
      id: "parent2",
      steps: [
        {
          id: "sub",
          type: "subworkflow",
          subworkflow: {
            workflowId: "child",
            params: [{ name: "x", type: "PARAM_TYPE_STRING", value: "oops" }],
          },
        },
      ],
    });
    const bad = await k.run("parent2");
    expect(bad.run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const sub = (await k.runs.getStep({ runId: bad.run.id, path: "sub" })).step;
    expect(sub?.reason).toContain("cannot start workflow 'child'");
    void readFileSync;
  });
});
