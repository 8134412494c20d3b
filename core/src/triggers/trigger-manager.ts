// The trigger manager: starts runs by itself for the triggers of every workflow's ACTIVE
// version — cron (in the trigger's timezone), artifact announcements, and named signals.
//
// Event-driven throughout: one timer is armed for the earliest next fire time across all cron
// triggers (never a polling loop); artifact triggers hang off the engine's artifact listener;
// signals arrive through TriggerService. The set of triggers is read from the active versions
// at start and re-read for one workflow whenever it is deployed, activated or deleted (the
// composition root wraps WorkflowService with `refreshWorkflow`).
//
// Every run a trigger starts carries a deterministic request id, so the engine's idempotent
// StartRun (unique per workflow and request id) makes a fire happen at most once — across a
// restart of core, a racing timer, or a retried Signal:
//   cron      cron:<workflow>:<trigger>:<planned epoch ms>
//   artifact  artifact:<trigger>:<namespace>/<name>{<partitions>}@<revision>
//   signal    signal:<trigger>:<request id of the Signal call>
//
// Catch-up (Airflow's `catchup=False`): a cron trigger never replays a backlog. When core was
// down (or the process stalled) across planned times, only the LATEST missed planned time
// fires, once, as soon as core is back; older ones are skipped. A trigger seen for the first
// time, or re-enabled, starts from "now" and fires nothing from the past. The watermark of
// settled planned times lives in `trigger_states`, so this holds across restarts.
//
// A fire that cannot start a run is not lost silently. A permanent error (its params do not
// evaluate, the run is refused as invalid) is recorded as the trigger's `last_error` and not
// retried; a transient one (the database, the engine not accepting work) is retried with
// backoff — the deterministic request id keeps retries exactly-once — until a run starts, the
// trigger changes, or a newer cron time supersedes it. ListTriggers / `kaon triggers` show the
// last error until a fire starts a run again.
import { createHash, randomUUID } from "node:crypto";
import { type Initiator, InitiatorKind, type Trigger, type WorkflowDefinition } from "@kaon/proto";
import { ServerError, Status } from "nice-grpc";
import { type DefinitionSource, EngineError, type StartRunInput } from "../engine/engine.js";
import { type Logger, silentLogger } from "../log.js";
import type { JsonValue } from "../steps/step-type.js";
import type { Db } from "../store/db.js";
import type { WorkflowRepo } from "../store/workflow-repo.js";
import { type CronSchedule, cronSchedule } from "./cron.js";
import { evaluateTriggerParams, type TriggerFiring, TriggerParamError } from "./trigger-params.js";
import { type TriggerStateRow, TriggerStateStore } from "./trigger-state-store.js";

/** An announced artifact, as the engine's artifact listener reports it. */
export interface AnnouncedArtifact {
  namespace: string;
  name: string;
  partitions: Record<string, string>;
  uri: string;
  metadata: Record<string, unknown>;
  revision: number;
}

/** The part of the engine the manager uses. */
export interface TriggerEngine {
  startRun(input: StartRunInput): Promise<{ runId: string; created: boolean }>;
  readonly artifactListeners: Array<(a: AnnouncedArtifact) => void>;
}

export interface TriggerManagerOptions {
  db: Db;
  engine: TriggerEngine;
  repo: WorkflowRepo;
  definitions: DefinitionSource;
  log?: Logger;
  /** Clock (epoch ms); tests may pin it. */
  now?: () => number;
  /** Waits before each retry of a fire that failed transiently; then it gives up. */
  retryDelaysMs?: readonly number[];
}

/** 1 s … 5 min, about 9 minutes in all. */
export const FIRE_RETRY_DELAYS_MS: readonly number[] = [
  1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
];

/** A trigger of an active version, as listed by TriggerService. */
export interface TriggerView {
  workflowId: string;
  trigger: Trigger;
  enabled: boolean;
  nextFireAt: number | undefined;
  lastFiredAt: number | undefined;
  /** Why the latest fire could not start a run; undefined once one does. */
  lastError: FireError | undefined;
}

