// The container step through the real server with real podman, on the busybox test image
// built locally by test/support/podman.ts (no registry is reachable): params reach the
// container as argv items and environment variables, `name=value` lines written to
// $KAON_OUTPUT inside the container become the step's outputs, the container's stdout is
// the step's log, a bind mount is visible, and a non-zero exit fails the step with that code.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTestImage, podmanAvailability } from "../support/podman.js";
import { explain, type StepsKaon, startStepsKaon } from "./support.js";

let k: StepsKaon | undefined;
let image = "";
let unavailable: string | undefined;
const scratch = mkdtempSync(join(tmpdir(), "kaon-steps-ctr-"));
beforeAll(async () => {
  const podman = await podmanAvailability();
  if (!podman.ok) {
    unavailable = podman.reason;
    console.warn(`skipping container step tests: ${podman.reason}`);
    return;
  }
  image = await ensureTestImage();
  k = await startStepsKaon({}, "kaon-steps-ctr-");
}, 180_000);
afterAll(async () => {
  await k?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("container step (podman)", () => {
  it("runs a command in the image: outputs from $KAON_OUTPUT, stdout as the log, a mount", async (t) => {
    if (!k) return t.skip(unavailable);
    writeFileSync(join(scratch, "cohort.txt"), "a\nb\nc\n");
    await k.deploy({
      id: "ctr-train",
      params: [
        { name: "image", type: "PARAM_TYPE_STRING", value: image },
        { name: "region", type: "PARAM_TYPE_STRING", value: "US" },
      ],
      steps: [
        {
          id: "train",
          type: "container",
          config: {
            image: "${params.image}",
            pull: "never",
            command: ["/bin/sh", "-c"],
            args: [
              [
                'echo "hello from the container, region $1"',
                'echo "region=$1" >> "$KAON_OUTPUT"',
                'echo "model=$MODEL" >> "$KAON_OUTPUT"',
                'echo "rows=$(wc -l < /data/cohort.txt)" >> "$KAON_OUTPUT"',
                'echo "step=$KAON_STEP" >> "$KAON_OUTPUT"',
                'echo "in_workdir=$([ "$PWD" = "$(dirname "$KAON_OUTPUT")" ] && echo yes || echo no)" >> "$KAON_OUTPUT"',
              ].join("\n"),
              "sh",
              "${params.region}",
            ],
            env: { MODEL: "gbm-${params.region}" },
            mounts: [{ source: scratch, target: "/data", read_only: true }],
          },
        },
      ],
    });
    const { run } = await k.run("ctr-train", { region: "BR" }, 40_000);
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const train = await k.step(run.id, "train");
    expect(train.step?.outputs).toEqual({
      region: "BR",
      model: "gbm-BR",
      rows: 3,
      step: "train",
      in_workdir: "yes",
    });
    expect(train.attempts.at(-1)?.exitCode).toBe(0);
    expect(await k.logs(run.id, "train")).toBe("hello from the container, region BR\n");
  });

  it("a shell script in the container; a non-zero exit fails the step with its code", async (t) => {
    if (!k) return t.skip(unavailable);
    await k.deploy({
      id: "ctr-fail",
      steps: [
        {
          id: "check",
          type: "container",
          config: {
            image,
            pull: "never",
            shell: 'echo "partial=1" >> "$KAON_OUTPUT"; echo "schema mismatch" >&2; exit 4',
          },
        },
      ],
    });
    const { run } = await k.run("ctr-fail", {}, 40_000);
    expect(run.status).toBe(RunStatus.RUN_STATUS_FAILED);
    const check = await k.step(run.id, "check");
    expect(check.step?.status).toBe(StepStatus.STEP_STATUS_FAILED);
    expect(check.attempts.at(-1)?.exitCode).toBe(4);
    expect(await k.logs(run.id, "check", "stderr")).toContain("schema mismatch");
  });

  it("refuses a bad config at deploy with the field path", async (t) => {
    if (!k) return t.skip(unavailable);
    const details = await k.deployError({
      id: "ctr-bad",
      steps: [
        {
          id: "c",
          type: "container",
          config: { image, mounts: [{ source: "data", target: "relative/path" }] },
        },
      ],
    });
    expect(details).toContain("steps[0].config.mounts[0].target");
  });
});
