// Step constructors, one per step type core knows, plus the containers (foreach, loop,
// subworkflow). Each constructor only shapes the config; whether the config is right is core's
// call (StepType.validate), so a config problem comes back from Validate/Deploy with its path.
import type { Foreach, ForeachAxis, Step as StepMessage } from "@kaon/proto";
import { definedOnly, Graph, type Node, Step, type StepOptions, withGraph } from "./graph.js";
import {
  compileDuration,
  compileParams,
  type DurationInput,
  Expr,
  expr,
  type JsonObject,
  type JsonValue,
  type ParamsInput,
} from "./values.js";

/** A step of a plugin type with a JSON config. */
export class ConfiguredStep extends Step {
  constructor(id: string, type: string, config: JsonObject, options: StepOptions) {
    super(id, type, options);
    this.config = config;
  }
  private readonly config: JsonObject;
  protected override body(): Partial<StepMessage> {
    // An empty config is left out, so `noop` compiles the same in every SDK.
    return Object.keys(this.config).length === 0 ? {} : { config: this.config };
  }
}

/** A step of any plugin type, for types without a constructor of their own. */
export function step(
  id: string,
  type: string,
  config: { [key: string]: JsonValue | undefined } = {},
  options: StepOptions = {},
): ConfiguredStep {
  return new ConfiguredStep(id, type, definedOnly(config), options);
}

/** Config of a `command` step: argv (no shell), or a shell script. */
export interface CommandConfig {
  argv?: string[];
  shell?: string;
  cwd?: string;
}

/**
 * Runs a command. `command("x", ["python", "prep.py"])` runs argv without a shell;
 * `command("x", "make all | tee log")` runs a shell script.
 */
export function command(
  id: string,
  config: string[] | string | CommandConfig,
  options: StepOptions = {},
): ConfiguredStep {
  const c: CommandConfig = Array.isArray(config)
    ? { argv: config }
    : typeof config === "string"
      ? { shell: config }
      : config;
  return step(id, "command", { ...c }, options);
}

/**
 * Config of a `python` step: inline source (`script`), a script file (`path`) or a module run
 * as `python -m` (function steps are Python-SDK only).
 */
export interface PythonConfig {
  /** Python source to run. */
  script?: string;
  /** A script file to run (may hold `${ <CEL> }` templates). */
  path?: string;
  /** Module to run as `python -m <module>`. */
  module?: string;
  /** argv of the script or module. */
  args?: string[];
  /** Python executable on the compute side; default the server's. */
  interpreter?: string;
  /** A virtual environment to run in (alternative to `interpreter`). */
  venv?: string;
  /** Working directory; default the attempt's own. */
  cwd?: string;
}

/** Runs Python: inline source, a script file or a module, with an interpreter of choice. */
export function python(
  id: string,
  config: PythonConfig,
  options: StepOptions = {},
): ConfiguredStep {
  return step(id, "python", { ...config }, options);
}

/** Config of a `spark` step: what spark-submit runs (core's `spark` step type keys). */
export interface SparkConfig {
  /** A Python file (.py), or a jar (.jar) with `mainClass`. */
  app: string;
  mainClass?: string;
  args?: string[];
  /** Spark conf (`--conf k=v`); keys with an option of their own are refused by core. */
  conf?: Record<string, string>;
  pyFiles?: string[];
  jars?: string[];
  /** e.g. "2g". */
  driverMemory?: string;
  /** e.g. "4g". */
  executorMemory?: string;
  /** Spark master URL; server default `local[2]`. */
  master?: string;
  /** One of the Spark versions configured on the server. */
  version?: string;
  /** Application name; default `<workflow>/<step path>`. */
  name?: string;
}

/** Submits a Spark application with a chosen Spark version. */
export function spark(id: string, config: SparkConfig, options: StepOptions = {}): ConfiguredStep {
  const { mainClass, pyFiles, driverMemory, executorMemory, ...rest } = config;
  return step(
    id,
    "spark",
    {
      ...rest,
      main_class: mainClass,
      py_files: pyFiles,
      driver_memory: driverMemory,
      executor_memory: executorMemory,
    },
    options,
  );
}

/** A bind mount of a `container` step. */
export interface ContainerMount {
  source: string;
  target: string;
  readOnly?: boolean;
}