export interface FireError {
  message: string;
  /** Epoch ms. */
  at: number;
}

/** NOT_FOUND: the workflow or the trigger does not exist. */
export class TriggerNotFoundError extends Error {}

/** A signal that started some runs but could not start others. */
export interface SignalOutcome {
  runIds: string[];
  failures: Array<{ workflowId: string; triggerId: string; message: string }>;
}

interface LiveTrigger {
  workflowId: string;
  namespace: string;
  version: number;
  trigger: Trigger;
  enabled: boolean;
  lastFiredAt: number | undefined;
  lastError: FireError | undefined;
  /** Cron only. */
  schedule: CronSchedule | undefined;
  /** Cron: the newest planned time handed to a fire; older fires still retrying give way. */
  latestPlanned: number | undefined;
  settledUntil: number | undefined;
  nextFireAt: number | undefined;
  /** Fires of one trigger run in order (so the watermark only moves forward). */
  chain: Promise<void>;
}

interface LiveWorkflow {
  version: number;
  triggers: Map<string, LiveTrigger>;
}

/** setTimeout's limit; longer waits re-arm when the timer wakes. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** The run-table request_id column holds 256 chars; longer keys are hashed. */
const MAX_REQUEST_ID = 200;
/** Tag on every run a trigger starts, naming the trigger. */
export const TRIGGER_TAG = "kaon.trigger";

export class TriggerManager {
  private readonly store: TriggerStateStore;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly workflows = new Map<string, LiveWorkflow>();
  private readonly bySignal = new Map<string, Set<LiveTrigger>>();
  private readonly byArtifact = new Map<string, Set<LiveTrigger>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly ready: Promise<void>;
  private markReady!: () => void;
  private refreshChain: Promise<void> = Promise.resolve();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly pauses = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  private readonly retryDelaysMs: readonly number[];

  constructor(private readonly opts: TriggerManagerOptions) {
    this.store = new TriggerStateStore(opts.db);
    this.log = (opts.log ?? silentLogger).child({ component: "triggers" });
    this.now = opts.now ?? Date.now;
    this.retryDelaysMs = opts.retryDelaysMs ?? FIRE_RETRY_DELAYS_MS;
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
    // Registered before start() so an announcement made while the triggers load is not lost:
    // it waits for `ready`.
    opts.engine.artifactListeners.push((a) => this.onArtifact(a));
  }

  // -------------------------------------------------------------------------------------
  // Lifecycle

  /** Loads the triggers of every active version, fires missed cron times, arms the timer. */
  async start(): Promise<void> {
    const states = indexStates(await this.store.load());
    let cursor: Parameters<WorkflowRepo["listWorkflows"]>[2];
    const catchUp: LiveTrigger[] = [];
    do {
      const page = await this.opts.repo.listWorkflows({}, 500, cursor);
      for (const wf of page.items) {
        const found = await this.opts.definitions.load(wf.id, 0);
        if (found) {
          const installed = await this.install(wf.id, found, states);
          catchUp.push(...installed);
        }
      }
      cursor = page.next;
    } while (cursor);
    const now = this.now();
    for (const t of catchUp) {
      if (!t.enabled || !t.schedule || t.settledUntil === undefined) continue;
      const missed = t.schedule.latestIn(t.settledUntil, now);
      if (missed !== undefined) {
        this.log.info("firing the latest cron time missed while core was down", {
          workflow: t.workflowId,
          trigger: t.trigger.id,
          planned: new Date(missed).toISOString(),
        });
        this.fireCron(t, missed);
      }
      // Loading took time; what is due by now was just settled.
      t.nextFireAt = t.schedule.next(now);
    }
    this.markReady();
    this.arm();
    this.log.info("triggers loaded", { triggers: this.count() });
  }

