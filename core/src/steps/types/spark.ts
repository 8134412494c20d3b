// `spark`: native Spark support, as Meson had. A step submits a Python file, or a jar and its
// main class, with `spark-submit` from a chosen Spark installation: server settings map
// versions to installations (`sparkVersions`, by default the pyspark of the server's Python
// environment, see detectSparkVersions) and the step names the version it targets. The
// driver's UI gets a free port and the application a tag, so that the monitor
// (./spark-monitor.ts) finds this attempt's application and reports its id, its UI link and its
// progress. Kill needs nothing special: spark-submit, the driver JVM and the Python driver are
// one process group, which the backend signals. A failure's end message is the cause found in
// the driver's stderr (a Python traceback's last line, a Java exception), not just an exit code.
import { execFile } from "node:child_process";
import { accessSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:net";
import { delimiter, dirname, join } from "node:path";
import type { FieldViolation } from "@kaon/proto";
import type { TaskStatus } from "../../backends/backend.js";
import { ConfigCheck, checkEnv, show } from "../config-check.js";
import type {
  EndResult,
  JsonObject,
  ProcessPlan,
  ProcessStepType,
  StepContext,
  StepTypeSettings,
} from "../step-type.js";
import {
  configScope,
  renderConfigList,
  renderConfigMap,
  renderConfigString,
  StepConfigError,
} from "../templating.js";
import { monitorSparkApplication, SPARK_ATTEMPT_TAG_CONF } from "./spark-monitor.js";
import { attemptOutputTail, lastLines, STDOUT_FILE } from "./stderr-tail.js";

export const DEFAULT_SPARK_MASTER = "local[2]";
/** File in the attempt's working directory that tells the monitor where to look. */
export const SPARK_STATE_FILE = ".kaon-spark.json";

const CONFIG_KEYS = [
  "app",
  "main_class",
  "args",
  "conf",
  "py_files",
  "jars",
  "driver_memory",
  "executor_memory",
  "master",
  "version",
  "name",
  "env",
] as const;

/** Spark conf keys that have a config key of their own (or that kaon sets itself). */
const CONF_OWNED: Record<string, string> = {
  "spark.master": "use 'master'",
  "spark.app.name": "use 'name'",
  "spark.driver.memory": "use 'driver_memory'",
  "spark.executor.memory": "use 'executor_memory'",
  "spark.jars": "use 'jars'",
  "spark.submit.pyFiles": "use 'py_files'",
  "spark.ui.port":
    "kaon picks a free port for each application's UI so that it can follow its progress",
  [SPARK_ATTEMPT_TAG_CONF]: "kaon sets it to find the application's UI",
};

const MEMORY = /^[1-9][0-9]*([kmgtp]b?|b)?$/i;
const MASTER =
  /^(local(\[(\d+|\*)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]|yarn|(spark|k8s|mesos):\/\/\S+)$/;
const CLASS_NAME = /^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/;

type AppKind = "python" | "jar";

function appKind(app: string): AppKind | undefined {
  if (/\.py$/i.test(app)) return "python";
  if (/\.jar$/i.test(app)) return "jar";
  return undefined;
}

/** The version a step gets: its own (exact, or the newest `x.y.*` for `x.y`), else the first. */
export function resolveSparkVersion(
  wanted: string | undefined,
  settings: StepTypeSettings,
): { ok: true; version: string; location: string } | { ok: false; message: string; hint: string } {
  const versions = settings.sparkVersions ?? {};
  const known = Object.keys(versions);
  if (known.length === 0) {
    return {
      ok: false,
      message: "no Spark versions are configured on this server",
      hint: "install pyspark in the server's Python environment (pip install pyspark), or configure sparkVersions (version -> SPARK_HOME)",
    };
  }
  if (wanted === undefined) return { ok: true, version: known[0]!, location: versions[known[0]!]! };
  // Own keys only: a version named "constructor" must not find Object.prototype's.
  if (Object.hasOwn(versions, wanted) && typeof versions[wanted] === "string")
    return { ok: true, version: wanted, location: versions[wanted] };
  const matching = known.filter((v) => v.startsWith(`${wanted}.`)).sort(compareVersions);
  const newest = matching[matching.length - 1];
  if (newest !== undefined) return { ok: true, version: newest, location: versions[newest]! };
  return {
    ok: false,
    message: `Spark version ${show(wanted)} is not configured on this server`,
    hint: `known versions: ${known.join(", ")}`,
  };
}

function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.-]/);
  const pb = b.split(/[.-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? "";
    const y = pb[i] ?? "";
    const nx = Number(x);
    const ny = Number(y);
    const c = Number.isNaN(nx) || Number.isNaN(ny) ? x.localeCompare(y) : nx - ny;
    if (c !== 0) return c;
  }
  return 0;
}

