// The run engine: the state machine of runs, step instances and attempts (ARCHITECTURE §4-5).
// Transitions are synchronous functions over the in-memory state of live runs; each records
// its row changes and its event in the Journal, which group-commits once per tick. Anything
// that must follow durability (launching a task, answering a job, acknowledging a backend
// status) is deferred with journal.afterCommit. The engine is event-driven: a finished step
// resolves its outgoing edges at once, ready work is placed on held offers in the same tick,
// and timers exist only for real time (backoff, timeouts).
import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AttemptStatus,
  FailureMode,
  type Initiator,
  InitiatorKind,
  type Param,
  type ReportItem,
  RetryOn,
  RunStatus,
  RunStrategyMode,
  SkipPolicy,
  StepStatus,
  type WorkflowDefinition,
} from "@kaon/proto";
import type {
  ComputeBackend,
  Offer,
  ResourceAmounts,
  TaskSpec,
  TaskStatus,
} from "../backends/backend.js";
import { launchTooLarge } from "../backends/backend.js";
import type { Logger } from "../log.js";
import { silentLogger } from "../log.js";
import type { ExprScope } from "../model/expr/index.js";
import { BEHIND_MISSES, matchTasks, type OfferSlot } from "../scheduler/matcher.js";
import { addUsage, type NamespaceUsage, QuotaGate, type QuotaLimits } from "../scheduler/quota.js";
import { QuotaStore } from "../scheduler/quota-store.js";
import type {
  EndResult,
  InlineStepType,
  JsonValue,
  ProcessPlan,
  ProcessStepType,
  StepContext,
  StepReporter,
  StepType,
  StepTypeSettings,
} from "../steps/step-type.js";
import type { Db } from "../store/db.js";
import { type BatchWriter, createBatchWriter } from "../store/runs/batch-writer.js";
import { EventKind, emptyBatch, RUN_COLUMNS, type RunRow } from "../store/runs/rows.js";
import {
  type AttemptRecordRow,
  partitionKey,
  RunQueries,
  type RunRecordRow,
  type StepRecordRow,
} from "../store/runs/run-queries.js";
import { ATTEMPT_OUTPUT, ATTEMPT_STDERR, ATTEMPT_STDOUT, attemptDir } from "./attempt-layout.js";
import { coerce, ExpressionError, evalCondition, evalExpr, render } from "./expressions.js";
import {
  compileSteps,
  compileWorkflow,
  downstreamOf,
  type Graph,
  type GraphNode,
  iterationKey,
  nodeKey,
} from "./graph.js";
import { newRunId } from "./ids.js";
import { Journal } from "./journal.js";
import {
  type Arrival,
  AttemptState,
  type ForeachState,
  isTerminalStep,
  type LoopState,
  MAX_KEPT_MESSAGES,
  RunState,
  Scope,
  type StepBook,
  type StepReportsState,
  StepState,
} from "./model.js";
import { attemptKey, Notifier, RUN_ENDED } from "./notifier.js";
import { MAX_OUTPUT_BYTES, OUTPUT_NAME, readOutputFile } from "./outputs.js";

// ---------------------------------------------------------------------------------------
// Seams

/** Where the engine gets workflow versions (the model's WorkflowRepo behind an adapter). */
export interface DefinitionSource {
  /** `selector`: a version number, 0 = the active version, -1 = the latest. */
  load(
    workflowId: string,
    selector: number,
  ): Promise<{ version: number; namespace: string; definition: WorkflowDefinition } | undefined>;
}

export interface StepTypeLookup {
  get(name: string): StepType | undefined;
}

export interface StepIdentity {
  runId: string;
  path: string;
  attempt: number;
}

export interface TokenIssuer {
  issue(identity: StepIdentity): string;
}

export interface EngineOptions {
  db: Db;
  definitions: DefinitionSource;
  stepTypes: StepTypeLookup;
  backend: ComputeBackend;
  tokens: TokenIssuer;
  /** Data directory: attempt logs and files go under `<dataDir>/runs/`. */
  dataDir: string;
  /** core's gRPC address for jobs (KAON_ENDPOINT); read when an attempt is planned. */
  endpoint: () => string;
  settings?: StepTypeSettings;
  log?: Logger;
  /** Live foreach iterations when the foreach has no concurrency limit. Default 1000. */
  materializeWindow?: number;
  /**
   * Called once when a journal write fails (the engine already refuses work with the cause).
   * Default: exit the process with code 75 so a supervisor restarts it and recovery rebuilds
   * from what was committed (docs/decisions/0007-journal-failure-exits.md).
   */
  onFatal?: (err: Error) => void;
  /**
   * How often attempts in flight longer than this are reconciled with the backend, so one
   * whose end was never reported (an agent that vanished silently) is not waited on for ever.
   * Default 5 minutes; 0 disables.
   */
  reconcileIntervalMs?: number;
}

/** Messages of attempts being killed; recovery reads the kill reason back from them. */
const KILL_MESSAGES = {
  stop: "stop requested",
  timeout: "timed out; being killed",
  heartbeat: "no heartbeat; being killed",
} as const;

function killReasonOf(message: string): "stop" | "timeout" | "heartbeat" | undefined {
  if (message === KILL_MESSAGES.stop) return "stop";
  if (message === KILL_MESSAGES.timeout) return "timeout";
  if (message === KILL_MESSAGES.heartbeat) return "heartbeat";
  return undefined;
}

/** Workflow versions whose parsed definitions are kept (least recently used evicted). */
export const DEFINITION_CACHE_SIZE = 500;

/** Times a task the backend lost before it started is launched again for free. */
const MAX_RELAUNCHES = 3;

/** Runs in a chain of subworkflows (the top-level run counts as one). */
const MAX_SUBWORKFLOW_DEPTH = 16;

/** Exit code of a server that stopped because its database write failed (EX_TEMPFAIL). */
export const EXIT_JOURNAL_FAILURE = 75;

function exitForRecovery(err: Error): void {
  // Logs may go to a file (the demo's embedded server): the cause goes to stderr as well.
  process.stderr.write(
    `kaon: ${err.message}\nkaon: exiting with code ${EXIT_JOURNAL_FAILURE}; start the server again to continue from what was committed\n`,
  );
  process.exitCode = EXIT_JOURNAL_FAILURE;
  // A moment for in-flight calls to receive their UNAVAILABLE answer.
  setTimeout(() => process.exit(EXIT_JOURNAL_FAILURE), 500);
}

export class EngineError extends Error {
  constructor(
    readonly code:
      | "NOT_FOUND"
      | "FAILED_PRECONDITION"
      | "INVALID_ARGUMENT"
      | "PERMISSION_DENIED"
      | "UNAVAILABLE",
    message: string,
    readonly violations: Array<{ field: string; description: string; hint: string }> = [],
  ) {
    super(message);
  }
}

export interface StartRunInput {
  workflowId: string;
  /** 0 = active, -1 = latest, N = exact. */
  version: number;
  params: Record<string, unknown>;
  tags?: Record<string, string>;
  requestId?: string;
  initiator?: Initiator;
  runTs?: number;
}

/** Variables of core's own environment that every job inherits (PATH comes from the agent). */
const INHERITED_ENV: Record<string, string> = Object.fromEntries(
  ["HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"].flatMap((name) => {
    const value = process.env[name];
    return value === undefined ? [] : [[name, value]];
  }),
);

const DEFAULT_SETTINGS: StepTypeSettings = {
  sparkVersions: {},
  sqlConnections: {},
  httpAllowedHosts: [],
  pythonInterpreter: "python3",
};

const ACTIVE_STEP = new Set<number>([
  StepStatus.STEP_STATUS_LAUNCHING,
  StepStatus.STEP_STATUS_RUNNING,
]);

/** A queued step instance as ClusterService.ListQueue shows it. */
export interface QueuedStep {
  runId: string;
  path: string;
  workflowId: string;
  namespace: string;
  resources: ResourceAmounts;
  reason: string;
  priority: number;
  /** Epoch ms: when the step became ready. */
  queuedAt: number;
}

interface PendingTask {
  step: StepState;
  attemptNumber: number;
  resources: ResourceAmounts;
  constraints: GraphNode["step"]["constraints"];
  /** The run's priority: a task that misses reserves agents against lower ones (matcher). */
  priority: number;
  /** Whether a matching pass (with offers) gave it its reason, which is then kept (Q8). */
  scanned: boolean;
  spec: Omit<TaskSpec, "agentId">;
  seq: number;
}

type Failure = {
  kind: "exit" | "timeout" | "lost" | "stopped" | "error";
  exitCode?: number;
  message: string;
};

function durationMs(d: { seconds: number; nanos: number } | undefined): number {
  if (!d) return 0;
  return d.seconds * 1000 + Math.floor(d.nanos / 1e6);
}

function stepStatusName(s: StepStatus): string {
  return (StepStatus[s] ?? "").replace("STEP_STATUS_", "");
}

/** Ends the message of a too-large launch: what makes launches large, and the way out. */
const LARGE_PARAMS_HINT =
  "each scalar param becomes a KAON_PARAM_<NAME> environment variable; pass large values in files or artifacts";

function isScalar(v: JsonValue): v is string | number | boolean {
  return typeof v === "string" || typeof v === "number" || typeof v === "boolean";
}

export class Engine {
  readonly notifier = new Notifier();
  readonly queries: RunQueries;
  /** Per-namespace quotas, enforced when tasks are matched to offers (see quotaGate). */
  readonly quotas: QuotaStore;
  private journal!: Journal;
  private writer!: BatchWriter;
  private readonly log: Logger;
  private readonly settings: StepTypeSettings;
  private readonly window: number;
  /** Live runs by id. */
  private readonly runs = new Map<string, RunState>();
  /** Live (QUEUED/RUNNING) runs by workflow, in creation order. */
  private readonly byWorkflow = new Map<string, RunState[]>();
  /** Attempts handed to the backend, by task id. */
  private readonly tasks = new Map<string, AttemptState>();
  /** Held offers by id. */
  private readonly offers = new Map<string, OfferSlot>();
  /** Tasks waiting for resources, by priority (higher first), FIFO within. */
  private readonly pending = new Map<number, PendingTask[]>();
  private pendingCount = 0;
  private pendingSeq = 0;
  /** Whether the backend was revived since the last matching pass (at most once per pass). */
  private revivedSincePass = false;
  /** Whether the backend was suppressed because nothing is pending (releaseOffers). */
  private idleSuppressed = false;
  /** Agents' total capacities by id (agentTotal). */
  private readonly agentTotals = new Map<string, ResourceAmounts>();
  /**
   * Steps holding a slot of their run's step-type concurrency limit (the `holdsTypeSlot`
   * flag): a slot is released once, by whichever end comes first, stop included.
   */
  private readonly typeSlotHolders = new WeakSet<StepState>();
  /** Steps waiting for an artifact, by `ns\0name\0partitionKey`. */
  private readonly artifactWaiters = new Map<string, Set<StepState>>();
  /** Parent subworkflow steps by child run id. */
  private readonly childWaiters = new Map<string, StepState>();
  /** In-flight StartRun calls by idempotency key. */
  private readonly starting = new Map<string, Promise<{ runId: string; created: boolean }>>();
  /** Workflows being deleted: no run of theirs may start meanwhile (see `whileNoRuns`). */
  private readonly deleting = new Set<string>();
  private readonly revisionLocks = new Map<string, Promise<unknown>>();
  /** Runs a Restart or RetryStep is bringing back (between its first read and its rebuild). */
  private readonly reopening = new Set<string>();
  private readonly definitionCache = new Map<string, WorkflowDefinition>();
  /** Loops starting an iteration now, with the next iteration a nested call asked for. */
  private readonly loopStarting = new Map<StepState, number | null>();
  /** Recovered RETRYING steps: when their last attempt ended (the backoff counts from it). */
  private readonly retryFrom = new WeakMap<StepState, number>();
  /** Launches redone without spending a retry (LOST before starting), per step instance. */
  private readonly relaunches = new WeakMap<StepState, number>();
  private started = false;
  private stopped = false;
  private reconcileTimer: NodeJS.Timeout | undefined;
  /** Hooks called after an artifact announcement commits (artifact triggers). */
  readonly artifactListeners: Array<
    (a: {
      namespace: string;
      name: string;
      partitions: Record<string, string>;
      uri: string;
      metadata: Record<string, unknown>;
      revision: number;
    }) => void
  > = [];

  constructor(private readonly opts: EngineOptions) {
    this.queries = new RunQueries(opts.db);
    this.quotas = new QuotaStore(opts.db);
    this.log = (opts.log ?? silentLogger).child({ component: "engine" });
    this.settings = opts.settings ?? DEFAULT_SETTINGS;
    this.window = opts.materializeWindow ?? 1000;
  }

  // -------------------------------------------------------------------------------------
  // Lifecycle

  /** Recovers unfinished runs from the database, then connects the backend. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.writer = await createBatchWriter(this.opts.db);
    this.journal = new Journal(this.writer, this.notifier);
    this.journal.beforeFlush = () => this.placeTasks();
    this.journal.onError = (err) => {
      this.log.error("an action after a commit failed", { error: err.message });
    };
    this.journal.describeFailure = (cause) =>
      new EngineError(
        "UNAVAILABLE",
        `the server could not write to its database (${cause.message}); it refuses work until it is restarted and recovers what was committed`,
      );
    this.journal.onFailure = (cause) => this.journalFailed(cause);
    await this.quotas.load();
    await this.recover();
    await this.opts.backend.start({
      onOffers: (offers) => this.onOffers(offers),
      onRescind: (id) => {
        this.offers.delete(id);
      },
      onStatus: (status) => this.onStatus(status),
    });
    // Ask the backend about every attempt that was in flight when core last stopped.
    const inFlight = [...this.tasks.values()].map((a) => ({
      taskId: a.taskId,
      agentId: a.agentId,
    }));
    if (inFlight.length > 0) this.opts.backend.reconcile(inFlight);
    // Kills recorded before a crash may never have been sent: send them (again).
    for (const a of this.tasks.values()) if (a.killReason) this.opts.backend.kill(a.taskId);
    const every = this.opts.reconcileIntervalMs ?? 300_000;
    if (every > 0) {
      this.reconcileTimer = setInterval(() => this.reconcileStale(every), every);
      this.reconcileTimer.unref?.();
    }
  }

  /**
   * A journal write failed: memory is ahead of the database. Work is refused (assertRunning,
   * committed() waiters are rejected by the journal), timers stop, and `onFatal` (by default:
   * exit, so the server restarts and recovers) rebuilds from what was committed.
   */
  private journalFailed(cause: Error): void {
    this.log.error("journal write failed: the engine refuses work until restarted", {
      error: cause.message,
    });
    this.clearTimers();
    // After shutdown (a late call's write against a closed database) the process is ending
    // anyway and the next start recovers: no need to exit with an error.
    if (this.stopped) return;
    (this.opts.onFatal ?? exitForRecovery)(this.journal.failed ?? cause);
  }

  /**
   * Runs a promise nobody awaits. Its rejection (a query failing while the database is down, a
   * transition throwing in a callback) is logged: left unhandled it would end the process.
   */
  private background(promise: Promise<unknown>, what: string): void {
    promise.catch((err: unknown) => {
      this.log.error(`${what} failed`, {
        error: err instanceof Error ? err.message : String(err),
      });
    });
  }

  /**
   * Why an attempt is being killed, on its row (message) in the commit the kill follows: after a
   * crash the recovered attempt still knows that its KILLED end is a stop or a timeout, not a
   * failure to retry.
   */
  private recordKillReason(attempt: AttemptState, reason: "stop" | "timeout" | "heartbeat"): void {
    attempt.killReason = reason;
    attempt.message = KILL_MESSAGES[reason];
    this.journal.attempt(attempt);
  }

  /** The attempt just lost was not the step's fault: it does not count against max_attempts. */
  private attemptNotCounted(step: StepState): void {
    step.book = { ...step.book, f: (step.book.f ?? 0) + 1 };
    this.journal.step(step);
  }

  private clearTimers(): void {
    for (const run of this.runs.values()) {
      if (run.timeoutTimer) clearTimeout(run.timeoutTimer);
      for (const step of run.byPath.values()) {
        if (step.timer) clearTimeout(step.timer);
        if (step.attempt?.timeoutTimer) clearTimeout(step.attempt.timeoutTimer);
        if (step.attempt?.heartbeatTimer) clearTimeout(step.attempt.heartbeatTimer);
      }
    }
  }

  /**
   * Asks the backend about attempts in flight for longer than `age` (their launch was sent long
   * ago): a task it no longer knows comes back LOST, one that ended comes back with its end.
   */
  private reconcileStale(age: number): void {
    if (this.stopped || this.journal.failed) return;
    const before = this.now() - age;
    const stale = [...this.tasks.values()]
      .filter((a) => a.startedAt !== null && a.startedAt < before)
      .map((a) => ({ taskId: a.taskId, agentId: a.agentId }));
    if (stale.length > 0) this.opts.backend.reconcile(stale);
  }

  /** Flushes pending writes, cancels timers and disconnects the backend (tasks keep running). */
  async shutdown(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    await this.journal?.drain();
    for (const run of this.runs.values()) {
      if (run.timeoutTimer) clearTimeout(run.timeoutTimer);
      for (const step of run.byPath.values()) {
        if (step.timer) clearTimeout(step.timer);
        if (step.attempt?.timeoutTimer) clearTimeout(step.attempt.timeoutTimer);
        if (step.attempt?.heartbeatTimer) clearTimeout(step.attempt.heartbeatTimer);
        step.attempt?.abort?.abort();
      }
    }
    await this.opts.backend.stop();
  }

  /** Resolves once everything recorded so far is committed. */
  flushed(): Promise<void> {
    return this.journal.committed();
  }

  get journalFlushes(): number {
    return this.journal.flushes;
  }

  private now(): number {
    return Date.now();
  }

  // -------------------------------------------------------------------------------------
  // Events and small helpers

  private emitStep(step: StepState, message = ""): void {
    const run = step.scope.run;
    this.journal.event(run, [
      run.id,
      run.nextSeq++,
      this.now(),
      step.path,
      EventKind.stepStatus,
      step.status,
      message,
      null,
    ]);
  }

  private emitRun(run: RunState, message = ""): void {
    this.journal.event(run, [
      run.id,
      run.nextSeq++,
      this.now(),
      "",
      EventKind.runStatus,
      run.status,
      message,
      null,
    ]);
  }