  /** Disarms the timer and waits for fires in flight (call before the engine shuts down). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const p of this.pauses) {
      clearTimeout(p.timer);
      p.resolve();
    }
    this.pauses.clear();
    this.markReady();
    await Promise.allSettled([...this.inFlight, this.refreshChain]);
  }

  /** Resolves once every fire in flight (retries included) has finished. */
  async idle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Re-reads one workflow's active version (after a deploy, activate or delete). Never throws:
   * a failure is logged and the previous triggers stay in place.
   */
  refreshWorkflow(workflowId: string): Promise<void> {
    const next = this.refreshChain.then(async () => {
      await this.ready;
      if (this.stopped) return;
      try {
        const found = await this.opts.definitions.load(workflowId, 0);
        if (!found) {
          this.uninstall(workflowId);
        } else if (this.workflows.get(workflowId)?.version !== found.version) {
          await this.install(workflowId, found, indexStates(await this.store.load(workflowId)));
        }
        this.arm();
      } catch (err) {
        this.log.warn("could not re-read a workflow's triggers", {
          workflow: workflowId,
          error: (err as Error).message,
        });
      }
    });
    this.refreshChain = next;
    return next;
  }

  // -------------------------------------------------------------------------------------
  // Reads and overrides (TriggerService)

  /** Triggers of active versions, by workflow id then trigger id. */
  async list(workflowId?: string): Promise<TriggerView[]> {
    await this.ready;
    if (workflowId !== undefined) {
      await this.refreshWorkflow(workflowId);
      if (!this.workflows.has(workflowId) && !(await this.opts.repo.getWorkflow(workflowId))) {
        throw new TriggerNotFoundError(`workflow '${workflowId}' not found`);
      }
    }
    const ids = workflowId !== undefined ? [workflowId] : [...this.workflows.keys()].sort();
    const out: TriggerView[] = [];
    for (const id of ids) {
      const wf = this.workflows.get(id);
      if (!wf) continue;
      const triggers = [...wf.triggers.values()].sort((a, b) =>
        a.trigger.id < b.trigger.id ? -1 : a.trigger.id > b.trigger.id ? 1 : 0,
      );
      out.push(...triggers.map(view));
    }
    return out;
  }

  /** Persists an enable/disable override (it outlives restarts and new versions). */
  async setEnabled(workflowId: string, triggerId: string, enabled: boolean): Promise<TriggerView> {
    await this.ready;
    await this.refreshWorkflow(workflowId);
    const wf = this.workflows.get(workflowId);
    if (!wf) {
      const exists = await this.opts.repo.getWorkflow(workflowId);
      throw new TriggerNotFoundError(
        exists
          ? `workflow '${workflowId}' has no trigger '${triggerId}' (its active version ${exists.activeVersion} defines none)`
          : `workflow '${workflowId}' not found`,
      );
    }
    const t = wf.triggers.get(triggerId);
    if (!t) {
      const known = [...wf.triggers.keys()].sort();
      throw new TriggerNotFoundError(
        `workflow '${workflowId}' has no trigger '${triggerId}' in its active version ${wf.version} (${known.length > 0 ? `triggers: ${known.join(", ")}` : "it defines none"})`,
      );
    }
    const now = this.now();
    const becomesEnabled = enabled && !t.enabled;
    await this.store.setOverride(
      workflowId,
      triggerId,
      enabled,
      now,
      becomesEnabled && t.schedule ? now : undefined,
    );
    t.enabled = enabled;
    if (becomesEnabled && t.schedule) {
      t.settledUntil = now;
      t.nextFireAt = t.schedule.next(now);
    }
    this.arm();
    this.log.info(enabled ? "trigger enabled" : "trigger disabled", {
      workflow: workflowId,
      trigger: triggerId,
    });
    return view(t);
  }

  // -------------------------------------------------------------------------------------
  // Signals

