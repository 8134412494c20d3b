// The recommendations pipeline from the Meson paper, in kaon's TypeScript DSL: the same
// workflow as pipeline.py, step for step (test/e2e/recommendations-defs.test.ts checks that both
// compile to the same canonical definition).
//
//   select_users (sql) -> wrangle (python) -> train_loop (loop, <= 3 iterations) -> publish
//
//   train_loop body:  train_global (spark) -> validate_global --+
//                     regional (foreach over the regions found) +-> select_model -> validate
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  command,
  container,
  workflow as defineWorkflow,
  expr,
  foreach,
  loop,
  type ParamsInput,
  param,
  seq,
  step,
  type Workflow,
} from "@kaon/sdk";

const HERE = dirname(fileURLToPath(import.meta.url));
const JOBS_DIR = join(HERE, "jobs");

/** The named SQL connection the server is configured with (`kaon demo` does that). */
export const SQL_CONNECTION = "recommendations";

/** The cohort: recent ratings of users in the selected countries; values are bound. */
const COHORT_QUERY = `select r.user_id, r.title_id, r.rating, r.ts, r.country
from ratings r
where r.ts >= cast(:since_ms as integer)
  and r.ts < cast(:until_ms as integer)
  and r.country in (select value from json_each(:countries))
order by r.ts`;

/**
 * Hyper-parameters per loop iteration: the first pass is deliberately short (1 epoch, strong
 * regularisation), so it is rarely stable; each later pass trains longer with less.
 */
const EPOCHS = "1 + 5 * loop.iteration";
const REG = "0.3 / double(1 + 2 * loop.iteration)";

/**
 * The image for the publish step when it can run in a container here: KAON_RECOMMENDATIONS_IMAGE
 * (built from ./Dockerfile, or assembled offline by ./build-image.sh, which `kaon demo` runs when
 * podman is installed) and docker or podman on PATH. Otherwise publish is a command step.
 */
function publishImage(): string | undefined {
  const image = process.env.KAON_RECOMMENDATIONS_IMAGE ?? "";
  return image !== "" && (onPath("docker") || onPath("podman")) ? image : undefined;
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? "")
    .split(":")
    .some((dir) => dir !== "" && existsSync(join(dir, program)));
}

function perIterationParams(): ParamsInput {
  return {
    iteration: param.int(expr("loop.iteration")),
    epochs: param.int(expr(EPOCHS)),
    reg: param.double(expr(REG)),
  };
}

