// The seam between the engine and compute. Modelled on Mesos offers so that the local
// backend (this machine) and the mesos backend (a cluster) are interchangeable: resources
// come in as offers, the scheduler answers with launches or declines, and task status
// updates flow back. Adding another backend (Kubernetes, ...) must not touch the engine.
import type { Constraint } from "@kaon/proto";

/** Scalar resources, in the units of the proto `Resources` message (MiB for mem/disk). */
export interface ResourceAmounts {
  cpus: number;
  memMb: number;
  gpus: number;
  diskMb: number;
}

/** Resources on one agent that the framework may use until launched, declined or rescinded. */
export interface Offer {
  id: string;
  agentId: string;
  hostname: string;
  resources: ResourceAmounts;
  /** Agent attributes used by placement constraints (e.g. `pool=gpu`). */
  attributes: Record<string, string>;
}

/** How a task's process is started. argv is the default; shell mode only when asked for. */
export type TaskCommand = { kind: "argv"; argv: string[] } | { kind: "shell"; script: string };

/** One attempt of a step instance, as handed to a backend. */
export interface TaskSpec {
  /** Unique and stable across core restarts: `<runId>.<path>.<attempt>` sanitised. */
  taskId: string;
  /** Human-readable name for the cluster UI. */
  name: string;
  agentId: string;
  resources: ResourceAmounts;
  command: TaskCommand;
  env: Record<string, string>;
  /** Working directory (created by the backend if missing). */
  cwd: string;
  /** Files that receive the process's stdout and stderr (appended). */
  stdoutPath: string;
  stderrPath: string;
}

/**
 * What one task's command and environment may take. Linux refuses an exec whose arguments
 * and environment exceed ARG_MAX (a quarter of the stack limit: about 2 MiB) in all, or 128
 * KiB in one string (MAX_ARG_STRLEN); the local agent reads a launch as one line of at most
 * 16 MiB (JSON escaping at most sextuples a byte). A launch within these bounds fits all three.
 */
export const MAX_LAUNCH_BYTES = 1024 * 1024;
export const MAX_LAUNCH_STRING_BYTES = 128 * 1024;

/** Why a task's command and environment are too large to launch, or undefined. */
export function launchTooLarge(spec: Pick<TaskSpec, "command" | "env">): string | undefined {
  const cmd = spec.command;
  const args = cmd.kind === "shell" ? [cmd.script] : cmd.argv;
  const what = cmd.kind === "shell" ? "its shell script" : "an argument of its command";
  let total = 0;
  for (const a of args) {
    const n = Buffer.byteLength(a) + 1;
    if (n > MAX_LAUNCH_STRING_BYTES) return tooLong(what, n);
    total += n;
  }
  for (const [k, v] of Object.entries(spec.env)) {
    const n = Buffer.byteLength(k) + Buffer.byteLength(v) + 2; // KEY=VALUE and a NUL
    if (n > MAX_LAUNCH_STRING_BYTES) return tooLong(`environment variable ${k}`, n);
    total += n;
  }
  if (total <= MAX_LAUNCH_BYTES) return undefined;
  const largest = Object.entries(spec.env)
    .map(([k, v]) => ({ k, n: Buffer.byteLength(v) }))
    .sort((a, b) => b.n - a.n)
    .slice(0, 3)
    .map(({ k, n }) => `${k} (${byteSize(n)})`);
  return (
    `the launch request is too large: its command and environment take ${byteSize(total)}, ` +
    `over the limit of ${byteSize(MAX_LAUNCH_BYTES)}; the largest variables: ${largest.join(", ")}`
  );
}

function tooLong(what: string, n: number): string {
  return `the launch request is too large: ${what} takes ${byteSize(n)}, over the limit of ${byteSize(MAX_LAUNCH_STRING_BYTES)} for one string`;
}

function byteSize(n: number): string {
  const [unit, size] = n >= 1024 * 1024 ? ["MiB", n / 1024 / 1024] : ["KiB", n / 1024];
  return `${Number.isInteger(size) ? size : size.toFixed(1)} ${unit}`;
}

