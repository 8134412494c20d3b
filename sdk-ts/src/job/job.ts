// The in-job API: what a running step calls to read its params and to report outputs,
// progress, milestones, links, counters, images, messages and data artifacts. A job finds core
// through the environment the engine gives every attempt (KAON_ENDPOINT, and KAON_TOKEN, the
// attempt's step-scoped token). Reports are batched by ./reporter.ts and flushed at exit.
import {
  type Artifact,
  type JobServiceDefinition,
  MessageLevel,
  type ReportItem,
} from "@kaon/proto";
import type { Client } from "nice-grpc";
import { createRawClients, type RawClients, readCertificate } from "../client/raw.js";
import type { JsonObject, JsonValue } from "../dsl/values.js";
import { EncodeError, KaonError, NotInJobError } from "../errors.js";
import { Reporter, type ReporterOptions } from "./reporter.js";

/** Who this job is and what it was given. */
export interface JobContext {
  runId: string;
  workflowId: string;
  /** Step instance path, e.g. `regional[2]/train`. */
  path: string;
  stepId: string;
  attempt: number;
  /** Resolved params: workflow params overlaid by step params. */
  params: Record<string, JsonValue>;
  /** The run's logical time (RUN_TS). */
  runTs: Date;
}

/** Message severities. */
export type MessageLevelName = "debug" | "info" | "warning" | "error";

const LEVELS: Record<MessageLevelName, MessageLevel> = {
  debug: MessageLevel.MESSAGE_LEVEL_DEBUG,
  info: MessageLevel.MESSAGE_LEVEL_INFO,
  warning: MessageLevel.MESSAGE_LEVEL_WARNING,
  error: MessageLevel.MESSAGE_LEVEL_ERROR,
};

/** Where a job's core is, from the environment. */
export interface JobEnvironment {
  endpoint: string;
  token: string;
}

/** Reads KAON_ENDPOINT and KAON_TOKEN; throws a clear NotInJobError outside a job. */
export function jobEnvironment(
  env: Record<string, string | undefined> = process.env,
): JobEnvironment {
  const endpoint = env.KAON_ENDPOINT?.trim();
  const token = env.KAON_TOKEN?.trim();
  if (!endpoint || !token) {
    const missing = [!endpoint && "KAON_ENDPOINT", !token && "KAON_TOKEN"]
      .filter(Boolean)
      .join(" and ");
    throw new NotInJobError(
      `not inside a kaon job: ${missing} ${missing.includes(" and ") ? "are" : "is"} not set. ` +
        "The in-job API works only in a process started by kaon as a step; " +
        "to talk to a server from outside, use connect() instead",
      { code: "FAILED_PRECONDITION" },
    );
  }
  return { endpoint, token };
}

/** Options of a Job handle. */
export interface JobOptions extends ReporterOptions {
  env?: Record<string, string | undefined>;
  /** Flush on `beforeExit`. Default true. */
  flushOnExit?: boolean;
}

/** A handle on the running job. Use the shared {@link job}, or create one for tests. */
export class Job {
  private readonly raw: RawClients;
  private readonly reporter: Reporter;
  private contextPromise: Promise<JobContext> | undefined;
  private readonly onBeforeExit: (() => void) | undefined;

  constructor(options: JobOptions = {}) {
    const env = options.env ?? process.env;
    const { endpoint, token } = jobEnvironment(env);
    const ca = env.KAON_TLS_CA?.trim();
    this.raw = createRawClients({
      address: endpoint,
      token,
      tlsCert: ca ? readCertificate(ca) : undefined,
      // The reporter retries by itself, keeping each batch's sequence number.
      maxAttempts: 1,
      deadlineMs: 10_000,
      // Reconnect quickly once core is back; the default backoff grows to two minutes.
      channelOptions: {
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 2_000,
      },
    });
    this.reporter = new Reporter(this.raw.jobs, options);
    if (options.flushOnExit ?? true) {
      this.onBeforeExit = () => {
        if (this.reporter.idle) return;
        this.reporter.flush().catch((err: unknown) => {
          process.stderr.write(`kaon: reports not delivered: ${(err as Error).message}\n`);
          process.exitCode ||= 1;
        });
      };
      process.on("beforeExit", this.onBeforeExit);
    }
  }

  /** The raw JobService client. */
  get client(): Client<typeof JobServiceDefinition> {
    return this.raw.jobs;
  }

  /** This job's identity and resolved params (fetched once). */
  context(): Promise<JobContext> {
    this.contextPromise ??= this.raw.jobs.getContext({}).then((c) => ({
      runId: c.runId,
      workflowId: c.workflowId,
      path: c.path,
      stepId: c.stepId,
      attempt: c.attempt,
      params: { ...c.params },
      runTs: new Date(c.runTs),
    }));
    return this.contextPromise;
  }

  /** The resolved params. */
  async params(): Promise<Record<string, JsonValue>> {
    return (await this.context()).params;
  }

  /** Sets output `name`. Throws at once when the value cannot be encoded as JSON. */
  output(name: string, value: unknown): void {
    const problem = jsonProblem(value, "");
    if (problem !== undefined) {
      throw new EncodeError(`output ${JSON.stringify(name)} cannot be encoded as JSON: ${problem}`);
    }
    this.add({ kind: { $case: "output", value: { name, value: value as JsonValue } } });
  }

  /** Reports percent complete (0-100) and what is going on. */
  progress(percent: number, message = ""): void {
    this.add({ kind: { $case: "progress", value: { percent, message } } });
  }

