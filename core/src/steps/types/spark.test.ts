// biome-ignore-all lint/suspicious/noTemplateCurlyInString: step configs hold kaon templates, whose syntax is ${...}
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultStepTypeSettings } from "../registry.js";
import type { JsonObject, ProcessPlan, StepContext, StepTypeSettings } from "../step-type.js";
import { makeStepContext, recordingReporter } from "../testing.js";
import {
  DEFAULT_SPARK_MASTER,
  detectSparkVersions,
  readSparkState,
  resolveSparkVersion,
  SPARK_STATE_FILE,
  sparkStepType,
  summariseSparkFailure,
} from "./spark.js";
import { monitorSparkApplication, SPARK_ATTEMPT_TAG_CONF, sparkPercent } from "./spark-monitor.js";
import { STDERR_FILE } from "./stderr-tail.js";

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));

/** A Spark installation that is only a spark-submit script, for validation and plan tests. */
function fakeSparkHome(): string {
  const home = mkdtempSync(join(tmpdir(), "kaon-fake-spark-"));
  mkdirSync(join(home, "bin"));
  writeFileSync(join(home, "bin", "spark-submit"), '#!/bin/sh\necho fake spark-submit "$@"\n');
  chmodSync(join(home, "bin", "spark-submit"), 0o755);
  return home;
}

const fakeHome = fakeSparkHome();
const settings: StepTypeSettings = {
  ...defaultStepTypeSettings(),
  sparkVersions: { "3.5.1": fakeHome, "4.3.0": fakeHome, "4.1.0": fakeHome },
};
const v = (config: unknown, s: StepTypeSettings = settings) =>
  sparkStepType
    .validate(config as JsonObject, "steps[1].config", s)
    .map((x) => `${x.field}: ${x.description}${x.hint ? ` (${x.hint})` : ""}`);

