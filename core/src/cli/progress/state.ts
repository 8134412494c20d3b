// What the live progress view knows about a run, rebuilt from WatchRun batches alone (never by
// polling): step statuses and attempts, the latest progress of each step, foreach iterations
// and loop iterations recovered from step paths (`regional[3]/train`, `tune@2/validate`), and
// the latest notable lines (milestones, job messages, artifacts, failures). The renderers in
// ./render.ts turn this into a redrawn frame (TTY) or plain lines (CI logs).
import { type Run, type RunEvent, RunStatus, StepStatus } from "@kaon/proto";

/** A step instance as the view sees it. */
export interface StepView {
  path: string;
  status: StepStatus;
  /** The message of the latest status event (why it waits, why it ended). */
  reason: string;
  attempts: number;
  /** 0-100, or -1 when the job never reported progress. */
  progress: number;
  progressMessage: string;
  /** When the step last changed (ms). */
  updatedAt: number;
}

/** A foreach container: its iterations and the status of every body step seen in each. */
export interface ForeachView {
  path: string;
  /** Iteration count when known (from the container's own status message), else undefined. */
  total: number | undefined;
  /** iteration index -> body step path -> status. */
  iterations: Map<number, Map<string, StepStatus>>;
  status: StepStatus;
  updatedAt: number;
}

/** A loop container and the highest iteration seen. */
export interface LoopView {
  path: string;
  iteration: number;
  status: StepStatus;
  updatedAt: number;
}

export type NoteKind = "milestone" | "message" | "warning" | "error" | "artifact" | "link";

/** A notable line: shown in the TTY view's tail and printed in plain mode. */
export interface Note {
  time: number;
  path: string;
  kind: NoteKind;
  text: string;
}

/** One thing the latest batch brought. */
export type Fresh =
  | { kind: "run"; status: RunStatus; message: string; time: number }
  | { kind: "step"; path: string; status: StepStatus; reason: string; time: number }
  | { kind: "progress"; path: string; percent: number; message: string; time: number }
  | { kind: "note"; note: Note };

export interface IterationCounts {
  total: number | undefined;
  seen: number;
  succeeded: number;
  running: number;
  failed: number;
}

export const TERMINAL_STEP: ReadonlySet<StepStatus> = new Set([
  StepStatus.STEP_STATUS_SUCCEEDED,
  StepStatus.STEP_STATUS_FAILED,
  StepStatus.STEP_STATUS_SKIPPED,
  StepStatus.STEP_STATUS_STOPPED,
  StepStatus.STEP_STATUS_TIMED_OUT,
]);

export const ACTIVE_STEP: ReadonlySet<StepStatus> = new Set([
  StepStatus.STEP_STATUS_LAUNCHING,
  StepStatus.STEP_STATUS_RUNNING,
  StepStatus.STEP_STATUS_RETRYING,
]);

const FAILED_STEP: ReadonlySet<StepStatus> = new Set([
  StepStatus.STEP_STATUS_FAILED,
  StepStatus.STEP_STATUS_TIMED_OUT,
]);

export const TERMINAL_RUN: ReadonlySet<RunStatus> = new Set([
  RunStatus.RUN_STATUS_SUCCEEDED,
  RunStatus.RUN_STATUS_FAILED,
  RunStatus.RUN_STATUS_STOPPED,
  RunStatus.RUN_STATUS_TIMED_OUT,
]);

/** `SUCCEEDED` for STEP_STATUS_SUCCEEDED. */
export function stepStatusName(status: StepStatus): string {
  return (StepStatus[status] ?? "UNKNOWN").replace(/^STEP_STATUS_/, "");
}

/** `RUNNING` for RUN_STATUS_RUNNING. */
export function runStatusName(status: RunStatus): string {
  return (RunStatus[status] ?? "UNKNOWN").replace(/^RUN_STATUS_/, "");
}

/** A container position inside a path: `a@0/regional` with iteration 3 for `a@0/regional[3]/x`. */
export interface Enclosing {
  kind: "foreach" | "loop";
  container: string;
  index: number;
}

/** Every foreach and loop a step path sits in, outermost first. */
export function enclosingContainers(path: string): Enclosing[] {
  const out: Enclosing[] = [];
  const re = /\[(\d+)\]|@(\d+)/g;
  for (let m = re.exec(path); m !== null; m = re.exec(path)) {
    const container = path.slice(0, m.index);
    if (m[1] !== undefined) out.push({ kind: "foreach", container, index: Number(m[1]) });
    else out.push({ kind: "loop", container, index: Number(m[2]) });
  }
  return out;
}

const MAX_NOTES = 50;
const ITERATIONS_MESSAGE = /^(\d+) iterations?\b|\bof (\d+) iterations\b/;

