// The local backend: this machine as one Mesos-style agent. Resources come from a pool
// (default: this machine), are offered one offer at a time, and are reserved by launches;
// the jobs themselves are started and owned by the local agent process (core/agent), so
// core never forks and running jobs survive a core restart. Everything here is event
// driven: offers follow changes in free resources, statuses follow agent events.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Constraint } from "@kaon/proto";
import { type Logger, silentLogger } from "../../log.js";
import { unmetConstraints } from "../../scheduler/matcher.js";
import {
  type AgentInfo,
  type BackendCallbacks,
  type ComputeBackend,
  isTerminalTaskState,
  type Offer,
  type ResourceAmounts,
  type TaskSpec,
  type TaskState,
  type TaskStatus,
} from "../backend.js";
import {
  AGENT_PROTOCOL_VERSION,
  type AgentConnection,
  type AgentEvent,
  type AgentTaskRecord,
} from "./agent-client.js";
import { connectOrStartAgent, defaultAgentBinary } from "./agent-process.js";
import {
  checkResources,
  fits,
  formatResources,
  isEmpty,
  NO_RESOURCES,
  RESOURCE_KINDS,
  ResourcePool,
} from "./resource-pool.js";

export const LOCAL_AGENT_ID = "local";

export interface LocalBackendOptions {
  /** The server's data directory; the agent keeps its socket, lock, log and task records in `<dataDir>/agent`. */
  dataDir: string;
  /**
   * The resource pool. Each amount defaults to this machine: cpus = os.availableParallelism(),
   * memMb = total memory, gpus = the number of /dev/nvidiaN devices, diskMb = free space of
   * the data directory's file system when the backend is created.
   */
  resources?: Partial<ResourceAmounts>;
  /** Agent attributes for placement constraints (e.g. `{pool: "gpu"}`). Default: none. */
  attributes?: Record<string, string>;
  /** Host name in offers and agentInfo(). Default: os.hostname(). */
  hostname?: string;
  /** Path of the kaon-agent binary. Default: KAON_AGENT_BIN, else core/dist/bin/kaon-agent. */
  agentBinary?: string;
  /** Time a killed task gets between SIGTERM and SIGKILL. Default: 10000 ms. */
  killGraceMs?: number;
  /** How long start() (and each reconnect) may take to reach the agent. Default: 10000 ms. */
  startTimeoutMs?: number;
  /**
   * For an agent this backend starts: how long it lingers once it owns nothing (no client,
   * no running task, no unacknowledged status) before it exits (`--idle-exit`); 0: never.
   * Default: the agent's, 30000 ms. An agent already running keeps its own setting.
   */
  agentIdleExitMs?: number;
  /** Default: silent. */
  logger?: Logger;
}

/** What ClusterService shows for the local agent (fields of the proto `Agent`). */
export interface LocalAgentInfo {
  id: string;
  hostname: string;
  backend: "local";
  attributes: Record<string, string>;
  total: ResourceAmounts;
  used: ResourceAmounts;
  runningTasks: number;
  lastSeenAt: Date | undefined;
  /** Process id of the agent, when connected. */
  agentPid: number | undefined;
}

interface TrackedTask {
  taskId: string;
  resources: ResourceAmounts;
  /** Whether `resources` are counted in the pool's used amounts. */
  reserved: boolean;
  state: TaskState;
  last: TaskStatus | undefined;
  killRequested: boolean;
  /** Connection generation and request count at launch: tells whether a list covers it. */
  sentGeneration: number;
  sentSeq: number;
}

/** The metadata the backend stores with each task in the agent. */
interface TaskMeta {
  resources: ResourceAmounts;
  name: string;
}

const DEFAULT_REFUSE_SECONDS = 5;

/** The agent closed a new connection before the first resync (killed, or exiting idle). */
class AgentConnectionLost extends Error {}
const MIB = 1024 * 1024;

export class LocalBackend implements ComputeBackend {
  readonly name = "local";
  readonly agentId = LOCAL_AGENT_ID;

  private readonly agentDir: string;
  private readonly pool: ResourcePool;
  private readonly attributes: Record<string, string>;
  private readonly hostname: string;
  private readonly agentBinary: string;
  private readonly killGraceMs: number;
  private readonly startTimeoutMs: number;
  private readonly agentIdleExitMs: number | undefined;
  private readonly log: Logger;

