// Compiles every DSL construct and checks the definition message and its canonical JSON.
import { describe, expect, test } from "vitest";
import { KaonError } from "../errors.js";
import { par, parallel, seq, sequence } from "./graph.js";
import {
  command,
  container,
  foreach,
  http,
  loop,
  noop,
  python,
  sleep,
  spark,
  sql,
  step,
  subworkflow,
} from "./steps.js";
import { compileDuration, expr, param } from "./values.js";
import { trigger, workflow } from "./workflow.js";

const edges = (wf: ReturnType<typeof workflow>) =>
  Object.fromEntries(wf.toDefinition().steps.map((s) => [s.id, s.next.map((n) => n.to)]));

describe("composition", () => {
  test("seq with a parallel fan-out and a join, in declaration order", () => {
    const wf = workflow({ id: "fan" }, () => {
      const a = noop("a");
      const b = noop("b");
      const c = noop("c");
      const d = noop("d");
      seq(a, [b, c], d);
    });
    expect(wf.toDefinition().steps.map((s) => s.id)).toEqual(["a", "b", "c", "d"]);
    expect(edges(wf)).toEqual({ a: ["b", "c"], b: ["d"], c: ["d"], d: [] });
  });

  test("to chains and par groups nested flows", () => {
    const wf = workflow({ id: "chain" }, () => {
      const [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map((id) => noop(id)) as [
        ReturnType<typeof noop>,
        ReturnType<typeof noop>,
        ReturnType<typeof noop>,
        ReturnType<typeof noop>,
        ReturnType<typeof noop>,
      ];
      a.to(b).to(par(c, seq(d, e)));
    });
    expect(edges(wf)).toEqual({ a: ["b"], b: ["c", "d"], c: [], d: ["e"], e: [] });
  });

  test("a build callback may return the flow", () => {
    const wf = workflow({ id: "ret" }, () => seq(noop("x"), noop("y")));
    expect(edges(wf)).toEqual({ x: ["y"], y: [] });
  });

  test("the Python verbs sequence/parallel build what seq/par build", () => {
    const build = (s: typeof seq, p: typeof par) =>
      workflow({ id: "verbs" }, () => {
        s(noop("a"), p(noop("b"), noop("c")), noop("d"));
      }).toCanonicalJson();
    expect(build(sequence, parallel)).toBe(build(seq, par));
    expect(JSON.parse(build(sequence, parallel)).steps[0].next).toEqual([{ to: "b" }, { to: "c" }]);
  });

  test("XOR branch with conditions and otherwise; branch exits join", () => {
    const wf = workflow({ id: "xor" }, () => {
      const check = command("check", ["./check.sh"]);
      const ship = noop("ship");
      const retrain = noop("retrain");
      const report = noop("report", { join: "any" });
      seq(
        check
          .branch({ xor: true })
          .when(`${check.output("auc")} > 0.9`, ship)
          .otherwise(retrain),
        report,
      );
    });
    const [check, ship, retrain, report] = wf.toDefinition().steps;
    expect(check?.split).toBe(2);
    expect(check?.next).toEqual([
      { to: "ship", condition: "steps.check.outputs.auc > 0.9", otherwise: false },
      { to: "retrain", condition: "", otherwise: true },
    ]);
    expect(ship?.next.map((n) => n.to)).toEqual(["report"]);
    expect(retrain?.next.map((n) => n.to)).toEqual(["report"]);
    expect(report?.join).toBe(2);
    expect(wf.toCanonicalJson()).toContain('"split":"SPLIT_MODE_XOR"');
    expect(wf.toCanonicalJson()).toContain('"join":"JOIN_MODE_ANY"');
  });

  test("AND branch leaves split unset; join all is written when set", () => {
    const wf = workflow({ id: "and" }, () => {
      const a = noop("a");
      a.when("params.x", noop("b")).when("!params.x", noop("c"));
      noop("d", { join: "all" });
    });
    const json = JSON.parse(wf.toCanonicalJson());
    expect(json.steps[0].split).toBeUndefined();
    expect(json.steps[0].next).toEqual([
      { condition: "params.x", to: "b" },
      { condition: "!params.x", to: "c" },
    ]);
    expect(json.steps[3].join).toBe("JOIN_MODE_ALL");
  });

  test("steps outside a workflow are a clear error", () => {
    expect(() => noop("lost")).toThrow(KaonError);
    expect(() => noop("lost")).toThrow(/noop\("lost"\) was created outside a workflow/);
  });

  test("an async build callback is refused", () => {
    expect(() => workflow({ id: "x" }, (async () => undefined) as never)).toThrow(/synchronously/);
  });
});

describe("step types", () => {
  test("every plugin type compiles its config, only the keys given", () => {
    const wf = workflow({ id: "types" }, () => {
      command("argv", ["python", "prep.py"]);
      command("shell", "make all | tee log");
      command("cwd", { argv: ["ls"], cwd: "/tmp" });
      python("py", { script: "print(1)", interpreter: "/usr/bin/python3" });
      python("mod", { module: "pkg.train", args: ["--fast"] });
      python("file", { path: "jobs/run.py", venv: "/opt/venv", cwd: "/srv" });
      spark("sp", {
        app: "app.jar",
        mainClass: "a.Main",
        version: "3.5",
        conf: { "spark.x": "1" },
        pyFiles: ["x.py"],
        jars: ["e.jar"],
        driverMemory: "1g",
        executorMemory: "2g",
        master: "local[2]",
        name: "n",
      });
      container("ct", {
        image: "alpine:3",
        command: ["echo", "hi"],
        mounts: [{ source: "/a", target: "/b", readOnly: true }],
        pull: "never",
      });
      sql("q", { connection: "warehouse", query: "select 1" });
      sql("qp", { connection: "warehouse", query: "select :n", params: { n: 1 } });
      http("h", { url: "http://127.0.0.1/x", method: "POST", body: { a: 1 }, expectStatus: [200] });
      http("ht", { url: "http://127.0.0.1/z", timeoutSeconds: 5 });
      http("h2", "http://127.0.0.1/y");
      noop("n");
      sleep("s", 1.5);
      sleep("s2", "2m");
      step("custom", "my-plugin", { knob: 3, unset: undefined });
    });
    const configs = Object.fromEntries(
      wf.toDefinition().steps.map((s) => [s.id, [s.type, s.config]]),
    );
    expect(configs).toEqual({
      argv: ["command", { argv: ["python", "prep.py"] }],
      shell: ["command", { shell: "make all | tee log" }],
      cwd: ["command", { argv: ["ls"], cwd: "/tmp" }],
      py: ["python", { script: "print(1)", interpreter: "/usr/bin/python3" }],
      mod: ["python", { module: "pkg.train", args: ["--fast"] }],
      file: ["python", { path: "jobs/run.py", venv: "/opt/venv", cwd: "/srv" }],
      sp: [
        "spark",
        {
          app: "app.jar",
          main_class: "a.Main",
          version: "3.5",
          conf: { "spark.x": "1" },
          py_files: ["x.py"],
          jars: ["e.jar"],
          driver_memory: "1g",
          executor_memory: "2g",
          master: "local[2]",
          name: "n",
        },
      ],
      ct: [
        "container",
        {
          image: "alpine:3",
          command: ["echo", "hi"],
          mounts: [{ source: "/a", target: "/b", read_only: true }],
          pull: "never",
        },
      ],
      q: ["sql", { connection: "warehouse", query: "select 1" }],
      qp: ["sql", { connection: "warehouse", query: "select :n", params: { n: 1 } }],
      h: [
        "http",
        { url: "http://127.0.0.1/x", method: "POST", body: { a: 1 }, expect_status: [200] },
      ],
      h2: ["http", { url: "http://127.0.0.1/y" }],
      ht: ["http", { url: "http://127.0.0.1/z", timeout_seconds: 5 }],
      n: ["noop", undefined],
      s: ["sleep", { seconds: 1.5 }],
      s2: ["sleep", { seconds: 120 }],
      custom: ["my-plugin", { knob: 3 }],
    });
    expect(wf.toCanonicalJson()).toContain('{"id":"n","type":"noop"}');
  });

  test("common step options map to their fields", () => {
    const wf = workflow({ id: "opts" }, () => {
      command("train", ["train"], {
        description: "trains",
        params: {
          lr: 0.1,
          epochs: 3,
          name: "m",
          on: true,
          dims: [1, 2],
          extra: { a: 1 },
          none: null,
        },
        resources: { cpus: 2, memMb: 4096, gpus: 1, diskMb: 100 },
        constraints: [
          { attribute: "pool", operator: "equals", value: "gpu" },
          { attribute: "host", operator: "unique", soft: true },
        ],
        retry: {
          maxAttempts: 3,
          initialBackoff: 2,
          backoffMultiplier: 1.5,
          maxBackoff: "1m",
          retryOn: ["exit_code", "lost"],
          exitCodes: [137],
        },
        timeout: 3600,
        env: { MODE: "fast" },
        inputs: [{ name: "cohort", partitions: { dateint: "${params.dateint}" } }],
        outputs: [{ name: "model", partitions: { region: "US" }, uri: "s3://m/US" }],
        ignoreFailure: true,
        tags: { team: "ml" },
        skipIfOutputsExist: "always",
      });
    });
    const json = JSON.parse(wf.toCanonicalJson());
    expect(json.steps[0]).toEqual({
      id: "train",
      type: "command",
      description: "trains",
      config: { argv: ["train"] },
      params: [
        { name: "lr", type: "PARAM_TYPE_DOUBLE", value: 0.1 },
        { name: "epochs", type: "PARAM_TYPE_INT", value: 3 },
        { name: "name", type: "PARAM_TYPE_STRING", value: "m" },
        { name: "on", type: "PARAM_TYPE_BOOL", value: true },
        { name: "dims", type: "PARAM_TYPE_LIST", value: [1, 2] },
        { name: "extra", type: "PARAM_TYPE_MAP", value: { a: 1 } },
        { name: "none", value: null },
      ],
      resources: { cpus: 2, memMb: 4096, gpus: 1, diskMb: 100 },
      constraints: [
        { attribute: "pool", operator: "CONSTRAINT_OPERATOR_EQUALS", value: "gpu" },
        { attribute: "host", operator: "CONSTRAINT_OPERATOR_UNIQUE", soft: true },
      ],
      retry: {
        maxAttempts: 3,
        initialBackoff: "2s",
        backoffMultiplier: 1.5,
        maxBackoff: "60s",
        retryOn: ["RETRY_ON_EXIT_CODE", "RETRY_ON_LOST"],
        exitCodes: [137],
      },
      timeout: "3600s",
      env: { MODE: "fast" },
      inputs: [{ name: "cohort", partitions: { dateint: "${params.dateint}" } }],
      outputs: [{ name: "model", partitions: { region: "US" }, uri: "s3://m/US" }],
      ignoreFailure: true,
      tags: { team: "ml" },
      skipIfOutputsExist: "SKIP_POLICY_ALWAYS",
    });
  });

  test("retry as a number means max attempts; empty resources still say resources", () => {
    const wf = workflow({ id: "r" }, () => {
      noop("a", { retry: 4, resources: {} });
    });
    const json = JSON.parse(wf.toCanonicalJson());
    expect(json.steps[0].retry).toEqual({ maxAttempts: 4 });
    expect(json.steps[0].resources).toEqual({});
  });
});

describe("params", () => {
  test("typed shorthands, expressions and required params", () => {
    const wf = workflow(
      {
        id: "p",
        params: {
          dateint: param.int(expr("tsToDateInt(RUN_TS) - 1"), { description: "yesterday" }),
          ratio: param.double(1),
          country: param.required("string", "two letters"),
          day: expr("dayFromDateInt(params.dateint)"),
          full: param({ type: "json", value: { a: [1] }, description: "d" }),
        },
      },
      () => undefined,
    );
    expect(JSON.parse(wf.toCanonicalJson()).params).toEqual([
      {
        name: "dateint",
        type: "PARAM_TYPE_INT",
        expr: "tsToDateInt(RUN_TS) - 1",
        description: "yesterday",
      },
      { name: "ratio", type: "PARAM_TYPE_DOUBLE", value: 1 },
      { name: "country", type: "PARAM_TYPE_STRING", required: true, description: "two letters" },
      { name: "day", expr: "dayFromDateInt(params.dateint)" },
      { name: "full", type: "PARAM_TYPE_JSON", value: { a: [1] }, description: "d" },
    ]);
  });

  test("wf.param and step outputs are expressions", () => {
    const wf = workflow({ id: "e", params: { n: 2 } }, (w) => {
      const a = noop("a");
      noop("b", { params: { n: w.param("n"), up: a.output("rows") } });
    });
    expect(JSON.parse(wf.toCanonicalJson()).steps[1].params).toEqual([
      { name: "n", expr: "params.n" },
      { name: "up", expr: "steps.a.outputs.rows" },
    ]);
  });
});

describe("containers", () => {
  test("foreach over a list, an expression, an output and named axes", () => {
    const wf = workflow({ id: "fe" }, () => {
      const prep = noop("prep");
      foreach("lit", { over: ["US", "BR"], concurrency: 2 }, (it) => {
        noop("t", { params: { region: it.value, i: it.index } });
      });
      foreach("ex", { over: expr("[1, 2, 3]") }, () => {
        noop("t");
      });
      foreach("out", { over: prep.output("regions") }, () => {
        seq(noop("x"), noop("y"));
      });
      foreach("cross", { over: { region: ["US"], model: expr("params.models") } }, (it) => {
        noop("t", { params: { r: it.values("region") } });
      });
      foreach("empty", { over: [] }, () => undefined);
    });
    const steps = JSON.parse(wf.toCanonicalJson()).steps;
    expect(steps[1].foreach).toEqual({
      axes: [{ values: ["US", "BR"] }],
      concurrency: 2,
      body: [
        {
          id: "t",
          type: "noop",
          params: [
            { name: "region", expr: "foreach.value" },
            { name: "i", expr: "foreach.index" },
          ],
        },
      ],
    });
    expect(steps[2].foreach.axes).toEqual([{ expr: "[1, 2, 3]" }]);
    expect(steps[3].foreach.axes).toEqual([{ expr: "steps.prep.outputs.regions" }]);
    expect(steps[3].foreach.body.map((s: { id: string }) => s.id)).toEqual(["x", "y"]);
    expect(steps[4].foreach.axes).toEqual([
      { name: "region", values: ["US"] },
      { name: "model", expr: "params.models" },
    ]);
    expect(steps[4].foreach.body[0].params).toEqual([{ name: "r", expr: "foreach.values.region" }]);
    expect(steps[5]).toEqual({ id: "empty", type: "foreach", foreach: { axes: [{ values: [] }] } });
    // Body steps stay out of the top level.
    expect(steps.map((s: { id: string }) => s.id)).toEqual([
      "prep",
      "lit",
      "ex",
      "out",
      "cross",
      "empty",
    ]);
  });

  test("loop with until/while and max iterations; nested containers", () => {
    const wf = workflow({ id: "lp" }, () => {
      loop("tune", { until: "steps.check.outputs.stable", maxIterations: 5 }, (l) => {
        seq(command("train", ["train"], { params: { it: l.iteration } }), noop("check"));
      });
      loop("w", { while: expr("loop.iteration < 3"), maxIterations: 10 }, () => {
        foreach("inner", { over: [1, 2] }, () => {
          noop("leaf");
        });
      });
    });
    const steps = JSON.parse(wf.toCanonicalJson()).steps;
    expect(steps[0].loop.until).toBe("steps.check.outputs.stable");
    expect(steps[0].loop.maxIterations).toBe(5);
    expect(steps[0].loop.body[0].params).toEqual([{ name: "it", expr: "loop.iteration" }]);
    expect(steps[0].loop.body[0].next).toEqual([{ to: "check" }]);
    expect(steps[1].loop.while).toBe("loop.iteration < 3");
    expect(steps[1].loop.body[0].foreach.body[0].id).toBe("leaf");
  });

  test("subworkflow with a version and child params", () => {
    const wf = workflow({ id: "parent" }, () => {
      subworkflow("child", "etl", {
        version: 3,
        params: { day: expr("params.day"), n: 1 },
        timeout: 60,
      });
      subworkflow("active", "etl");
    });
    const steps = JSON.parse(wf.toCanonicalJson()).steps;
    expect(steps[0]).toEqual({
      id: "child",
      type: "subworkflow",
      subworkflow: {
        workflowId: "etl",
        version: 3,
        params: [
          { name: "day", expr: "params.day" },
          { name: "n", type: "PARAM_TYPE_INT", value: 1 },
        ],
      },
      timeout: "60s",
    });
    expect(steps[1]).toEqual({
      id: "active",
      type: "subworkflow",
      subworkflow: { workflowId: "etl" },
    });
  });
});

describe("workflow options", () => {
  test("every workflow-level field", () => {
    const wf = workflow(
      {
        id: "all",
        description: "d",
        namespace: "ml",
        owner: "team",
        tags: { b: "2", a: "1" },
        triggers: [
          trigger.cron("nightly", "0 3 * * *", {
            timezone: "Europe/Paris",
            params: { full: true },
          }),
          trigger.artifact("on-cohort", "cohort", {
            partitions: { country: "US" },
            disabled: true,
          }),
          trigger.signal("go", "retrain"),
        ],
        notifications: [{ webhookUrl: "http://hook", on: ["FAILED", "SUCCEEDED"] }],
        runStrategy: { mode: "parallel", maxConcurrentRuns: 2 },
        timeout: "2h",
        failureMode: "stop_all",
        stepTypeConcurrency: { spark: 2 },
        priority: 5,
      },
      () => undefined,
    );
    expect(wf.toCanonicalJson()).toBe(
      '{"description":"d","failureMode":"FAILURE_MODE_STOP_ALL","id":"all","namespace":"ml",' +
        '"notifications":[{"on":["FAILED","SUCCEEDED"],"webhookUrl":"http://hook"}],"owner":"team",' +
        '"priority":5,"runStrategy":{"maxConcurrentRuns":2,"mode":"RUN_STRATEGY_MODE_PARALLEL"},' +
        '"stepTypeConcurrency":{"spark":2},"tags":{"a":"1","b":"2"},"timeout":"7200s",' +
        '"triggers":[{"cron":{"expression":"0 3 * * *","timezone":"Europe/Paris"},"id":"nightly",' +
        '"params":[{"name":"full","type":"PARAM_TYPE_BOOL","value":true}]},' +
        '{"artifact":{"name":"cohort","partitions":{"country":"US"}},"disabled":true,"id":"on-cohort"},' +
        '{"id":"go","signal":{"name":"retrain"}}]}',
    );
  });

  test("a run strategy given by name", () => {
    const wf = workflow({ id: "s", runStrategy: "skip_if_running" }, () => undefined);
    expect(wf.toCanonicalJson()).toBe(
      '{"id":"s","runStrategy":{"mode":"RUN_STRATEGY_MODE_SKIP_IF_RUNNING"}}',
    );
  });
});

describe("durations", () => {
  test.each([
    [30, { seconds: 30, nanos: 0 }],
    [1.5, { seconds: 1, nanos: 500_000_000 }],
    [0.000001, { seconds: 0, nanos: 1000 }],
    ["250ms", { seconds: 0, nanos: 250_000_000 }],
    ["1h30m", { seconds: 5400, nanos: 0 }],
    ["1.5s", { seconds: 1, nanos: 500_000_000 }],
    ["2d", { seconds: 172_800, nanos: 0 }],
    [
      { seconds: 3, nanos: 7 },
      { seconds: 3, nanos: 7 },
    ],
  ] as const)("%j", (input, expected) => {
    expect(compileDuration(input, "t")).toEqual(expected);
  });

  test("bad text names the field", () => {
    expect(() => compileDuration("5 minutes", "step x: timeout")).toThrow(
      /step x: timeout: "5 minutes" is not a duration/,
    );
  });

  test("durations print as protobuf-es does", () => {
    const wf = workflow({ id: "d", timeout: 1.5 }, () => {
      noop("a", { timeout: 0.000001 });
    });
    expect(wf.toCanonicalJson()).toBe(
      '{"id":"d","steps":[{"id":"a","timeout":"0.000001s","type":"noop"}],"timeout":"1.500s"}',
    );
  });
});