  /** Starts a run for every enabled signal trigger named `name`; idempotent by `requestId`. */
  async signal(
    name: string,
    params: Record<string, unknown>,
    requestId: string,
  ): Promise<SignalOutcome> {
    await this.ready;
    const key = requestId || randomUUID();
    const now = this.now();
    const targets = [...(this.bySignal.get(name) ?? [])]
      .filter((t) => t.enabled)
      .sort((a, b) => compareKeys(a, b));
    const outcome: SignalOutcome = { runIds: [], failures: [] };
    const results = await Promise.allSettled(
      targets.map((t) =>
        this.startFor(t, {
          requestId: compactKey(`signal:${t.trigger.id}:${key}`),
          runTs: now,
          initiator: initiator(InitiatorKind.INITIATOR_KIND_SIGNAL, name),
          firing: {
            trigger: { id: t.trigger.id, kind: "signal", scheduled_ts: now },
            runTs: now,
            signal: { name, params: params as Record<string, JsonValue> },
          },
        }),
      ),
    );
    for (const [i, r] of results.entries()) {
      const t = targets[i] as LiveTrigger;
      if (r.status === "fulfilled") {
        outcome.runIds.push(r.value);
        continue;
      }
      // The caller sees the failure and retries with the same request id if it wants to.
      const message = (r.reason as Error).message;
      outcome.failures.push({ workflowId: t.workflowId, triggerId: t.trigger.id, message });
      await this.recordError(t, message);
    }
    return outcome;
  }

  // -------------------------------------------------------------------------------------
  // Loading

  /** Installs (or replaces) a workflow's triggers; returns its cron triggers. */
  private async install(
    workflowId: string,
    found: { version: number; namespace: string; definition: WorkflowDefinition },
    states: Map<string, TriggerStateRow>,
  ): Promise<LiveTrigger[]> {
    const previous = this.workflows.get(workflowId);
    this.uninstall(workflowId);
    const now = this.now();
    const wf: LiveWorkflow = { version: found.version, triggers: new Map() };
    const fresh: Array<{ workflowId: string; triggerId: string }> = [];
    const crons: LiveTrigger[] = [];
    for (const trigger of found.definition.triggers) {
      const prev = previous?.triggers.get(trigger.id);
      const state = states.get(`${workflowId}\u0000${trigger.id}`);
      const t: LiveTrigger = {
        workflowId,
        namespace: found.namespace || "default",
        version: found.version,
        trigger,
        enabled: state?.enabledOverride ?? !trigger.disabled,
        lastFiredAt: state?.lastFiredAt ?? prev?.lastFiredAt,
        lastError: state ? state.lastError : prev?.lastError,
        schedule: undefined,
        latestPlanned: prev?.latestPlanned,
        settledUntil: undefined,
        nextFireAt: undefined,
        chain: prev?.chain ?? Promise.resolve(),
      };
      const kind = trigger.kind;
      if (kind?.$case === "cron") {
        try {
          t.schedule = cronSchedule(kind.value.expression, kind.value.timezone);
        } catch (err) {
          // Validation rejects these at deploy; one stored by an older validator is listed
          // but never fires.
          this.log.error("cron trigger has an invalid schedule; it will not fire", {
            workflow: workflowId,
            trigger: trigger.id,
            error: (err as Error).message,
          });
        }
      }
      if (t.schedule) {
        t.settledUntil = state?.cronSettledUntil;
        const becameEnabled = t.enabled && prev !== undefined && !prev.enabled;
        if (t.settledUntil === undefined || becameEnabled) {
          t.settledUntil = now;
          fresh.push({ workflowId, triggerId: trigger.id });
        }
        const sameSchedule =
          prev?.schedule?.expression === t.schedule.expression &&
          prev.schedule.timezone === t.schedule.timezone;
        t.nextFireAt =
          sameSchedule && prev?.nextFireAt !== undefined
            ? prev.nextFireAt
            : t.schedule.next(Math.max(now, t.settledUntil));
        crons.push(t);
      }
      if (kind?.$case === "signal") {
        addTo(this.bySignal, kind.value.name, t);
      } else if (kind?.$case === "artifact") {
        addTo(this.byArtifact, kind.value.name, t);
      }
      wf.triggers.set(trigger.id, t);
    }
    await this.store.settleNew(fresh, now);
    this.workflows.set(workflowId, wf);
    return crons;
  }

