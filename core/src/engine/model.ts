// The engine's in-memory state of live runs, kept compact: one RunState per unfinished run,
// one Scope per graph instance (the top level, each live foreach/loop iteration), one
// StepState per materialised step instance. Finished iteration scopes are dropped (their rows
// are in the database), so a 100,000-iteration foreach holds only its live window. Every
// mutable object knows how to turn itself into the row the journal writes.
import { type RunStatus, StepStatus, type WorkflowDefinition } from "@kaon/proto";
import type { ResourceAmounts } from "../backends/backend.js";
import type { JsonValue } from "../steps/step-type.js";
import type { AttemptRow, RunRow, StepRow } from "../store/runs/rows.js";
import type { Graph, GraphNode } from "./graph.js";

export const STEP_STATUS_COUNT = 13;

export function isTerminalStep(s: StepStatus): boolean {
  return (
    s === StepStatus.STEP_STATUS_SUCCEEDED ||
    s === StepStatus.STEP_STATUS_FAILED ||
    s === StepStatus.STEP_STATUS_SKIPPED ||
    s === StepStatus.STEP_STATUS_STOPPED ||
    s === StepStatus.STEP_STATUS_TIMED_OUT
  );
}

/** What a finished step passes along each outgoing edge. */
export type Arrival = "taken" | "dead" | "blocked";

/** Bookkeeping a step keeps in its row's state_json so recovery can rebuild joins. */
export interface StepBook {
  /** Edge indexes taken when it finished (absent: none taken). */
  t?: number[];
  /** Set when it finished in a way that blocks its successors (failure, stop, upstream failure). */
  b?: 1;
  /** Foreach: the iteration values, decided when it started (one list per axis). */
  v?: JsonValue[][];
  /** Foreach: axis names. */
  a?: string[];
  /** Subworkflow: the child run id. */
  c?: string;
  /** The failure that counted against the run was ignored (ignore_failure). */
  i?: 1;
  /** Foreach: StopStep stopped it; no further iterations are materialised. */
  h?: 1;
  /** Container: its step timeout fired; it is being stopped and ends TIMED_OUT. */
  x?: 1;
  /** Attempts that do not count against max_attempts (lost to a crash of core, lost launches). */
  f?: number;
}

export class RunState {
  nextSeq = 1;
  status: RunStatus;
  root!: Scope;
  /** Live step instances by path (finished iterations are removed). */
  readonly byPath = new Map<string, StepState>();
  /** Committed step counts by StepStatus number (maintained by the journal). */
  readonly counts = new Float64Array(STEP_STATUS_COUNT);
  /** Running attempts by step type, for step_type_concurrency. */
  readonly runningByType = new Map<string, number>();
  /** Steps waiting for a step-type slot, by type. */
  readonly typeWaiters = new Map<string, StepState[]>();
  startedAt: number | null = null;
  endedAt: number | null = null;
  message = "";
  outputs: Record<string, JsonValue> = {};
  outputsJson = "{}";
  failed = false;
  stopping = false;
  stopStatus: RunStatus | undefined;
  stoppedSteps = false;
  timeoutTimer: NodeJS.Timeout | undefined;
  dirty = false;
  /** Attempt numbers already used by step instances whose rows a restart removed. */
  attemptFloor: Map<string, number> | undefined;
  /** KAON_PARAMS_FILE paths by params JSON (see Engine.paramsFile). */
  paramsFiles: Map<string, string> | undefined;
  /** The run's row was never written (a new run). */
  fresh = true;

  constructor(
    readonly id: string,
    readonly workflowId: string,
    readonly version: number,
    readonly namespace: string,
    readonly def: WorkflowDefinition,
    readonly graph: Graph,
    status: RunStatus,
    public params: Record<string, JsonValue>,
    public paramsJson: string,
    readonly initiatorJson: string,
    readonly tagsJson: string,
    readonly createdAt: number,
    readonly runTs: number,
    public restartCount: number,
    readonly requestId: string | null,
    readonly parentRunId: string | null,
    readonly priority: number,
  ) {
    this.status = status;
  }

  stepCountsJson(): string {
    const out: Record<string, number> = {};
    for (let i = 1; i < STEP_STATUS_COUNT; i++) {
      const n = this.counts[i] ?? 0;
      if (n > 0) out[StepStatus[i] as string] = n;
    }
    return JSON.stringify(out);
  }

  toRow(): RunRow {
    return [
      this.id,
      this.workflowId,
      this.version,
      this.namespace,
      this.status,
      this.paramsJson,
      this.initiatorJson,
      this.tagsJson,
      this.createdAt,
      this.startedAt,
      this.endedAt,
      this.message,
      this.stepCountsJson(),
      this.runTs,
      this.outputsJson,
      this.restartCount,
      this.requestId,
      this.parentRunId,
      this.priority,
    ];
  }
}

export interface ForeachState {
  kind: "foreach";
  /** Axis names and values (one list per axis). */
  axes: string[];
  values: JsonValue[][];
  total: number;
  /** Next iteration index to materialise. */
  next: number;
  /** Live iteration scopes by index. */
  live: Map<number, Scope>;
  /** Finished iterations by outcome. */
  succeeded: number;
  failed: number;
  stopped: number;
  /** Per-iteration merged outputs (sparse; only iterations that produced some). */
  outputs: Map<number, Record<string, JsonValue>>;
  concurrency: number;
  /** Set while materialize runs: an iteration that ends synchronously must not recurse into it. */
  materializing?: boolean;
}

export interface LoopState {
  kind: "loop";
  iteration: number;
  scope: Scope | undefined;
}

export interface SubworkflowState {
  kind: "subworkflow";
  childRunId: string | undefined;
}