  /** Marks a named point in time. */
  milestone(name: string): void {
    this.add({ kind: { $case: "milestone", value: name } });
  }

  /** Shows a named link (e.g. a dashboard) on the step. */
  link(name: string, url: string): void {
    this.add({ kind: { $case: "link", value: { name, url } } });
  }

  /** Adds `delta` to counter `name`. */
  counter(name: string, delta = 1): void {
    this.add({ kind: { $case: "counter", value: { name, delta } } });
  }

  /** Shows a small image (PNG by default, or SVG) on the step; a later one of the same name replaces it. */
  image(
    name: string,
    data: Uint8Array,
    mimeType: "image/png" | "image/svg+xml" = "image/png",
  ): void {
    this.add({ kind: { $case: "image", value: { name, mimeType, data } } });
  }

  /** A line of text for the UI. */
  message(text: string, level: MessageLevelName = "info"): void {
    const lvl = LEVELS[level];
    if (lvl === undefined) {
      throw new KaonError(
        `message level ${JSON.stringify(level)} is not one of debug, info, warning, error`,
      );
    }
    this.add({ kind: { $case: "message", value: { level: lvl, text, time: new Date() } } });
  }

  /** Proof of life between other reports. */
  heartbeat(): void {
    this.add({ kind: { $case: "heartbeat", value: true } });
  }

  /**
   * Announces a data artifact this job produced. Earlier reports are flushed first, so the
   * server sees them before the artifact.
   */
  async artifact(
    name: string,
    partitions: Record<string, string>,
    uri: string,
    metadata: JsonObject = {},
  ): Promise<Artifact> {
    const problem = jsonProblem(metadata, "");
    if (problem !== undefined) {
      throw new EncodeError(
        `artifact ${JSON.stringify(name)}: metadata cannot be encoded as JSON: ${problem}`,
      );
    }
    await this.flush();
    const { artifact } = await this.raw.jobs.announceArtifact({
      artifact: {
        name,
        partitions: { ...partitions },
        uri,
        metadata,
        namespace: "",
        producerRunId: "",
        producerPath: "",
        revision: 0,
      },
    });
    if (!artifact) throw new KaonError("AnnounceArtifact answered without an artifact");
    return artifact;
  }

  /** Sends every queued report and waits for the server to acknowledge them. */
  flush(): Promise<void> {
    return this.reporter.flush();
  }

  /** Flushes and closes the connection. */
  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      if (this.onBeforeExit) process.off("beforeExit", this.onBeforeExit);
      this.raw.close();
    }
  }

  private add(item: ReportItem): void {
    this.reporter.add(item);
  }
}

/** Why `value` is not plain JSON (with the path inside it), or undefined when it is. */
export function jsonProblem(
  value: unknown,
  path: string,
  seen = new Set<object>(),
): string | undefined {
  const at = path === "" ? "the value" : path;
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${at} is ${value}, which JSON cannot represent`;
    case "undefined":
      return `${at} is undefined; use null for "no value"`;
    case "bigint":
      return `${at} is a bigint (${value}n); convert it to a number or a string`;
    case "function":
    case "symbol":
      return `${at} is a ${typeof value}`;
  }
  if (value === null) return undefined;
  const obj = value as object;
  if (seen.has(obj)) return `${at} refers back to itself (a cycle)`;
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      for (let i = 0; i < obj.length; i++) {
        const p = jsonProblem(obj[i], `${path}[${i}]`, seen);
        if (p) return p;
      }
      return undefined;
    }
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null) {
      const kind = (obj as { constructor?: { name?: string } }).constructor?.name ?? "object";
      const hint = obj instanceof Date ? "; use date.toISOString() or date.getTime()" : "";
      return `${at} is a ${kind}, not a plain object${hint}`;
    }
    for (const [key, item] of Object.entries(obj)) {
      const p = jsonProblem(item, path === "" ? key : `${path}.${key}`, seen);
      if (p) return p;
    }
    return undefined;
  } finally {
    seen.delete(obj);
  }
}

let shared: Job | undefined;

function sharedJob(): Job {
  shared ??= new Job();
  return shared;
}

/**
 * The in-job API of the current process (created on first use from KAON_ENDPOINT/KAON_TOKEN).
 *
 * ```ts
 * import { job } from "@kaon/sdk";
 * const { region } = await job.params();
 * job.progress(50, "training");
 * job.output("auc", 0.91);
 * await job.flush();
 * ```
 */
export const job = {
  context: () => sharedJob().context(),
  params: () => sharedJob().params(),
  output: (name: string, value: unknown) => sharedJob().output(name, value),
  progress: (percent: number, message?: string) => sharedJob().progress(percent, message),
  milestone: (name: string) => sharedJob().milestone(name),
  link: (name: string, url: string) => sharedJob().link(name, url),
  counter: (name: string, delta?: number) => sharedJob().counter(name, delta),
  image: (name: string, data: Uint8Array, mimeType?: "image/png" | "image/svg+xml") =>
    sharedJob().image(name, data, mimeType),
  message: (text: string, level?: MessageLevelName) => sharedJob().message(text, level),
  heartbeat: () => sharedJob().heartbeat(),
  artifact: (
    name: string,
    partitions: Record<string, string>,
    uri: string,
    metadata?: JsonObject,
  ) => sharedJob().artifact(name, partitions, uri, metadata),
  flush: () => sharedJob().flush(),
};