/** Config of a `container` step (core's `container` type keys). */
export interface ContainerConfig {
  /** Image reference, e.g. "python:3.11-slim". */
  image: string;
  /** argv inside the container (no shell); default the image's entrypoint. */
  command?: string[];
  /** A script for `/bin/sh -c` instead of `command`. */
  shell?: string;
  mounts?: ContainerMount[];
  /** Absolute working directory inside the container. */
  workdir?: string;
  /** Default whichever is installed. */
  runtime?: "podman" | "docker";
  /** Default "host". */
  network?: "host" | "none" | "bridge";
  /** Default "missing". */
  pull?: "missing" | "always" | "never";
  /** Run an init process as PID 1. */
  init?: boolean;
}

/** Runs a command in a container image (podman or docker on the agent). */
export function container(
  id: string,
  config: ContainerConfig,
  options: StepOptions = {},
): ConfiguredStep {
  const { mounts, ...rest } = config;
  return step(
    id,
    "container",
    {
      ...rest,
      mounts: mounts?.map((m) => ({
        source: m.source,
        target: m.target,
        ...(m.readOnly === undefined ? {} : { read_only: m.readOnly }),
      })),
    },
    options,
  );
}

/** Config of a `sql` step: a named connection of the server and a query. */
export interface SqlConfig {
  connection: string;
  /** The statement; `:name` placeholders bind `params` by name, `?` binds a list. */
  query: string;
  /** Bound values (strings are templates). */
  params?: Record<string, JsonValue> | JsonValue[];
}

/** Runs a SQL query through a connection configured on the server (cohort selection). */
export function sql(id: string, config: SqlConfig, options: StepOptions = {}): ConfiguredStep {
  return step(id, "sql", { ...config }, options);
}

/** Config of an `http` step. */
export interface HttpConfig {
  url: string;
  /** Default GET (core's default). */
  method?: string;
  headers?: Record<string, string>;
  /** A JSON document or a string. */
  body?: JsonValue;
  /** Statuses that count as success; default any 2xx. */
  expectStatus?: number[];
  /** For the whole exchange; core's default 30. */
  timeoutSeconds?: number;
}

/** Calls an HTTP service. */
export function http(
  id: string,
  config: HttpConfig | string,
  options: StepOptions = {},
): ConfiguredStep {
  const { expectStatus, timeoutSeconds, ...rest } =
    typeof config === "string" ? ({ url: config } as HttpConfig) : config;
  return step(
    id,
    "http",
    { ...rest, expect_status: expectStatus, timeout_seconds: timeoutSeconds },
    options,
  );
}

/** Does nothing; a join point or a placeholder. */
export function noop(id: string, options: StepOptions = {}): ConfiguredStep {
  return step(id, "noop", {}, options);
}

/** Waits inside core without a process, e.g. `sleep("cool-down", 30)` or `sleep("cool-down", "5m")`. */
export function sleep(
  id: string,
  duration: DurationInput,
  options: StepOptions = {},
): ConfiguredStep {
  if (typeof duration === "number") return step(id, "sleep", { seconds: duration }, options);
  const d = compileDuration(duration, `step ${id}: duration`);
  return step(id, "sleep", { seconds: d.seconds + d.nanos / 1e9 }, options);
}

/** A container step whose body is a sub-graph built by a callback. */
abstract class ContainerStep extends Step {
  protected readonly bodyGraph: Graph;
  constructor(id: string, type: string, options: StepOptions, build: () => unknown) {
    super(id, type, options);
    this.bodyGraph = new Graph(`${type}(${JSON.stringify(id)})`);
    withGraph(this.bodyGraph, build);
  }
  protected bodySteps(): StepMessage[] {
    return this.bodyGraph.steps.map((s) => s.toMessage());
  }
}

/** The iteration context a foreach body sees, as expressions. */
export interface ForeachScope {
  /** `foreach.value`: the current value (of the only axis). */
  readonly value: Expr;
  /** `foreach.index`: 0-based iteration number. */
  readonly index: Expr;
  /** `foreach.values.<axis>`: the current value of a named axis. */
  values(axis: string): Expr;
}

/** A list to iterate: literal values, an expression, or an upstream output. */
export type AxisInput = readonly JsonValue[] | Expr;

/** Options of a foreach: what to iterate and how many iterations at once. */
export interface ForeachOptions extends StepOptions {
  /** One list (axis named by core's default), or named axes iterated as a cross product. */
  over: AxisInput | Record<string, AxisInput>;
  /** Most iterations at once; unset means no limit beyond resources. */
  concurrency?: number;
}