export type TaskState =
  | "STARTING"
  | "RUNNING"
  | "FINISHED" // exit code 0
  | "FAILED" // non-zero exit or killed by a signal it did not ask for
  | "KILLED" // killed on request
  | "LOST" // the backend no longer knows the task (agent gone, process vanished)
  | "ERROR"; // could not be launched at all (bad command, missing binary)

export function isTerminalTaskState(state: TaskState): boolean {
  return state !== "STARTING" && state !== "RUNNING";
}

export interface TaskStatus {
  taskId: string;
  state: TaskState;
  agentId?: string;
  /** Present for FINISHED/FAILED when the process exited normally. */
  exitCode?: number;
  /** Signal name when the process was killed by a signal. */
  signal?: string;
  message?: string;
  /** Epoch milliseconds at the source. */
  timestamp: number;
}

/** What a backend reports to its framework (the scheduler). Called on the event loop. */
export interface BackendCallbacks {
  onOffers(offers: Offer[]): void;
  onRescind(offerId: string): void;
  onStatus(status: TaskStatus): void;
  /** Best-effort bytes from an executor (heartbeats, progress); unused by local. */
  onMessage?(agentId: string, executorId: string, data: Uint8Array): void;
}

export interface ComputeBackend {
  readonly name: string;
  /** Connects (starting what it needs) and begins offering resources. */
  start(callbacks: BackendCallbacks): Promise<void>;
  /** Launches tasks on the resources of the given offers; unused offer resources are released. */
  launch(offerIds: string[], tasks: TaskSpec[]): void;
  /** Returns offers unused; the backend may re-offer them after refuseSeconds (default 5). */
  decline(offerIds: string[], refuseSeconds?: number): void;
  /**
   * The framework has durably recorded this task's terminal status: the backend may forget
   * it. Until then terminal statuses may be reported again (after a reconnect, on
   * reconcile), so the framework must treat a repeated terminal status as a no-op.
   */
  acknowledge(taskId: string): void;
  /**
   * Whether a task of this size could ever be placed (on an idle cluster). A step that
   * cannot is rejected with a clear error instead of waiting for an offer forever.
   */
  fitsEver(resources: ResourceAmounts): boolean;
  /**
   * Why a task of this size with these hard constraints can never be placed, as words for
   * the step's reason: the resource or constraint, and what the agents have. Undefined when
   * it could be placed on an idle cluster, and also when the backend cannot tell (a cluster
   * backend that has seen no agent yet): only a sure "never" fails a step. Optional; without
   * it the engine asks fitsEver.
   */
  whyNeverFits?(resources: ResourceAmounts, constraints: readonly Constraint[]): string | undefined;
  /** Asks for a task to be killed; a KILLED (or terminal) status follows. */
  kill(taskId: string): void;
  /** Asks for the latest status of these tasks (empty list: every task the backend knows). */
  reconcile(tasks: Array<{ taskId: string; agentId?: string }>): void;
  /** Stop sending offers (nothing is pending). */
  suppress(): void;
  /**
   * Resume sending offers (work arrived), ignoring earlier refusals. The engine calls it at
   * most once per matching pass, when a task is queued while it holds no offer; a backend
   * for which it is costly (Mesos REVIVE clears every filter) throttles it.
   */
  revive(): void;
  /** Disconnects. Running tasks keep running (they are re-adopted on the next start). */
  stop(): Promise<void>;
  /** The agents this backend knows, for ClusterService.ListAgents (optional). */
  agents?(): AgentInfo[];
}

/** One agent as the cluster view shows it (fields of the proto `Agent`). */
export interface AgentInfo {
  id: string;
  hostname: string;
  /** Backend name ("local", "mesos"). */
  backend: string;
  attributes: Record<string, string>;
  total: ResourceAmounts;
  /** Resources held by kaon tasks. */
  used: ResourceAmounts;
  runningTasks: number;
  lastSeenAt: Date | undefined;
}