describe("spark: validation", () => {
  it("accepts a Python app or a jar with its main class", () => {
    expect(v({ app: "jobs/train.py" })).toEqual([]);
    expect(
      v({
        app: "jobs/train.py",
        args: ["--date", "${params.date}"],
        conf: {
          "spark.sql.shuffle.partitions": 8,
          "spark.eventLog.enabled": false,
          "spark.x": "${params.x}",
        },
        py_files: ["lib.zip"],
        jars: ["extra.jar"],
        driver_memory: "1g",
        executor_memory: "512m",
        master: "local[*]",
        version: "3.5.1",
        name: "train-${params.date}",
        env: { MODE: "fast" },
      }),
    ).toEqual([]);
    expect(
      v({ app: "build/etl.jar", main_class: "com.example.Etl", master: "spark://host:7077" }),
    ).toEqual([]);
    expect(v({ app: "${params.app}" })).toEqual([]);
  });

  it("needs an app, and a main class only for jars", () => {
    expect(v({})).toEqual([
      "steps[1].config.app: spark config needs 'app': a Python file (.py), or a jar (.jar) with 'main_class' (e.g. \"app\": \"jobs/train.py\")",
    ]);
    expect(v({ main_class: "com.example.Etl" })[0]).toContain(
      "steps[1].config.app: spark config needs 'app'",
    );
    expect(v({ app: "etl.jar" })).toEqual([
      'steps[1].config: a jar application needs \'main_class\' (e.g. "main_class": "com.example.Train")',
    ]);
    expect(v({ app: "train.py", main_class: "X" })).toEqual([
      "steps[1].config.main_class: 'main_class' is for jar applications; this app is a Python file (remove 'main_class')",
    ]);
    expect(v({ app: "etl.jar", main_class: "com example" })[0]).toContain(
      "is not a JVM class name",
    );
    expect(v({ app: "train.R" })).toEqual([
      'steps[1].config.app: "train.R" is neither a Python file (.py) nor a jar (.jar)',
    ]);
    expect(v({ app: 3 })[0]).toContain("'app' must be a string");
  });

  it("targets a configured Spark version, listing the known ones otherwise", () => {
    expect(v({ app: "a.py", version: "2.4" })).toEqual([
      'steps[1].config.version: Spark version "2.4" is not configured on this server (known versions: 3.5.1, 4.3.0, 4.1.0)',
    ]);
    expect(v({ app: "a.py", version: "4" })).toEqual([]);
    expect(v({ app: "a.py", version: "constructor" })[0]).toContain(
      'Spark version "constructor" is not configured',
    );
    expect(resolveSparkVersion("4", settings)).toMatchObject({ ok: true, version: "4.3.0" });
    expect(resolveSparkVersion("3.5", settings)).toMatchObject({ ok: true, version: "3.5.1" });
    expect(resolveSparkVersion(undefined, settings)).toMatchObject({ ok: true, version: "3.5.1" });
    expect(v({ app: "a.py" }, defaultStepTypeSettings())).toEqual([
      "steps[1].config: no Spark versions are configured on this server (install pyspark in the server's Python environment (pip install pyspark), or configure sparkVersions (version -> SPARK_HOME))",
    ]);
    expect(v({ app: "a.py", version: 3.5 })).toEqual([
      "steps[1].config.version: 'version' must be a string, got a number 3.5",
    ]);
  });

  it("checks conf: Spark properties only, scalar values, no keys kaon owns", () => {
    expect(
      v({
        app: "a.py",
        conf: {
          "sql.shuffle.partitions": 2,
          "spark.a": { nested: 1 },
          "spark.b": [1],
          "spark.c": null,
          "spark.ui.port": 4040,
          "spark.master": "local",
        },
      }),
    ).toEqual([
      "steps[1].config.conf.sql.shuffle.partitions: 'sql.shuffle.partitions' is not a Spark property; spark-submit ignores properties not starting with 'spark.' (did you mean 'spark.sql.shuffle.partitions'?)",
      'steps[1].config.conf.spark.a: a Spark property must be a string, number or boolean, got {"nested":1}',
      "steps[1].config.conf.spark.b: a Spark property must be a string, number or boolean, got [1]",
      "steps[1].config.conf.spark.c: a Spark property must be a string, number or boolean, got null",
      "steps[1].config.conf.spark.ui.port: 'spark.ui.port' cannot be set in 'conf' (kaon picks a free port for each application's UI so that it can follow its progress)",
      "steps[1].config.conf.spark.master: 'spark.master' cannot be set in 'conf' (use 'master')",
    ]);
    expect(v({ app: "a.py", conf: { "spark.d": "${nope.x}" } })[0]).toContain(
      "steps[1].config.conf.spark.d: bad template",
    );
    expect(v({ app: "a.py", conf: ["spark.a=1"] })[0]).toContain(
      "'conf' must be an object of Spark properties",
    );
  });

  it("checks memory sizes, master, file lists and unknown keys", () => {
    expect(v({ app: "a.py", driver_memory: 512, executor_memory: "lots" })).toEqual([
      'steps[1].config.driver_memory: \'driver_memory\' needs a unit, got 512 (write it as a string, e.g. "512m" or "2g")',
      'steps[1].config.executor_memory: "lots" is not a memory size (e.g. "512m" or "4g")',
    ]);
    expect(v({ app: "a.py", master: "local[two]" })[0]).toContain(
      '"local[two]" is not a Spark master URL',
    );
    expect(v({ app: "a.py", py_files: "lib.zip" })[0]).toContain(
      "'py_files' must be a list of strings",
    );
    expect(v({ app: "a.py", py_files: ["a.zip,b.zip"] })).toEqual([
      'steps[1].config.py_files[0]: "a.zip,b.zip" contains a comma; spark-submit separates py_files with commas (give each file as its own item)',
    ]);
    expect(v({ app: "a.jar", main_class: "A", py_files: ["x.zip"] })[0]).toContain(
      "'py_files' is for Python applications",
    );
    expect(v({ app: "a.py", executor_mem: "1g" })).toEqual([
      "steps[1].config.executor_mem: unknown spark config key 'executor_mem' (did you mean 'executor_memory'?)",
    ]);
    expect(v({ app: "a.py", env: { KAON_X: "1" } })[0]).toContain("'KAON_X' is reserved");
  });
});