/** Runs a body sub-graph once per value. */
export class ForeachStep extends ContainerStep {
  constructor(
    id: string,
    private readonly foreachOptions: ForeachOptions,
    build: (it: ForeachScope) => unknown,
  ) {
    super(id, "foreach", foreachOptions, () => build(FOREACH_SCOPE));
  }
  protected override body(): Partial<StepMessage> {
    const { over, concurrency } = this.foreachOptions;
    const axes: ForeachAxis[] =
      Array.isArray(over) || over instanceof Expr
        ? [compileAxis("", over as AxisInput)]
        : Object.entries(over as Record<string, AxisInput>).map(([name, a]) =>
            compileAxis(name, a),
          );
    const foreach: Foreach = { axes, concurrency: concurrency ?? 0, body: this.bodySteps() };
    return { foreach };
  }
}

const FOREACH_SCOPE: ForeachScope = {
  value: expr("foreach.value"),
  index: expr("foreach.index"),
  values: (axis) => expr(`foreach.values.${axis}`),
};

function compileAxis(name: string, input: AxisInput): ForeachAxis {
  return input instanceof Expr
    ? { name, expr: input.source }
    : { name, expr: "", values: [...input] };
}

/**
 * Runs `build`'s steps once per value of `over`:
 * `foreach("regional", { over: prepare.output("regions"), concurrency: 4 }, (it) => { … })`.
 */
export function foreach(
  id: string,
  options: ForeachOptions,
  build: (it: ForeachScope) => unknown,
): ForeachStep {
  return new ForeachStep(id, options, (it) => build(it));
}

/** The iteration context a loop body sees, as expressions. */
export interface LoopScope {
  /** `loop.iteration`: 0-based iteration number. */
  readonly iteration: Expr;
}

/** Options of a loop: when it ends. */
export interface LoopOptions extends StepOptions {
  /** Checked after each iteration; the loop ends when it holds. */
  until?: string | Expr;
  /** Checked before each iteration after the first; the loop ends when false. */
  while?: string | Expr;
  /** Hard cap on iterations; reaching it ends the loop successfully. */
  maxIterations: number;
}

/** Repeats a body sub-graph until/while a condition holds. */
export class LoopStep extends ContainerStep {
  constructor(
    id: string,
    private readonly loopOptions: LoopOptions,
    build: (l: LoopScope) => unknown,
  ) {
    super(id, "loop", loopOptions, () => build(LOOP_SCOPE));
  }
  protected override body(): Partial<StepMessage> {
    const o = this.loopOptions;
    return {
      loop: {
        body: this.bodySteps(),
        until: o.until === undefined ? "" : String(o.until),
        while: o.while === undefined ? "" : String(o.while),
        maxIterations: o.maxIterations,
      },
    };
  }
}

const LOOP_SCOPE: LoopScope = { iteration: expr("loop.iteration") };

/**
 * Repeats `build`'s steps: `loop("tune", { until: "steps.check.outputs.stable", maxIterations: 5 },
 * () => seq(train, check))`.
 */
export function loop(id: string, options: LoopOptions, build: (l: LoopScope) => unknown): LoopStep {
  return new LoopStep(id, options, (l) => build(l));
}

/** Options of a subworkflow step. */
export interface SubworkflowOptions extends Omit<StepOptions, "params"> {
  /** Version to start; unset means the active version when the step starts. */
  version?: number;
  /** Params of the child run; expressions evaluate in the parent's scope. */
  params?: ParamsInput;
}

/** Starts another workflow and waits for it. */
export class SubworkflowStep extends Step {
  constructor(
    id: string,
    private readonly workflowId: string,
    private readonly subOptions: SubworkflowOptions,
  ) {
    const { params: _childParams, ...stepOptions } = subOptions;
    super(id, "subworkflow", stepOptions);
  }
  protected override body(): Partial<StepMessage> {
    return {
      subworkflow: {
        workflowId: this.workflowId,
        version: this.subOptions.version ?? 0,
        params: compileParams(this.subOptions.params),
      },
    };
  }
}

/** Starts workflow `workflowId` and waits for it: `subworkflow("child", "etl", { params: {…} })`. */
export function subworkflow(
  id: string,
  workflowId: string,
  options: SubworkflowOptions = {},
): SubworkflowStep {
  return new SubworkflowStep(id, workflowId, options);
}

export type { Node };