  private uninstall(workflowId: string): void {
    const wf = this.workflows.get(workflowId);
    if (!wf) return;
    for (const t of wf.triggers.values()) {
      const kind = t.trigger.kind;
      if (kind?.$case === "signal") removeFrom(this.bySignal, kind.value.name, t);
      else if (kind?.$case === "artifact") removeFrom(this.byArtifact, kind.value.name, t);
    }
    this.workflows.delete(workflowId);
  }

  private count(): number {
    let n = 0;
    for (const wf of this.workflows.values()) n += wf.triggers.size;
    return n;
  }

  // -------------------------------------------------------------------------------------
  // Cron: one timer for the earliest fire across all triggers

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const wf of this.workflows.values()) {
      for (const t of wf.triggers.values()) {
        if (t.enabled && t.nextFireAt !== undefined && t.nextFireAt < earliest) {
          earliest = t.nextFireAt;
        }
      }
    }
    if (earliest === Number.POSITIVE_INFINITY) return;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, earliest - this.now()));
    this.timer = setTimeout(() => this.onTimer(), delay);
    // The server keeps the process alive; a forgotten stop() must not.
    this.timer.unref();
  }

  private onTimer(): void {
    this.timer = undefined;
    if (this.stopped) return;
    const now = this.now();
    for (const wf of this.workflows.values()) {
      for (const t of wf.triggers.values()) {
        if (!t.enabled || !t.schedule || t.nextFireAt === undefined || t.nextFireAt > now) continue;
        // A stalled process may wake after several planned times: only the latest fires. The
        // bisection runs only then; the usual wake-up costs one next() call.
        let planned = t.nextFireAt;
        let following = t.schedule.next(planned);
        if (following !== undefined && following <= now) {
          planned = t.schedule.latestIn(planned, now) ?? planned;
          following = t.schedule.next(now);
        }
        t.nextFireAt = following;
        this.fireCron(t, planned);
      }
    }
    // Woken early (timers may be), or with more to come: arm for what is next.
    this.arm();
  }

  private fireCron(t: LiveTrigger, planned: number): void {
    const id = t.trigger.id;
    if (t.latestPlanned === undefined || planned > t.latestPlanned) t.latestPlanned = planned;
    this.enqueue(t, async () => {
      // A newer planned time is queued behind this one (catch-up fires only the latest).
      const superseded = () => t.latestPlanned !== undefined && t.latestPlanned > planned;
      if (!superseded()) {
        await this.startWithRetries(
          t,
          {
            requestId: compactKey(`cron:${t.workflowId}:${id}:${planned}`),
            runTs: planned,
            initiator: initiator(InitiatorKind.INITIATOR_KIND_CRON, id),
            firing: { trigger: { id, kind: "cron", scheduled_ts: planned }, runTs: planned },
          },
          { planned: new Date(planned).toISOString() },
          superseded,
        );
      }
      // Settled either way: a planned time that could not start a run is not retried forever.
      if (t.settledUntil === undefined || planned > t.settledUntil) {
        t.settledUntil = planned;
        await this.store.recordFire(t.workflowId, id, {
          ...(t.lastFiredAt !== undefined ? { firedAt: t.lastFiredAt } : {}),
          settledUntil: planned,
        });
      }
    });
  }

  // -------------------------------------------------------------------------------------
  // Artifacts

  private onArtifact(a: AnnouncedArtifact): void {
    if (this.stopped) return;
    // Tracked like a fire, so idle() and stop() also wait for announcements not yet matched.
    const matched = this.ready.then(() => {
      if (this.stopped) return;
      for (const t of this.byArtifact.get(a.name) ?? []) {
        if (!t.enabled || t.namespace !== a.namespace) continue;
        if (t.trigger.kind?.$case !== "artifact") continue;
        if (!partitionsMatch(t.trigger.kind.value.partitions, a.partitions)) continue;
        this.fireArtifact(t, a);
      }
    });
    this.inFlight.add(matched);
    void matched.finally(() => this.inFlight.delete(matched));
  }

  private fireArtifact(t: LiveTrigger, a: AnnouncedArtifact): void {
    const id = t.trigger.id;
    const described = `${a.name}{${partitionKey(a.partitions)}}`;
    this.enqueue(t, async () => {
      const now = this.now();
      await this.startWithRetries(
        t,
        {
          requestId: compactKey(`artifact:${id}:${a.namespace}/${described}@${a.revision}`),
          runTs: now,
          initiator: initiator(InitiatorKind.INITIATOR_KIND_ARTIFACT, described),
          firing: {
            trigger: {
              id,
              kind: "artifact",
              scheduled_ts: now,
              artifact: {
                name: a.name,
                namespace: a.namespace,
                partitions: a.partitions,
                uri: a.uri,
                metadata: a.metadata as Record<string, JsonValue>,
                revision: a.revision,
              },
            },
            runTs: now,
          },
        },
        { artifact: described },
      );
    });
  }

  // -------------------------------------------------------------------------------------
  // Starting runs

  /**
   * Starts the fire's run, retrying transient failures with backoff while the trigger is still
   * the live, enabled one and `superseded` (cron) says no newer fire replaces this one. Every
   * failure is recorded as the trigger's last error; never throws.
   */
  private async startWithRetries(
    t: LiveTrigger,
    how: { requestId: string; runTs: number; initiator: Initiator; firing: TriggerFiring },
    logFields: Record<string, string>,
    superseded: () => boolean = () => false,
  ): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.startFor(t, how);
        return;
      } catch (err) {
        const delay = this.retryDelaysMs[attempt];
        const retry = isTransient(err) && delay !== undefined && this.isLive(t) && !superseded();
        const cause = err instanceof ServerError ? err.details : (err as Error).message;
        const message = retry
          ? `${cause} (retrying in ${formatDelay(delay)})`
          : isTransient(err) && delay === undefined
            ? `${cause} (gave up after ${attempt + 1} attempts)`
            : cause;
        this.log.warn("trigger could not start a run", {
          workflow: t.workflowId,
          trigger: t.trigger.id,
          ...logFields,
          error: message,
        });
        await this.recordError(t, message);
        if (!retry) return;
        await this.pause(delay);
        if (!this.isLive(t) || superseded()) return;
      }
    }
  }

  /** The trigger is still installed (not replaced by a new version) and enabled. */
  private isLive(t: LiveTrigger): boolean {
    return (
      !this.stopped &&
      t.enabled &&
      this.workflows.get(t.workflowId)?.triggers.get(t.trigger.id) === t
    );
  }

  private async recordError(t: LiveTrigger, message: string): Promise<void> {
    t.lastError = { message, at: this.now() };
    try {
      await this.store.recordError(t.workflowId, t.trigger.id, t.lastError);
    } catch (err) {
      this.log.warn("could not record a trigger's error", {
        workflow: t.workflowId,
        trigger: t.trigger.id,
        error: (err as Error).message,
      });
    }
  }

  /** A timer stop() cancels (resolving the wait, so the fire's loop ends). */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.pauses.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      entry.timer.unref();
      this.pauses.add(entry);
    });
  }

  private async startFor(
    t: LiveTrigger,
    how: { requestId: string; runTs: number; initiator: Initiator; firing: TriggerFiring },
  ): Promise<string> {
    const params = evaluateTriggerParams(t.trigger, how.firing);
    const { runId, created } = await this.opts.engine.startRun({
      workflowId: t.workflowId,
      version: t.version,
      params,
      tags: { [TRIGGER_TAG]: t.trigger.id },
      requestId: how.requestId,
      initiator: how.initiator,
      runTs: how.runTs,
    });
    const hadError = t.lastError !== undefined;
    t.lastError = undefined;
    if (created) {
      t.lastFiredAt = this.now();
      this.log.debug("trigger started a run", {
        workflow: t.workflowId,
        trigger: t.trigger.id,
        run: runId,
      });
      if (t.trigger.kind?.$case !== "cron" || hadError) {
        await this.store.recordFire(t.workflowId, t.trigger.id, {
          firedAt: t.lastFiredAt,
          clearError: true,
        });
      }
    } else if (hadError) {
      await this.store.recordFire(t.workflowId, t.trigger.id, { clearError: true });
    }
    return runId;
  }

  /** Runs `job` after the trigger's earlier fires; tracked so stop() can wait for it. */
  private enqueue(t: LiveTrigger, job: () => Promise<void>): void {
    const p = t.chain.then(job).catch((err: unknown) => {
      this.log.warn("trigger bookkeeping failed", {
        workflow: t.workflowId,
        trigger: t.trigger.id,
        error: (err as Error).message,
      });
    });
    t.chain = p;
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }
}