  private emitAttempt(a: AttemptState): void {
    const run = a.step.scope.run;
    const row = a.toRow();
    const data = {
      run_id: row[0],
      path: row[1],
      number: row[2],
      status: row[3],
      task_id: row[4],
      agent_id: row[5],
      resources_json: row[6],
      exit_code: row[7],
      started_at: row[8],
      ended_at: row[9],
      message: row[10],
    };
    this.journal.event(run, [
      run.id,
      run.nextSeq++,
      this.now(),
      a.step.path,
      EventKind.attempt,
      a.status,
      a.message,
      JSON.stringify(data),
    ]);
  }

  private setStatus(step: StepState, status: StepStatus, reason: string, message = reason): void {
    step.status = status;
    step.reason = reason;
    this.journal.step(step);
    this.emitStep(step, message);
  }

  private setReason(step: StepState, reason: string): void {
    if (step.reason === reason) return;
    step.reason = reason;
    this.journal.step(step);
  }

  private touchRun(run: RunState): void {
    this.journal.run(run);
  }

  // -------------------------------------------------------------------------------------
  // Definitions and params

  private async loadDefinition(workflowId: string, selector: number) {
    const found = await this.opts.definitions.load(workflowId, selector);
    if (!found) return undefined;
    const key = `${workflowId}@${found.version}`;
    const cached = this.definitionCache.get(key);
    if (cached) {
      // Most recently used last: the first key is the one to evict.
      this.definitionCache.delete(key);
      this.definitionCache.set(key, cached);
      return { ...found, definition: cached };
    }
    this.definitionCache.set(key, found.definition);
    if (this.definitionCache.size > DEFINITION_CACHE_SIZE) {
      const oldest = this.definitionCache.keys().next().value;
      if (oldest !== undefined) this.definitionCache.delete(oldest);
    }
    return found;
  }

  private resolveRunParams(
    def: WorkflowDefinition,
    supplied: Record<string, unknown>,
    meta: { id: string; version: number; runTs: number },
    base: Record<string, JsonValue> = {},
  ): Record<string, JsonValue> {
    const violations: Array<{ field: string; description: string; hint: string }> = [];
    const declared = new Map(def.params.map((p) => [p.name, p]));
    for (const name of Object.keys(supplied)) {
      if (!declared.has(name)) {
        const known = def.params.map((p) => p.name);
        violations.push({
          field: `params.${name}`,
          description: `unknown param '${name}'`,
          hint:
            known.length > 0
              ? `declared params: ${known.join(", ")}`
              : "the workflow declares no params",
        });
      }
    }
    const resolved: Record<string, JsonValue> = {};
    for (const p of def.params) {
      try {
        if (Object.hasOwn(supplied, p.name)) {
          resolved[p.name] = coerce(supplied[p.name], p.type, p.name);
        } else if (Object.hasOwn(base, p.name) && !p.expr) {
          resolved[p.name] = base[p.name] as JsonValue;
        } else if (p.expr) {
          const scope: ExprScope = {
            params: resolved,
            RUN_TS: meta.runTs,
            run: { id: meta.id, workflow_id: def.id, version: meta.version },
          };
          resolved[p.name] = coerce(evalExpr(p.expr, scope, `param '${p.name}'`), p.type, p.name);
        } else if (p.value !== undefined) {
          resolved[p.name] = coerce(p.value, p.type, p.name);
        } else if (p.required) {
          violations.push({
            field: `params.${p.name}`,
            description: `missing required param '${p.name}'`,
            hint: `pass it, e.g. -p ${p.name}=...`,
          });
        }
      } catch (err) {
        violations.push({
          field: `params.${p.name}`,
          description: (err as Error).message,
          hint: "",
        });
      }
    }
    if (violations.length > 0) {
      throw new EngineError(
        "INVALID_ARGUMENT",
        `invalid params for workflow '${def.id}'`,
        violations,
      );
    }
    return resolved;
  }

  /** The expression scope of a step instance. */
  private scopeFor(
    step: StepState | undefined,
    scope: Scope,
    params?: Record<string, JsonValue>,
  ): ExprScope {
    const run = scope.run;
    const steps: Record<string, { outputs?: Record<string, JsonValue>; status?: string }> = {};
    const chain: Scope[] = [];
    for (let s: Scope | undefined = scope; s; s = s.parent) chain.unshift(s);
    let foreach: ExprScope["foreach"];
    let loop: ExprScope["loop"];
    for (const s of chain) {
      for (const st of s.steps) {
        if (!st) continue;
        steps[st.node.id] = { outputs: st.outputs ?? {}, status: stepStatusName(st.status) };
      }
      if (s.owner?.node.kind === "foreach") {
        foreach = {
          value: s.foreachValue ?? null,
          index: s.iteration,
          values: s.foreachValues ?? {},
        };
      } else if (s.owner?.node.kind === "loop") {
        loop = { iteration: s.iteration };
      }
    }
    const out: ExprScope = {
      params: params ?? step?.params ?? run.params,
      steps,
      RUN_TS: run.runTs,
      run: {
        id: run.id,
        workflow_id: run.workflowId,
        version: run.version,
        namespace: run.namespace,
      },
    };
    if (foreach) out.foreach = foreach;
    if (loop) out.loop = loop;
    return out;
  }

  /** Inherited params: run params overlaid by enclosing containers' params. */
  private inheritedParams(scope: Scope): Record<string, JsonValue> {
    return scope.owner?.params ?? scope.run.params;
  }

  private resolveStepParams(step: StepState): void {
    const inherited = this.inheritedParams(step.scope);
    const own = step.node.step.params;
    if (own.length === 0) {
      step.params = inherited;
      step.paramsJson =
        inherited === step.scope.run.params ? step.scope.run.paramsJson : JSON.stringify(inherited);
      return;
    }
    const resolved: Record<string, JsonValue> = { ...inherited };
    for (const p of own) resolved[p.name] = this.evalParam(p, step, resolved);
    step.params = resolved;
    step.paramsJson = JSON.stringify(resolved);
  }

  private evalParam(p: Param, step: StepState, soFar: Record<string, JsonValue>): JsonValue {
    if (p.expr) {
      const v = evalExpr(
        p.expr,
        this.scopeFor(step, step.scope, soFar),
        `param '${p.name}' of step '${step.path}'`,
      );
      return coerce(v, p.type, p.name);
    }
    if (p.value !== undefined) return coerce(p.value, p.type, p.name);
    if (p.required)
      throw new ExpressionError(`param '${p.name}' of step '${step.path}' has no value`);
    return null;
  }

  // -------------------------------------------------------------------------------------
  // Starting runs

  async startRun(input: StartRunInput): Promise<{ runId: string; created: boolean }> {
    this.assertRunning();
    if (input.requestId) {
      const key = `${input.workflowId}\u0000${input.requestId}`;
      const inFlight = this.starting.get(key);
      if (inFlight) return { ...(await inFlight), created: false };
      const existing = await this.queries.runByRequestId(input.workflowId, input.requestId);
      if (existing) return { runId: existing.id, created: false };
      const p = this.startRunNow(input);
      this.starting.set(key, p);
      try {
        return await p;
      } finally {
        this.starting.delete(key);
      }
    }
    return this.startRunNow(input);
  }

  private assertRunning(): void {
    const failed = this.journal?.failed;
    if (failed) throw failed;
    if (!this.started || this.stopped) throw new Error("the engine is not running");
  }

  /**
   * Runs `action` (deleting the workflow) only if the workflow has no unfinished run, with new
   * runs of it refused until `action` ends — so no run can start between the check and the
   * delete. Unfinished: live in this engine (even if its row is not committed yet) or, per
   * `unfinishedInDb`, in the database.
   */
  async whileNoRuns<T>(
    workflowId: string,
    unfinishedInDb: () => Promise<boolean>,
    action: () => Promise<T>,
  ): Promise<T> {
    if (this.deleting.has(workflowId)) {
      throw new EngineError("FAILED_PRECONDITION", `workflow '${workflowId}' is being deleted`);
    }
    this.deleting.add(workflowId);
    try {
      // Starts that loaded the definition before the block are registered by now: the check
      // and the registration in startRunNow run without an await between them.
      if ((this.byWorkflow.get(workflowId)?.length ?? 0) > 0 || (await unfinishedInDb())) {
        throw new EngineError(
          "FAILED_PRECONDITION",
          `workflow '${workflowId}' has unfinished runs; stop them first, then delete the workflow`,
        );
      }
      return await action();
    } finally {
      this.deleting.delete(workflowId);
    }
  }

  private async startRunNow(input: StartRunInput): Promise<{ runId: string; created: boolean }> {
    const found = await this.loadDefinition(input.workflowId, input.version);
    if (this.deleting.has(input.workflowId)) {
      throw new EngineError(
        "FAILED_PRECONDITION",
        `workflow '${input.workflowId}' is being deleted; no run of it can start`,
      );
    }
    if (!found) {
      const which =
        input.version === 0 ? "" : input.version === -1 ? " (latest)" : ` version ${input.version}`;
      throw new EngineError("NOT_FOUND", `workflow '${input.workflowId}'${which} does not exist`);
    }
    const def = found.definition;
    const graph = compileWorkflow(def);
    const now = this.now();
    const id = newRunId(now);
    const runTs = input.runTs && input.runTs > 0 ? input.runTs : now;
    const params = this.resolveRunParams(def, input.params, { id, version: found.version, runTs });
    const strategy = def.runStrategy?.mode ?? RunStrategyMode.RUN_STRATEGY_MODE_PARALLEL;
    const live = this.byWorkflow.get(def.id) ?? [];
    if (strategy === RunStrategyMode.RUN_STRATEGY_MODE_SKIP_IF_RUNNING && live.length > 0) {
      return { runId: (live[0] as RunState).id, created: false };
    }
    const initiator: Initiator = input.initiator ?? {
      kind: InitiatorKind.INITIATOR_KIND_MANUAL,
      detail: "",
      parentRunId: "",
      client: undefined,
    };
    const run = new RunState(
      id,
      def.id,
      found.version,
      found.namespace || "default",
      def,
      graph,
      RunStatus.RUN_STATUS_QUEUED,
      params,
      JSON.stringify(params),
      JSON.stringify(initiator),
      JSON.stringify(input.tags ?? {}),
      now,
      runTs,
      0,
      input.requestId || null,
      initiator.parentRunId || null,
      def.priority,
    );
    run.root = new Scope(run, graph, "", "", undefined, undefined, -1, undefined, undefined);
    this.runs.set(id, run);
    live.push(run);
    this.byWorkflow.set(def.id, live);
    this.touchRun(run);
    this.emitRun(run, "accepted");
    if (strategy === RunStrategyMode.RUN_STRATEGY_MODE_CANCEL_PREVIOUS) {
      for (const other of live)
        if (other !== run)
          this.stopRunInternal(other, `cancelled by newer run ${id}`, RunStatus.RUN_STATUS_STOPPED);
    }
    this.maybeBegin(run);
    await this.journal.committed();
    return { runId: id, created: true };
  }

  private concurrencyLimit(def: WorkflowDefinition): number {
    const mode = def.runStrategy?.mode ?? RunStrategyMode.RUN_STRATEGY_MODE_PARALLEL;
    if (mode === RunStrategyMode.RUN_STRATEGY_MODE_SEQUENTIAL) return 1;
    if (
      mode === RunStrategyMode.RUN_STRATEGY_MODE_PARALLEL ||
      mode === RunStrategyMode.RUN_STRATEGY_MODE_UNSPECIFIED
    ) {
      return def.runStrategy?.maxConcurrentRuns || Number.POSITIVE_INFINITY;
    }
    return Number.POSITIVE_INFINITY;
  }

  /** Starts a QUEUED run when its run strategy lets it go. */
  private maybeBegin(run: RunState): void {
    if (run.status !== RunStatus.RUN_STATUS_QUEUED) return;
    const live = this.byWorkflow.get(run.workflowId) ?? [];
    const limit = this.concurrencyLimit(run.def);
    const running = live.filter((r) => r.status === RunStatus.RUN_STATUS_RUNNING).length;
    if (running >= limit) {
      const msg =
        limit === 1
          ? "waiting for the previous run of this workflow to finish (sequential)"
          : `waiting: at most ${limit} concurrent runs of this workflow (${running} running)`;
      if (run.message !== msg) {
        run.message = msg;
        this.touchRun(run);
      }
      return;
    }
    // Sequential order: only the oldest queued run may go.
    const firstQueued = live.find((r) => r.status === RunStatus.RUN_STATUS_QUEUED);
    if (firstQueued !== run && limit !== Number.POSITIVE_INFINITY) return;
    this.beginRun(run);
  }

  private beginRun(run: RunState): void {
    run.status = RunStatus.RUN_STATUS_RUNNING;
    run.startedAt = this.now();
    run.message = "";
    this.touchRun(run);
    this.emitRun(run);
    this.armRunTimeout(run);
    this.startScope(run.root);
  }

  private armRunTimeout(run: RunState): void {
    const ms = durationMs(run.def.timeout);
    if (ms <= 0 || run.startedAt === null) return;
    const left = Math.max(0, run.startedAt + ms - this.now());
    run.timeoutTimer = setTimeout(() => {
      run.timeoutTimer = undefined;
      this.stopRunInternal(
        run,
        `run timed out after ${ms / 1000}s`,
        RunStatus.RUN_STATUS_TIMED_OUT,
      );
    }, left);
    run.timeoutTimer.unref?.();
  }

  // -------------------------------------------------------------------------------------
  // Scopes: the top level, foreach iterations, loop iterations

  private createSteps(scope: Scope): void {
    const run = scope.run;
    for (const node of scope.graph.nodes) {
      const step = new StepState(
        scope,
        node,
        scope.prefix + node.id,
        scope.sortPrefix + nodeKey(node.index),
      );
      if (run.attemptFloor) {
        step.attemptCount = run.attemptFloor.get(step.path) ?? 0;
        // Attempts of the run before its restart do not use up this one's retries.
        if (step.attemptCount > 0) step.book = { f: step.attemptCount };
      }
      scope.steps[node.index] = step;
      run.byPath.set(step.path, step);
      this.journal.step(step);
    }
    scope.pending = scope.graph.nodes.length;
  }

  private startScope(scope: Scope): void {
    this.createSteps(scope);
    if (scope.pending === 0) {
      this.scopeDone(scope);
      return;
    }
    for (const i of scope.graph.roots) {
      const step = scope.steps[i] as StepState;
      this.makeReady(step);
    }
  }

  private scopeDone(scope: Scope): void {
    if (scope.done) return;
    scope.done = true;
    const owner = scope.owner;
    if (!owner) {
      this.finishRun(scope.run);
      return;
    }
    if (owner.node.kind === "foreach") this.foreachIterationDone(owner, scope);
    else if (owner.node.kind === "loop") this.loopIterationDone(owner, scope);
  }

  private dropScope(scope: Scope): void {
    const byPath = scope.run.byPath;
    for (const st of scope.steps) {
      if (!st) continue;
      byPath.delete(st.path);
      const c = st.container;
      if (c?.kind === "foreach") for (const s of c.live.values()) this.dropScope(s);
      if (c?.kind === "loop" && c.scope) this.dropScope(c.scope);
    }
  }

  // -------------------------------------------------------------------------------------
  // Joins and readiness

  private arrive(step: StepState, arrival: Arrival): void {
    if (
      step.status !== StepStatus.STEP_STATUS_NOT_STARTED &&
      step.status !== StepStatus.STEP_STATUS_ACTIVATED
    )
      return;
    step.resolved++;
    if (arrival === "taken") step.taken++;
    if (arrival === "blocked") step.blocked = true;
    this.evaluateJoin(step, true);
  }

  /** Decides a join from its counters; `live` emits ACTIVATED (not during replay). */
  private evaluateJoin(step: StepState, live: boolean): void {
    const inDegree = step.node.inDegree;
    const run = step.scope.run;
    if (
      step.status !== StepStatus.STEP_STATUS_NOT_STARTED &&
      step.status !== StepStatus.STEP_STATUS_ACTIVATED
    )
      return;
    if (inDegree === 0) {
      this.makeReady(step);
      return;
    }
    if (step.node.join === "all") {
      if (step.blocked) {
        this.skip(step, run.stopping ? "run stopped" : "upstream step failed", true);
      } else if (step.resolved >= inDegree) {
        if (step.taken > 0) this.makeReady(step);
        else this.skip(step, "no incoming branch was taken", false);
      } else if (step.taken > 0 && step.status === StepStatus.STEP_STATUS_NOT_STARTED && live) {
        this.setStatus(
          step,
          StepStatus.STEP_STATUS_ACTIVATED,
          `${step.taken} of ${inDegree} incoming branches arrived`,
        );
      }
    } else {
      if (step.taken > 0) this.makeReady(step);
      else if (step.resolved >= inDegree) {
        this.skip(
          step,
          step.blocked ? "upstream step failed" : "no incoming branch was taken",
          step.blocked,
        );
      }
    }
  }