export class RunProgress {
  run: Run | undefined;
  runId: string;
  readonly steps = new Map<string, StepView>();
  readonly foreaches = new Map<string, ForeachView>();
  readonly loops = new Map<string, LoopView>();
  readonly notes: Note[] = [];
  /** Paths known to be containers (they have children); left out of "running steps". */
  readonly containers = new Set<string>();
  lastSeq = 0;
  /** When the view last learned something (ms); drives the plain-mode heartbeat. */
  lastEventAt = 0;
  /** What the latest `apply` brought, in event order (plain mode prints from it). */
  fresh: Fresh[] = [];

  constructor(runId: string) {
    this.runId = runId;
  }

  /** Folds one WatchRun message into the view. `now` is used for events without a time. */
  apply(events: readonly RunEvent[], run: Run | undefined, now: number): void {
    this.fresh = [];
    if (run) this.run = run;
    for (const e of events) {
      if (e.seq <= this.lastSeq) continue;
      this.lastSeq = e.seq;
      this.applyEvent(e, e.time ? e.time.getTime() : now);
    }
    this.lastEventAt = now;
  }

  private applyEvent(e: RunEvent, time: number): void {
    const kind = e.kind;
    if (!kind) return;
    switch (kind.$case) {
      case "runStatus":
        this.fresh.push({ kind: "run", status: kind.value, message: e.message, time });
        if (this.run) this.run = { ...this.run, status: kind.value };
        return;
      case "stepStatus":
        this.stepStatus(e.path, kind.value, e.message, time);
        return;
      case "attempt": {
        const step = this.step(e.path, time);
        step.attempts = Math.max(step.attempts, kind.value.number);
        return;
      }
      case "artifact":
        this.note({ time, path: e.path, kind: "artifact", text: kind.value });
        return;
      case "report":
        this.report(e.path, kind.value.kind, time);
        return;
    }
  }

  private report(path: string, item: ReportKind | undefined, time: number): void {
    if (!item) return;
    switch (item.$case) {
      case "progress": {
        const step = this.step(path, time);
        step.progress = item.value.percent;
        step.progressMessage = item.value.message;
        step.updatedAt = time;
        this.fresh.push({
          kind: "progress",
          path,
          percent: item.value.percent,
          message: item.value.message,
          time,
        });
        return;
      }
      case "milestone":
        this.note({ time, path, kind: "milestone", text: item.value });
        return;
      case "message": {
        const level = item.value.level;
        const kind: NoteKind = level >= 4 ? "error" : level === 3 ? "warning" : "message";
        if (level === 1) return; // debug: not for the terminal
        this.note({ time, path, kind, text: item.value.text });
        return;
      }
      case "link":
        this.note({ time, path, kind: "link", text: `${item.value.name}: ${item.value.url}` });
        return;
      default:
        return;
    }
  }

  private note(n: Note): void {
    this.notes.push(n);
    if (this.notes.length > MAX_NOTES) this.notes.splice(0, this.notes.length - MAX_NOTES);
    this.fresh.push({ kind: "note", note: n });
  }

  private step(path: string, time: number): StepView {
    let step = this.steps.get(path);
    if (!step) {
      step = {
        path,
        status: StepStatus.STEP_STATUS_NOT_STARTED,
        reason: "",
        attempts: 0,
        progress: -1,
        progressMessage: "",
        updatedAt: time,
      };
      this.steps.set(path, step);
      this.registerContainers(path, time);
    }
    return step;
  }

  private registerContainers(path: string, time: number): void {
    for (const c of enclosingContainers(path)) {
      this.containers.add(c.container);
      if (c.kind === "foreach") {
        const fe = this.foreach(c.container, time);
        let iteration = fe.iterations.get(c.index);
        if (!iteration) {
          iteration = new Map();
          fe.iterations.set(c.index, iteration);
        }
      } else {
        const loop = this.loop(c.container, time);
        loop.iteration = Math.max(loop.iteration, c.index);
      }
    }
  }

  private foreach(path: string, time: number): ForeachView {
    let fe = this.foreaches.get(path);
    if (!fe) {
      const own = this.steps.get(path);
      fe = {
        path,
        total: undefined,
        iterations: new Map(),
        status: own?.status ?? StepStatus.STEP_STATUS_RUNNING,
        updatedAt: time,
      };
      this.foreaches.set(path, fe);
    }
    return fe;
  }

  private loop(path: string, time: number): LoopView {
    let loop = this.loops.get(path);
    if (!loop) {
      const own = this.steps.get(path);
      loop = {
        path,
        iteration: 0,
        status: own?.status ?? StepStatus.STEP_STATUS_RUNNING,
        updatedAt: time,
      };
      this.loops.set(path, loop);
    }
    return loop;
  }

