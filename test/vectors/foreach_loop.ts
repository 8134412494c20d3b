// Vector `foreach_loop` (README.md): foreach over a literal list, an expression, an upstream
// output and two axes; a loop with until and maxIterations; a subworkflow.
import * as kaon from "@kaon/sdk";

export function workflow(): kaon.Workflow {
  return kaon.workflow(
    { id: "vectors.foreach_loop", params: { days: [1, 2, 3], depths: [3, 5] } },
    () => {
      const prepare = kaon.python("prepare", { module: "pipeline.prepare" });

      const perCountry = kaon.foreach(
        "per_country",
        { over: ["US", "CA", "MX"], concurrency: 2 },
        (it) => {
          kaon.command("fetch", ["./fetch.sh"], { params: { country: it.value } });
        },
      );

      const perDay = kaon.foreach("per_day", { over: kaon.expr("params.days") }, () => {
        kaon.noop("day");
      });

      const regional = kaon.foreach(
        "regional",
        { over: prepare.output("regions"), concurrency: 4 },
        () =>
          kaon.seq(
            kaon.python("train", { module: "pipeline.train" }),
            kaon.python("score", { module: "pipeline.score" }),
          ),
      );

      const grid = kaon.foreach(
        "grid",
        { over: { lr: [0.1, 0.01], depth: kaon.expr("params.depths") } },
        () => {
          kaon.python("fit", { script: "print('fit')" });
        },
      );

      const tune = kaon.loop(
        "tune",
        { until: "steps.evaluate.outputs.stable", maxIterations: 5 },
        () =>
          kaon.seq(
            kaon.python("refit", { module: "pipeline.refit" }),
            kaon.python("evaluate", { module: "pipeline.evaluate" }),
          ),
      );

      const publish = kaon.subworkflow("publish", "vectors.publish", {
        version: 3,
        params: { model: kaon.expr("steps.tune.outputs.model"), dry_run: false },
      });

      kaon.seq(prepare, [perCountry, perDay, regional, grid], tune, publish);
    },
  );
}