  private skip(step: StepState, reason: string, blocked: boolean): void {
    if (step.scope.run.stopping && blocked) {
      this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, "run stopped");
      return;
    }
    step.blocked = blocked;
    this.finishStep(step, StepStatus.STEP_STATUS_SKIPPED, reason);
  }

  private makeReady(step: StepState): void {
    const run = step.scope.run;
    if (run.stopping || step.scope.stopped) {
      this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, "run stopped");
      return;
    }
    step.readyAt = this.now();
    try {
      this.resolveStepParams(step);
    } catch (err) {
      this.failStep(step, (err as Error).message);
      return;
    }
    const s = step.node.step;
    if (s.inputs.length > 0 || (s.outputs.length > 0 && this.shouldCheckSkip(step))) {
      this.checkData(step);
      return;
    }
    this.dispatch(step);
  }

  private shouldCheckSkip(step: StepState): boolean {
    const policy = step.node.step.skipIfOutputsExist;
    if (policy === SkipPolicy.SKIP_POLICY_NEVER) return false;
    if (policy === SkipPolicy.SKIP_POLICY_ALWAYS) return true;
    if (step.skipCheck) return true;
    const kind = (JSON.parse(step.scope.run.initiatorJson) as Initiator).kind;
    return (
      kind === InitiatorKind.INITIATOR_KIND_BACKFILL ||
      kind === InitiatorKind.INITIATOR_KIND_RESTART
    );
  }

  // -------------------------------------------------------------------------------------
  // Data artifacts: inputs (WAITING_FOR_DATA) and skip-if-outputs-exist

  private artifactRefs(step: StepState, refs: GraphNode["step"]["inputs"], what: string) {
    const scope = this.scopeFor(step, step.scope);
    return refs.map((ref, i) => {
      const partitions: Record<string, string> = {};
      for (const [k, v] of Object.entries(ref.partitions)) {
        partitions[k] = render(v, scope, `${what}[${i}].partitions.${k} of step '${step.path}'`);
      }
      const uri = ref.uri ? render(ref.uri, scope, `${what}[${i}].uri of step '${step.path}'`) : "";
      return { name: ref.name, partitions, uri };
    });
  }

  private artifactKey(ns: string, name: string, partitions: Record<string, string>): string {
    return `${ns}\u0000${name}\u0000${partitionKey(partitions)}`;
  }

  private checkData(step: StepState): void {
    const run = step.scope.run;
    let inputs: Array<{ name: string; partitions: Record<string, string> }>;
    let outputs: Array<{ name: string; partitions: Record<string, string> }> = [];
    try {
      inputs = this.artifactRefs(step, step.node.step.inputs, "inputs");
      if (this.shouldCheckSkip(step))
        outputs = this.artifactRefs(step, step.node.step.outputs, "outputs");
    } catch (err) {
      this.failStep(step, (err as Error).message);
      return;
    }
    const check = async () => {
      if (outputs.length > 0) {
        const found = await Promise.all(
          outputs.map((o) => this.queries.latestArtifact(run.namespace, o.name, o.partitions)),
        );
        if (found.every((f) => f !== undefined)) return "skip" as const;
      }
      const missing: typeof inputs = [];
      for (const i of inputs) {
        if (!(await this.queries.latestArtifact(run.namespace, i.name, i.partitions)))
          missing.push(i);
      }
      return missing;
    };
    const attempt = () => {
      const checked = check().then(
        (result) => {
          if (
            step.status !== StepStatus.STEP_STATUS_WAITING_FOR_DATA &&
            step.status !== StepStatus.STEP_STATUS_NOT_STARTED &&
            step.status !== StepStatus.STEP_STATUS_ACTIVATED
          )
            return;
          if (run.stopping) return;
          if (result === "skip") {
            this.unwaitData(step);
            this.finishStep(
              step,
              StepStatus.STEP_STATUS_SKIPPED,
              "its output artifacts already exist",
            );
            return;
          }
          if (result.length === 0) {
            this.unwaitData(step);
            this.dispatch(step);
            return;
          }
          const desc = result.map((m) => `${m.name}{${partitionKey(m.partitions)}}`).join(", ");
          const reason = `waiting for data: ${desc}`;
          if (step.status !== StepStatus.STEP_STATUS_WAITING_FOR_DATA) {
            this.setStatus(step, StepStatus.STEP_STATUS_WAITING_FOR_DATA, reason);
          } else this.setReason(step, reason);
        },
        (err: Error) => this.failStep(step, `cannot check artifacts: ${err.message}`),
      );
      this.background(checked, `checking the artifacts of step '${step.path}' in run ${run.id}`);
    };
    // Register before checking so an announcement racing the check still wakes the step.
    for (const i of inputs) {
      const key = this.artifactKey(run.namespace, i.name, i.partitions);
      let set = this.artifactWaiters.get(key);
      if (!set) {
        set = new Set();
        this.artifactWaiters.set(key, set);
      }
      set.add(step);
    }
    (step as StepState & { recheck?: () => void }).recheck = attempt;
    attempt();
  }

  private unwaitData(step: StepState): void {
    for (const [key, set] of this.artifactWaiters) {
      if (set.delete(step) && set.size === 0) this.artifactWaiters.delete(key);
    }
  }

  // -------------------------------------------------------------------------------------
  // Dispatch: tasks, containers

  private dispatch(step: StepState): void {
    switch (step.node.kind) {
      case "foreach":
        this.startForeach(step);
        return;
      case "loop":
        this.startLoop(step);
        return;
      case "subworkflow":
        this.startSubworkflow(step);
        return;
      default:
        this.startAttempt(step);
    }
  }

  private typeLimit(run: RunState, type: string): number {
    return run.def.stepTypeConcurrency[type] ?? 0;
  }

  private startAttempt(step: StepState): void {
    const run = step.scope.run;
    const type = this.opts.stepTypes.get(step.type);
    if (!type) {
      this.failStep(step, `unknown step type '${step.type}'`);
      return;
    }
    const limit = this.typeLimit(run, step.type);
    if (limit > 0) {
      const running = run.runningByType.get(step.type) ?? 0;
      if (running >= limit) {
        const reason = `step type '${step.type}' limit ${limit} (${running} running)`;
        if (step.status !== StepStatus.STEP_STATUS_QUEUED)
          this.setStatus(step, StepStatus.STEP_STATUS_QUEUED, reason);
        else this.setReason(step, reason);
        let q = run.typeWaiters.get(step.type);
        if (!q) {
          q = [];
          run.typeWaiters.set(step.type, q);
        }
        step.queued = true;
        q.push(step);
        return;
      }
      run.runningByType.set(step.type, running + 1);
      this.typeSlotHolders.add(step);
    }
    if (type.kind === "inline") this.runInline(step, type);
    else this.queueTask(step, type);
  }

  private releaseTypeSlot(step: StepState): void {
    if (!this.typeSlotHolders.delete(step)) return;
    const run = step.scope.run;
    run.runningByType.set(step.type, (run.runningByType.get(step.type) ?? 1) - 1);
    const q = run.typeWaiters.get(step.type);
    while (q && q.length > 0) {
      const next = q.shift() as StepState;
      if (!next.queued) continue;
      next.queued = false;
      this.startAttempt(next);
      break;
    }
  }

  private attemptDir(step: StepState, attempt: number): string {
    return attemptDir(this.opts.dataDir, step.scope.run.id, step.path, attempt);
  }

  private baseEnv(step: StepState, attempt: number): Record<string, string> {
    const run = step.scope.run;
    const env: Record<string, string> = {
      // The few variables tools expect of any login (R, pip and Spark read HOME, locale-aware
      // code reads LANG); everything else a job sees is explicit: its step's env and params.
      ...INHERITED_ENV,
      KAON_RUN_ID: run.id,
      KAON_WORKFLOW_ID: run.workflowId,
      KAON_STEP: step.node.id,
      KAON_PATH: step.path,
      KAON_ATTEMPT: String(attempt),
      KAON_RUN_TS: String(run.runTs),
    };
    for (const [k, v] of Object.entries(step.params ?? {})) {
      if (isScalar(v)) env[`KAON_PARAM_${k.toUpperCase()}`] = String(v);
    }
    return env;
  }

  private context(
    step: StepState,
    attempt: number,
    env: Record<string, string>,
    workDir: string,
    resources: ResourceAmounts,
  ): StepContext {
    const run = step.scope.run;
    return {
      runId: run.id,
      workflowId: run.workflowId,
      path: step.path,
      stepId: step.node.id,
      attempt,
      config: (step.node.step.config ?? {}) as StepContext["config"],
      params: step.params ?? {},
      env,
      workDir,
      resources,
      settings: this.settings,
    };
  }

  private resourcesOf(step: StepState): ResourceAmounts {
    const r = step.node.step.resources;
    // 3 decimals, as Mesos keeps them; a value that rounds to 0 (deployed before validation
    // required 0.01 cpus and 1 MiB) takes the default, so it cannot lift the concurrency bound.
    const round = (v: number | undefined) => Math.round((v ?? 0) * 1000) / 1000;
    return {
      cpus: round(r?.cpus) || 1,
      memMb: round(r?.memMb) || 256,
      gpus: round(r?.gpus) || 0,
      diskMb: round(r?.diskMb) || 0,
    };
  }

  /**
   * Runs a process step type's optional monitor while its attempt runs (Spark reads progress
   * from the application's REST API). It reports like the job itself would and is aborted when
   * the attempt ends; a monitor that fails only loses its reports, never the attempt.
   */
  private startMonitor(step: StepState, attempt: AttemptState): void {
    const type = this.opts.stepTypes.get(step.type);
    if (type?.kind !== "process" || !type.monitor) return;
    const abort = new AbortController();
    attempt.abort = abort;
    const ctx = this.context(
      step,
      attempt.number,
      {},
      this.attemptDir(step, attempt.number),
      attempt.resources,
    );
    type.monitor(ctx, this.reporterFor(step, attempt), abort.signal).catch((err: unknown) => {
      this.log.warn("step monitor failed", {
        runId: step.scope.run.id,
        path: step.path,
        error: err instanceof Error ? err.message : String(err),
      });
    });
  }

  private reporterFor(step: StepState, attempt: AttemptState): StepReporter {
    const apply = (item: ReportItem) => {
      if (step.attempt === attempt) this.applyReportItem(step, item);
    };
    return {
      output: (name, value) => apply({ kind: { $case: "output", value: { name, value } } }),
      progress: (percent, message) =>
        apply({ kind: { $case: "progress", value: { percent, message: message ?? "" } } }),
      milestone: (name) => apply({ kind: { $case: "milestone", value: name } }),
      link: (name, url) => apply({ kind: { $case: "link", value: { name, url } } }),
      message: (text, level) =>
        apply({
          kind: {
            $case: "message",
            value: {
              level: { debug: 1, info: 2, warning: 3, error: 4 }[level ?? "info"],
              text,
              time: new Date(),
            },
          },
        }),
    };
  }

  private runInline(step: StepState, type: InlineStepType): void {
    const number = step.attemptCount + 1;
    step.attemptCount = number;
    const attempt = new AttemptState(
      step,
      number,
      "inline",
      "",
      { cpus: 0, memMb: 0, gpus: 0, diskMb: 0 },
      AttemptStatus.ATTEMPT_STATUS_RUNNING,
    );
    const now = this.now();
    attempt.startedAt = now;
    step.attempt = attempt;
    if (step.startedAt === null) step.startedAt = now;
    this.journal.attempt(attempt);
    this.setStatus(step, StepStatus.STEP_STATUS_RUNNING, "");
    const abort = new AbortController();
    attempt.abort = abort;
    this.armStepTimeout(step, attempt);
    // The attempt directory is created by the step type only if it writes files (sql does);
    // creating it for every noop would cost a file-system round trip per step.
    const ctx = this.context(
      step,
      number,
      this.baseEnv(step, number),
      this.attemptDir(step, number),
      attempt.resources,
    );
    let promise: Promise<EndResult>;
    try {
      promise = type.run(ctx, this.reporterFor(step, attempt), abort.signal);
    } catch (err) {
      promise = Promise.reject(err);
    }
    const ended = promise.then(
      (result) => this.inlineDone(attempt, result),
      (err: Error) =>
        this.inlineDone(attempt, { succeeded: false, message: err?.message ?? String(err) }),
    );
    this.background(ended, `ending inline step '${step.path}' of run ${step.scope.run.id}`);
  }

  private inlineDone(attempt: AttemptState, result: EndResult): void {
    const step = attempt.step;
    if (step.attempt !== attempt || attempt.endedAt !== null) return;
    // Shutting down aborts inline work: that is not its outcome. Recovery records the attempt
    // LOST (not counted) and runs it again.
    if (this.stopped) return;
    if (attempt.timeoutTimer) clearTimeout(attempt.timeoutTimer);
    attempt.endedAt = this.now();
    attempt.abort = undefined;
    this.releaseTypeSlot(step);
    if (result.outputs)
      for (const [k, v] of Object.entries(result.outputs)) this.setOutput(step, k, v);
    if (attempt.killReason) {
      const timeout = attempt.killReason !== "stop";
      attempt.status = timeout
        ? AttemptStatus.ATTEMPT_STATUS_TIMED_OUT
        : AttemptStatus.ATTEMPT_STATUS_STOPPED;
      attempt.message = timeout ? "timed out" : "stopped";
      this.journal.attempt(attempt);
      this.attemptFailed(step, { kind: timeout ? "timeout" : "stopped", message: attempt.message });
      return;
    }
    attempt.status = result.succeeded
      ? AttemptStatus.ATTEMPT_STATUS_SUCCEEDED
      : AttemptStatus.ATTEMPT_STATUS_FAILED;
    attempt.message = result.message ?? "";
    this.journal.attempt(attempt);
    if (result.succeeded) this.stepSucceeded(step);
    else this.attemptFailed(step, { kind: "exit", message: result.message || "failed" });
  }

  private armStepTimeout(step: StepState, attempt: AttemptState): void {
    if (attempt.kind === "task") this.armHeartbeatWatch(step, attempt);
    const ms = durationMs(step.node.step.timeout);
    if (ms <= 0) return;
    const started = attempt.startedAt ?? this.now();
    attempt.timeoutTimer = setTimeout(
      () => {
        attempt.timeoutTimer = undefined;
        if (step.attempt !== attempt || attempt.endedAt !== null) return;
        this.recordKillReason(attempt, "timeout");
        if (attempt.kind === "inline") attempt.abort?.abort();
        else if (attempt.kind === "task")
          this.journal.afterCommit(() => this.opts.backend.kill(attempt.taskId));
      },
      Math.max(0, started + ms - this.now()),
    );
    attempt.timeoutTimer.unref?.();
  }

  /**
   * Step.heartbeat_timeout: one timer per attempt, not one per Report — when it fires it
   * re-arms for what is left since the last Report, and kills the task once a whole window
   * passed without one. The window starts at the later of the attempt's start and now (after
   * a restart of core the last Report time is not known).
   */
  private armHeartbeatWatch(step: StepState, attempt: AttemptState): void {
    const ms = durationMs(step.node.step.heartbeatTimeout);
    if (ms <= 0 || attempt.heartbeatTimer) return;
    attempt.lastHeartbeat = Math.max(attempt.lastHeartbeat, this.now());
    const check = () => {
      attempt.heartbeatTimer = undefined;
      if (step.attempt !== attempt || attempt.endedAt !== null || attempt.killReason) return;
      const silentFor = this.now() - attempt.lastHeartbeat;
      if (silentFor < ms) {
        attempt.heartbeatTimer = setTimeout(check, ms - silentFor);
        attempt.heartbeatTimer.unref?.();
        return;
      }
      this.recordKillReason(attempt, "heartbeat");
      this.journal.afterCommit(() => this.opts.backend.kill(attempt.taskId));
    };
    attempt.heartbeatTimer = setTimeout(check, ms);
    attempt.heartbeatTimer.unref?.();
  }

  /**
   * KAON_PARAMS_FILE: content-addressed per run, so steps with the same resolved params (a
   * chain without step params) share one file instead of paying a file creation each.
   */
  private paramsFile(run: RunState, paramsJson: string): string {
    run.paramsFiles ??= new Map();
    let path = run.paramsFiles.get(paramsJson);
    if (!path) {
      const dir = join(this.opts.dataDir, "runs", run.id, "params");
      mkdirSync(dir, { recursive: true });
      path = join(dir, `${createHash("sha1").update(paramsJson).digest("hex").slice(0, 20)}.json`);
      writeFileSync(path, paramsJson);
      if (run.paramsFiles.size > 10_000) run.paramsFiles.clear();
      run.paramsFiles.set(paramsJson, path);
    }
    return path;
  }

  private taskIdFor(step: StepState, attempt: number): string {
    // Backends accept [A-Za-z0-9._-]; step ids never contain '.', so this stays unique.
    const path = step.path
      .replace(/\//g, ".")
      .replace(/\[(\d+)\]/g, ".i$1")
      .replace(/@(\d+)/g, ".l$1");
    const id = `${step.scope.run.id}.${path}.${attempt}`;
    if (id.length <= 200) return id;
    const digest = createHash("sha256").update(step.path).digest("hex").slice(0, 32);
    return `${step.scope.run.id}.h${digest}.${attempt}`;
  }

  private queueTask(step: StepState, type: ProcessStepType): void {
    const number = step.attemptCount + 1;
    const resources = this.resourcesOf(step);
    const never = this.whyNeverFits(step, resources);
    if (never !== undefined) {
      this.releaseTypeSlot(step);
      this.finishStep(step, StepStatus.STEP_STATUS_FAILED, `can never run: ${never}`);
      return;
    }
    const dir = this.attemptDir(step, number);
    const env = this.baseEnv(step, number);
    const run = step.scope.run;
    try {
      env.KAON_PARAMS_FILE = this.paramsFile(run, step.paramsJson);
    } catch (err) {
      this.releaseTypeSlot(step);
      this.failStep(step, `cannot write the params file under ${dir}: ${(err as Error).message}`);
      return;
    }
    env.KAON_OUTPUT = join(dir, ATTEMPT_OUTPUT);
    env.KAON_ENDPOINT = this.opts.endpoint();
    env.KAON_TOKEN = this.opts.tokens.issue({ runId: run.id, path: step.path, attempt: number });
    for (const [k, v] of Object.entries(step.node.step.env)) env[k] = v;
    const ctx = this.context(step, number, env, dir, resources);
    if (step.status !== StepStatus.STEP_STATUS_QUEUED) {
      this.setStatus(step, StepStatus.STEP_STATUS_QUEUED, "waiting for resources");
    }
    step.queued = true;
    const onPlan = (plan: ProcessPlan) => {
      if (!step.queued || step.status !== StepStatus.STEP_STATUS_QUEUED) return;
      try {
        // The backend creates the attempt directory (cwd, log files) at launch; creating it
        // here costs a file-system round trip per attempt, so only when files go into it.
        if (plan.files && plan.files.length > 0) mkdirSync(dir, { recursive: true });
        for (const f of plan.files ?? []) writeFileSync(join(dir, f.path), f.content);
      } catch (err) {
        step.queued = false;
        this.releaseTypeSlot(step);
        this.failStep(step, `cannot write the attempt's files: ${(err as Error).message}`);
        return;
      }
      const task: PendingTask = {
        step,
        attemptNumber: number,
        resources,
        constraints: step.node.step.constraints,
        priority: run.priority,
        scanned: false,
        seq: this.pendingSeq++,
        spec: {
          taskId: this.taskIdFor(step, number),
          name: `${run.workflowId}/${step.path}#${number}`,
          resources,
          command: plan.command,
          env: { ...env, ...(plan.env ?? {}) },
          cwd: plan.cwd ?? dir,
          stdoutPath: join(dir, ATTEMPT_STDOUT),
          stderrPath: join(dir, ATTEMPT_STDERR),
        },
      };
      const tooLarge = launchTooLarge(task.spec);
      if (tooLarge !== undefined) {
        this.failStep(step, `${tooLarge} (${LARGE_PARAMS_HINT})`);
        return;
      }
      const prio = run.priority;
      let q = this.pending.get(prio);
      if (!q) {
        q = [];
        this.pending.set(prio, q);
      }
      q.push(task);
      this.pendingCount++;
      if (this.pendingCount === 1 || this.offers.size === 0) this.reviveOnce();
      this.journal.touch("sched");
    };
    const onPlanError = (err: Error) => {
      step.queued = false;
      this.releaseTypeSlot(step);
      this.failStep(step, `step type '${step.type}' could not plan the attempt: ${err.message}`);
    };
    try {
      const plan = type.plan(ctx);
      if (plan instanceof Promise)
        this.background(plan.then(onPlan, onPlanError), `planning step '${step.path}'`);
      else onPlan(plan);
    } catch (err) {
      onPlanError(err as Error);
    }
  }

  /**
   * Why no agent could ever take this step (its size or its hard constraints), or undefined:
   * such a step fails at once rather than wait for ever at the head of the queue.
   */
  private whyNeverFits(step: StepState, resources: ResourceAmounts): string | undefined {
    const backend = this.opts.backend;
    if (backend.whyNeverFits) return backend.whyNeverFits(resources, step.node.step.constraints);
    if (backend.fitsEver(resources)) return undefined;
    return `it needs cpus ${resources.cpus}, mem ${resources.memMb} MiB, gpus ${resources.gpus}, more than any agent has in total`;
  }

  private *pendingInOrder(): Generator<PendingTask> {
    const prios = [...this.pending.keys()].sort((a, b) => b - a);
    for (const p of prios) {
      const q = this.pending.get(p) as PendingTask[];
      for (const t of q) yield t;
    }
  }

  private removePending(task: PendingTask): void {
    const q = this.pending.get(task.step.scope.run.priority);
    if (!q) return;
    const i = q.indexOf(task);
    if (i >= 0) {
      q.splice(i, 1);
      this.pendingCount--;
    }
    if (q.length === 0) this.pending.delete(task.step.scope.run.priority);
  }

  private onOffers(offers: Offer[]): void {
    for (const o of offers) {
      this.offers.set(o.id, {
        id: o.id,
        agentId: o.agentId,
        hostname: o.hostname,
        free: { ...o.resources },
        attributes: o.attributes,
        ...this.agentTotal(o.agentId),
      });
    }
    this.journal.touch("sched");
  }

  /**
   * The total capacity of an offer's agent, for the matcher's reservations (Q4); asked of
   * the backend once per agent. Nothing when the backend cannot tell.
   */
  private agentTotal(agentId: string): { total?: ResourceAmounts } {
    let total = this.agentTotals.get(agentId);
    if (total === undefined && this.opts.backend.agents) {
      for (const a of this.opts.backend.agents()) this.agentTotals.set(a.id, a.total);
      total = this.agentTotals.get(agentId);
    }
    return total ? { total } : {};
  }

  /**
   * Asks the backend for offers, at most once between two matching passes: when work is
   * queued while no offer is held, the backend may be refusing after a decline (5 s) while
   * resources the new task could use sit free.
   */
  private reviveOnce(): void {
    if (this.revivedSincePass) return;
    this.revivedSincePass = true;
    this.idleSuppressed = false;
    this.opts.backend.revive();
  }

  /** Runs once per tick before the flush: places queued tasks on held offers. */
  private placeTasks(): void {
    this.revivedSincePass = false;
    if (this.pendingCount === 0) {
      this.releaseOffers();
      return;
    }
    // Drop tasks whose step moved on (stopped while queued).
    for (const t of [...this.pendingInOrder()]) {
      if (!t.step.queued || t.step.status !== StepStatus.STEP_STATUS_QUEUED) this.removePending(t);
    }
    if (this.pendingCount === 0 || this.offers.size === 0) {
      if (this.pendingCount > 0) this.explainWithoutOffers();
      else this.releaseOffers();
      return;
    }
    const slots = [...this.offers.values()];
    const result = matchTasks(this.pendingInOrder(), slots, undefined, this.quotaGate());
    const launches = new Map<string, TaskSpec[]>();
    for (const { task, offer } of result.placed) {
      this.removePending(task);
      const step = task.step;
      step.queued = false;
      const attempt = new AttemptState(
        step,
        task.attemptNumber,
        "task",
        task.spec.taskId,
        task.resources,
        AttemptStatus.ATTEMPT_STATUS_LAUNCHING,
      );
      attempt.agentId = offer.agentId;
      attempt.startedAt = this.now();
      step.attempt = attempt;
      step.attemptCount = task.attemptNumber;
      if (step.startedAt === null) step.startedAt = attempt.startedAt;
      this.tasks.set(attempt.taskId, attempt);
      this.journal.attempt(attempt);
      this.emitAttempt(attempt);
      this.setStatus(step, StepStatus.STEP_STATUS_LAUNCHING, "", `launching on ${offer.hostname}`);
      let list = launches.get(offer.id);
      if (!list) {
        list = [];
        launches.set(offer.id, list);
      }
      list.push({ ...task.spec, agentId: offer.agentId });
    }
    for (const offerId of launches.keys()) this.offers.delete(offerId);
    for (const w of result.waiting) {
      this.setReason(w.task.step, w.reason);
      w.task.scanned = w.refused !== true;
    }
    for (const t of result.unscanned) {
      this.setReason(t.step, BEHIND_MISSES);
      t.scanned = true;
    }
    if (this.pendingCount > 0 && !this.onlyQuotaHeld(result.waiting)) {
      // Work is left that the held offers cannot take: return them, so the backend offers
      // again as soon as free resources change (a refusal lasts until they do).
      const unused = [...this.offers.keys()];
      for (const id of unused) this.offers.delete(id);
      if (unused.length > 0) this.opts.backend.decline(unused);
    }
    if (launches.size > 0) {
      const backend = this.opts.backend;
      this.journal.afterCommit(() => {
        for (const [offerId, specs] of launches) backend.launch([offerId], specs);
      });
    }
    if (this.pendingCount === 0) this.releaseOffers();
  }

  /**
   * Nothing is pending: declines every held offer and suppresses the backend, once. Held
   * offers count as allocated on Mesos, so an idle engine would hoard the cluster. New work
   * revives the backend (reviveOnce), which offers again before the tick's flush.
   */
  private releaseOffers(): void {
    if (this.offers.size > 0) {
      const unused = [...this.offers.keys()];
      this.offers.clear();
      this.opts.backend.decline(unused);
      this.idleSuppressed = false;
    }
    if (this.idleSuppressed) return;
    this.idleSuppressed = true;
    this.opts.backend.suppress();
  }

  // -------------------------------------------------------------------------------------
  // Namespace quotas and the queue as ClusterService sees it

  /** Quota admission for one matching pass; undefined (no cost) when no namespace is limited. */
  private quotaGate(): QuotaGate<PendingTask> | undefined {
    if (!this.quotas.any) return undefined;
    return new QuotaGate<PendingTask>(
      (ns) => this.quotas.get(ns),
      this.namespaceUsage(),
      (t) => t.step.scope.run.namespace,
      (t) => t.resources,
    );
  }

  /**
   * Reasons for queued tasks while no offer is held: a task over its namespace's quota says
   * so (whatever offers come), the first other task waits for an offer.
   */
  private explainWithoutOffers(): void {
    const gate = this.quotaGate();
    let explained = false;
    for (const t of this.pendingInOrder()) {
      const refused = gate?.blocked(t);
      if (refused !== undefined) {
        this.setReason(t.step, refused);
        continue;
      }
      if (!explained && !t.scanned) {
        // Only when no pass with offers has looked at it: otherwise its reason from that pass
        // (what it lacks) is the better one, and the offer it saw was declined, not missing.
        this.setReason(t.step, "waiting for resources: none offered yet");
      } else if (t.step.reason.startsWith("namespace '")) {
        // Its quota has room again; what it lacks now is an offer.
        this.setReason(t.step, "waiting for resources");
      }
      explained = true;
      if (!gate) return;
    }
  }

  /**
   * Whether every task left waiting was held back by its namespace's quota only. Then the
   * offers are kept rather than declined: a decline makes the backend refuse until its free
   * resources change, and work of another namespace arriving meanwhile would wait out that
   * refusal behind a quota that is not its own.
   */
  private onlyQuotaHeld(waiting: ReadonlyArray<{ refused?: boolean }>): boolean {
    return waiting.length === this.pendingCount && waiting.every((w) => w.refused === true);
  }

  /** Running tasks and the resources they hold, per namespace (from the live attempts). */
  namespaceUsage(): Map<string, NamespaceUsage> {
    const usage = new Map<string, NamespaceUsage>();
    for (const a of this.tasks.values()) addUsage(usage, a.step.scope.run.namespace, a.resources);
    return usage;
  }

  /**
   * Stores a namespace's quota. Tasks it held back (or now holds back) are matched again at
   * once: the backend is asked for fresh offers, since it may be refusing after a decline.
   */
  async setQuota(namespace: string, limits: QuotaLimits): Promise<void> {
    await this.quotas.set(namespace, limits);
    if (this.pendingCount > 0 && !this.stopped) {
      this.idleSuppressed = false;
      this.opts.backend.revive();
      this.journal.touch("sched");
    }
  }

  /**
   * Queued step instances in scheduling order: tasks waiting for an offer (priority, then
   * FIFO — the order the matcher scans), then steps held by a step-type limit.
   */
  queueEntries(namespace = ""): QueuedStep[] {
    const out: QueuedStep[] = [];
    const add = (step: StepState, resources: ResourceAmounts) => {
      const run = step.scope.run;
      if (namespace && run.namespace !== namespace) return;
      out.push({
        runId: run.id,
        path: step.path,
        workflowId: run.workflowId,
        namespace: run.namespace,
        resources,
        reason: step.reason,
        priority: run.priority,
        queuedAt: step.readyAt ?? run.createdAt,
      });
    };
    for (const t of this.pendingInOrder()) {
      if (t.step.queued && t.step.status === StepStatus.STEP_STATUS_QUEUED)
        add(t.step, t.resources);
    }
    const held: StepState[] = [];
    for (const run of this.runs.values()) {
      for (const q of run.typeWaiters.values()) {
        for (const step of q)
          if (step.queued && step.status === StepStatus.STEP_STATUS_QUEUED) held.push(step);
      }
    }
    held.sort(
      (a, b) => b.scope.run.priority - a.scope.run.priority || (a.readyAt ?? 0) - (b.readyAt ?? 0),
    );
    for (const step of held) add(step, this.resourcesOf(step));
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Backend statuses

  private onStatus(status: TaskStatus): void {
    const attempt = this.tasks.get(status.taskId);
    if (!attempt) {
      // Unknown to us: a task of a finished run, or a repeat of a status already recorded.
      if (status.state !== "STARTING" && status.state !== "RUNNING")
        this.opts.backend.acknowledge(status.taskId);
      return;
    }
    const step = attempt.step;
    if (status.state === "STARTING") return;
    if (status.state === "RUNNING") {
      if (attempt.status === AttemptStatus.ATTEMPT_STATUS_LAUNCHING) {
        attempt.status = AttemptStatus.ATTEMPT_STATUS_RUNNING;
        if (status.agentId) attempt.agentId = status.agentId;
        // Nothing waits on this commit: a short task's end usually arrives before it and both
        // transitions share one transaction (and one write of each row).
        this.journal.lazily(() => {
          this.journal.attempt(attempt);
          this.emitAttempt(attempt);
          this.setStatus(step, StepStatus.STEP_STATUS_RUNNING, "");
        });
        this.armStepTimeout(step, attempt);
        this.startMonitor(step, attempt);
      }
      return;
    }
    this.tasks.delete(status.taskId);
    // Stops a step type's monitor (e.g. Spark REST progress) for this attempt.
    attempt.abort?.abort();
    attempt.abort = undefined;
    if (attempt.timeoutTimer) clearTimeout(attempt.timeoutTimer);
    if (attempt.heartbeatTimer) clearTimeout(attempt.heartbeatTimer);
    attempt.endedAt = status.timestamp || this.now();
    if (status.exitCode !== undefined) attempt.exitCode = status.exitCode;
    const wasLaunching = attempt.status === AttemptStatus.ATTEMPT_STATUS_LAUNCHING;
    this.journal.touch(attemptKey(step.scope.run.id, step.path, attempt.number));
    this.releaseTypeSlot(step);
    // Outputs the job wrote to $KAON_OUTPUT.
    const parsed = readOutputFile(join(this.attemptDir(step, attempt.number), ATTEMPT_OUTPUT));
    for (const [k, v] of Object.entries(parsed.outputs)) this.setOutput(step, k, v);
    for (const p of parsed.problems) this.addMessage(step, 3, p);
    const finish = (succeeded: boolean, failure: Failure, message: string) => {
      // Acknowledged with the commit that records the outcome, which may come ticks later
      // (an async interpretEnd): earlier, a crash would leave a RUNNING attempt the backend
      // has forgotten, and recovery would call a finished task LOST.
      this.journal.afterCommit(() => this.opts.backend.acknowledge(status.taskId));
      attempt.message = message;
      if (succeeded) {
        attempt.status = AttemptStatus.ATTEMPT_STATUS_SUCCEEDED;
        this.journal.attempt(attempt);
        this.emitAttempt(attempt);
        this.stepSucceeded(step);
        return;
      }
      attempt.status =
        failure.kind === "timeout"
          ? AttemptStatus.ATTEMPT_STATUS_TIMED_OUT
          : failure.kind === "lost"
            ? AttemptStatus.ATTEMPT_STATUS_LOST
            : failure.kind === "stopped"
              ? AttemptStatus.ATTEMPT_STATUS_STOPPED
              : AttemptStatus.ATTEMPT_STATUS_FAILED;
      this.journal.attempt(attempt);
      this.emitAttempt(attempt);
      if (failure.kind === "lost" && attempt.killReason === "stop") {
        // Killed on request, then lost (before it started, or with its agent): a stop, never
        // a relaunch or a retry.
        this.attemptFailed(step, { kind: "stopped", message: "stopped" });
        return;
      }
      if (failure.kind === "lost" && wasLaunching) {
        const relaunches = (this.relaunches.get(step) ?? 0) + 1;
        if (!attempt.killReason && relaunches <= MAX_RELAUNCHES) {
          // Never started (core died between recording the launch and making it): try again
          // without spending a retry — a few times, not for ever if the backend keeps losing it.
          this.relaunches.set(step, relaunches);
          step.attemptCount = attempt.number;
          this.attemptNotCounted(step);
          this.retryNow(step, "the launch was interrupted; launching again");
          return;
        }
      }
      this.attemptFailed(step, failure);
    };
    switch (status.state) {
      case "FINISHED": {
        const type = this.opts.stepTypes.get(step.type);
        if (type?.kind === "process" && type.interpretEnd) {
          const ctx = this.context(
            step,
            attempt.number,
            {},
            this.attemptDir(step, attempt.number),
            attempt.resources,
          );
          // Called inside the chain: a plugin that throws synchronously fails the attempt
          // instead of throwing out of the backend's status callback.
          const interpretEnd = type.interpretEnd.bind(type);
          const interpreted = Promise.resolve().then(() => interpretEnd(ctx, status));
          const ended = interpreted.then(
            (r) => {
              for (const [k, v] of Object.entries(r.outputs ?? {})) this.setOutput(step, k, v);
              finish(
                r.succeeded,
                { kind: "exit", exitCode: 0, message: r.message ?? "failed" },
                r.message ?? "",
              );
            },
            (err: Error) => finish(false, { kind: "error", message: err.message }, err.message),
          );
          this.background(ended, `ending step '${step.path}' of run ${step.scope.run.id}`);
          return;
        }
        finish(true, { kind: "exit", message: "" }, "exit code 0");
        return;
      }
      case "FAILED": {
        const msg =
          status.exitCode !== undefined
            ? `exit code ${status.exitCode}`
            : status.signal
              ? `killed by signal ${status.signal}`
              : status.message || "failed";
        const type = this.opts.stepTypes.get(step.type);
        if (type?.kind === "process" && type.interpretEnd) {
          // The step type may know the cause better (e.g. the exception in a Spark driver's
          // output); the attempt still failed with its exit code, so retries behave the same.
          const ctx = this.context(
            step,
            attempt.number,
            {},
            this.attemptDir(step, attempt.number),
            attempt.resources,
          );
          const failed = (message: string) =>
            finish(false, { kind: "exit", exitCode: status.exitCode ?? -1, message }, message);
          // Called inside the chain: a plugin that throws synchronously fails the attempt
          // instead of throwing out of the backend's status callback.
          const interpretEnd = type.interpretEnd.bind(type);
          const interpreted = Promise.resolve().then(() => interpretEnd(ctx, status));
          const ended = interpreted.then(
            (r) => {
              for (const [k, v] of Object.entries(r.outputs ?? {})) this.setOutput(step, k, v);
              failed(r.message ? `${msg}: ${r.message}` : msg);
            },
            () => failed(msg),
          );
          this.background(ended, `ending step '${step.path}' of run ${step.scope.run.id}`);
          return;
        }
        finish(
          false,
          { kind: "exit", exitCode: status.exitCode ?? -1, message: msg },
          status.message ? `${msg}: ${status.message}` : msg,
        );
        return;
      }
      case "KILLED": {
        if (attempt.killReason === "heartbeat") {
          const seconds = durationMs(step.node.step.heartbeatTimeout) / 1000;
          const msg = `no heartbeat for ${seconds}s (heartbeat_timeout): the job reported nothing and was killed`;
          finish(false, { kind: "timeout", message: msg }, msg);
        } else if (attempt.killReason === "timeout") {
          const ms = durationMs(step.node.step.timeout);
          finish(
            false,
            { kind: "timeout", message: `timed out after ${ms / 1000}s` },
            `timed out after ${ms / 1000}s`,
          );
        } else if (attempt.killReason === "stop")
          finish(false, { kind: "stopped", message: "stopped" }, "stopped");
        else
          finish(
            false,
            { kind: "exit", exitCode: -1, message: "killed" },
            status.message || "killed",
          );
        return;
      }
      case "LOST":
        finish(
          false,
          { kind: "lost", message: status.message || "the task was lost" },
          status.message || "lost",
        );
        return;
      default:
        finish(
          false,
          { kind: "error", message: status.message || "could not be launched" },
          status.message || "could not be launched",
        );
    }
  }

  // -------------------------------------------------------------------------------------
  // Attempt outcomes, retries

  private retryPolicyAllows(step: StepState, failure: Failure): boolean {
    const policy = step.node.step.retry;
    if (!policy) return false;
    const max = Math.max(1, policy.maxAttempts || 1);
    if (step.attemptCount - (step.book.f ?? 0) >= max) return false;
    if (failure.kind === "stopped") return false;
    const on = policy.retryOn;
    const kind =
      failure.kind === "timeout"
        ? RetryOn.RETRY_ON_TIMEOUT
        : failure.kind === "lost"
          ? RetryOn.RETRY_ON_LOST
          : RetryOn.RETRY_ON_EXIT_CODE;
    if (on.length > 0 && !on.includes(kind)) return false;
    if (kind === RetryOn.RETRY_ON_EXIT_CODE && policy.exitCodes.length > 0) {
      return failure.exitCode !== undefined && policy.exitCodes.includes(failure.exitCode);
    }
    return true;
  }

  backoffMs(step: StepState): number {
    const policy = step.node.step.retry;
    const initial = durationMs(policy?.initialBackoff) || 1000;
    const mult = policy?.backoffMultiplier || 2;
    const cap = durationMs(policy?.maxBackoff) || 300_000;
    return Math.min(cap, initial * mult ** Math.max(0, step.attemptCount - 1));
  }

  private attemptFailed(step: StepState, failure: Failure): void {
    const run = step.scope.run;
    if (failure.kind === "stopped" || run.stopping || step.scope.stopped) {
      this.finishStep(
        step,
        StepStatus.STEP_STATUS_STOPPED,
        run.stopping ? run.message || "run stopped" : "stopped",
      );
      return;
    }
    if (this.retryPolicyAllows(step, failure)) {
      const wait = this.backoffMs(step);
      const reason = `attempt ${step.attemptCount} failed (${failure.message}); retrying in ${wait / 1000}s`;
      this.setStatus(step, StepStatus.STEP_STATUS_RETRYING, reason);
      this.armRetry(step, wait);
      return;
    }
    const status =
      failure.kind === "timeout" ? StepStatus.STEP_STATUS_TIMED_OUT : StepStatus.STEP_STATUS_FAILED;
    const tries = step.attemptCount > 1 ? ` (after ${step.attemptCount} attempts)` : "";
    this.finishStep(step, status, `${failure.message}${tries}`);
  }

  private armRetry(step: StepState, wait: number): void {
    step.timer = setTimeout(
      () => {
        step.timer = undefined;
        if (step.status !== StepStatus.STEP_STATUS_RETRYING) return;
        this.retryNow(step, "");
      },
      Math.max(0, wait),
    );
    step.timer.unref?.();
  }

  private retryNow(step: StepState, reason: string): void {
    if (step.scope.run.stopping) {
      this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, "run stopped");
      return;
    }
    if (reason) this.setReason(step, reason);
    this.startAttempt(step);
  }

  private failStep(step: StepState, message: string): void {
    this.addMessage(step, 4, message);
    this.finishStep(step, StepStatus.STEP_STATUS_FAILED, message);
  }

  private stepSucceeded(step: StepState): void {
    const refs = step.node.step.outputs;
    if (refs.length === 0) {
      this.finishStep(step, StepStatus.STEP_STATUS_SUCCEEDED, "");
      return;
    }
    let rendered: Array<{ name: string; partitions: Record<string, string>; uri: string }>;
    try {
      rendered = this.artifactRefs(step, refs, "outputs");
    } catch (err) {
      this.failStep(step, (err as Error).message);
      return;
    }
    const run = step.scope.run;
    const announced = this.announce(
      rendered.map((r) => ({
        ...r,
        namespace: run.namespace,
        metadata: {},
        producerRunId: run.id,
        producerPath: step.path,
      })),
      () => this.finishStep(step, StepStatus.STEP_STATUS_SUCCEEDED, ""),
    ).catch((err: Error) =>
      this.failStep(step, `cannot announce output artifacts: ${err.message}`),
    );
    this.background(announced, `announcing the outputs of step '${step.path}' in run ${run.id}`);
  }

  // -------------------------------------------------------------------------------------
  // Finishing steps: split evaluation and arrival propagation

  private finishStep(step: StepState, stopStatus: StepStatus, stopReason: string): void {
    if (isTerminalStep(step.status)) return;
    // A container stopped by its own timeout ends TIMED_OUT (a failure), not STOPPED.
    const timedOut = step.book.x && stopStatus === StepStatus.STEP_STATUS_STOPPED;
    const status = timedOut ? StepStatus.STEP_STATUS_TIMED_OUT : stopStatus;
    const reason = timedOut
      ? `timed out after ${durationMs(step.node.step.timeout) / 1000}s`
      : stopReason;
    const scope = step.scope;
    const run = scope.run;
    if (step.timer) {
      clearTimeout(step.timer);
      step.timer = undefined;
    }
    if (step.queued) step.queued = false;
    // A step stopped while queued for resources holds its slot without an attempt to end.
    this.releaseTypeSlot(step);
    if (step.status === StepStatus.STEP_STATUS_WAITING_FOR_DATA) this.unwaitData(step);
    let arrivals: Arrival[] = [];
    let finalStatus = status;
    let finalReason = reason;
    const ignored = step.node.step.ignoreFailure;
    const failed =
      status === StepStatus.STEP_STATUS_FAILED || status === StepStatus.STEP_STATUS_TIMED_OUT;
    if (status === StepStatus.STEP_STATUS_SUCCEEDED || (failed && ignored)) {
      try {
        arrivals = this.split(step);
      } catch (err) {
        finalStatus = StepStatus.STEP_STATUS_FAILED;
        finalReason = (err as Error).message;
        this.addMessage(step, 4, finalReason);
      }
    }
    const nowFailed =
      finalStatus === StepStatus.STEP_STATUS_FAILED ||
      finalStatus === StepStatus.STEP_STATUS_TIMED_OUT;
    const blocks =
      (nowFailed && !(ignored && finalStatus === status)) ||
      finalStatus === StepStatus.STEP_STATUS_STOPPED ||
      (finalStatus === StepStatus.STEP_STATUS_SKIPPED && step.blocked);
    if (blocks) arrivals = step.node.succs.map(() => "blocked");
    else if (finalStatus === StepStatus.STEP_STATUS_SKIPPED)
      arrivals = step.node.succs.map(() => "dead");
    const book: StepBook = { ...step.book };
    delete book.t;
    delete book.b;
    const taken: number[] = [];
    arrivals.forEach((a, i) => {
      if (a === "taken") taken.push(i);
    });
    if (taken.length > 0) book.t = taken;
    if (blocks) book.b = 1;
    if (nowFailed && ignored && !blocks) book.i = 1;
    step.book = book;
    step.endedAt = this.now();
    step.attempt = undefined;
    this.setStatus(step, finalStatus, finalReason);
    scope.pending--;
    if (nowFailed && blocks) {
      scope.failed = true;
      if (!scope.owner) run.failed = true;
      if (run.def.failureMode === FailureMode.FAILURE_MODE_STOP_ALL && !run.stopping) {
        this.stopRunInternal(
          run,
          `stopped because step '${step.path}' failed (failure mode STOP_ALL)`,
          RunStatus.RUN_STATUS_FAILED,
        );
      }
    }
    if (finalStatus === StepStatus.STEP_STATUS_STOPPED && !run.stopping && !scope.stopped) {
      scope.failed = true;
      if (!scope.owner) run.stoppedSteps = true;
    }
    const succs = step.node.succs;
    for (let i = 0; i < succs.length; i++) {
      const target = scope.steps[(succs[i] as (typeof succs)[number]).to];
      if (target) this.arrive(target, arrivals[i] ?? "dead");
    }
    if (scope.pending === 0) this.scopeDone(scope);
  }

  /** Which outgoing edges a finished step takes (AND: every true edge; XOR: the first). */
  private split(step: StepState): Arrival[] {
    const succs = step.node.succs;
    if (succs.length === 0) return [];
    const needsScope = succs.some((e) => e.condition !== "");
    const scope = needsScope ? this.scopeFor(step, step.scope) : undefined;
    const holds = (cond: string) =>
      cond === "" ||
      evalCondition(cond, scope as ExprScope, `condition of edge '${step.node.id}' -> `);
    const out: Arrival[] = succs.map(() => "dead");
    if (step.node.split === "xor") {
      let chosen = -1;
      for (let i = 0; i < succs.length; i++) {
        const e = succs[i] as (typeof succs)[number];
        if (e.otherwise) continue;
        if (holds(e.condition)) {
          chosen = i;
          break;
        }
      }
      if (chosen < 0) chosen = succs.findIndex((e) => e.otherwise);
      if (chosen >= 0) out[chosen] = "taken";
      return out;
    }
    let any = false;
    for (let i = 0; i < succs.length; i++) {
      const e = succs[i] as (typeof succs)[number];
      if (e.otherwise) continue;
      if (holds(e.condition)) {
        out[i] = "taken";
        any = true;
      }
    }
    if (!any) {
      const o = succs.findIndex((e) => e.otherwise);
      if (o >= 0) out[o] = "taken";
    }
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Foreach

  private startForeach(step: StepState): void {
    const fe = step.node.step.foreach;
    const axes = fe?.axes ?? [];
    let values: JsonValue[][];
    let names: string[];
    if (step.book.v && step.book.a) {
      values = step.book.v;
      names = step.book.a;
    } else {
      try {
        names = axes.map((a) => a.name || "value");
        values = axes.map((a, i) => {
          const v: unknown = a.expr
            ? evalExpr(
                a.expr,
                this.scopeFor(step, step.scope),
                `foreach axis '${names[i]}' of step '${step.path}'`,
              )
            : (a.values ?? []);
          if (!Array.isArray(v)) {
            throw new ExpressionError(
              `foreach axis '${names[i]}' of step '${step.path}' must be a list, got ${JSON.stringify(v)?.slice(0, 100)}`,
            );
          }
          return v as JsonValue[];
        });
      } catch (err) {
        this.failStep(step, (err as Error).message);
        return;
      }
      step.book = { ...step.book, v: values, a: names };
    }
    const total = values.length === 0 ? 0 : values.reduce((n, v) => n * v.length, 1);
    const state: ForeachState = {
      kind: "foreach",
      axes: names,
      values,
      total,
      next: 0,
      live: new Map(),
      succeeded: 0,
      failed: 0,
      stopped: 0,
      outputs: new Map(),
      concurrency: fe?.concurrency ?? 0,
    };
    step.container = state;
    step.startedAt ??= this.now();
    this.setStatus(step, StepStatus.STEP_STATUS_RUNNING, `${total} iterations`);
    this.armContainerTimeout(step);
    this.materialize(step, state);
  }

  private iterationValues(
    state: ForeachState,
    index: number,
  ): { value: JsonValue; values: Record<string, JsonValue> } {
    const values: Record<string, JsonValue> = {};
    let rest = index;
    for (let a = state.values.length - 1; a >= 0; a--) {
      const list = state.values[a] as JsonValue[];
      values[state.axes[a] as string] = list[rest % list.length] as JsonValue;
      rest = Math.floor(rest / list.length);
    }
    const value = state.axes.length === 1 ? (values[state.axes[0] as string] as JsonValue) : values;
    return { value, values };
  }

  private iterationScope(step: StepState, state: ForeachState, index: number): Scope {
    const { value, values } = this.iterationValues(state, index);
    const body = step.node.body as Graph;
    return new Scope(
      step.scope.run,
      body,
      `${step.path}[${index}]/`,
      `${step.sortKey}[${iterationKey(index)}]/`,
      step,
      step.scope,
      index,
      value,
      values,
    );
  }

  private materialize(step: StepState, state: ForeachState): void {
    // Iterations that end synchronously (a param error, an empty inner foreach) call back in
    // here; the loop below picks up the freed slot instead of recursing once per iteration.
    if (state.materializing) return;
    state.materializing = true;
    try {
      this.materializeNow(step, state);
    } finally {
      state.materializing = false;
    }
  }

  private materializeNow(step: StepState, state: ForeachState): void {
    const run = step.scope.run;
    const limit = state.concurrency > 0 ? state.concurrency : this.window;
    while (
      !run.stopping &&
      !step.scope.stopped &&
      !step.book.h &&
      state.live.size < limit &&
      state.next < state.total
    ) {
      const index = state.next++;
      const scope = this.iterationScope(step, state, index);
      state.live.set(index, scope);
      this.startScope(scope);
    }
    this.updateChildCounts(step, state);
    if (
      state.live.size === 0 &&
      (state.next >= state.total || run.stopping || step.scope.stopped || step.book.h)
    ) {
      this.finishForeach(step, state);
    }
  }

  private updateChildCounts(step: StepState, state: ForeachState): void {
    const counts: Record<string, number> = {};
    const notStarted = state.total - state.next;
    if (notStarted > 0) counts.NOT_STARTED = notStarted;
    if (state.live.size > 0) counts.RUNNING = state.live.size;
    if (state.succeeded > 0) counts.SUCCEEDED = state.succeeded;
    if (state.failed > 0) counts.FAILED = state.failed;
    if (state.stopped > 0) counts.STOPPED = state.stopped;
    step.childCountsJson = JSON.stringify(counts);
    this.journal.step(step);
  }

  private collectOutputs(scope: Scope): Record<string, JsonValue> | undefined {
    let out: Record<string, JsonValue> | undefined;
    for (const st of scope.steps) {
      if (!st?.outputs) continue;
      for (const [k, v] of Object.entries(st.outputs)) {
        out ??= {};
        out[k] = v;
      }
    }
    return out;
  }

  private foreachIterationDone(step: StepState, scope: Scope): void {
    const state = step.container as ForeachState;
    if (!state.live.delete(scope.iteration)) return;
    if (scope.stopped && !scope.failed) state.stopped++;
    else if (scope.failed) state.failed++;
    else state.succeeded++;
    const outs = this.collectOutputs(scope);
    if (outs) state.outputs.set(scope.iteration, outs);
    this.dropScope(scope);
    if (scope.failed && step.scope.run.def.failureMode === FailureMode.FAILURE_MODE_STOP_ALL) {
      // stopRunInternal already ran from the failing step; just stop materialising.
    }
    this.materialize(step, state);
  }

  private finishForeach(step: StepState, state: ForeachState): void {
    if (isTerminalStep(step.status)) return;
    const names = new Set<string>();
    for (const o of state.outputs.values()) for (const k of Object.keys(o)) names.add(k);
    if (names.size > 0 && state.total <= 100_000) {
      const outputs: Record<string, JsonValue> = {};
      for (const name of names) {
        const list: JsonValue[] = [];
        for (let i = 0; i < state.total; i++) list.push(state.outputs.get(i)?.[name] ?? null);
        outputs[name] = list;
      }
      step.outputs = outputs;
      step.outputsJson = JSON.stringify(outputs);
    }
    const run = step.scope.run;
    if (state.failed > 0)
      this.finishStep(
        step,
        StepStatus.STEP_STATUS_FAILED,
        `${state.failed} of ${state.total} iterations failed`,
      );
    else if (state.stopped > 0 || state.next < state.total || run.stopping)
      this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, "stopped");
    else
      this.finishStep(
        step,
        StepStatus.STEP_STATUS_SUCCEEDED,
        `${state.total} iterations succeeded`,
      );
  }

  // -------------------------------------------------------------------------------------
  // Loop

  private loopScope(step: StepState, iteration: number): Scope {
    return new Scope(
      step.scope.run,
      step.node.body as Graph,
      `${step.path}@${iteration}/`,
      `${step.sortKey}@${iterationKey(iteration)}/`,
      step,
      step.scope,
      iteration,
      undefined,
      undefined,
    );
  }

  private startLoop(step: StepState): void {
    const state: LoopState = { kind: "loop", iteration: 0, scope: undefined };
    step.container = state;
    step.startedAt ??= this.now();
    this.setStatus(step, StepStatus.STEP_STATUS_RUNNING, "iteration 0");
    this.armContainerTimeout(step);
    this.startLoopIteration(step, state, 0);
  }

  /**
   * A container's own `timeout` (foreach, loop, subworkflow), from when it started: when it
   * fires the container is stopped like StopStep does and ends TIMED_OUT. Task attempts have
   * theirs in armStepTimeout. Uses `step.timer`, which containers do not otherwise use.
   */
  private armContainerTimeout(step: StepState): void {
    const ms = durationMs(step.node.step.timeout);
    if (ms <= 0 || step.timer) return;
    const started = step.startedAt ?? this.now();
    step.timer = setTimeout(
      () => {
        step.timer = undefined;
        if (step.status !== StepStatus.STEP_STATUS_RUNNING) return;
        step.book = { ...step.book, x: 1 };
        this.journal.step(step);
        this.stopStepInternal(step, `timed out after ${ms / 1000}s`);
      },
      Math.max(0, started + ms - this.now()),
    );
    step.timer.unref?.();
  }

  private startLoopIteration(step: StepState, state: LoopState, n: number): void {
    // An iteration that ends synchronously (its body fails or is skipped at once) calls back
    // in here: record the next one for the loop below instead of recursing per iteration.
    if (this.loopStarting.has(step)) {
      this.loopStarting.set(step, n);
      return;
    }
    let next: number | null = n;
    try {
      while (next !== null) {
        this.loopStarting.set(step, null);
        state.iteration = next;
        step.loopIteration = next;
        this.journal.step(step);
        const scope = this.loopScope(step, next);
        state.scope = scope;
        this.startScope(scope);
        next = this.loopStarting.get(step) ?? null;
      }
    } finally {
      this.loopStarting.delete(step);
    }
  }

  private loopIterationDone(step: StepState, scope: Scope): void {
    const state = step.container as LoopState;
    if (state.scope !== scope) return;
    const outs = this.collectOutputs(scope);
    if (outs) {
      step.outputs = { ...outs, iterations: scope.iteration + 1 };
      step.outputsJson = JSON.stringify(step.outputs);
    }
    const loop = step.node.step.loop;
    const max = loop?.maxIterations || 100;
    const n = scope.iteration;
    const run = step.scope.run;
    let verdict: { status: StepStatus; reason: string } | undefined;
    if (scope.stopped || run.stopping)
      verdict = { status: StepStatus.STEP_STATUS_STOPPED, reason: "stopped" };
    else if (scope.failed)
      verdict = { status: StepStatus.STEP_STATUS_FAILED, reason: `iteration ${n} failed` };
    else {
      try {
        const exprScope = this.scopeFor(step, scope);
        if (
          loop?.until &&
          evalCondition(loop.until, exprScope, `loop 'until' of step '${step.path}'`)
        ) {
          verdict = {
            status: StepStatus.STEP_STATUS_SUCCEEDED,
            reason: `'until' held after iteration ${n}`,
          };
        } else if (n + 1 >= max) {
          verdict = {
            status: StepStatus.STEP_STATUS_SUCCEEDED,
            reason: `reached max iterations (${max})`,
          };
        } else if (loop?.while) {
          exprScope.loop = { iteration: n + 1 };
          if (!evalCondition(loop.while, exprScope, `loop 'while' of step '${step.path}'`)) {
            verdict = {
              status: StepStatus.STEP_STATUS_SUCCEEDED,
              reason: `'while' no longer held before iteration ${n + 1}`,
            };
          }
        }
      } catch (err) {
        this.addMessage(step, 4, (err as Error).message);
        verdict = { status: StepStatus.STEP_STATUS_FAILED, reason: (err as Error).message };
      }
    }
    this.dropScope(scope);
    if (verdict) {
      state.scope = undefined;
      this.finishStep(step, verdict.status, verdict.reason);
      return;
    }
    this.setReason(step, `iteration ${n + 1}`);
    this.startLoopIteration(step, state, n + 1);
  }

  // -------------------------------------------------------------------------------------
  // Subworkflow

  /**
   * The child run's idempotency key: the same for a crash-recovered start of the same attempt
   * (which then finds the child already committed), new for a retry or a restart.
   */
  private childRequestId(step: StepState, attempt: number): string {
    const run = step.scope.run;
    const key = `subworkflow:${run.id}/${step.path}#${run.restartCount}.${attempt}`;
    if (key.length <= 200) return key;
    return `subworkflow:${createHash("sha256").update(key).digest("hex")}`;
  }

  /**
   * Why `run` must not start a child of `workflowId`: nesting past MAX_SUBWORKFLOW_DEPTH (a
   * workflow starting itself through others would never end), or a child that would queue
   * behind its own ancestor (run strategy limit) and so wait for ever. Undefined when fine.
   */
  private subworkflowCycle(run: RunState, workflowId: string): string | undefined {
    const chain: RunState[] = [run];
    for (let r = run; r.parentRunId; ) {
      const parent = this.runs.get(r.parentRunId);
      if (!parent || chain.includes(parent)) break;
      chain.unshift(parent);
      r = parent;
    }
    const names = [...chain.map((r) => r.workflowId), workflowId].join(" → ");
    if (chain.length >= MAX_SUBWORKFLOW_DEPTH) {
      return `subworkflows nest deeper than ${MAX_SUBWORKFLOW_DEPTH} levels: ${names}; a workflow that starts itself through others must stop recursing (add a condition on the edge to the subworkflow step)`;
    }
    const ancestor = chain.find((r) => r.workflowId === workflowId);
    if (ancestor) {
      // SKIP_IF_RUNNING would hand back the ancestor itself as the child.
      const skips =
        ancestor.def.runStrategy?.mode === RunStrategyMode.RUN_STRATEGY_MODE_SKIP_IF_RUNNING;
      const limit = skips ? 1 : this.concurrencyLimit(ancestor.def);
      const running = (this.byWorkflow.get(workflowId) ?? []).filter(
        (r) => r.status === RunStatus.RUN_STATUS_RUNNING,
      ).length;
      if (running >= limit) {
        return `the child run of workflow '${workflowId}' would wait for its own ancestor run ${ancestor.id} (its run strategy allows ${limit} running at a time): ${names}`;
      }
    }
    return undefined;
  }

  /** `resumed`: recovery of a RUNNING step whose child was not recorded yet (same attempt). */
  private startSubworkflow(step: StepState, resumed = false): void {
    const sub = step.node.step.subworkflow;
    const run = step.scope.run;
    if (!sub) {
      this.failStep(step, "subworkflow step without a 'subworkflow' section");
      return;
    }
    let params: Record<string, JsonValue>;
    try {
      params = {};
      for (const p of sub.params)
        params[p.name] = this.evalParam(p, step, { ...(step.params ?? {}), ...params });
    } catch (err) {
      this.failStep(step, (err as Error).message);
      return;
    }
    const cycle = this.subworkflowCycle(run, sub.workflowId);
    if (cycle) {
      this.failStep(step, cycle);
      return;
    }
    step.startedAt ??= this.now();
    if (!resumed || step.attemptCount === 0) step.attemptCount += 1;
    const number = step.attemptCount;
    this.setStatus(step, StepStatus.STEP_STATUS_RUNNING, `starting workflow '${sub.workflowId}'`);
    this.armContainerTimeout(step);
    const started = this.startRun({
      workflowId: sub.workflowId,
      version: sub.version || 0,
      params,
      requestId: this.childRequestId(step, number),
      initiator: {
        kind: InitiatorKind.INITIATOR_KIND_SUBWORKFLOW,
        detail: step.path,
        parentRunId: run.id,
        client: undefined,
      },
      runTs: run.runTs,
    });
    const attached = started.then(
      ({ runId }) => {
        if (step.status !== StepStatus.STEP_STATUS_RUNNING || step.attemptCount !== number) {
          this.stopRun(runId, "parent step no longer running");
          return;
        }
        step.book = { ...step.book, c: runId };
        const attempt = new AttemptState(
          step,
          number,
          "run",
          runId,
          { cpus: 0, memMb: 0, gpus: 0, diskMb: 0 },
          AttemptStatus.ATTEMPT_STATUS_RUNNING,
        );
        attempt.startedAt = this.now();
        step.attempt = attempt;
        this.journal.attempt(attempt);
        this.setReason(step, `waiting for run ${runId} of '${sub.workflowId}'`);
        this.childWaiters.set(runId, step);
        const child = this.runs.get(runId);
        if (!child) this.background(this.childEnded(runId), `ending step '${step.path}'`);
      },
      (err: Error) =>
        this.failStep(step, `cannot start workflow '${sub.workflowId}': ${err.message}`),
    );
    this.background(attached, `starting the subworkflow of step '${step.path}' in run ${run.id}`);
  }

  private async childEnded(childRunId: string): Promise<void> {
    const step = this.childWaiters.get(childRunId);
    if (!step) return;
    const row = await this.queries.runRow(childRunId);
    if (
      !row ||
      row.status === RunStatus.RUN_STATUS_QUEUED ||
      row.status === RunStatus.RUN_STATUS_RUNNING
    )
      return;
    this.childWaiters.delete(childRunId);
    if (step.status !== StepStatus.STEP_STATUS_RUNNING) return;
    const outputs = JSON.parse(row.outputs_json) as Record<string, JsonValue>;
    step.outputs = outputs;
    step.outputsJson = row.outputs_json;
    const a = step.attempt;
    if (a) {
      a.endedAt = this.now();
      a.status =
        row.status === RunStatus.RUN_STATUS_SUCCEEDED
          ? AttemptStatus.ATTEMPT_STATUS_SUCCEEDED
          : AttemptStatus.ATTEMPT_STATUS_FAILED;
      a.message = `run ${childRunId} ${RunStatus[row.status]}`;
      this.journal.attempt(a);
    }
    switch (row.status) {
      case RunStatus.RUN_STATUS_SUCCEEDED:
        this.finishStep(step, StepStatus.STEP_STATUS_SUCCEEDED, `run ${childRunId} succeeded`);
        break;
      case RunStatus.RUN_STATUS_TIMED_OUT:
        this.finishStep(step, StepStatus.STEP_STATUS_TIMED_OUT, `run ${childRunId} timed out`);
        break;
      case RunStatus.RUN_STATUS_STOPPED:
        this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, `run ${childRunId} was stopped`);
        break;
      default:
        this.finishStep(
          step,
          StepStatus.STEP_STATUS_FAILED,
          `run ${childRunId} failed${row.message ? `: ${row.message}` : ""}`,
        );
    }
  }

  // -------------------------------------------------------------------------------------
  // Finishing runs

  private finishRun(run: RunState): void {
    if (run.status !== RunStatus.RUN_STATUS_RUNNING && run.status !== RunStatus.RUN_STATUS_QUEUED)
      return;
    let status: RunStatus;
    if (run.stopping) status = run.stopStatus ?? RunStatus.RUN_STATUS_STOPPED;
    else if (run.failed) status = RunStatus.RUN_STATUS_FAILED;
    else if (run.stoppedSteps) status = RunStatus.RUN_STATUS_STOPPED;
    else status = RunStatus.RUN_STATUS_SUCCEEDED;
    if (status === RunStatus.RUN_STATUS_FAILED && !run.message) {
      const failed = run.root.steps.filter(
        (s) =>
          s &&
          (s.status === StepStatus.STEP_STATUS_FAILED ||
            s.status === StepStatus.STEP_STATUS_TIMED_OUT) &&
          !s.book.i,
      );
      run.message =
        failed.length > 0
          ? `step ${failed.map((s) => `'${s.path}'`).join(", ")} failed`
          : "a step failed";
    }
    const outputs: Record<string, JsonValue> = {};
    for (const i of run.graph.sinks) {
      const st = run.root.steps[i];
      for (const [k, v] of Object.entries(st?.outputs ?? {})) outputs[`${st?.node.id}.${k}`] = v;
    }
    run.outputs = outputs;
    run.outputsJson = JSON.stringify(outputs);
    run.status = status;
    run.endedAt = this.now();
    if (run.timeoutTimer) clearTimeout(run.timeoutTimer);
    run.timeoutTimer = undefined;
    this.touchRun(run);
    this.emitRun(run, run.message);
    const live = this.byWorkflow.get(run.workflowId) ?? [];
    const idx = live.indexOf(run);
    if (idx >= 0) live.splice(idx, 1);
    if (live.length === 0) this.byWorkflow.delete(run.workflowId);
    this.journal.afterCommit(() => {
      this.runs.delete(run.id);
      this.notifier.publish(RUN_ENDED);
      if (this.childWaiters.has(run.id))
        this.background(this.childEnded(run.id), `ending the parent step of run ${run.id}`);
    });
    for (const other of [...live]) this.maybeBegin(other);
  }

  // -------------------------------------------------------------------------------------
  // Stopping

  /** StopRun. No-op for a finished run. */
  stopRun(runId: string, reason: string): boolean {
    const run = this.runs.get(runId);
    if (
      !run ||
      (run.status !== RunStatus.RUN_STATUS_RUNNING && run.status !== RunStatus.RUN_STATUS_QUEUED)
    )
      return false;
    this.stopRunInternal(run, reason || "stopped by request", RunStatus.RUN_STATUS_STOPPED);
    return true;
  }

  private stopRunInternal(run: RunState, reason: string, status: RunStatus): void {
    if (run.stopping) return;
    run.stopping = true;
    run.stopStatus = status;
    run.message = reason;
    this.touchRun(run);
    if (run.status === RunStatus.RUN_STATUS_QUEUED) {
      this.finishRun(run);
      return;
    }
    this.stopScope(run.root, reason);
  }

  private stopScope(scope: Scope, reason: string): void {
    scope.stopped = true;
    for (const step of [...scope.steps]) if (step) this.stopStepInternal(step, reason);
  }

  private stopStepInternal(step: StepState, reason: string): void {
    if (isTerminalStep(step.status)) return;
    const a = step.attempt;
    if (ACTIVE_STEP.has(step.status) && a && a.endedAt === null && step.node.kind === "task") {
      this.recordKillReason(a, "stop");
      if (a.kind === "inline") a.abort?.abort();
      else {
        const backend = this.opts.backend;
        this.journal.afterCommit(() => backend.kill(a.taskId));
      }
      return;
    }
    const c = step.container;
    if (c && step.status === StepStatus.STEP_STATUS_RUNNING) {
      if (c.kind === "foreach") {
        step.book = { ...step.book, h: 1 };
        this.journal.step(step);
        for (const s of [...c.live.values()]) this.stopScope(s, reason);
        if (c.live.size === 0) this.finishForeach(step, c);
        return;
      }
      if (c.kind === "loop") {
        if (c.scope) this.stopScope(c.scope, reason);
        else this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, reason);
        return;
      }
    }
    if (step.node.kind === "subworkflow" && step.status === StepStatus.STEP_STATUS_RUNNING) {
      const child = step.book.c;
      if (child && this.stopRun(child, `parent run stopped: ${reason}`)) return;
    }
    this.finishStep(step, StepStatus.STEP_STATUS_STOPPED, reason);
  }

  /** StopStep: stops one step instance (and its children). */
  stopStep(runId: string, path: string): boolean {
    const run = this.runs.get(runId);
    const step = run?.byPath.get(path);
    if (!run || !step || isTerminalStep(step.status)) return false;
    this.stopStepInternal(step, "stopped by request");
    return true;
  }

  // -------------------------------------------------------------------------------------
  // Jobs: identity, context, reports

  private liveAttempt(id: StepIdentity): { step: StepState; attempt: AttemptState } | undefined {
    const step = this.runs.get(id.runId)?.byPath.get(id.path);
    const attempt = step?.attempt;
    if (!step || !attempt || attempt.number !== id.attempt || attempt.endedAt !== null)
      return undefined;
    return { step, attempt };
  }

  isAttemptLive(id: StepIdentity): boolean {
    return this.liveAttempt(id) !== undefined;
  }

  jobContext(id: StepIdentity) {
    const live = this.liveAttempt(id);
    if (!live)
      throw new EngineError(
        "PERMISSION_DENIED",
        `attempt ${id.attempt} of step '${id.path}' in run '${id.runId}' is not running`,
      );
    const run = live.step.scope.run;
    return {
      runId: run.id,
      workflowId: run.workflowId,
      path: live.step.path,
      stepId: live.step.node.id,
      attempt: live.attempt.number,
      params: live.step.params ?? {},
      runTs: run.runTs,
      // The SDKs number their next Report batch from here (a second reporter of the attempt).
      appliedSequence: live.attempt.reportSeq,
    };
  }

  /** Applies a Report batch; resolves with the applied sequence once durable. */
  async report(id: StepIdentity, sequence: number, items: ReportItem[]): Promise<number> {
    const live = this.liveAttempt(id);
    if (!live)
      throw new EngineError(
        "PERMISSION_DENIED",
        `attempt ${id.attempt} of step '${id.path}' in run '${id.runId}' is not running; its token no longer works`,
      );
    const { step, attempt } = live;
    if (sequence <= attempt.reportSeq) {
      // A repeat (a client retry racing its first call): the batch that set reportSeq may
      // still be on its way to the database, and "applied" must mean durable.
      const applied = attempt.reportSeq;
      await this.journal.committed();
      return applied;
    }
    for (let i = 0; i < items.length; i++) validateReportItem(items[i] as ReportItem, i);
    checkStepReportBounds(step, items);
    this.applyReportItems(step, items);
    attempt.lastHeartbeat = this.now();
    attempt.reportSeq = sequence;
    this.journal.attempt(attempt);
    await this.journal.committed();
    return sequence;
  }

  private ensureReports(step: StepState): StepReportsState {
    step.reports ??= { milestones: [], links: [], counters: {}, images: [], messages: [] };
    return step.reports;
  }

  private setOutput(step: StepState, name: string, value: JsonValue): void {
    step.outputs = { ...(step.outputs ?? {}), [name]: value };
    step.outputsJson = JSON.stringify(step.outputs);
    this.journal.step(step);
  }

  private addMessage(step: StepState, level: number, text: string): void {
    const r = this.ensureReports(step);
    r.messages.push({ level, text: text.slice(0, 4096), time: this.now() });
    if (r.messages.length > MAX_KEPT_MESSAGES)
      r.messages.splice(0, r.messages.length - MAX_KEPT_MESSAGES);
    step.reportsJson = JSON.stringify(r);
    this.journal.step(step);
  }

  private applyReportItem(step: StepState, item: ReportItem): void {
    this.applyReportItems(step, [item]);
  }

  /**
   * Applies report items in order, each with its event, and serialises the step's outputs
   * and reports once for the whole batch (not once per item: a batch of 500 counters would
   * otherwise re-encode the step's reports 500 times).
   */
  private applyReportItems(step: StepState, items: readonly ReportItem[]): void {
    const run = step.scope.run;
    const now = this.now();
    let outputs: Record<string, JsonValue> | undefined;
    let reportsChanged = false;
    let stepChanged = false;
    for (const item of items) {
      const k = item.kind;
      if (!k) continue;
      let data: Record<string, unknown>;
      switch (k.$case) {
        case "output": {
          // Copy once per batch: other code may hold the previous outputs object.
          outputs ??= { ...(step.outputs ?? {}) };
          outputs[k.value.name] = (k.value.value ?? null) as JsonValue;
          data = { k: "output", n: k.value.name, v: k.value.value ?? null };
          break;
        }
        case "progress":
          step.progress = Math.max(0, Math.min(100, k.value.percent));
          step.message = k.value.message;
          stepChanged = true;
          data = { k: "progress", p: step.progress, m: k.value.message };
          break;
        case "milestone":
          this.ensureReports(step).milestones.push({ name: k.value, time: now });
          reportsChanged = true;
          data = { k: "milestone", n: k.value };
          break;
        case "link": {
          const r = this.ensureReports(step);
          r.links = r.links.filter((l) => l.name !== k.value.name);
          r.links.push({ name: k.value.name, url: k.value.url });
          reportsChanged = true;
          data = { k: "link", n: k.value.name, u: k.value.url };
          break;
        }
        case "counter": {
          const r = this.ensureReports(step);
          r.counters[k.value.name] = (r.counters[k.value.name] ?? 0) + k.value.delta;
          reportsChanged = true;
          data = { k: "counter", n: k.value.name, d: k.value.delta };
          break;
        }
        case "image": {
          const r = this.ensureReports(step);
          r.images = r.images.filter((i) => i.name !== k.value.name);
          r.images.push({ name: k.value.name, mimeType: k.value.mimeType });
          reportsChanged = true;
          this.journal.image([
            run.id,
            step.path,
            k.value.name,
            k.value.mimeType,
            Buffer.from(k.value.data),
          ]);
          data = { k: "image", n: k.value.name, t: k.value.mimeType };
          break;
        }
        case "message": {
          const r = this.ensureReports(step);
          r.messages.push({ level: k.value.level || 2, text: k.value.text, time: now });
          if (r.messages.length > MAX_KEPT_MESSAGES)
            r.messages.splice(0, r.messages.length - MAX_KEPT_MESSAGES);
          reportsChanged = true;
          data = { k: "message", l: k.value.level || 2, x: k.value.text, ts: now };
          break;
        }
        case "heartbeat":
          if (step.attempt) step.attempt.lastHeartbeat = now;
          continue;
        default:
          continue;
      }
      this.journal.event(run, [
        run.id,
        run.nextSeq++,
        now,
        step.path,
        EventKind.report,
        0,
        "",
        JSON.stringify(data),
      ]);
    }
    if (outputs) {
      step.outputs = outputs;
      step.outputsJson = JSON.stringify(outputs);
      stepChanged = true;
    }
    if (reportsChanged) {
      step.reportsJson = JSON.stringify(step.reports);
      stepChanged = true;
    }
    if (stepChanged) this.journal.step(step);
  }

  // -------------------------------------------------------------------------------------
  // Artifacts

  private withRevisionLock<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.revisionLocks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.revisionLocks.set(key, settled);
    void settled.then(() => {
      if (this.revisionLocks.get(key) === settled) this.revisionLocks.delete(key);
    });
    return next;
  }

  /**
   * Records announcements (assigning revisions), calling `inSameTick` in the tick that records
   * them so a step's success and its artifacts commit together. Resolves once durable.
   */
  async announce(
    items: Array<{
      namespace: string;
      name: string;
      partitions: Record<string, string>;
      uri: string;
      metadata: Record<string, unknown>;
      producerRunId: string;
      producerPath: string;
    }>,
    inSameTick?: () => void,
  ): Promise<Array<{ revision: number; announcedAt: number }>> {
    const lockKey = items
      .map((i) => this.artifactKey(i.namespace, i.name, i.partitions))
      .sort()
      .join("|");
    return this.withRevisionLock(lockKey, async () => {
      const revisions = await Promise.all(
        items.map((i) => this.queries.maxRevision(i.namespace, i.name, partitionKey(i.partitions))),
      );
      const now = this.now();
      const out = items.map((item, n) => {
        const revision = (revisions[n] ?? 0) + 1;
        this.journal.artifact([
          item.namespace,
          item.name,
          partitionKey(item.partitions),
          JSON.stringify(item.partitions),
          item.uri,
          JSON.stringify(item.metadata ?? {}),
          item.producerRunId,
          item.producerPath,
          now,
          revision,
        ]);
        const run = item.producerRunId ? this.runs.get(item.producerRunId) : undefined;
        if (run) {
          this.journal.event(run, [
            run.id,
            run.nextSeq++,
            now,
            item.producerPath,
            EventKind.artifact,
            0,
            "",
            `${item.name}{${partitionKey(item.partitions)}}`,
          ]);
        }
        return { revision, announcedAt: now };
      });
      inSameTick?.();
      await this.journal.committed();
      for (const [n, item] of items.entries()) {
        const waiters = this.artifactWaiters.get(
          this.artifactKey(item.namespace, item.name, item.partitions),
        );
        if (waiters)
          for (const st of [...waiters]) (st as StepState & { recheck?: () => void }).recheck?.();
        for (const l of this.artifactListeners) {
          try {
            l({
              namespace: item.namespace,
              name: item.name,
              partitions: item.partitions,
              uri: item.uri,
              metadata: item.metadata ?? {},
              revision: out[n]?.revision ?? 0,
            });
          } catch (err) {
            this.log.warn("artifact listener failed", { error: (err as Error).message });
          }
        }
      }
      return out;
    });
  }

  // -------------------------------------------------------------------------------------
  // Live overlays for readers

  /** Committed step counts of a live run (undefined when the run is not live). */
  liveStepCounts(runId: string): Record<string, number> | undefined {
    const run = this.runs.get(runId);
    return run ? (JSON.parse(run.stepCountsJson()) as Record<string, number>) : undefined;
  }

  /** Records an idempotency key of a mutating call (restart, announce) durably. */
  async recordRequest(key: string, resultJson: string): Promise<void> {
    this.journal.requestKey(key, resultJson);
    await this.journal.committed();
  }

  /** The namespace of a live run. */
  runNamespace(runId: string): string | undefined {
    return this.runs.get(runId)?.namespace;
  }

  isLive(runId: string): boolean {
    return this.runs.has(runId);
  }

  // -------------------------------------------------------------------------------------
  // Restart and retry (rebuild from rows, with some rows reset)

  async restartRun(input: {
    runId: string;
    from: "failed" | "step" | "beginning";
    stepId?: string;
    params?: Record<string, unknown>;
  }): Promise<void> {
    return this.exclusiveReopen(input.runId, () => this.restartRunNow(input));
  }

  /**
   * One Restart/RetryStep per run at a time: two interleaved ones would both read the finished
   * run, both pass the "not running" check and rebuild it twice (every step run twice).
   */
  private async exclusiveReopen(runId: string, fn: () => Promise<void>): Promise<void> {
    if (this.reopening.has(runId)) {
      throw new EngineError(
        "FAILED_PRECONDITION",
        `run '${runId}' is being restarted or retried by another request; try again when it is RUNNING`,
      );
    }
    this.reopening.add(runId);
    try {
      await fn();
    } finally {
      this.reopening.delete(runId);
    }
  }

  private async restartRunNow(input: {
    runId: string;
    from: "failed" | "step" | "beginning";
    stepId?: string;
    params?: Record<string, unknown>;
  }): Promise<void> {
    this.assertRunning();
    if (this.runs.has(input.runId)) {
      const r = this.runs.get(input.runId) as RunState;
      throw new EngineError(
        "FAILED_PRECONDITION",
        `run '${input.runId}' is ${RunStatus[r.status]}; only a finished run can be restarted (stop it first)`,
      );
    }
    const row = await this.queries.runRow(input.runId);
    if (!row) throw new EngineError("NOT_FOUND", `run '${input.runId}' does not exist`);
    const found = await this.loadDefinition(row.workflow_id, row.version);
    if (!found)
      throw new EngineError(
        "NOT_FOUND",
        `workflow '${row.workflow_id}' version ${row.version} no longer exists`,
      );
    const graph = compileWorkflow(found.definition);
    let reset: Set<number>;
    const stepRows = await this.queries.stepRows(row.id);
    const top = new Map(stepRows.filter((r) => !r.path.includes("/")).map((r) => [r.path, r]));
    if (input.from === "step") {
      const node = graph.byId.get(input.stepId ?? "");
      if (!node) {
        throw new EngineError(
          "INVALID_ARGUMENT",
          `run '${row.id}' has no top-level step '${input.stepId}'`,
          [
            {
              field: "step_id",
              description: `unknown step '${input.stepId}'`,
              hint: `steps: ${[...graph.byId.keys()].join(", ")}`,
            },
          ],
        );
      }
      reset = downstreamOf(graph, node.index);
    } else if (input.from === "beginning") {
      reset = new Set(graph.nodes.map((n) => n.index));
    } else {
      reset = new Set();
      for (const node of graph.nodes) {
        const r = top.get(node.id);
        const st = r?.status ?? StepStatus.STEP_STATUS_NOT_STARTED;
        const book = r ? (JSON.parse(r.state_json) as StepBook) : {};
        if (
          st !== StepStatus.STEP_STATUS_SUCCEEDED &&
          !(st === StepStatus.STEP_STATUS_SKIPPED && !book.b)
        ) {
          for (const d of downstreamOf(graph, node.index)) reset.add(d);
        }
      }
    }
    const params =
      input.params && Object.keys(input.params).length > 0
        ? this.resolveRunParams(
            found.definition,
            input.params,
            { id: row.id, version: row.version, runTs: Number(row.run_ts) },
            JSON.parse(row.params_json),
          )
        : undefined;
    await this.reopen(row, found.definition, graph, stepRows, reset, params, true);
  }

  /** RetryStep: a failed/stopped/timed-out step instance tries again; a finished run resumes. */
  async retryStep(runId: string, path: string): Promise<void> {
    return this.exclusiveReopen(runId, () => this.retryStepNow(runId, path));
  }

  private async retryStepNow(runId: string, path: string): Promise<void> {
    this.assertRunning();
    const live = this.runs.get(runId);
    if (live) {
      const step = live.byPath.get(path);
      if (!step) throw new EngineError("NOT_FOUND", `run '${runId}' has no live step '${path}'`);
      this.assertRetryable(step.status, path);
      throw new EngineError(
        "FAILED_PRECONDITION",
        `run '${runId}' is still running; retry step '${path}' after the run ends, or restart it`,
      );
    }
    const row = await this.queries.runRow(runId);
    if (!row) throw new EngineError("NOT_FOUND", `run '${runId}' does not exist`);
    const stepRows = await this.queries.stepRows(runId);
    const target = stepRows.find((r) => r.path === path);
    if (!target) throw new EngineError("NOT_FOUND", `run '${runId}' has no step '${path}'`);
    this.assertRetryable(target.status, path);
    const found = await this.loadDefinition(row.workflow_id, row.version);
    if (!found)
      throw new EngineError(
        "NOT_FOUND",
        `workflow '${row.workflow_id}' version ${row.version} no longer exists`,
      );
    const graph = compileWorkflow(found.definition);
    // Reset the top-level step that contains the path and what it blocked downstream.
    const topId = path.split("/")[0]?.replace(/[[@].*$/, "") ?? "";
    const node = graph.byId.get(topId);
    if (!node) throw new EngineError("NOT_FOUND", `run '${runId}' has no step '${topId}'`);
    const reset = new Set<number>();
    for (const d of downstreamOf(graph, node.index)) {
      const r = stepRows.find((x) => x.path === (graph.nodes[d] as GraphNode).id);
      if (d === node.index || !r || r.status !== StepStatus.STEP_STATUS_SUCCEEDED) reset.add(d);
    }
    await this.reopen(row, found.definition, graph, stepRows, reset, undefined, false, path);
  }

  private assertRetryable(status: number, path: string): void {
    if (
      status !== StepStatus.STEP_STATUS_FAILED &&
      status !== StepStatus.STEP_STATUS_STOPPED &&
      status !== StepStatus.STEP_STATUS_TIMED_OUT
    ) {
      throw new EngineError(
        "FAILED_PRECONDITION",
        `step '${path}' is ${StepStatus[status]}; only FAILED, STOPPED or TIMED_OUT steps can be retried`,
      );
    }
  }

  /**
   * Brings a finished run back to life with the top-level steps in `reset` (and everything
   * under them) set back to NOT_STARTED. Kept steps keep their outcome and edges, so joins
   * rebuild exactly; reset steps rerun with new attempt numbers (history stays visible).
   * With `onlyPath`, only that nested step instance inside a reset container is re-run
   * and its siblings keep their outcome.
   */
  private async reopen(
    row: RunRecordRow,
    def: WorkflowDefinition,
    graph: Graph,
    stepRows: StepRecordRow[],
    reset: Set<number>,
    params: Record<string, JsonValue> | undefined,
    isRestart: boolean,
    onlyPath?: string,
  ): Promise<void> {
    const resetIds = new Set([...reset].map((i) => (graph.nodes[i] as GraphNode).id));
    const keep: StepRecordRow[] = [];
    const resetRows: StepRecordRow[] = [];
    const stale: string[] = [];
    for (const r of stepRows) {
      const top = r.path.split("/")[0]?.replace(/[[@].*$/, "") ?? "";
      if (!resetIds.has(top)) {
        keep.push(r);
        continue;
      }
      if (onlyPath !== undefined && r.path.includes("/")) {
        // Retrying inside a container: keep sibling iterations; reset the target and
        // everything not succeeded inside the same iteration scope.
        const scopePrefix = onlyPath.slice(0, onlyPath.lastIndexOf("/") + 1);
        if (
          r.path === onlyPath ||
          (r.path.startsWith(scopePrefix) && r.status !== StepStatus.STEP_STATUS_SUCCEEDED)
        ) {
          resetRows.push(r);
        } else if (
          isTerminalStep(r.status) &&
          r.status !== StepStatus.STEP_STATUS_SUCCEEDED &&
          !r.path.startsWith(scopePrefix)
        ) {
          keep.push(r);
        } else keep.push(r);
        continue;
      }
      if (r.path.includes("/")) stale.push(r.path);
      else resetRows.push(r);
    }
    const now = this.now();
    // Reset rows: back to NOT_STARTED with their attempt counts (numbers keep increasing).
    const rows: StepRecordRow[] = [...keep];
    for (const r of resetRows) {
      const book = JSON.parse(r.state_json) as StepBook;
      // A restart gives the step its whole retry budget again (Airflow's clear does the same):
      // the attempts so far stay visible but do not count against max_attempts.
      const kept: StepBook = r.attempt_count > 0 ? { f: r.attempt_count } : {};
      if (onlyPath !== undefined && r.path !== onlyPath && book.v) {
        kept.v = book.v;
        if (book.a) kept.a = book.a;
      }
      rows.push({
        ...r,
        status: StepStatus.STEP_STATUS_NOT_STARTED,
        reason: isRestart ? "restarted" : "retried",
        outputs_json: "{}",
        progress: -1,
        message: "",
        ready_at: null,
        started_at: null,
        ended_at: null,
        child_counts_json: "{}",
        state_json: JSON.stringify(kept),
      });
    }
    if (onlyPath !== undefined) {
      // Containers above the retried path are running again.
      const parts = onlyPath.split("/");
      let prefix = "";
      for (let i = 0; i < parts.length - 1; i++) {
        prefix += parts[i];
        const containerPath = prefix.replace(/[[@][^[@]*$/, "");
        const c = rows.find((x) => x.path === containerPath);
        if (c) {
          c.status = StepStatus.STEP_STATUS_RUNNING;
          c.ended_at = null;
        }
        prefix += "/";
      }
    }
    const floor = stale.length > 0 ? await this.attemptFloor(row.id) : undefined;
    if (this.runs.has(row.id)) {
      throw new EngineError("FAILED_PRECONDITION", `run '${row.id}' is already running again`);
    }
    const run = this.rebuild(
      {
        ...row,
        status: RunStatus.RUN_STATUS_RUNNING,
        params_json: params ? JSON.stringify(params) : row.params_json,
      },
      def,
      graph,
      rows,
      [],
      (await this.queries.maxSeq(row.id)) + 1,
    );
    // Attempt numbers of removed rows keep counting up, so history is never overwritten.
    if (stale.length > 0) run.attemptFloor = floor;
    if (isRestart) run.restartCount += 1;
    // Iterations of reset containers are rerun from scratch; their old rows would shadow the
    // new ones (their attempts stay). Removed in the commit that records the reopened run, so
    // a crash cannot leave a finished run without them.
    if (stale.length > 0) this.journal.deleteSteps(row.id, stale);
    run.endedAt = null;
    run.message = "";
    if (isRestart) {
      for (const st of run.byPath.values())
        if (st.status === StepStatus.STEP_STATUS_NOT_STARTED) st.skipCheck = true;
    }
    this.touchRun(run);
    this.emitRun(run, isRestart ? `restarted (${run.restartCount})` : "resumed to retry a step");
    for (const st of resetRows) {
      const s = run.byPath.get(st.path);
      if (s) {
        this.journal.step(s);
        this.emitStep(s, s.reason);
      }
    }
    void now;
    this.armRunTimeout(run);
    this.resume(run);
    await this.journal.committed();
  }

  private async attemptFloor(runId: string): Promise<Map<string, number>> {
    const floor = new Map<string, number>();
    for (const a of await this.queries.attemptRows(runId)) {
      floor.set(a.path, Math.max(floor.get(a.path) ?? 0, a.number));
    }
    return floor;
  }

  // -------------------------------------------------------------------------------------
  // Recovery: rebuild live runs from rows

  private async recover(): Promise<void> {
    const rows = await this.queries.unfinishedRunRows();
    for (const row of rows) {
      try {
        const found = await this.loadDefinition(row.workflow_id, row.version);
        if (!found) {
          this.log.error("cannot recover run: its workflow version is gone", { runId: row.id });
          await this.failUnrecoverable(
            row,
            `cannot be recovered: workflow '${row.workflow_id}' version ${row.version} no longer exists`,
          );
          continue;
        }
        const graph = compileWorkflow(found.definition);
        const [stepRows, attemptRows, maxSeq] = await Promise.all([
          this.queries.stepRows(row.id),
          this.queries.liveAttemptRows(row.id),
          this.queries.maxSeq(row.id),
        ]);
        const run = this.rebuild(row, found.definition, graph, stepRows, attemptRows, maxSeq + 1);
        if (run.restartCount > 0) run.attemptFloor = await this.attemptFloor(row.id);
        await this.findRetryAnchors(run);
        this.resume(run);
      } catch (err) {
        this.log.error("cannot recover run", { runId: row.id, error: (err as Error).message });
        await this.failUnrecoverable(row, `cannot be recovered: ${(err as Error).message}`).catch(
          (e: Error) => this.log.error("cannot fail run", { runId: row.id, error: e.message }),
        );
      }
    }
    // Parents of children that could not be recovered (failed above) learn it now.
    for (const childId of [...this.childWaiters.keys()]) {
      if (!this.runs.has(childId))
        this.background(this.childEnded(childId), `re-attaching to run ${childId}`);
    }
    if (rows.length > 0) this.log.info("recovered runs", { count: rows.length });
  }

  /**
   * Ends a run recovery cannot rebuild as FAILED, with its event, in one transaction: left
   * RUNNING it would look alive for ever, and a parent subworkflow step would wait for it.
   */
  private async failUnrecoverable(row: RunRecordRow, message: string): Promise<void> {
    const now = this.now();
    const seq = (await this.queries.maxSeq(row.id)) + 1;
    const failed: Record<string, unknown> = {
      ...row,
      status: RunStatus.RUN_STATUS_FAILED,
      message,
      ended_at: now,
    };
    const batch = emptyBatch();
    batch.runs.push(RUN_COLUMNS.map((c) => failed[c]) as RunRow);
    batch.events.push([
      row.id,
      seq,
      now,
      "",
      EventKind.runStatus,
      RunStatus.RUN_STATUS_FAILED,
      message,
      null,
    ]);
    await this.writer.write(batch);
  }

  /** RETRYING steps wait out their backoff from their last attempt's end, not from recovery. */
  private async findRetryAnchors(run: RunState): Promise<void> {
    const retrying = [...run.byPath.values()].filter(
      (s) => s.status === StepStatus.STEP_STATUS_RETRYING,
    );
    if (retrying.length === 0) return;
    const ended = new Map<string, number>();
    for (const a of await this.queries.attemptRows(run.id)) {
      if (a.ended_at !== null)
        ended.set(a.path, Math.max(ended.get(a.path) ?? 0, Number(a.ended_at)));
    }
    for (const step of retrying) {
      const at = ended.get(step.path);
      if (at !== undefined) this.retryFrom.set(step, at);
    }
  }

  /** Builds the in-memory state of a run from its rows (no side effects besides registering). */
  private rebuild(
    row: RunRecordRow,
    def: WorkflowDefinition,
    graph: Graph,
    stepRows: StepRecordRow[],
    attemptRows: AttemptRecordRow[],
    nextSeq: number,
  ): RunState {
    const run = new RunState(
      row.id,
      row.workflow_id,
      row.version,
      row.namespace,
      def,
      graph,
      row.status as RunStatus,
      JSON.parse(row.params_json),
      row.params_json,
      row.initiator_json,
      row.tags_json,
      Number(row.created_at),
      Number(row.run_ts),
      row.restart_count,
      row.request_id,
      row.parent_run_id,
      row.priority,
    );
    run.fresh = false;
    run.nextSeq = nextSeq;
    run.startedAt = row.started_at === null ? null : Number(row.started_at);
    run.message = row.message;
    run.root = new Scope(run, graph, "", "", undefined, undefined, -1, undefined, undefined);
    const rowsByPath = new Map(stepRows.map((r) => [r.path, r]));
    const attemptsByPath = new Map<string, AttemptRecordRow>();
    for (const a of attemptRows) attemptsByPath.set(a.path, a);
    this.runs.set(run.id, run);
    const live = this.byWorkflow.get(run.workflowId) ?? [];
    live.push(run);
    this.byWorkflow.set(run.workflowId, live);
    if (run.status === RunStatus.RUN_STATUS_RUNNING)
      this.rebuildScope(run.root, rowsByPath, attemptsByPath);
    return run;
  }

  private stepFromRow(scope: Scope, node: GraphNode, r: StepRecordRow | undefined): StepState {
    const step = new StepState(
      scope,
      node,
      scope.prefix + node.id,
      scope.sortPrefix + nodeKey(node.index),
    );
    if (r) {
      step.status = r.status;
      step.persistedStatus = r.status;
      step.reason = r.reason;
      step.paramsJson = r.params_json;
      step.params = JSON.parse(r.params_json);
      step.outputsJson = r.outputs_json;
      const outputs = JSON.parse(r.outputs_json) as Record<string, JsonValue>;
      step.outputs = Object.keys(outputs).length > 0 ? outputs : undefined;
      step.attemptCount = r.attempt_count;
      step.progress = r.progress;
      step.message = r.message;
      step.readyAt = r.ready_at === null ? null : Number(r.ready_at);
      step.startedAt = r.started_at === null ? null : Number(r.started_at);
      step.endedAt = r.ended_at === null ? null : Number(r.ended_at);
      step.childCountsJson = r.child_counts_json;
      step.loopIteration = r.loop_iteration;
      step.reportsJson = r.reports_json;
      const reports = JSON.parse(r.reports_json) as StepReportsState;
      if (reports.messages) step.reports = reports;
      step.book = JSON.parse(r.state_json) as StepBook;
    } else {
      this.journal.step(step);
    }
    scope.run.counts[step.status] = (scope.run.counts[step.status] ?? 0) + (r ? 1 : 0);
    return step;
  }

  private rebuildScope(
    scope: Scope,
    rows: Map<string, StepRecordRow>,
    attempts: Map<string, AttemptRecordRow>,
  ): void {
    const run = scope.run;
    for (const node of scope.graph.nodes) {
      const step = this.stepFromRow(scope, node, rows.get(scope.prefix + node.id));
      scope.steps[node.index] = step;
      run.byPath.set(step.path, step);
      if (!isTerminalStep(step.status)) scope.pending++;
      if (
        isTerminalStep(step.status) &&
        (step.status === StepStatus.STEP_STATUS_FAILED ||
          step.status === StepStatus.STEP_STATUS_TIMED_OUT) &&
        step.book.b
      ) {
        scope.failed = true;
        if (!scope.owner) run.failed = true;
      }
      if (step.status === StepStatus.STEP_STATUS_STOPPED && step.book.b && !scope.stopped)
        scope.failed = true;
      const a = attempts.get(step.path);
      if (
        a &&
        (step.status === StepStatus.STEP_STATUS_LAUNCHING ||
          step.status === StepStatus.STEP_STATUS_RUNNING)
      ) {
        const kind =
          node.kind === "subworkflow"
            ? "run"
            : this.opts.stepTypes.get(step.type)?.kind === "inline"
              ? "inline"
              : "task";
        const attempt = new AttemptState(
          step,
          a.number,
          kind,
          a.task_id,
          JSON.parse(a.resources_json),
          a.status,
        );
        attempt.agentId = a.agent_id;
        attempt.startedAt = a.started_at === null ? null : Number(a.started_at);
        attempt.reportSeq = Number(a.report_seq);
        attempt.message = a.message;
        attempt.killReason = killReasonOf(a.message);
        step.attempt = attempt;
        if (kind === "task") this.tasks.set(attempt.taskId, attempt);
      }
      // Containers: rebuild their live iterations.
      if (
        node.kind === "foreach" &&
        step.status === StepStatus.STEP_STATUS_RUNNING &&
        step.book.v &&
        step.book.a
      ) {
        const values = step.book.v;
        const total = values.length === 0 ? 0 : values.reduce((n, v) => n * v.length, 1);
        const state: ForeachState = {
          kind: "foreach",
          axes: step.book.a,
          values,
          total,
          next: 0,
          live: new Map(),
          succeeded: 0,
          failed: 0,
          stopped: 0,
          outputs: new Map(),
          concurrency: node.step.foreach?.concurrency ?? 0,
        };
        step.container = state;
        const prefix = `${step.path}[`;
        const seen = new Set<number>();
        for (const p of rows.keys()) {
          if (!p.startsWith(prefix)) continue;
          const close = p.indexOf("]/", prefix.length);
          if (close < 0) continue;
          const idx = Number(p.slice(prefix.length, close));
          if (Number.isInteger(idx) && p.slice(close + 2).indexOf("/") < 0) seen.add(idx);
        }
        for (const idx of [...seen].sort((x, y) => x - y)) {
          state.next = Math.max(state.next, idx + 1);
          const sub = this.iterationScope(step, state, idx);
          if (step.book.h) sub.stopped = true;
          this.rebuildScope(sub, rows, attempts);
          if (sub.pending === 0) {
            if (sub.stopped && !sub.failed) state.stopped++;
            else if (sub.failed) state.failed++;
            else state.succeeded++;
            const outs = this.collectOutputs(sub);
            if (outs) state.outputs.set(idx, outs);
            this.dropScope(sub);
          } else state.live.set(idx, sub);
        }
      } else if (node.kind === "loop" && step.status === StepStatus.STEP_STATUS_RUNNING) {
        const state: LoopState = { kind: "loop", iteration: step.loopIteration, scope: undefined };
        step.container = state;
        const sub = this.loopScope(step, step.loopIteration);
        this.rebuildScope(sub, rows, attempts);
        state.scope = sub;
      } else if (
        node.kind === "subworkflow" &&
        step.status === StepStatus.STEP_STATUS_RUNNING &&
        step.book.c
      ) {
        this.childWaiters.set(step.book.c, step);
      }
    }
    // Replay the edges of finished steps so joins know what arrived.
    for (const step of scope.steps) {
      if (!step || !isTerminalStep(step.status)) continue;
      const taken = new Set(step.book.t ?? []);
      step.node.succs.forEach((e, i) => {
        const target = scope.steps[e.to];
        if (!target) return;
        target.resolved++;
        if (step.book.b) target.blocked = true;
        else if (taken.has(i)) target.taken++;
      });
    }
  }

  /** Continues a rebuilt run: re-arms timers, re-queues work, re-evaluates joins. */
  private resume(run: RunState): void {
    if (run.status === RunStatus.RUN_STATUS_QUEUED) {
      this.maybeBegin(run);
      return;
    }
    this.armRunTimeout(run);
    this.countActiveByType(run);
    this.resumeScope(run.root);
  }

  /**
   * Takes the step-type slots of every attempt still active before anything queued is
   * dispatched again: counting them as the walk meets them let a queued step listed earlier
   * take a slot a running one already holds.
   */
  private countActiveByType(run: RunState): void {
    for (const step of run.byPath.values()) {
      if (!step.attempt || !ACTIVE_STEP.has(step.status) || step.node.kind !== "task") continue;
      if (this.typeLimit(run, step.type) <= 0) continue;
      run.runningByType.set(step.type, (run.runningByType.get(step.type) ?? 0) + 1);
      this.typeSlotHolders.add(step);
    }
  }

  private resumeScope(scope: Scope): void {
    if (scope.pending === 0) {
      this.scopeDone(scope);
      return;
    }
    for (const step of [...scope.steps]) {
      if (!step) continue;
      switch (step.status) {
        case StepStatus.STEP_STATUS_NOT_STARTED:
        case StepStatus.STEP_STATUS_ACTIVATED:
          this.evaluateJoin(step, false);
          break;
        case StepStatus.STEP_STATUS_WAITING_FOR_DATA:
        case StepStatus.STEP_STATUS_QUEUED:
          if (step.params === undefined) this.resolveStepParams(step);
          if (step.status === StepStatus.STEP_STATUS_WAITING_FOR_DATA) this.checkData(step);
          else this.dispatchQueued(step);
          break;
        case StepStatus.STEP_STATUS_RETRYING: {
          const wait = Math.max(
            0,
            (this.retryFrom.get(step) ?? step.endedAt ?? this.now()) +
              this.backoffMs(step) -
              this.now(),
          );
          this.armRetry(step, wait);
          break;
        }
        case StepStatus.STEP_STATUS_LAUNCHING:
        case StepStatus.STEP_STATUS_RUNNING:
          this.resumeActive(step);
          break;
        default:
          break;
      }
    }
  }

  private dispatchQueued(step: StepState): void {
    // A QUEUED container cannot happen; a queued task is planned again (same attempt number).
    this.dispatch(step);
  }

  private resumeActive(step: StepState): void {
    const c = step.container;
    if (c || step.node.kind === "subworkflow") this.armContainerTimeout(step);
    if (c?.kind === "foreach") {
      for (const s of [...c.live.values()]) this.resumeScope(s);
      if (!isTerminalStep(step.status)) this.materialize(step, c);
      return;
    }
    if (c?.kind === "loop") {
      if (c.scope) this.resumeScope(c.scope);
      return;
    }
    if (step.node.kind === "subworkflow") {
      if (step.book.c)
        this.background(this.childEnded(step.book.c), `re-attaching step '${step.path}'`);
      else this.startSubworkflow(step, true);
      return;
    }
    const a = step.attempt;
    if (!a) {
      // Launch intent without an attempt row cannot happen (same transaction); start over.
      this.startAttempt(step);
      return;
    }
    if (a.kind === "inline" && a.killReason) {
      // Stopped or timed out before the crash: that is how it ended, not lost.
      const timeout = a.killReason !== "stop";
      a.status = timeout
        ? AttemptStatus.ATTEMPT_STATUS_TIMED_OUT
        : AttemptStatus.ATTEMPT_STATUS_STOPPED;
      a.endedAt = this.now();
      a.message = timeout ? "timed out" : "stopped";
      this.journal.attempt(a);
      this.releaseTypeSlot(step);
      this.attemptFailed(step, { kind: timeout ? "timeout" : "stopped", message: a.message });
      return;
    }
    if (a.kind === "inline") {
      // Inline work lived in the dead process: record it as lost and run it again.
      a.status = AttemptStatus.ATTEMPT_STATUS_LOST;
      a.endedAt = this.now();
      a.message = "core restarted while it ran";
      this.journal.attempt(a);
      this.attemptNotCounted(step);
      this.releaseTypeSlot(step);
      step.attempt = undefined;
      this.startAttempt(step);
      return;
    }
    if (a.status === AttemptStatus.ATTEMPT_STATUS_RUNNING) this.armStepTimeout(step, a);
    // Task attempts wait for the backend's answer to reconcile (see start()).
  }
}

/**
 * Bounds of what a job can report (docs/engine.md, "Report limits"). Per item they keep one
 * call cheap; per step they keep a step's row (outputs_json, reports_json re-encoded on every
 * batch) and its images bounded however long a job runs. Chosen well above what a job shows in
 * a UI or passes downstream (Airflow's XCom and Flyte's outputs are meant for small values
 * too); bulk data belongs in artifacts.
 */
export const REPORT_LIMITS = {
  /** Per item. */
  outputBytes: MAX_OUTPUT_BYTES,
  imageBytes: 1024 * 1024,
  textBytes: 4096,
  nameChars: 256,
  urlChars: 8192,
  /** Per step instance. */
  outputs: 256,
  outputsBytes: 4 * 1024 * 1024,
  milestones: 1000,
  links: 100,
  counters: 1000,
  images: 50,
} as const;

/** Message levels of run.proto MessageLevel (0 = unspecified, read as INFO). */
const MAX_MESSAGE_LEVEL = 4;

function reportError(i: number, msg: string, hint: string): EngineError {
  return new EngineError("INVALID_ARGUMENT", `items[${i}]: ${msg}`, [
    { field: `items[${i}]`, description: msg, hint },
  ]);
}

function shown(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}…` : value;
}

function validateReportItem(item: ReportItem, i: number): void {
  const k = item.kind;
  const L = REPORT_LIMITS;
  const bad = (msg: string, hint = "") => {
    throw reportError(i, msg, hint);
  };
  const checkName = (what: string, name: string) => {
    if (!name) bad(`${what} name is empty`);
    if (name.length > L.nameChars)
      bad(
        `${what} name '${shown(name)}' is ${name.length} characters long, more than ${L.nameChars}`,
        `use names of at most ${L.nameChars} characters`,
      );
  };
  if (!k) {
    bad(
      "empty report item (set one of output, progress, milestone, link, counter, image, message, heartbeat)",
    );
    return;
  }
  switch (k.$case) {
    case "output": {
      checkName("output", k.value.name);
      if (!OUTPUT_NAME.test(k.value.name))
        bad(`output name '${k.value.name}' must be letters, digits and _`);
      const size = Buffer.byteLength(JSON.stringify(k.value.value ?? null));
      if (size > L.outputBytes)
        bad(
          `output '${k.value.name}' is ${size} bytes, more than 64 KiB`,
          "pass large data as an artifact (a URI) instead of an output",
        );
      break;
    }
    case "progress":
      if (!Number.isFinite(k.value.percent) || k.value.percent < 0 || k.value.percent > 100) {
        bad(`progress ${k.value.percent} must be between 0 and 100`);
      }
      if (Buffer.byteLength(k.value.message) > L.textBytes)
        bad(
          `progress message is ${Buffer.byteLength(k.value.message)} bytes, more than 4 KiB`,
          "shorten the message",
        );
      break;
    case "image":
      checkName("image", k.value.name);
      if (k.value.mimeType !== "image/png" && k.value.mimeType !== "image/svg+xml") {
        bad(
          `image '${k.value.name}' has mime type '${k.value.mimeType}'; use image/png or image/svg+xml`,
        );
      }
      if (k.value.data.length > L.imageBytes)
        bad(`image '${k.value.name}' is ${k.value.data.length} bytes, more than 1 MiB`);
      break;
    case "message":
      if (Buffer.byteLength(k.value.text) > L.textBytes) bad("message text is longer than 4 KiB");
      if (
        !Number.isInteger(k.value.level) ||
        k.value.level < 0 ||
        k.value.level > MAX_MESSAGE_LEVEL
      )
        bad(
          `message level ${k.value.level} is not a MessageLevel`,
          "use 1 (debug), 2 (info), 3 (warning) or 4 (error)",
        );
      break;
    case "link":
      checkName("link", k.value.name);
      if (!/^https?:\/\//.test(k.value.url))
        bad(`link '${k.value.name}' URL '${shown(k.value.url)}' must be absolute http(s)`);
      if (k.value.url.length > L.urlChars)
        bad(
          `link '${k.value.name}' URL is ${k.value.url.length} characters long, more than ${L.urlChars}`,
        );
      break;
    case "milestone":
      checkName("milestone", k.value);
      break;
    case "counter":
      checkName("counter", k.value.name);
      if (!Number.isFinite(k.value.delta))
        bad(`counter '${k.value.name}' delta ${k.value.delta} is not a finite number`);
      break;
    default:
      break;
  }
}

/**
 * The per-step bounds, checked for a whole batch before any of it is applied (a batch is
 * applied completely or not at all): the first item that would take the step past a limit is
 * named, with the limit.
 */
function checkStepReportBounds(step: StepState, items: readonly ReportItem[]): void {
  const L = REPORT_LIMITS;
  const r = step.reports;
  const outputs = step.outputs ?? {};
  // The step's counts and sizes are taken only when the batch has an item of their kind (-1
  // until then), so a call costs O(its items) unless it adds outputs or new counter names.
  let outputCount = -1;
  // Encoded size of the outputs object, kept up to date item by item.
  let outputBytes = -1;
  let milestones = r?.milestones.length ?? 0;
  let links = r?.links.length ?? 0;
  let counters = -1;
  let images = r?.images.length ?? 0;
  let newOutputs: Map<string, number> | undefined;
  let newNames: Set<string> | undefined;
  const fresh = (kind: string, name: string, known: boolean): boolean => {
    if (known) return false;
    newNames ??= new Set();
    const key = `${kind}\0${name}`;
    if (newNames.has(key)) return false;
    newNames.add(key);
    return true;
  };
  const over = (i: number, msg: string, hint: string) => {
    throw reportError(i, msg, hint);
  };
  for (let i = 0; i < items.length; i++) {
    const k = (items[i] as ReportItem).kind;
    if (!k) continue;
    switch (k.$case) {
      case "output": {
        const name = k.value.name;
        const size = Buffer.byteLength(JSON.stringify(k.value.value ?? null));
        if (outputBytes < 0) {
          outputCount = Object.keys(outputs).length;
          outputBytes = step.outputsJson ? Buffer.byteLength(step.outputsJson) : 2;
        }
        newOutputs ??= new Map();
        const before =
          newOutputs.get(name) ??
          (Object.hasOwn(outputs, name)
            ? Buffer.byteLength(JSON.stringify(outputs[name] ?? null))
            : undefined);
        if (before === undefined) {
          outputCount++;
          // "name": value, (quotes, colon, comma)
          outputBytes += Buffer.byteLength(name) + 4 + size;
          if (outputCount > L.outputs)
            over(
              i,
              `output '${name}' would be output number ${outputCount} of this step; a step has at most ${L.outputs} outputs`,
              "put many values into one output (a list or an object), or write an artifact",
            );
        } else {
          outputBytes += size - before;
        }
        newOutputs.set(name, size);
        if (outputBytes > L.outputsBytes)
          over(
            i,
            `output '${name}' would make this step's outputs ${outputBytes} bytes; a step's outputs are at most ${L.outputsBytes} bytes (4 MiB) in all`,
            "pass large data as an artifact (a URI) instead of outputs",
          );
        break;
      }
      case "milestone":
        if (++milestones > L.milestones)
          over(
            i,
            `milestone '${shown(k.value)}' would be milestone number ${milestones} of this step; a step has at most ${L.milestones} milestones`,
            "report milestones for phases, and progress or counters for items",
          );
        break;
      case "link":
        if (
          fresh("link", k.value.name, r?.links.some((l) => l.name === k.value.name) ?? false) &&
          ++links > L.links
        )
          over(
            i,
            `link '${shown(k.value.name)}' would be link number ${links} of this step; a step has at most ${L.links} links`,
            "reuse a link name to replace its URL",
          );
        break;
      case "counter":
        if (!fresh("counter", k.value.name, r ? Object.hasOwn(r.counters, k.value.name) : false))
          break;
        if (counters < 0) counters = r ? Object.keys(r.counters).length : 0;
        if (++counters > L.counters)
          over(
            i,
            `counter '${shown(k.value.name)}' would be counter number ${counters} of this step; a step has at most ${L.counters} counters`,
            "use fewer counter names (a counter adds up its deltas)",
          );
        break;
      case "image":
        if (
          fresh("image", k.value.name, r?.images.some((im) => im.name === k.value.name) ?? false) &&
          ++images > L.images
        )
          over(
            i,
            `image '${shown(k.value.name)}' would be image number ${images} of this step; a step has at most ${L.images} images`,
            "reuse an image name to replace the image",
          );
        break;
      default:
        break;
    }
  }
}

export { compileSteps };