  private stepStatus(path: string, status: StepStatus, reason: string, time: number): void {
    const step = this.step(path, time);
    step.status = status;
    step.reason = reason;
    step.updatedAt = time;
    if (status === StepStatus.STEP_STATUS_NOT_STARTED) {
      // A restart resets the step: forget stale progress.
      step.progress = -1;
      step.progressMessage = "";
    }
    this.fresh.push({ kind: "step", path, status, reason, time });
    if (FAILED_STEP.has(status)) {
      this.note({
        time,
        path,
        kind: "error",
        text: `${stepStatusName(status)}${reason ? `: ${reason}` : ""}`,
      });
    }
    // Containers: keep their own status, and learn a foreach's size from its message.
    const fe = this.foreaches.get(path);
    if (fe) {
      fe.status = status;
      fe.updatedAt = time;
    }
    const loop = this.loops.get(path);
    if (loop) {
      loop.status = status;
      loop.updatedAt = time;
    }
    const m = ITERATIONS_MESSAGE.exec(reason);
    if (m && (fe || status === StepStatus.STEP_STATUS_RUNNING)) {
      const total = Number(m[1] ?? m[2]);
      const target = fe ?? this.foreach(path, time);
      target.total = total;
      target.status = status;
      this.containers.add(path);
    }
    for (const c of enclosingContainers(path)) {
      if (c.kind === "foreach") {
        const container = this.foreach(c.container, time);
        container.iterations.get(c.index)?.set(path, status);
        container.updatedAt = time;
      } else {
        this.loop(c.container, time).updatedAt = time;
      }
    }
  }

  /** Sets a foreach's iteration count learned elsewhere (e.g. GetStep's child counts). */
  setForeachTotal(path: string, total: number): void {
    this.foreach(path, this.lastEventAt).total = total;
    this.containers.add(path);
  }

  /** Iteration counts of a foreach: an iteration is running while any body step is active. */
  iterationCounts(fe: ForeachView): IterationCounts {
    let succeeded = 0;
    let running = 0;
    let failed = 0;
    for (const body of fe.iterations.values()) {
      let anyFailed = false;
      let anyActive = false;
      for (const s of body.values()) {
        if (FAILED_STEP.has(s) || s === StepStatus.STEP_STATUS_STOPPED) anyFailed = true;
        else if (!TERMINAL_STEP.has(s)) anyActive = true;
      }
      if (anyFailed) failed++;
      else if (anyActive || body.size === 0) running++;
      else succeeded++;
    }
    return { total: fe.total, seen: fe.iterations.size, succeeded, running, failed };
  }

  /** Step counts by status name (run.step_counts, names without the STEP_STATUS_ prefix). */
  stepCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    const counts = this.run?.stepCounts;
    if (counts && Object.keys(counts).length > 0) {
      for (const [k, v] of Object.entries(counts)) {
        out[k.replace(/^STEP_STATUS_/, "")] = Number(v);
      }
      return out;
    }
    for (const s of this.steps.values()) {
      const name = stepStatusName(s.status);
      out[name] = (out[name] ?? 0) + 1;
    }
    return out;
  }

  /** Leaf steps that are running now, most recently updated first. */
  runningSteps(): StepView[] {
    return [...this.steps.values()]
      .filter((s) => ACTIVE_STEP.has(s.status) && !this.containers.has(s.path))
      .sort((a, b) => b.updatedAt - a.updatedAt);
  }

  /** Steps waiting for resources or data (with their reason). */
  waitingSteps(): StepView[] {
    return [...this.steps.values()].filter(
      (s) =>
        (s.status === StepStatus.STEP_STATUS_QUEUED ||
          s.status === StepStatus.STEP_STATUS_WAITING_FOR_DATA) &&
        !this.containers.has(s.path),
    );
  }

  get status(): RunStatus {
    return this.run?.status ?? RunStatus.RUN_STATUS_UNSPECIFIED;
  }

  get ended(): boolean {
    return TERMINAL_RUN.has(this.status);
  }

  /** Milliseconds the run has been going (or took), measured from its start. */
  elapsedMs(now: number): number {
    const run = this.run;
    if (!run) return 0;
    const start = (run.startedAt ?? run.createdAt)?.getTime();
    if (start === undefined) return 0;
    const end = run.endedAt?.getTime() ?? now;
    return Math.max(0, end - start);
  }
}

type ReportKind = NonNullable<
  Extract<NonNullable<RunEvent["kind"]>, { $case: "report" }>["value"]["kind"]
>;