describe("spark: plan", () => {
  it("builds spark-submit argv with conf, files, memory, a free UI port and the tag", async () => {
    const ctx = makeStepContext({
      config: {
        app: "jobs/${params.job}.py",
        args: ["--day", "${params.day}"],
        conf: { "spark.sql.shuffle.partitions": 2, "spark.x": "${run.id}" },
        py_files: ["a.zip", "b.zip"],
        driver_memory: "1g",
        version: "4.3",
      },
      params: { job: "train", day: "2024-01-01" },
      settings,
    });
    const plan = await sparkStepType.plan(ctx);
    if (plan.command.kind !== "argv") throw new Error("argv expected");
    const argv = plan.command.argv;
    const port = Number(argv.find((a) => a.startsWith("spark.ui.port="))?.split("=")[1]);
    expect(port).toBeGreaterThan(0);
    expect(argv).toEqual([
      join(fakeHome, "bin", "spark-submit"),
      "--master",
      DEFAULT_SPARK_MASTER,
      "--name",
      "wf/step",
      "--conf",
      "spark.ui.showConsoleProgress=false",
      "--conf",
      "spark.sql.shuffle.partitions=2",
      "--conf",
      "spark.x=run-1",
      "--conf",
      `spark.ui.port=${port}`,
      "--conf",
      `${SPARK_ATTEMPT_TAG_CONF}=run-1/step#1`,
      "--driver-memory",
      "1g",
      "--py-files",
      "a.zip,b.zip",
      "jobs/train.py",
      "--day",
      "2024-01-01",
    ]);
    expect(plan.env).toMatchObject({
      SPARK_HOME: fakeHome,
      PYSPARK_PYTHON: "python3",
      PYSPARK_DRIVER_PYTHON: "python3",
    });
    expect(plan.files?.[0]?.path).toBe(SPARK_STATE_FILE);
    writeFileSync(join(ctx.workDir, SPARK_STATE_FILE), plan.files?.[0]?.content as string);
    expect(readSparkState(ctx.workDir)).toEqual({ uiPort: port, tag: "run-1/step#1" });
  });

  it("plans a jar with its class and fails clearly when the installation is gone", async () => {
    const ctx = makeStepContext({
      config: { app: "etl.jar", main_class: "com.example.Etl", jars: ["x.jar"] },
      settings,
    });
    const plan = await sparkStepType.plan(ctx);
    const argv = plan.command.kind === "argv" ? plan.command.argv : [];
    expect(argv.slice(-5)).toEqual(["--jars", "x.jar", "--class", "com.example.Etl", "etl.jar"]);
    const gone = makeStepContext({
      config: { app: "a.py", version: "9.9" },
      settings: { ...settings, sparkVersions: { "9.9": "/nonexistent/spark" } },
    });
    await expect(sparkStepType.plan(gone)).rejects.toThrow(
      "spark step 'step': Spark 9.9 is configured at /nonexistent/spark, but there is no bin/spark-submit there",
    );
    const unknown = makeStepContext({ config: { app: "a.py", version: "1.6" }, settings });
    await expect(sparkStepType.plan(unknown)).rejects.toThrow(
      "known versions: 3.5.1, 4.3.0, 4.1.0",
    );
  });
});

describe("spark: failure messages", () => {
  it("finds the cause in a driver's stderr", () => {
    const py = [
      "26/01/01 10:00:00 INFO SparkContext: Running Spark version 4.3.0",
      "Traceback (most recent call last):",
      '  File "/w/app.py", line 3, in <module>',
      '    raise ValueError("boom")',
      "ValueError: boom",
      "26/01/01 10:00:01 INFO ShutdownHookManager: Shutdown hook called",
    ].join("\n");
    expect(summariseSparkFailure(py)).toBe("ValueError: boom");
    const py4j = [
      "Traceback (most recent call last):",
      '  File "/w/app.py", line 5, in <module>',
      "py4j.protocol.Py4JJavaError: An error occurred while calling o42.count.",
      ": org.apache.spark.SparkException: Job aborted due to stage failure",
      "\tat org.apache.spark...",
    ].join("\n");
    expect(summariseSparkFailure(py4j)).toBe(
      "py4j.protocol.Py4JJavaError: An error occurred while calling o42.count. org.apache.spark.SparkException: Job aborted due to stage failure",
    );
    const java = [
      "26/01/01 10:00:00 WARN Utils: something",
      'Exception in thread "main" java.lang.ClassNotFoundException: com.example.Nope',
      "\tat java.base/java.lang.Class.forName0(Native Method)",
    ].join("\n");
    expect(summariseSparkFailure(java)).toBe(
      'Exception in thread "main" java.lang.ClassNotFoundException: com.example.Nope',
    );
    expect(summariseSparkFailure("Error: Failed to load class com.example.Nope.\n")).toBe(
      "Error: Failed to load class com.example.Nope.",
    );
    expect(summariseSparkFailure("")).toBe("");
  });
});