  private callbacks: BackendCallbacks | undefined;
  private conn: AgentConnection | undefined;
  private generation = 0;
  private agentPid: number | undefined;
  private lastSeenAt: Date | undefined;
  private stopped = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private reconnectDelayMs = 50;

  private readonly tasks = new Map<string, TrackedTask>();

  private offer: Offer | undefined;
  /** freeVersion when the outstanding offer was made. */
  private offerVersion = 0;
  private offerSeq = 0;
  private offerScheduled = false;
  private suppressed = false;
  /** Bumped whenever free resources change; a refusal lasts until it moves. */
  private freeVersion = 0;
  private refusal: { version: number; timer: NodeJS.Timeout } | undefined;

  constructor(options: LocalBackendOptions) {
    if (typeof options.dataDir !== "string" || options.dataDir === "") {
      throw new Error("local backend: dataDir is required (the server's data directory)");
    }
    this.agentDir = path.join(path.resolve(options.dataDir), "agent");
    const total = { ...machineResources(options.dataDir), ...options.resources };
    const problem = checkResources(total, "local backend: resources");
    if (problem) throw new Error(problem);
    this.pool = new ResourcePool(total);
    this.attributes = { ...options.attributes };
    this.hostname = options.hostname ?? os.hostname();
    this.agentBinary = options.agentBinary ?? defaultAgentBinary();
    this.killGraceMs = nonNegative(options.killGraceMs, 10_000, "killGraceMs");
    this.startTimeoutMs = nonNegative(options.startTimeoutMs, 10_000, "startTimeoutMs");
    this.agentIdleExitMs =
      options.agentIdleExitMs === undefined
        ? undefined
        : nonNegative(options.agentIdleExitMs, 0, "agentIdleExitMs");
    this.log = options.logger ?? silentLogger;
  }

  // ---- ComputeBackend ----------------------------------------------------------------------

