// Group commit. The engine mutates its in-memory state synchronously and records here what
// changed (dirty runs, steps, attempts) plus the events to append; one flush per tick writes
// it all in ONE transaction. Side effects that must follow durability — launching a task,
// answering a Report, acknowledging a backend status, waking watchers — are queued with
// `afterCommit` and run only once the transaction that recorded their cause has committed.
import type { BatchWriter } from "../store/runs/batch-writer.js";
import {
  type ArtifactRow,
  batchSize,
  EventKind,
  type EventRow,
  emptyBatch,
  type ImageRow,
  type WriteBatch,
} from "../store/runs/rows.js";
import type { AttemptState, RunState, StepState } from "./model.js";
import { type Notifier, runKey } from "./notifier.js";

/** Flush at once when this many rows are pending, instead of waiting for the tick to end. */
const MAX_PENDING_EVENTS = 20_000;

/** A post-commit action; a `committed()` waiter also has `fail`, called if its commit is lost. */
type AfterCommit = (() => void) & { fail?: (err: Error) => void };

/**
 * How long a change recorded with `lazily` may wait for its commit. Such changes wake nothing
 * and need nothing to follow them (an attempt that started RUNNING), so they ride along with
 * the next commit another change asks for — for a short task, the one that records its end —
 * instead of costing a transaction of their own; watchers still see them within this bound.
 */
export const LAZY_COMMIT_MS = 10;

export class Journal {
  private runs = new Set<RunState>();
  private steps = new Set<StepState>();
  private attempts = new Set<AttemptState>();
  private events: EventRow[] = [];
  private images: ImageRow[] = [];
  private artifacts: ArtifactRow[] = [];
  private requestKeys: WriteBatch["requestKeys"] = [];
  private stepDeletes: NonNullable<WriteBatch["stepDeletes"]> = [];
  private after: AfterCommit[] = [];
  private touched = new Set<string>();
  private scheduled = false;
  /** Set while `lazily` runs: recorded changes do not ask for a commit in this tick. */
  private lazy = false;
  private lazyTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private failure: Error | undefined;
  /** Called before each flush (the scheduler places queued work here so launches share it). */
  beforeFlush: () => void = () => {};
  onError: (err: Error) => void = () => {};
  /**
   * Called once when a write fails. From then on nothing is flushed, no post-commit action
   * runs, and `committed()` rejects with the error `describeFailure` made of the cause: memory
   * is ahead of the database, so only a rebuild from what was committed can continue.
   */
  onFailure: (err: Error) => void = () => {};
  describeFailure: (cause: Error) => Error = (cause) => cause;
  flushes = 0;

  constructor(
    private readonly writer: BatchWriter,
    private readonly notifier: Notifier,
  ) {}

  run(run: RunState): void {
    if (!run.dirty) {
      run.dirty = true;
      this.runs.add(run);
    }
    this.schedule();
  }

  step(step: StepState): void {
    if (!step.dirty) {
      step.dirty = true;
      this.steps.add(step);
    }
    this.schedule();
  }

  attempt(attempt: AttemptState): void {
    if (!attempt.dirty) {
      attempt.dirty = true;
      this.attempts.add(attempt);
    }
    this.schedule();
  }

  /**
   * Appends an event. A step-status event right after an attempt event of the same step
   * (the attempt moved and the step moved with it: LAUNCHING, RUNNING, SUCCEEDED, ...) is
   * stored as ONE row of kind `attemptAndStep` under the step event's seq; the reader
   * expands it back into the two events (run-queries.ts), so WatchRun's stream is unchanged
   * and a command task costs three event rows instead of six.
   */
  event(run: RunState, row: EventRow): void {
    const last = this.events[this.events.length - 1];
    if (
      row[4] === EventKind.stepStatus &&
      last !== undefined &&
      last[4] === EventKind.attempt &&
      last[1] === row[1] - 1 &&
      last[0] === row[0] &&
      last[3] === row[3]
    ) {
      last[1] = row[1];
      last[4] = EventKind.attemptAndStep;
      last[5] = row[5];
      last[6] = row[6];
    } else {
      this.events.push(row);
    }
    this.touched.add(run.id);
    if (this.events.length >= MAX_PENDING_EVENTS) this.kick();
    else this.schedule();
  }

  image(row: ImageRow): void {
    this.images.push(row);
    this.schedule();
  }

  artifact(row: ArtifactRow): void {
    this.artifacts.push(row);
    this.schedule();
  }

  requestKey(key: string, resultJson: string): void {
    this.requestKeys.push([key, resultJson, Date.now()]);
    this.schedule();
  }

  /** Removes step rows in the next commit, before its upserts (a restart's old iterations). */
  deleteSteps(runId: string, paths: readonly string[]): void {
    for (const path of paths) this.stepDeletes.push([runId, path]);
    this.schedule();
  }

