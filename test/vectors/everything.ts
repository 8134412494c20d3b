// Vector `everything` (README.md): every field of WorkflowDefinition and Step the DSLs can set.
import * as kaon from "@kaon/sdk";

const { param, trigger } = kaon;

export function workflow(): kaon.Workflow {
  return kaon.workflow(
    {
      id: "vectors.everything",
      description: "every construct, ünïcödé included",
      namespace: "ml",
      owner: "recs-team",
      tags: { team: "recs", tier: "1" },
      params: {
        country: param.string("US", { description: "ISO country" }),
        limit: param.int(1000),
        ratio: param.double(0.25),
        threshold: param.double(2),
        big: param.double(1e21),
        tiny: param.double(1e-7),
        enabled: param.bool(true),
        regions: param.list(["us-east", "eu-west"]),
        weights: param.map({ b: 2, a: 1.5, nested: { z: null } }),
        blob: param.json({ k: [1, "two", false] }),
        dateint: param.int(kaon.expr("tsToDateInt(RUN_TS)")),
        day: param.int(kaon.expr("params.dateint % 100")),
        model: param.required("string", "model to publish"),
        anything: param({}),
        nothing: param({ value: null }),
      },
      triggers: [
        trigger.cron("nightly", "0 3 * * *", {
          timezone: "America/Los_Angeles",
          params: { country: "CA" },
        }),
        trigger.artifact("on_features", "features.daily", {
          partitions: { country: "US" },
          params: { dateint: kaon.expr("trigger.partitions.dateint") },
        }),
        trigger.signal("manual_kick", "kick", { disabled: true }),
      ],
      notifications: [
        { webhookUrl: "http://127.0.0.1:9000/fail" },
        { webhookUrl: "http://127.0.0.1:9000/all", on: ["SUCCEEDED", "FAILED"] },
      ],
      runStrategy: { mode: "parallel", maxConcurrentRuns: 3 },
      timeout: "6h",
      failureMode: "stop_all",
      stepTypeConcurrency: { spark: 2, python: 8 },
      priority: 5,
    },
    () => {
      const select = kaon.sql(
        "select_cohort",
        {
          connection: "warehouse",
          query: "SELECT id FROM members WHERE country = :country",
          params: { country: "${params.country}" },
        },
        { description: "pick the cohort", tags: { stage: "data" } },
      );
      const wrangle = kaon.spark(
        "wrangle",
        {
          app: "jobs/wrangle.jar",
          mainClass: "com.example.Wrangle",
          args: ["--date", "${params.dateint}"],
          conf: { "spark.sql.shuffle.partitions": "64" },
          jars: ["libs/extra.jar"],
          driverMemory: "2g",
          executorMemory: "4g",
          master: "local[2]",
          version: "3.5",
          name: "wrangle-${params.dateint}",
        },
        {
          split: "and",
          resources: { cpus: 4, memMb: 8192, diskMb: 1024 },
          constraints: [
            { attribute: "pool", operator: "equals", value: "spark" },
            { attribute: "hostname", operator: "unique" },
            { attribute: "zone", operator: "like", value: "us-.*", soft: true },
            { attribute: "ssd", operator: "exists" },
            { attribute: "rack", operator: "not_equals", value: "r13" },
          ],
          retry: {
            maxAttempts: 3,
            initialBackoff: 1.5,
            backoffMultiplier: 2.5,
            maxBackoff: "5m",
            retryOn: ["exit_code", "lost", "timeout"],
            exitCodes: [1, 137],
          },
          timeout: "90m",
          heartbeatTimeout: "10m",
          inputs: [{ name: "members", partitions: { dateint: "${params.dateint}" } }],
          outputs: [
            {
              name: "features.daily",
              partitions: { dateint: "${params.dateint}", country: "${params.country}" },
              uri: "s3://bucket/features/${params.dateint}",
            },
          ],
          skipIfOutputsExist: "on_restart",
        },
      );
      const train = kaon.container(
        "train_global",
        {
          image: "registry.local/train:1.2",
          command: ["python", "-m", "train", "--epochs", "3"],
          mounts: [
            { source: "/data/cohorts", target: "/data", readOnly: true },
            { source: "/srv/models", target: "/models" },
          ],
          workdir: "/work",
          runtime: "podman",
          network: "none",
          pull: "never",
          init: true,
        },
        {
          resources: { cpus: 2, memMb: 4096, gpus: 1 },
          env: { MODE: "global", SEED: "42" },
          params: { epochs: 3, lr: 0.001 },
        },
      );
      const validate = kaon.python(
        "validate",
        { script: "import sys\nprint('ok')\n", interpreter: "/usr/bin/python3" },
        { retry: 2, timeout: 30, ignoreFailure: true },
      );
      const publish = kaon.http(
        "publish",
        {
          url: "http://127.0.0.1:9000/publish",
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: { model: "${params.model}", score: 0.5 },
          expectStatus: [200, 204],
          timeoutSeconds: 12.5,
        },
        { skipIfOutputsExist: "never" },
      );
      const wait = kaon.sleep("cool_down", 2.5);
      const custom = kaon.step("custom", "my_plugin", { answer: 42 }, { join: "all" });
      const cleanup = kaon.command("cleanup", { shell: "rm -rf tmp", cwd: "/srv/work" });
      const end = kaon.noop("end", { skipIfOutputsExist: "always" });

      const regional = kaon.foreach(
        "regional",
        {
          over: { region: kaon.expr("params.regions"), seed: [1, 2] },
          concurrency: 2,
          description: "per region",
        },
        (it) => {
          kaon.python(
            "train_region",
            {
              module: "train.region",
              args: ["--region", "${params.region}"],
              venv: "/opt/venvs/train",
              cwd: "/srv/train",
            },
            { params: { region: it.values("region") } },
          );
        },
      );

      const stabilise = kaon.loop(
        "stabilise",
        {
          until: "steps.check.outputs.stable == true",
          while: "loop.iteration < 9",
          maxIterations: 10,
        },
        () => {
          kaon.noop("check");
        },
      );

      const child = kaon.subworkflow("downstream", "vectors.linear", { params: { country: "MX" } });

      kaon.seq(select, wrangle, [train, regional], validate);
      validate
        .branch({ xor: true })
        .when("steps.validate.outputs.auc > 0.8", publish)
        .otherwise(stabilise);
      kaon.seq([publish, stabilise], wait, custom, child, cleanup, end);
    },
  );
}