/** SPARK_HOME and spark-submit of a configured location (SPARK_HOME, its bin/, or the script). */
export function sparkInstallation(location: string): { home: string; submit: string } | undefined {
  const candidates = [
    { home: location, submit: join(location, "bin", "spark-submit") },
    { home: dirname(location), submit: join(location, "spark-submit") },
    { home: dirname(dirname(location)), submit: location },
  ];
  for (const c of candidates) {
    try {
      if (statSync(c.submit).isFile()) return c;
    } catch {
      // not this layout
    }
  }
  return undefined;
}

function findOnPath(program: string, pathVar: string | undefined): string | undefined {
  for (const dir of (pathVar ?? "").split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, program);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Finds pyspark in a Python environment: version -> its SPARK_HOME. Never throws. */
export function detectSparkVersions(
  pythonInterpreter: string,
  timeoutMs = 30_000,
): Promise<Record<string, string>> {
  const code = "import pyspark,os;print(pyspark.__version__, os.path.dirname(pyspark.__file__))";
  return new Promise((resolve) => {
    execFile(pythonInterpreter, ["-c", code], { timeout: timeoutMs }, (err, stdout) => {
      if (err) return resolve({});
      const line = stdout.trim().split("\n").pop() ?? "";
      const space = line.indexOf(" ");
      if (space <= 0) return resolve({});
      const version = line.slice(0, space);
      const home = line.slice(space + 1);
      resolve(sparkInstallation(home) ? { [version]: home } : {});
    });
  });
}

function checkConf(check: ConfigCheck): void {
  const raw = check.value("conf");
  if (raw === undefined || raw === null) return;
  const field = check.field("conf");
  if (typeof raw !== "object" || Array.isArray(raw)) {
    check.add(
      field,
      `'conf' must be an object of Spark properties, got ${show(raw)}`,
      'e.g. {"spark.sql.shuffle.partitions": 8}',
    );
    return;
  }
  for (const [key, value] of Object.entries(raw)) {
    const f = `${field}.${key}`;
    if (!key.startsWith("spark.")) {
      check.add(
        f,
        `'${key}' is not a Spark property; spark-submit ignores properties not starting with 'spark.'`,
        `did you mean 'spark.${key}'?`,
      );
      continue;
    }
    const owned = CONF_OWNED[key];
    if (owned !== undefined) {
      check.add(f, `'${key}' cannot be set in 'conf'`, owned);
      continue;
    }
    if (typeof value === "string") check.template(value, f);
    else if (typeof value !== "number" && typeof value !== "boolean") {
      check.add(f, `a Spark property must be a string, number or boolean, got ${show(value)}`);
    }
  }
}

function checkPathList(check: ConfigCheck, key: string): void {
  const list = check.stringList(key, { template: true });
  list?.forEach((item, i) => {
    if (item.includes(",")) {
      check.add(
        `${check.field(key)}[${i}]`,
        `${show(item)} contains a comma; spark-submit separates ${key} with commas`,
        "give each file as its own item",
      );
    }
  });
}

function validateSpark(
  config: JsonObject,
  path: string,
  settings: StepTypeSettings,
): FieldViolation[] {
  const check = new ConfigCheck(config, path, "spark").allowKeys(CONFIG_KEYS);
  const app = check.string("app", { template: true });
  if (!check.has("app")) {
    check.add(
      check.field("app"),
      "spark config needs 'app': a Python file (.py), or a jar (.jar) with 'main_class'",
      'e.g. "app": "jobs/train.py"',
    );
  }
  const kind = app !== undefined && !app.includes("${") ? appKind(app) : undefined;
  if (app !== undefined && app.trim() !== "" && !app.includes("${") && kind === undefined) {
    check.add(check.field("app"), `${show(app)} is neither a Python file (.py) nor a jar (.jar)`);
  }
  const mainClass = check.string("main_class");
  if (mainClass !== undefined && mainClass.trim() !== "" && !CLASS_NAME.test(mainClass)) {
    check.add(
      check.field("main_class"),
      `${show(mainClass)} is not a JVM class name`,
      'e.g. "com.example.Train"',
    );
  }
  if (kind === "python" && mainClass !== undefined) {
    check.add(
      check.field("main_class"),
      "'main_class' is for jar applications; this app is a Python file",
      "remove 'main_class'",
    );
  }
  if (
    kind === "jar" &&
    mainClass === undefined &&
    !check.violations.some((v) => v.field === check.field("main_class"))
  ) {
    check.add(
      check.path,
      "a jar application needs 'main_class'",
      'e.g. "main_class": "com.example.Train"',
    );
  }
  if (kind === "jar" && check.has("py_files")) {
    check.add(
      check.field("py_files"),
      "'py_files' is for Python applications; this app is a jar",
      "use 'jars' for extra jars",
    );
  }
  check.stringList("args", { template: true });
  checkConf(check);
  checkPathList(check, "py_files");
  checkPathList(check, "jars");
  for (const key of ["driver_memory", "executor_memory"]) {
    const raw = check.value(key);
    if (typeof raw === "number") {
      check.add(
        check.field(key),
        `'${key}' needs a unit, got ${raw}`,
        `write it as a string, e.g. "${raw}m" or "2g"`,
      );
      continue;
    }
    const m = check.string(key);
    if (m !== undefined && m.trim() !== "" && !MEMORY.test(m)) {
      check.add(check.field(key), `${show(m)} is not a memory size`, 'e.g. "512m" or "4g"');
    }
  }
  const master = check.string("master");
  if (master !== undefined && master.trim() !== "" && !MASTER.test(master)) {
    check.add(
      check.field("master"),
      `${show(master)} is not a Spark master URL`,
      'e.g. "local[2]", "local[*]", "spark://host:7077", "yarn" or "k8s://https://host:443"',
    );
  }
  check.string("name", { template: true });
  const version = check.string("version");
  if (!check.has("version") || (version !== undefined && version.trim() !== "")) {
    const r = resolveSparkVersion(version, settings);
    if (!r.ok)
      check.add(check.has("version") ? check.field("version") : check.path, r.message, r.hint);
  }
  checkEnv(check);
  return check.violations;
}

/** A free TCP port for the driver's UI. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen({ port: 0, host: "0.0.0.0" }, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function attemptTag(ctx: StepContext): string {
  return `${ctx.runId}/${ctx.path}#${ctx.attempt}`;
}

async function planSpark(ctx: StepContext): Promise<ProcessPlan> {
  const config = ctx.config;
  const scope = configScope(ctx);
  const resolved = resolveSparkVersion(config.version as string | undefined, ctx.settings);
  if (!resolved.ok)
    throw new StepConfigError(`spark step '${ctx.stepId}': ${resolved.message} (${resolved.hint})`);
  const install = sparkInstallation(resolved.location);
  if (!install) {
    throw new StepConfigError(
      `spark step '${ctx.stepId}': Spark ${resolved.version} is configured at ${resolved.location}, but there is no bin/spark-submit there`,
    );
  }
  const javaHome = ctx.env.JAVA_HOME ?? process.env.JAVA_HOME;
  const hasJava =
    (javaHome !== undefined && existsSync(join(javaHome, "bin", "java"))) ||
    findOnPath("java", ctx.env.PATH ?? process.env.PATH);
  if (!hasJava) {
    throw new StepConfigError(
      `spark step '${ctx.stepId}' needs Java (17 or newer) on the agent: none on PATH and JAVA_HOME is not set; install it (apt-get install openjdk-17-jre-headless)`,
    );
  }

  const app = renderConfigString(config.app as string, scope, "app");
  const kind = appKind(app);
  if (kind === undefined)
    throw new StepConfigError(
      `spark config app ${show(app)} is neither a Python file (.py) nor a jar (.jar)`,
    );
  const uiPort = await freePort();
  const tag = attemptTag(ctx);

  const conf: Record<string, string> = { "spark.ui.showConsoleProgress": "false" };
  const rawConf = (config.conf ?? {}) as Record<string, string | number | boolean>;
  for (const [k, v] of Object.entries(rawConf)) {
    conf[k] = typeof v === "string" ? renderConfigString(v, scope, `conf.${k}`) : String(v);
  }
  conf["spark.ui.port"] = String(uiPort);
  conf[SPARK_ATTEMPT_TAG_CONF] = tag;

  const name =
    typeof config.name === "string"
      ? renderConfigString(config.name, scope, "name")
      : `${ctx.workflowId}/${ctx.path}`;
  const argv = [
    install.submit,
    "--master",
    typeof config.master === "string" ? config.master : DEFAULT_SPARK_MASTER,
    "--name",
    name,
  ];
  for (const [k, v] of Object.entries(conf)) argv.push("--conf", `${k}=${v}`);
  if (typeof config.driver_memory === "string") argv.push("--driver-memory", config.driver_memory);
  if (typeof config.executor_memory === "string")
    argv.push("--executor-memory", config.executor_memory);
  if (Array.isArray(config.py_files) && config.py_files.length > 0) {
    argv.push(
      "--py-files",
      renderConfigList(config.py_files as string[], scope, "py_files").join(","),
    );
  }
  if (Array.isArray(config.jars) && config.jars.length > 0) {
    argv.push("--jars", renderConfigList(config.jars as string[], scope, "jars").join(","));
  }
  if (kind === "jar") {
    if (typeof config.main_class !== "string")
      throw new StepConfigError("a jar application needs 'main_class'");
    argv.push("--class", config.main_class);
  }
  argv.push(app);
  if (Array.isArray(config.args))
    argv.push(...renderConfigList(config.args as string[], scope, "args"));

  const python = ctx.settings.pythonInterpreter;
  const env: Record<string, string> = {
    SPARK_HOME: install.home,
    // The driver and the workers run the server's Python, so the app can `from kaon import job`.
    PYSPARK_PYTHON: python,
    PYSPARK_DRIVER_PYTHON: python,
    PYTHONUNBUFFERED: "1",
    ...renderConfigMap(config.env as Record<string, string> | undefined, scope, "env"),
  };
  return {
    command: { kind: "argv", argv },
    env,
    files: [
      {
        path: SPARK_STATE_FILE,
        content: `${JSON.stringify({ uiPort, tag, version: resolved.version })}\n`,
      },
    ],
  };
}

/** What the monitor needs, as written by plan; undefined when the attempt has none. */
export function readSparkState(workDir: string): { uiPort: number; tag: string } | undefined {
  try {
    const s = JSON.parse(readFileSync(join(workDir, SPARK_STATE_FILE), "utf8")) as {
      uiPort?: unknown;
      tag?: unknown;
    };
    if (typeof s.uiPort === "number" && typeof s.tag === "string")
      return { uiPort: s.uiPort, tag: s.tag };
  } catch {
    // no state: the attempt was not planned by this type (or the file was removed)
  }
  return undefined;
}

const LOG4J_LINE = /^\d{2}\/\d{2}\/\d{2} \d{2}:\d{2}:\d{2} (TRACE|DEBUG|INFO|WARN|ERROR) /;

/**
 * The cause of a failed Spark application, from its driver's stderr: the exception line of the
 * last Python traceback, else the last Java exception or spark-submit error, else the last
 * lines that are not log chatter. "" when stderr says nothing.
 */
export function summariseSparkFailure(stderr: string): string {
  const lines = stderr.split(/\r?\n/);
  const tb = lines.map((l) => l.startsWith("Traceback (most recent call last):")).lastIndexOf(true);
  if (tb >= 0) {
    for (let i = tb + 1; i < lines.length; i++) {
      const l = lines[i]!;
      if (l === "" || /^\s/.test(l)) continue;
      // py4j wraps a JVM exception: keep the Java cause that follows on the next line.
      const next = lines[i + 1] ?? "";
      const cause = l.includes("Py4JJavaError") && next.startsWith(": ") ? ` ${next.slice(2)}` : "";
      return clip(`${l}${cause}`);
    }
  }
  const java = lines.filter(
    (l) =>
      /^(Exception in thread|Error: |Caused by: |[\w$.]+(Exception|Error)(: |$))/.test(l) &&
      !LOG4J_LINE.test(l),
  );
  const firstJava = java.find((l) => !l.startsWith("Caused by: "));
  if (firstJava !== undefined) return clip(firstJava);
  return clip(
    lastLines(lines.filter((l) => !LOG4J_LINE.test(l) && !/^\s+at /.test(l)).join("\n"), 3).join(
      " | ",
    ),
  );
}

function clip(s: string, max = 500): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

function endOfSpark(ctx: StepContext, status: TaskStatus): EndResult {
  if (status.state === "FINISHED" && (status.exitCode ?? 0) === 0) return { succeeded: true };
  const how =
    status.exitCode !== undefined
      ? `exit code ${status.exitCode}`
      : status.signal
        ? `killed by signal ${status.signal}`
        : status.message || status.state.toLowerCase();
  // A Python driver's own output (its traceback too) reaches the JVM's stdout, not stderr.
  const output = `${attemptOutputTail(ctx.workDir)}\n${attemptOutputTail(ctx.workDir, STDOUT_FILE)}`;
  const cause = summariseSparkFailure(output);
  return {
    succeeded: false,
    message: `Spark application failed (${how})${cause ? `: ${cause}` : ""}`,
  };
}

export const sparkStepType: ProcessStepType = {
  kind: "process",
  name: "spark",
  description:
    "Submits a Spark application (a Python file, or a jar and main class) with spark-submit of a chosen Spark version; reports its id, UI link and progress.",
  validate: validateSpark,
  plan: planSpark,
  async monitor(ctx, report, signal) {
    const state = readSparkState(ctx.workDir);
    if (!state) return;
    await monitorSparkApplication(state.uiPort, state.tag, report, signal);
  },
  interpretEnd: endOfSpark,
};