  async start(callbacks: BackendCallbacks): Promise<void> {
    if (this.callbacks) throw new Error("local backend: start() was already called");
    this.callbacks = callbacks;
    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      try {
        await this.connect();
        return;
      } catch (err) {
        // The agent closed the connection before the first resync: it was killed, or it
        // exited idle at that very moment. The next attempt finds no socket and starts one.
        if (!(err instanceof AgentConnectionLost) || this.stopped || Date.now() > deadline) {
          throw err;
        }
        this.log.warn("local backend: the local agent went away while connecting; retrying", {
          error: err.message,
        });
      }
    }
  }

  launch(offerIds: string[], tasks: TaskSpec[]): void {
    const offer = this.offer;
    if (!offer || !offerIds.includes(offer.id) || !this.conn?.isOpen) {
      const why = `offer ${offerIds.join(", ")} is no longer valid (used, declined or rescinded); launch on a new offer`;
      for (const spec of tasks) this.report(this.track(spec.taskId, NO_RESOURCES), "LOST", why);
      return;
    }
    this.offer = undefined;
    if (tasks.length === 0) {
      this.refuse(this.offerVersion, DEFAULT_REFUSE_SECONDS);
      return;
    }
    const left = { ...offer.resources };
    const conn = this.conn;
    for (const spec of tasks) {
      const known = this.tasks.get(spec.taskId);
      if (known) {
        // Launching a task twice must not run it twice: report what it is doing.
        if (known.last) this.emit(known.last);
        continue;
      }
      const invalid = this.checkTask(spec, left);
      if (invalid) {
        this.report(this.track(spec.taskId, NO_RESOURCES), "ERROR", invalid);
        continue;
      }
      for (const k of RESOURCE_KINDS) left[k] -= spec.resources[k];
      const task = this.track(spec.taskId, { ...spec.resources });
      task.reserved = true;
      task.state = "STARTING";
      this.pool.reserve(task.resources);
      const meta: TaskMeta = { resources: task.resources, name: spec.name };
      conn.launch({
        taskId: spec.taskId,
        ...(spec.command.kind === "argv"
          ? { argv: spec.command.argv }
          : { shell: spec.command.script }),
        env: spec.env,
        cwd: spec.cwd,
        stdout: spec.stdoutPath,
        stderr: spec.stderrPath,
        meta,
      });
      task.sentGeneration = this.generation;
      task.sentSeq = conn.sent;
    }
    this.resourcesChanged();
  }

  decline(offerIds: string[], refuseSeconds = DEFAULT_REFUSE_SECONDS): void {
    const offer = this.offer;
    if (!offer || !offerIds.includes(offer.id)) return;
    this.offer = undefined;
    this.refuse(this.offerVersion, refuseSeconds);
  }

  kill(taskId: string): void {
    const task = this.tasks.get(taskId);
    if (task && isTerminalTaskState(task.state)) {
      if (task.last) this.emit(task.last);
      return;
    }
    if (task) task.killRequested = true;
    if (this.conn?.isOpen) {
      this.conn.send({ type: "kill", taskId, graceMs: this.killGraceMs });
    } else if (!task) {
      this.report(this.track(taskId, NO_RESOURCES), "LOST", "unknown to the local backend");
    }
    // else: re-sent after the reconnect, if the task still runs then.
  }

  acknowledge(taskId: string): void {
    const task = this.tasks.get(taskId);
    if (task && !isTerminalTaskState(task.state)) return; // nothing final to forget yet
    this.tasks.delete(taskId);
    this.conn?.send({ type: "ack", taskId });
  }

  reconcile(tasks: Array<{ taskId: string; agentId?: string }>): void {
    const ids = tasks.map((t) => t.taskId);
    if (!this.conn?.isOpen) {
      // The reconnect will resync everything; answer now from what we know.
      const wanted = ids.length > 0 ? ids : [...this.tasks.keys()];
      for (const id of wanted) {
        const task = this.tasks.get(id);
        if (task?.last) this.emit(task.last);
        else if (!task)
          this.report(this.track(id, NO_RESOURCES), "LOST", "unknown to the local backend");
      }
      return;
    }
    this.resync(ids.length > 0 ? new Set(ids) : undefined).catch((err) =>
      this.log.warn("local backend: reconcile failed; the reconnect will retry", {
        error: String(err),
      }),
    );
  }

  suppress(): void {
    this.suppressed = true;
  }

  revive(): void {
    this.suppressed = false;
    this.clearRefusal();
    this.scheduleOffer();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.clearRefusal();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.offer = undefined;
    this.generation++;
    const conn = this.conn;
    this.conn = undefined;
    // Graceful: acks sent just before stop() reach the agent, which can then exit idle.
    await conn?.close();
  }

  fitsEver(resources: ResourceAmounts): boolean {
    return this.pool.fitsEver(resources);
  }

  // ---- local extras ------------------------------------------------------------------------

  /** Why a task of this size and hard constraints can never run here, or undefined. */
  whyNeverFits(
    resources: ResourceAmounts,
    constraints: readonly Constraint[] = [],
  ): string | undefined {
    const agent = {
      agentId: LOCAL_AGENT_ID,
      hostname: this.hostname,
      total: this.pool.total,
      attributes: this.attributes,
    };
    return unmetConstraints(constraints, [agent]) ?? this.pool.whyNeverFits(resources);
  }

  /** ComputeBackend.agents: this machine is the one agent. */
  agents(): AgentInfo[] {
    return [this.agentInfo()];
  }

  agentInfo(): LocalAgentInfo {
    let running = 0;
    for (const t of this.tasks.values()) if (!isTerminalTaskState(t.state)) running++;
    return {
      id: LOCAL_AGENT_ID,
      hostname: this.hostname,
      backend: "local",
      attributes: { ...this.attributes },
      total: { ...this.pool.total },
      used: this.pool.used,
      runningTasks: running,
      lastSeenAt: this.conn?.isOpen ? new Date() : this.lastSeenAt,
      agentPid: this.conn?.isOpen ? this.agentPid : undefined,
    };
  }

  // ---- connection --------------------------------------------------------------------------

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    let superseded = false;
    /** Until the first resync is done, a close fails this connect() instead. */
    let established = false;
    const conn = await connectOrStartAgent({
      agentDir: this.agentDir,
      binary: this.agentBinary,
      timeoutMs: this.startTimeoutMs,
      idleExitMs: this.agentIdleExitMs,
      onEvent: (event) => {
        if (generation !== this.generation) return;
        if (event.type === "superseded") superseded = true;
        this.onAgentEvent(event);
      },
      onClose: () => {
        if (established && generation === this.generation) this.onDisconnect(superseded);
      },
    });
    if (this.stopped || generation !== this.generation) {
      void conn.close();
      return;
    }
    this.conn = conn;
    try {
      const hello = await conn.hello;
      if (hello.version !== AGENT_PROTOCOL_VERSION) {
        throw new Error(
          `the local agent of ${this.agentDir} (pid ${hello.pid}) speaks protocol version ` +
            `${hello.version}, but this core speaks version ${AGENT_PROTOCOL_VERSION}: it is the ` +
            `agent of another kaon version. Stop it (kill ${hello.pid}; its running jobs keep ` +
            "running and the next agent re-adopts them) and start this core again",
        );
      }
      await this.resync(undefined);
      if (!conn.isOpen) throw new Error("connection to the local agent closed");
    } catch (err) {
      const lost = !conn.isOpen;
      if (this.conn === conn) this.conn = undefined;
      void conn.close();
      if (superseded) {
        throw new Error(
          "another core connected to the local agent of this data directory while this one did",
        );
      }
      if (!lost) throw err;
      throw new AgentConnectionLost(`the local agent closed the connection: ${String(err)}`);
    }
    established = true;
    this.reconnectDelayMs = 50;
    // Kills asked for while we were away.
    for (const task of this.tasks.values()) {
      if (task.killRequested && !isTerminalTaskState(task.state)) {
        conn.send({ type: "kill", taskId: task.taskId, graceMs: this.killGraceMs });
      }
    }
    this.scheduleOffer();
  }

  private onDisconnect(superseded: boolean): void {
    this.conn = undefined;
    this.lastSeenAt = new Date();
    if (this.offer && this.callbacks) {
      const id = this.offer.id;
      this.offer = undefined;
      this.callbacks.onRescind(id);
    }
    if (this.stopped) return;
    if (superseded) {
      this.log.error(
        "local backend: another core connected to the local agent of this data directory; this one stops using it",
        { agentDir: this.agentDir },
      );
      return;
    }
    this.log.warn("local backend: lost the local agent; reconnecting", { agentDir: this.agentDir });
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.stopped) return;
    const delay = this.reconnectDelayMs;
    this.reconnectDelayMs = Math.min(this.reconnectDelayMs * 2, 5000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect().catch((err) => {
        this.log.warn("local backend: cannot reach the local agent yet", { error: String(err) });
        void this.conn?.close();
        this.conn = undefined;
        this.scheduleReconnect();
      });
    }, delay);
    this.reconnectTimer.unref();
  }

  /**
   * Reads the agent's task table and brings ours in line: reports every task it holds (a
   * terminal status that was never acknowledged is reported again), and LOST for tasks we
   * launched that it does not hold. `only` limits the reports to some task ids (reconcile).
   */
  private async resync(only: Set<string> | undefined): Promise<void> {
    const conn = this.conn;
    if (!conn) return;
    const generation = this.generation;
    const covered = conn.sent;
    const reply = await conn.request<{ type: "list"; tasks: AgentTaskRecord[] }>({
      type: "list",
    });
    if (generation !== this.generation) return;
    const held = new Set<string>();
    for (const record of reply.tasks) {
      held.add(record.taskId);
      this.applyRecord(record, only === undefined || only.has(record.taskId));
    }
    for (const task of [...this.tasks.values()]) {
      if (held.has(task.taskId) || isTerminalTaskState(task.state)) continue;
      const coveredByList = task.sentGeneration !== generation || task.sentSeq <= covered;
      if (coveredByList) this.report(task, "LOST", "the local agent does not hold this task");
    }
    if (only) {
      for (const id of only) {
        if (held.has(id)) continue;
        const task = this.tasks.get(id);
        if (!task)
          this.report(this.track(id, NO_RESOURCES), "LOST", "unknown to the local backend");
        else if (task.last && isTerminalTaskState(task.state)) this.emit(task.last);
      }
    }
  }

  private applyRecord(record: AgentTaskRecord, announce: boolean): void {
    let task = this.tasks.get(record.taskId);
    if (!task) {
      task = this.track(record.taskId, resourcesFromMeta(record.meta));
      task.sentGeneration = -1;
      if (record.state === "launching" || record.state === "running") {
        task.reserved = true;
        this.pool.reserve(task.resources);
        this.resourcesChanged();
      }
    }
    switch (record.state) {
      case "launching":
        this.report(task, "STARTING", undefined, undefined, announce);
        return;
      case "running":
        this.report(task, "RUNNING", undefined, record.startedAt, announce);
        return;
      case "error":
        this.report(task, "ERROR", record.message, record.endedAt, announce);
        return;
      case "exited":
        this.reportExit(task, record, record.endedAt, announce);
        return;
    }
  }

  private onAgentEvent(event: AgentEvent): void {
    switch (event.type) {
      case "hello":
        this.agentPid = event.pid;
        return;
      case "started": {
        const task = this.tasks.get(event.taskId) ?? this.track(event.taskId, NO_RESOURCES);
        this.report(task, "RUNNING", undefined, event.ts);
        return;
      }
      case "exited": {
        const task = this.tasks.get(event.taskId) ?? this.track(event.taskId, NO_RESOURCES);
        this.reportExit(task, event, event.ts, true);
        return;
      }
      case "error": {
        const task = this.tasks.get(event.taskId) ?? this.track(event.taskId, NO_RESOURCES);
        this.report(task, "ERROR", event.message, event.ts);
        return;
      }
      case "unknown": {
        const task = this.tasks.get(event.taskId) ?? this.track(event.taskId, NO_RESOURCES);
        if (!isTerminalTaskState(task.state)) {
          this.report(task, "LOST", "the local agent does not hold this task");
        }
        return;
      }
      case "invalid":
        this.log.error("local backend: the agent rejected a request", { message: event.message });
        return;
      case "superseded":
        return; // the close that follows decides
    }
  }

  // ---- statuses ----------------------------------------------------------------------------

  private reportExit(
    task: TrackedTask,
    exit: {
      exitCode?: number;
      signal?: string;
      killed?: boolean;
      lost?: boolean;
      message?: string;
    },
    ts: number | undefined,
    announce: boolean,
  ): void {
    const extra: Partial<TaskStatus> = {};
    if (exit.exitCode !== undefined) extra.exitCode = exit.exitCode;
    if (exit.signal !== undefined) extra.signal = exit.signal;
    if (exit.killed || task.killRequested) {
      this.report(task, "KILLED", "killed on request", ts, announce, extra);
    } else if (exit.lost) {
      this.report(task, "LOST", exit.message ?? "exit status unknown", ts, announce, extra);
    } else if (exit.signal !== undefined) {
      this.report(task, "FAILED", `killed by signal ${exit.signal}`, ts, announce, extra);
    } else if (exit.exitCode === 0) {
      this.report(task, "FINISHED", undefined, ts, announce, extra);
    } else {
      this.report(task, "FAILED", `exited with code ${exit.exitCode}`, ts, announce, extra);
    }
  }

  /** Moves a task to a state (never back from a terminal one) and tells the framework. */
  private report(
    task: TrackedTask,
    state: TaskState,
    message?: string,
    ts?: number,
    announce = true,
    extra: Partial<TaskStatus> = {},
  ): void {
    if (isTerminalTaskState(task.state) && task.last) {
      // Already final: repeat the final status (at-least-once) rather than regress.
      if (announce) this.emit(task.last);
      return;
    }
    const status: TaskStatus = {
      taskId: task.taskId,
      state,
      agentId: LOCAL_AGENT_ID,
      timestamp: ts ?? Date.now(),
      ...extra,
    };
    if (message !== undefined) status.message = message;
    task.state = state;
    task.last = status;
    if (isTerminalTaskState(state) && task.reserved) {
      task.reserved = false;
      this.pool.release(task.resources);
      this.resourcesChanged();
    }
    if (announce) this.emit(status);
  }

  private emit(status: TaskStatus): void {
    if (!this.stopped) this.callbacks?.onStatus(status);
  }

  private track(taskId: string, resources: ResourceAmounts): TrackedTask {
    const existing = this.tasks.get(taskId);
    if (existing) return existing;
    const task: TrackedTask = {
      taskId,
      resources,
      reserved: false,
      state: "STARTING",
      last: undefined,
      killRequested: false,
      sentGeneration: this.generation,
      sentSeq: Number.POSITIVE_INFINITY,
    };
    this.tasks.set(taskId, task);
    return task;
  }

  private checkTask(spec: TaskSpec, left: ResourceAmounts): string | undefined {
    if (spec.agentId !== LOCAL_AGENT_ID) {
      return `task ${spec.taskId} targets agent ${JSON.stringify(spec.agentId)}, but the local backend has only agent "local"`;
    }
    const bad = checkResources(spec.resources, "resources");
    if (bad) return `task ${spec.taskId}: ${bad}`;
    if (!fits(spec.resources, left)) {
      return (
        `task ${spec.taskId} needs ${formatResources(spec.resources)} but the offer has only ` +
        `${formatResources(left)} left`
      );
    }
    return undefined;
  }

  // ---- offers ------------------------------------------------------------------------------

  private resourcesChanged(): void {
    this.freeVersion++;
    this.scheduleOffer();
  }

  /** Coalesces the changes of one burst of events into (at most) one offer. */
  private scheduleOffer(): void {
    if (this.offerScheduled) return;
    this.offerScheduled = true;
    queueMicrotask(() => {
      this.offerScheduled = false;
      this.offerIfWarranted();
    });
  }

  private offerIfWarranted(): void {
    if (!this.callbacks || this.stopped || this.suppressed || this.offer || !this.conn?.isOpen) {
      return;
    }
    if (this.refusal) {
      if (this.refusal.version === this.freeVersion) return;
      this.clearRefusal();
    }
    const free = this.pool.free();
    if (isEmpty(free)) return;
    const offer: Offer = {
      id: `local-${++this.offerSeq}`,
      agentId: LOCAL_AGENT_ID,
      hostname: this.hostname,
      resources: free,
      attributes: { ...this.attributes },
    };
    this.offer = offer;
    this.offerVersion = this.freeVersion;
    this.callbacks.onOffers([{ ...offer, resources: { ...free } }]);
  }

  private refuse(offerVersion: number, refuseSeconds: number): void {
    this.clearRefusal();
    const ms = Math.max(0, Number.isFinite(refuseSeconds) ? refuseSeconds * 1000 : 0);
    const timer = setTimeout(() => {
      this.refusal = undefined;
      this.scheduleOffer();
    }, ms);
    timer.unref();
    this.refusal = { version: offerVersion, timer };
    this.scheduleOffer(); // free resources may have changed since the offer was made
  }

  private clearRefusal(): void {
    if (this.refusal) clearTimeout(this.refusal.timer);
    this.refusal = undefined;
  }
}

function resourcesFromMeta(meta: unknown): ResourceAmounts {
  const r = (meta as Partial<TaskMeta> | undefined)?.resources;
  return checkResources(r, "meta.resources") === undefined
    ? { ...(r as ResourceAmounts) }
    : { ...NO_RESOURCES };
}

function nonNegative(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`local backend: ${field} must be a number >= 0, got ${value}`);
  }
  return value;
}

/** This machine's resources: the default pool. */
export function machineResources(dataDir: string): ResourceAmounts {
  let gpus = 0;
  try {
    gpus = fs.readdirSync("/dev").filter((n) => /^nvidia\d+$/.test(n)).length;
  } catch {
    // no /dev (not Linux): no GPUs
  }
  let diskMb = 0;
  for (let dir = path.resolve(dataDir); ; dir = path.dirname(dir)) {
    try {
      const st = fs.statfsSync(dir);
      diskMb = Math.floor((st.bavail * st.bsize) / MIB);
      break;
    } catch {
      if (dir === path.dirname(dir)) break;
    }
  }
  return {
    cpus: os.availableParallelism(),
    memMb: Math.floor(os.totalmem() / MIB),
    gpus,
    diskMb,
  };
}