describe("spark: monitor", () => {
  it("computes percent from completed and skipped tasks", () => {
    expect(sparkPercent([])).toBeUndefined();
    expect(
      sparkPercent([
        { numTasks: 4, numCompletedTasks: 4, status: "SUCCEEDED" },
        { numTasks: 4, numCompletedTasks: 1, numSkippedTasks: 1, status: "RUNNING" },
      ]),
    ).toEqual({ percent: 75, done: 6, total: 8, jobsDone: 1 });
  });

  it("skips a UI of another application, follows ours on the next port, and stops on abort", async () => {
    // Two servers on consecutive ports: the asked-for port answers as someone else's Spark UI.
    const servers: Server[] = [];
    const fakeUi = (appId: string, tag: string) =>
      createServer((req, res) => {
        res.setHeader("content-type", "application/json");
        const url = req.url ?? "";
        if (url === "/api/v1/applications") return res.end(JSON.stringify([{ id: appId }]));
        if (url.endsWith("/environment"))
          return res.end(JSON.stringify({ sparkProperties: [[SPARK_ATTEMPT_TAG_CONF, tag]] }));
        if (url.endsWith("/jobs"))
          return res.end(
            JSON.stringify([{ numTasks: 4, numCompletedTasks: 1, status: "RUNNING" }]),
          );
        res.statusCode = 404;
        res.end("[]");
      });
    let port = 0;
    for (let tries = 0; tries < 20 && servers.length < 2; tries++) {
      for (const s of servers.splice(0)) s.close();
      const a = fakeUi("app-other", "someone/else#1");
      a.listen(0, "127.0.0.1");
      await once(a, "listening");
      port = (a.address() as { port: number }).port;
      const b = fakeUi("app-ours", "run-1/step#1");
      servers.push(a);
      const ok = await new Promise<boolean>((resolve) => {
        b.once("error", () => resolve(false));
        b.listen(port + 1, "127.0.0.1", () => resolve(true));
      });
      if (ok) servers.push(b);
    }
    expect(servers).toHaveLength(2);
    const { reporter, reports } = recordingReporter();
    const ac = new AbortController();
    let resolveSeen: () => void = () => {};
    const seen = new Promise<void>((r) => {
      resolveSeen = r;
    });
    const wrapped = {
      ...reporter,
      progress: (p: number, m?: string) => {
        reporter.progress(p, m);
        resolveSeen();
      },
    };
    const done = monitorSparkApplication(port, "run-1/step#1", wrapped, ac.signal, {
      intervalMs: 20,
    });
    await seen;
    ac.abort();
    await done;
    expect(reports.outputs).toEqual({ spark_application_id: "app-ours" });
    expect(reports.links).toEqual([{ name: "Spark UI", url: `http://127.0.0.1:${port + 1}/` }]);
    expect(reports.progress[0]).toEqual({ percent: 25, message: "1/4 tasks; 0/1 Spark jobs done" });
    for (const s of servers) s.close();
  });

  it("reports nothing and never throws when no UI ever answers", async () => {
    const { reporter, reports } = recordingReporter();
    const ac = new AbortController();
    const done = monitorSparkApplication(1, "x", reporter, ac.signal, { intervalMs: 10 });
    setTimeout(() => ac.abort(), 100);
    await expect(done).resolves.toBeUndefined();
    expect(reports).toMatchObject({ outputs: {}, links: [], progress: [] });
  });
});

// ---- real Spark ---------------------------------------------------------------------------