  /**
   * Records what `fn` records without asking for a commit in this tick: it is committed with
   * the next one, at the latest LAZY_COMMIT_MS from now. Only for changes nothing waits on.
   */
  lazily(fn: () => void): void {
    const was = this.lazy;
    this.lazy = true;
    try {
      fn();
    } finally {
      this.lazy = was;
    }
  }

  /** Runs `fn` after the commit that includes everything recorded so far. */
  afterCommit(fn: AfterCommit): void {
    if (this.failure) {
      // Its cause will never commit, so neither may the action.
      fn.fail?.(this.failure);
      return;
    }
    this.after.push(fn);
    this.schedule();
  }

  /** Resolves once everything recorded so far is committed. */
  committed(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiter: AfterCommit = () => resolve();
      waiter.fail = reject;
      this.afterCommit(waiter);
    });
  }

  /** The error every caller gets since a write failed (undefined while healthy). */
  get failed(): Error | undefined {
    return this.failure;
  }

  /** Publishes `key` after the next commit (e.g. an attempt that ended). */
  touch(key: string): void {
    this.touched.add(key);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled || this.failure) return;
    if (this.lazy) {
      if (!this.lazyTimer) {
        this.lazyTimer = setTimeout(() => {
          this.lazyTimer = undefined;
          this.kick();
        }, LAZY_COMMIT_MS);
      }
      return;
    }
    this.scheduled = true;
    setImmediate(() => this.kick());
  }

  private kick(): void {
    this.scheduled = false;
    if (this.failure) return;
    if (this.lazyTimer) {
      // This flush takes the lazy changes along.
      clearTimeout(this.lazyTimer);
      this.lazyTimer = undefined;
    }
    if (this.flushing) {
      // The next flush starts when this one ends (see flush's finally).
      return;
    }
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      if (this.hasWork()) this.schedule();
    });
  }

  private hasWork(): boolean {
    return (
      this.runs.size > 0 ||
      this.steps.size > 0 ||
      this.attempts.size > 0 ||
      this.events.length > 0 ||
      this.images.length > 0 ||
      this.artifacts.length > 0 ||
      this.requestKeys.length > 0 ||
      this.stepDeletes.length > 0 ||
      this.after.length > 0 ||
      this.touched.size > 0
    );
  }

  private async flush(): Promise<void> {
    this.beforeFlush();
    if (!this.hasWork()) return;
    const batch = emptyBatch();
    for (const step of this.steps) {
      step.dirty = false;
      const run = step.scope.run;
      const written = step.persistedStatus >= 0;
      if (step.persistedStatus !== step.status) {
        if (step.persistedStatus >= 0)
          run.counts[step.persistedStatus] = (run.counts[step.persistedStatus] ?? 0) - 1;
        run.counts[step.status] = (run.counts[step.status] ?? 0) + 1;
        step.persistedStatus = step.status;
      }
      (written ? batch.stepUpdates : batch.steps).push(step.toRow());
    }
    for (const run of this.runs) {
      run.dirty = false;
      run.fresh = false;
      batch.runs.push(run.toRow());
    }
    for (const a of this.attempts) {
      a.dirty = false;
      (a.written ? batch.attemptUpdates : batch.attempts).push(a.toRow());
      a.written = true;
    }
    batch.events = this.events;
    batch.images = this.images;
    batch.artifacts = this.artifacts;
    batch.requestKeys = this.requestKeys;
    if (this.stepDeletes.length > 0) batch.stepDeletes = this.stepDeletes;
    const after = this.after;
    const touched = this.touched;
    this.runs = new Set();
    this.steps = new Set();
    this.attempts = new Set();
    this.events = [];
    this.images = [];
    this.artifacts = [];
    this.requestKeys = [];
    this.stepDeletes = [];
    this.after = [];
    this.touched = new Set();
    try {
      // Nothing to write (only wake-ups or after-commit work): everything recorded before is
      // committed already, since flushes run one after another.
      if (batchSize(batch) > 0) {
        await this.writer.write(batch);
        this.flushes++;
      }
    } catch (err) {
      // The in-memory state is now ahead of the database; the only safe course is to stop
      // and let recovery rebuild from what was committed.
      const failure = this.describeFailure(err as Error);
      this.failure = failure;
      const lost = [...after, ...this.after];
      this.after = [];
      for (const fn of lost) fn.fail?.(failure);
      this.onFailure(err as Error);
      return;
    }
    for (const fn of after) {
      try {
        fn();
      } catch (err) {
        this.onError(err as Error);
      }
    }
    for (const key of touched) this.notifier.publish(key.includes(":") ? key : runKey(key));
  }

  /** Flushes everything pending now (shutdown, tests). */
  async drain(): Promise<void> {
    while (!this.failure && (this.flushing || this.hasWork())) {
      if (this.flushing) await this.flushing;
      else this.kick();
    }
  }
}
