// The StepType plugin interface (ARCHITECTURE §8). A step type validates its config at
// deploy time (violations with field paths) and, at run time, either plans a process for a
// compute backend ("process" types: command, python, spark, container) or runs inside core
// without a process ("inline" types: noop, sleep, http, sql). The engine knows nothing about
// any particular type; it looks them up in the registry (./registry.ts).
import type { FieldViolation } from "@kaon/proto";
import type { ResourceAmounts, TaskCommand, TaskStatus } from "../backends/backend.js";

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** What a step type may report while it runs (mirrors the in-job Report items). */
export interface StepReporter {
  output(name: string, value: JsonValue): void;
  progress(percent: number, message?: string): void;
  milestone(name: string): void;
  link(name: string, url: string): void;
  message(text: string, level?: "debug" | "info" | "warning" | "error"): void;
}

/** Everything a step type may know about the attempt it is planning or running. */
export interface StepContext {
  runId: string;
  workflowId: string;
  /** Step instance path, e.g. `regional[2]/train`. */
  path: string;
  stepId: string;
  attempt: number;
  /** The step's `config`, already validated. */
  config: JsonObject;
  /** Resolved params (workflow params overlaid by step params). */
  params: Record<string, JsonValue>;
  /** The KAON_* environment every job gets, plus the step's `env`. */
  env: Record<string, string>;
  /**
   * A private working directory for this attempt. For process types the backend creates it at
   * launch (it is the default cwd); inline types that write files create it themselves
   * (`mkdirSync(workDir, { recursive: true })`) — most inline steps (noop) never touch disk.
   */
  workDir: string;
  resources: ResourceAmounts;
  /** Server configuration a type may need (spark versions, sql connections, http allow-list). */
  settings: StepTypeSettings;
}

export interface StepTypeSettings {
  /** Spark version -> SPARK_HOME (or a directory containing bin/spark-submit). */
  sparkVersions: Record<string, string>;
  /** Named SQL connections: name -> knex connection string (sqlite file path or postgres URL). */
  sqlConnections: Record<string, string>;
  /** Hosts an http step may call. Empty means loopback only. */
  httpAllowedHosts: string[];
  /** Python interpreter for python steps without one of their own. */
  pythonInterpreter: string;
}

/** A process for a backend to run. */
export interface ProcessPlan {
  command: TaskCommand;
  /** Added to ctx.env. */
  env?: Record<string, string>;
  /** Defaults to ctx.workDir. */
  cwd?: string;
  /** Files to write (relative to workDir) before launch, e.g. a pickled function. */
  files?: Array<{ path: string; content: string | Uint8Array }>;
}

/** How an ended process turns into a step result. */
export interface EndResult {
  succeeded: boolean;
  message?: string;
  outputs?: Record<string, JsonValue>;
}

export interface ProcessStepType {
  readonly kind: "process";
  readonly name: string;
  readonly description: string;
  /** Checks `config`; `path` is the field path of the config (e.g. `steps[2].config`). */
  validate(config: JsonObject, path: string, settings: StepTypeSettings): FieldViolation[];
  plan(ctx: StepContext): ProcessPlan | Promise<ProcessPlan>;
  /** Optional: watch a running attempt (e.g. Spark REST progress); stop when signal aborts. */
  monitor?(ctx: StepContext, report: StepReporter, signal: AbortSignal): Promise<void>;
  /** Optional: interpret the end; default is exit code 0 = success. */
  interpretEnd?(ctx: StepContext, status: TaskStatus): EndResult | Promise<EndResult>;
}

export interface InlineStepType {
  readonly kind: "inline";
  readonly name: string;
  readonly description: string;
  validate(config: JsonObject, path: string, settings: StepTypeSettings): FieldViolation[];
  /** Runs inside core. Must honour `signal` (stop, timeout). Throw to fail the attempt. */
  run(ctx: StepContext, report: StepReporter, signal: AbortSignal): Promise<EndResult>;
}

export type StepType = ProcessStepType | InlineStepType;