// ---------------------------------------------------------------------------------------
// Helpers

function view(t: LiveTrigger): TriggerView {
  return {
    workflowId: t.workflowId,
    trigger: t.trigger,
    enabled: t.enabled,
    nextFireAt: t.enabled ? t.nextFireAt : undefined,
    lastFiredAt: t.lastFiredAt,
    lastError: t.lastError,
  };
}

/**
 * Worth retrying: anything but a refusal that a retry would get again (bad params, an invalid
 * or impossible run). Database and engine-availability errors are transient.
 */
function isTransient(err: unknown): boolean {
  if (err instanceof TriggerParamError) return false;
  // The engine's own refusals (bad params, unknown version, …); UNAVAILABLE is transient.
  if (err instanceof EngineError) return err.code === "UNAVAILABLE";
  if (err instanceof ServerError) {
    return ![
      Status.INVALID_ARGUMENT,
      Status.FAILED_PRECONDITION,
      Status.NOT_FOUND,
      Status.ALREADY_EXISTS,
      Status.PERMISSION_DENIED,
      Status.OUT_OF_RANGE,
      Status.UNIMPLEMENTED,
    ].includes(err.code);
  }
  return true;
}

function formatDelay(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

function initiator(kind: InitiatorKind, detail: string): Initiator {
  return { kind, detail, parentRunId: "", client: undefined };
}

/** State rows by `workflow \0 trigger`. */
function indexStates(rows: TriggerStateRow[]): Map<string, TriggerStateRow> {
  const out = new Map<string, TriggerStateRow>();
  for (const r of rows) out.set(`${r.workflowId}\u0000${r.triggerId}`, r);
  return out;
}

function compareKeys(a: LiveTrigger, b: LiveTrigger): number {
  const ka = `${a.workflowId}\u0000${a.trigger.id}`;
  const kb = `${b.workflowId}\u0000${b.trigger.id}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

function addTo(index: Map<string, Set<LiveTrigger>>, name: string, t: LiveTrigger): void {
  const set = index.get(name);
  if (set) set.add(t);
  else index.set(name, new Set([t]));
}

function removeFrom(index: Map<string, Set<LiveTrigger>>, name: string, t: LiveTrigger): void {
  const set = index.get(name);
  set?.delete(t);
  if (set?.size === 0) index.delete(name);
}

/** Every key of the trigger's filter is present in the announced partitions with that value. */
export function partitionsMatch(
  filter: Record<string, string>,
  partitions: Record<string, string>,
): boolean {
  return Object.entries(filter).every(([k, v]) => partitions[k] === v);
}

function partitionKey(partitions: Record<string, string>): string {
  return Object.keys(partitions)
    .sort()
    .map((k) => `${k}=${partitions[k]}`)
    .join(",");
}

/** A request id that fits the column: readable when short, else a prefix plus a hash. */
function compactKey(key: string): string {
  if (key.length <= MAX_REQUEST_ID) return key;
  const hash = createHash("sha256").update(key).digest("hex").slice(0, 40);
  return `${key.slice(0, MAX_REQUEST_ID - 41)}~${hash}`;
}