/** A Python with pyspark: $KAON_TEST_PYTHON, the repo's .venv, or python3. */
async function findPySpark(): Promise<
  { python: string; versions: Record<string, string> } | { reason: string }
> {
  const candidates = [
    process.env.KAON_TEST_PYTHON,
    join(REPO, ".venv", "bin", "python"),
    "python3",
  ].filter((p): p is string => !!p && (p === "python3" || existsSync(p)));
  for (const python of candidates) {
    const versions = await detectSparkVersions(python);
    if (Object.keys(versions).length > 0) return { python, versions };
  }
  return {
    reason: `no pyspark in ${candidates.join(", ")}; run scripts/setup.sh (installs pyspark into .venv)`,
  };
}

interface Started {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Carries out a plan as the local backend does: files, env, own process group, stderr file. */
function launch(ctx: StepContext, plan: ProcessPlan): Started {
  for (const f of plan.files ?? []) writeFileSync(join(ctx.workDir, f.path), f.content);
  if (plan.command.kind !== "argv") throw new Error("argv expected");
  const [program, ...args] = plan.command.argv;
  const child = spawn(program as string, args, {
    cwd: plan.cwd ?? ctx.workDir,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...ctx.env,
      ...plan.env,
    },
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(createWriteStream(join(ctx.workDir, "stdout")));
  child.stderr?.pipe(createWriteStream(join(ctx.workDir, STDERR_FILE)));
  const exit = once(child, "exit").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  return { child, exit };
}

/** Live (non-zombie) processes of a process group, with their command lines. */
function groupMembers(pgid: number): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (fields[0] === "Z" || Number(fields[2]) !== pgid) continue;
      out.push({
        pid: Number(entry),
        cmd: readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " "),
      });
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

async function until<T>(what: string, deadlineMs: number, probe: () => T | undefined): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The app runs one job, then waits for the file `go` (written by the test once it has seen
// progress), then runs a second job: the monitor is sure to see a running app with progress.
const APP = `
import os, sys, time
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
sc = spark.sparkContext
print("first job", sc.parallelize(range(8), 4).map(lambda x: x * x).sum(), flush=True)
deadline = time.time() + float(sys.argv[1])
while not os.path.exists("go"):
    if time.time() > deadline:
        sys.exit("no go file: the test never saw progress")
    time.sleep(0.1)
print("second job", sc.parallelize(range(8), 2).count(), flush=True)
spark.stop()
`;

describe("spark: a real application in local[2]", () => {
  let found: Awaited<ReturnType<typeof findPySpark>>;
  beforeAll(async () => {
    found = await findPySpark();
    if ("reason" in found) console.warn(`skipping real Spark tests: ${found.reason}`);
  }, 60_000);

  const realSettings = (): StepTypeSettings | undefined =>
    "python" in found
      ? {
          ...defaultStepTypeSettings(),
          pythonInterpreter: found.python,
          sparkVersions: found.versions,
        }
      : undefined;

  const started: Started[] = [];
  afterAll(() => {
    for (const s of started) {
      try {
        if (s.child.pid) process.kill(-s.child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });

  it("runs, reports the application id, the UI link and progress > 0, and exits 0", async (t) => {
    const s = realSettings();
    if (!s) return t.skip();
    const ctx = makeStepContext({
      config: { app: "app.py", args: ["60"], conf: { "spark.sql.shuffle.partitions": 2 } },
      settings: s,
    });
    writeFileSync(join(ctx.workDir, "app.py"), APP);
    expect(sparkStepType.validate(ctx.config, "config", s)).toEqual([]);
    const plan = await sparkStepType.plan(ctx);
    const { reporter, reports } = recordingReporter();
    const watched = {
      ...reporter,
      progress: (p: number, m?: string) => {
        reporter.progress(p, m);
        if (p > 0) writeFileSync(join(ctx.workDir, "go"), "");
      },
    };
    const ac = new AbortController();
    const run = launch(ctx, plan);
    started.push(run);
    const monitoring = sparkStepType.monitor?.(ctx, watched, ac.signal);
    const end = await run.exit;
    ac.abort();
    await monitoring;
    const stderr = readFileSync(join(ctx.workDir, STDERR_FILE), "utf8");
    expect(end, stderr.slice(-3000)).toEqual({ code: 0, signal: null });
    expect(readFileSync(join(ctx.workDir, "stdout"), "utf8")).toContain("second job 8");
    expect(reports.outputs.spark_application_id).toMatch(/^local-\d+$/);
    const port = readSparkState(ctx.workDir)?.uiPort;
    expect(reports.links).toEqual([{ name: "Spark UI", url: `http://127.0.0.1:${port}/` }]);
    expect(reports.progress.some((p) => p.percent > 0)).toBe(true);
    expect(
      await sparkStepType.interpretEnd?.(ctx, {
        taskId: "t",
        state: "FINISHED",
        exitCode: 0,
        timestamp: 0,
      }),
    ).toEqual({
      succeeded: true,
    });
  }, 120_000);

  it("is stopped by killing its process group: the driver JVM dies", async (t) => {
    const s = realSettings();
    if (!s) return t.skip();
    const ctx = makeStepContext({ config: { app: "app.py", args: ["300"] }, settings: s });
    writeFileSync(join(ctx.workDir, "app.py"), APP);
    const plan = await sparkStepType.plan(ctx);
    const { reporter } = recordingReporter();
    let resolveApp: () => void = () => {};
    const appSeen = new Promise<void>((r) => {
      resolveApp = r;
    });
    const ac = new AbortController();
    const run = launch(ctx, plan);
    started.push(run);
    const monitoring = sparkStepType.monitor?.(
      ctx,
      {
        ...reporter,
        output: (n, val) => {
          reporter.output(n, val);
          resolveApp();
        },
      },
      ac.signal,
    );
    await Promise.race([
      appSeen,
      run.exit.then(() => Promise.reject(new Error("the app ended before it was seen"))),
    ]);
    const pgid = run.child.pid as number;
    expect(
      groupMembers(pgid).some((m) => /\bjava\b/.test(m.cmd) && m.cmd.includes("SparkSubmit")),
    ).toBe(true);
    process.kill(-pgid, "SIGTERM"); // what the local agent does first
    const end = await run.exit;
    expect(end.code === 0).toBe(false);
    await until("the process group to be empty", 30_000, () =>
      groupMembers(pgid).length === 0 ? true : undefined,
    );
    ac.abort();
    await monitoring;
  }, 120_000);

  it("fails with the cause from the driver's output", async (t) => {
    const s = realSettings();
    if (!s) return t.skip();
    const ctx = makeStepContext({ config: { app: "bad.py" }, settings: s });
    writeFileSync(join(ctx.workDir, "bad.py"), 'raise ValueError("boom from the kaon test")\n');
    const plan = await sparkStepType.plan(ctx);
    const run = launch(ctx, plan);
    started.push(run);
    const end = await run.exit;
    expect(end.code).not.toBe(0);
    const result = await sparkStepType.interpretEnd?.(ctx, {
      taskId: "t",
      state: "FAILED",
      ...(end.code !== null ? { exitCode: end.code } : {}),
      timestamp: 0,
    });
    expect(result).toEqual({
      succeeded: false,
      message: `Spark application failed (exit code ${end.code}): ValueError: boom from the kaon test`,
    });
  }, 120_000);
});

describe("spark: detectSparkVersions", () => {
  it("finds nothing (without throwing) where there is no pyspark", async () => {
    expect(await detectSparkVersions("/nonexistent/python")).toEqual({});
    const noPyspark = join(mkdtempSync(join(tmpdir(), "kaon-nopy-")), "python");
    writeFileSync(noPyspark, "#!/bin/sh\nexit 1\n");
    chmodSync(noPyspark, 0o755);
    expect(await detectSparkVersions(noPyspark)).toEqual({});
  });

  it("finds the pyspark of a Python environment", async (t) => {
    const found = await findPySpark();
    if ("reason" in found) return t.skip();
    const [version, home] = Object.entries(found.versions)[0]!;
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    expect(existsSync(join(home, "bin", "spark-submit"))).toBe(true);
    expect(dirname(home)).toMatch(/site-packages$/);
  });
});