export type ContainerState = ForeachState | LoopState | SubworkflowState;

export class Scope {
  /** Step states by node index. */
  readonly steps: StepState[] = [];
  /** Steps not yet terminal. */
  pending = 0;
  failed = false;
  stopped = false;
  done = false;

  constructor(
    readonly run: RunState,
    readonly graph: Graph,
    /** Path prefix of the steps in this scope ("" or e.g. "regional[3]/"). */
    readonly prefix: string,
    readonly sortPrefix: string,
    readonly owner: StepState | undefined,
    readonly parent: Scope | undefined,
    /** Foreach iteration index or loop iteration; -1 for the top level. */
    readonly iteration: number,
    /** Foreach: `foreach.value`, `foreach.values`. */
    readonly foreachValue: JsonValue | undefined,
    readonly foreachValues: Record<string, JsonValue> | undefined,
  ) {}
}

export type AttemptKind = "task" | "inline" | "run";

export class AttemptState {
  status: number; // AttemptStatus
  agentId = "";
  exitCode = 0;
  startedAt: number | null = null;
  endedAt: number | null = null;
  message = "";
  reportSeq = 0;
  dirty = false;
  /** The row exists (written by the journal): the next write can be an UPDATE. */
  written = false;
  /** Why core asked for the kill, when it did. */
  killReason: "timeout" | "stop" | "heartbeat" | undefined;
  abort: AbortController | undefined;
  timeoutTimer: NodeJS.Timeout | undefined;
  /** The heartbeat watch (Step.heartbeat_timeout), re-armed from `lastHeartbeat` when it fires. */
  heartbeatTimer: NodeJS.Timeout | undefined;
  /** Epoch ms of the attempt's last Report (any item); 0 before the first. */
  lastHeartbeat = 0;
  private resourcesSerialized: ResourceAmounts | undefined;
  private resourcesJsonText = "";

  constructor(
    readonly step: StepState,
    readonly number: number,
    readonly kind: AttemptKind,
    public taskId: string,
    public resources: ResourceAmounts,
    status: number,
  ) {
    this.status = status;
  }

  /** The resources' JSON, serialized once per resources object (rows are written 2–3 times). */
  resourcesJson(): string {
    if (this.resourcesSerialized !== this.resources) {
      this.resourcesJsonText = JSON.stringify(this.resources);
      this.resourcesSerialized = this.resources;
    }
    return this.resourcesJsonText;
  }

  toRow(): AttemptRow {
    return [
      this.step.scope.run.id,
      this.step.path,
      this.number,
      this.status,
      this.taskId,
      this.agentId,
      this.resourcesJson(),
      this.exitCode,
      this.startedAt,
      this.endedAt,
      this.message,
      this.reportSeq,
    ];
  }
}

export interface StepReportsState {
  milestones: Array<{ name: string; time: number }>;
  links: Array<{ name: string; url: string }>;
  counters: Record<string, number>;
  images: Array<{ name: string; mimeType: string }>;
  messages: Array<{ level: number; text: string; time: number }>;
}

export const MAX_KEPT_MESSAGES = 100;

export class StepState {
  status: StepStatus = StepStatus.STEP_STATUS_NOT_STARTED;
  reason = "";
  params: Record<string, JsonValue> | undefined;
  paramsJson = "{}";
  outputs: Record<string, JsonValue> | undefined;
  outputsJson = "{}";
  attemptCount = 0;
  progress = -1;
  message = "";
  readyAt: number | null = null;
  startedAt: number | null = null;
  endedAt: number | null = null;
  loopIteration = 0;
  childCountsJson = "{}";
  reports: StepReportsState | undefined;
  reportsJson = "{}";
  /** Replaced, never mutated in place (`step.book = { ...step.book, x }`): see stateJson. */
  book: StepBook = {};
  /** `book` as last serialized (the journal writes the row often; the book rarely changes). */
  private bookSerialized: StepBook | undefined;
  private bookJson = "{}";
  /** Join bookkeeping (derived, never stored): edges resolved and edges taken. */
  resolved = 0;
  taken = 0;
  blocked = false;
  attempt: AttemptState | undefined;
  container: ContainerState | undefined;
  /** Retry backoff timer. */
  timer: NodeJS.Timeout | undefined;
  /** Status last written to the database; -1 before the first write. */
  persistedStatus = -1;
  dirty = false;
  /** Waiting in the scheduler or for a type slot. */
  queued = false;
  /** The step was reset by a restart and must skip if its outputs exist. */
  skipCheck = false;

  constructor(
    readonly scope: Scope,
    readonly node: GraphNode,
    readonly path: string,
    readonly sortKey: string,
  ) {}

  get type(): string {
    return this.node.step.type;
  }

  /**
   * The book's JSON, re-serialized only when the book was replaced (it is never mutated in
   * place). A foreach keeps its iteration values here, and its row is written whenever an
   * iteration ends: stringifying them each time made every commit O(iterations).
   */
  stateJson(): string {
    if (this.bookSerialized !== this.book) {
      this.bookJson = JSON.stringify(this.book);
      this.bookSerialized = this.book;
    }
    return this.bookJson;
  }

  toRow(): StepRow {
    return [
      this.scope.run.id,
      this.path,
      this.sortKey,
      this.node.id,
      this.node.step.type,
      this.status,
      this.reason,
      this.paramsJson,
      this.outputsJson,
      this.attemptCount,
      this.progress,
      this.message,
      this.readyAt,
      this.startedAt,
      this.endedAt,
      this.childCountsJson,
      this.loopIteration,
      this.reportsJson,
      this.stateJson(),
    ];
  }
}