export function workflow(): Workflow {
  return defineWorkflow(
    {
      id: "recommendations",
      description:
        "Meson's recommendations pipeline: select a cohort, wrangle it, train a global " +
        "Spark ALS model and one model per region in parallel, pick the better per region, " +
        "retrain until stable (at most 3 times), publish.",
      owner: "examples",
      tags: { example: "recommendations" },
      params: {
        root: param.string("/tmp/kaon-recommendations", {
          description: "directory under which each run gets its own workspace",
        }),
        jobs_dir: param.string(JOBS_DIR, { description: "directory of the job scripts" }),
        python: param.string("python3", {
          description: "Python with the kaon SDK, for the publish command",
        }),
        workspace: param.string(expr('params.root + "/" + run.id'), {
          description: "this run's working directory (root + run id)",
        }),
        dateint: param.int(expr("tsToDateInt(RUN_TS)"), { description: "the run's day" }),
        window_days: param.int(30, { description: "days of viewing in the cohort" }),
        countries: param.list(["US", "BR", "IN", "DE", "JP"], {
          description: "countries in the cohort",
        }),
        target_rmse: param.double(0.7, {
          description: "mean held-out RMSE at which the models count as stable",
        }),
      },
    },
    () => {
      const selectUsers = step(
        "select_users",
        "sql",
        {
          connection: SQL_CONNECTION,
          query: COHORT_QUERY,
          params: {
            since_ms: "${params.since_ms}",
            until_ms: "${params.until_ms}",
            countries: "${params.countries}",
          },
        },
        {
          description: "the cohort: ratings in the date window, in the selected countries",
          params: {
            since_ms: expr("RUN_TS - int(params.window_days) * 86400000"),
            until_ms: expr("RUN_TS"),
          },
        },
      );
      const wrangle = step(
        "wrangle",
        "python",
        { path: "${params.jobs_dir}/wrangle.py" },
        {
          description: "clean, split train/test, list the regions present",
          params: { rows_file: selectUsers.output("rows_file") },
          timeout: 600,
        },
      );

      const trainLoop = loop(
        "train_loop",
        {
          description: "retrain until the chosen models are stable",
          until: "steps.validate.outputs.stable",
          maxIterations: 3,
        },
        () => {
          const trainGlobal = step(
            "train_global",
            "spark",
            {
              app: "${params.jobs_dir}/train_global.py",
              master: "local[2]",
              driver_memory: "1g",
              conf: { "spark.sql.shuffle.partitions": "4" },
            },
            {
              description: "global ALS model on the whole cohort (Spark MLlib)",
              params: perIterationParams(),
              resources: { cpus: 1, memMb: 1536 },
              retry: 2,
              timeout: 900,
            },
          );
          const validateGlobal = step(
            "validate_global",
            "python",
            { path: "${params.jobs_dir}/validate_global.py" },
            {
              description: "held-out RMSE of the global model, overall and per region",
              params: { predictions_dir: trainGlobal.output("predictions_dir") },
              timeout: 600,
            },
          );
          const regional = foreach(
            "regional",
            {
              description: "one model per region found in the cohort",
              over: wrangle.output("regions"),
              concurrency: 2,
              params: perIterationParams(),
            },
            (it) => {
              step(
                "train",
                "python",
                { path: "${params.jobs_dir}/train_region.py" },
                {
                  description: "train and validate this region's model",
                  params: { region: it.value },
                  resources: { cpus: 0.5, memMb: 512 },
                  timeout: 600,
                },
              );
            },
          );
          const selectModel = step(
            "select_model",
            "python",
            { path: "${params.jobs_dir}/select_model.py" },
            {
              description: "per region, the better of global and regional; a plot",
              params: {
                iteration: param.int(expr("loop.iteration")),
                global_rmse_by_region: param.map(
                  expr("steps.validate_global.outputs.rmse_by_region"),
                ),
              },
              join: "all",
              timeout: 600,
            },
          );
          const validate = step(
            "validate",
            "python",
            { path: "${params.jobs_dir}/validate.py" },
            {
              description: "stable when the mean RMSE of the chosen models meets the target",
              params: { mean_rmse: selectModel.output("mean_rmse") },
              timeout: 300,
            },
          );
          seq(trainGlobal, validateGlobal);
          seq([validateGlobal, regional], selectModel, validate);
        },
      );

      const publishParams: ParamsInput = {
        choice: trainLoop.output("choice"),
        chosen_rmse: trainLoop.output("chosen_rmse"),
      };
      const description = "write the manifest of the chosen models and announce it";
      const image = publishImage();
      const publish =
        image !== undefined
          ? // The job scripts and the run's workspace are mounted; publish.py writes through
            // the mount (`write_dir`) and announces the workspace path the host sees.
            container(
              "publish",
              {
                image,
                command: ["python", "/jobs/publish.py"],
                mounts: [
                  { source: "${params.jobs_dir}", target: "/jobs", readOnly: true },
                  { source: "${params.workspace}", target: "/workspace" },
                ],
              },
              {
                description,
                params: { ...publishParams, write_dir: "/workspace" },
                timeout: 300,
              },
            )
          : command("publish", ["${params.python}", "${params.jobs_dir}/publish.py"], {
              description,
              params: { ...publishParams, write_dir: expr("params.workspace") },
              timeout: 300,
            });

      seq(selectUsers, wrangle, trainLoop, publish);
    },
  );
}
