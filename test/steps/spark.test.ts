// The spark step through the real server with a real Spark (pyspark from the repo's venv,
// found by the server itself, as `kaon server` does) in local[2] mode: the application's
// progress (> 0) shows on the step while it runs, the "Spark UI" link and the
// `spark_application_id` output are reported, the driver's prints reach the step's stdout,
// and the step succeeds. A version the server does not have is refused at deploy with the
// known ones listed.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunEvent, RunStatus, StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { explain, hasVenv, type StepsKaon, startStepsKaon, VENV_PYTHON } from "./support.js";

function pysparkMissing(): string | undefined {
  if (!hasVenv) return `${VENV_PYTHON} is missing (scripts/setup.sh creates it)`;
  try {
    execFileSync(VENV_PYTHON, ["-c", "import pyspark"], { stdio: "ignore" });
  } catch {
    return `the repo's venv has no pyspark (${VENV_PYTHON} -m pip install pyspark)`;
  }
  try {
    execFileSync("java", ["-version"], { stdio: "ignore" });
  } catch {
    return "java is not on PATH (Spark needs Java 17+)";
  }
  return undefined;
}
const missing = pysparkMissing();
if (missing) console.warn(`skipping the real Spark step test: ${missing}`);

// One job, then a wait for the gate file (written by the test once it has seen progress > 0
// on the step), then a second job: the server's monitor is sure to see a running app.
const APP = `
import os, sys, time
from pyspark.sql import SparkSession
gate, limit = sys.argv[1], float(sys.argv[2])
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
print("first job", sc.parallelize(range(40), 8).map(lambda x: x * x).sum(), flush=True)
deadline = time.time() + limit
while not os.path.exists(gate):
    if time.time() > deadline:
        sys.exit("no gate file: the test never saw progress")
    time.sleep(0.05)
print("second job", sc.parallelize(range(8), 2).count(), flush=True)
spark.stop()
`;

let k: StepsKaon;
const scratch = mkdtempSync(join(tmpdir(), "kaon-steps-spark-"));
beforeAll(async () => {
  // sparkVersions is left unset: the server detects the pyspark of its interpreter.
  if (!missing) k = await startStepsKaon({ pythonInterpreter: VENV_PYTHON }, "kaon-steps-spark-");
});
afterAll(async () => {
  await k?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

const progressOf = (e: RunEvent, path: string): number | undefined =>
  e.path === path && e.kind?.$case === "report" && e.kind.value.kind?.$case === "progress"
    ? e.kind.value.kind.value.percent
    : undefined;

describe.skipIf(missing !== undefined)("spark step (real pyspark, local[2])", () => {
  it("runs a PySpark app: progress > 0 while it runs, the Spark UI link and the app id", async () => {
    const versions = Object.keys(k.kaon.settings.sparkVersions);
    expect(versions.length, "the server found the venv's pyspark").toBeGreaterThan(0);
    const app = join(scratch, "squares.py");
    const gate = join(scratch, "gate");
    writeFileSync(app, APP);
    await k.deploy({
      id: "spark-squares",
      params: [{ name: "gate", type: "PARAM_TYPE_STRING", value: gate }],
      steps: [
        {
          id: "squares",
          type: "spark",
          config: {
            app,
            args: ["${params.gate}", "60"],
            master: "local[2]",
            driver_memory: "512m",
            version: versions[0]?.split(".").slice(0, 2).join("."),
            conf: { "spark.sql.shuffle.partitions": 2 },
          },
        },
      ],
    });
    const runId = await k.start("spark-squares");
    let sawProgress = 0;
    await k.watchUntil(
      runId,
      (events) => {
        for (const e of events) sawProgress = Math.max(sawProgress, progressOf(e, "squares") ?? 0);
        return (
          sawProgress > 0 ||
          events.some(
            (e) =>
              e.path === "" &&
              e.kind?.$case === "runStatus" &&
              e.kind.value > RunStatus.RUN_STATUS_RUNNING,
          )
        );
      },
      40_000,
    );
    // While the application waits on the gate, the step shows its progress and link.
    const running = (await k.step(runId, "squares")).step;
    writeFileSync(gate, "go");
    expect(sawProgress, "a progress report > 0 while the application ran").toBeGreaterThan(0);
    expect(running?.status).toBe(StepStatus.STEP_STATUS_RUNNING);
    expect(running?.progress).toBeGreaterThan(0);
    expect(running?.message).toMatch(/tasks/);

    const { run } = await k.finish(runId, 40_000);
    expect(run.status, await explain(k, run)).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const step = (await k.step(runId, "squares")).step;
    expect(step?.outputs.spark_application_id).toMatch(/^local-\d+$/);
    const links = step?.reports?.links ?? [];
    expect(links).toHaveLength(1);
    expect(links[0]?.name).toBe("Spark UI");
    expect(links[0]?.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const stdout = await k.logs(runId, "squares");
    expect(stdout).toContain(
      `first job ${Array.from({ length: 40 }, (_, i) => i * i).reduce((a, b) => a + b)}`,
    );
    expect(stdout).toContain("second job 8");
  }, 60_000);

  it("refuses an unknown Spark version at deploy, listing the known ones", async () => {
    const known = Object.keys(k.kaon.settings.sparkVersions);
    const details = await k.deployError({
      id: "spark-bad",
      steps: [{ id: "s", type: "spark", config: { app: "a.py", version: "1.6" } }],
    });
    expect(details).toContain("steps[0].config.version");
    for (const v of known) expect(details).toContain(v);
  });
});
