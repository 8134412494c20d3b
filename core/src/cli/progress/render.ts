// Pure renderers of a RunProgress: the compact frame redrawn on a terminal, the plain lines
// written when stdout is not a TTY (CI logs: one line per meaningful event, throttled progress,
// a heartbeat so long work never sits silent), and the one-line outcome. Nothing here does
// I/O or reads the clock; the driver (./watch.ts) passes `now` in, so tests feed synthetic
// events and compare text.
import { RunStatus, StepStatus } from "@kaon/proto";
import {
  type ForeachView,
  type Fresh,
  type Note,
  type RunProgress,
  runStatusName,
  type StepView,
  stepStatusName,
} from "./state.js";

export interface Style {
  /** ANSI colours (TTY without NO_COLOR). */
  color: boolean;
  /** Unicode symbols; ASCII fallbacks otherwise. */
  unicode: boolean;
}

export const PLAIN_STYLE: Style = { color: false, unicode: true };

const ANSI = {
  reset: "\x1b[0m",
  bold: "\x1b[1m",
  dim: "\x1b[2m",
  red: "\x1b[31m",
  green: "\x1b[32m",
  yellow: "\x1b[33m",
  blue: "\x1b[34m",
  cyan: "\x1b[36m",
} as const;

function paint(style: Style, code: keyof typeof ANSI, text: string): string {
  return style.color ? `${ANSI[code]}${text}${ANSI.reset}` : text;
}

/** `45s`, `1m05s`, `1h02m`. */
export function formatDuration(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/** `01:05` (or `1:02:05`) since `start`: the time column of plain lines. */
export function formatClock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh > 0 ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

const SYMBOLS: Record<string, [string, string]> = {
  SUCCEEDED: ["✓", "ok"],
  FAILED: ["✗", "x"],
  TIMED_OUT: ["⌛", "x"],
  RUNNING: ["●", "*"],
  LAUNCHING: ["●", "*"],
  RETRYING: ["↻", "r"],
  QUEUED: ["◌", "."],
  WAITING_FOR_DATA: ["◌", "."],
  ACTIVATED: ["◐", "."],
  SKIPPED: ["↷", "-"],
  STOPPED: ["■", "-"],
  NOT_STARTED: ["·", "."],
};

function symbol(style: Style, name: string): string {
  const pair = SYMBOLS[name] ?? ["?", "?"];
  const text = style.unicode ? pair[0] : pair[1];
  if (name === "SUCCEEDED") return paint(style, "green", text);
  if (name === "FAILED" || name === "TIMED_OUT") return paint(style, "red", text);
  if (name === "RUNNING" || name === "LAUNCHING" || name === "RETRYING") {
    return paint(style, "cyan", text);
  }
  return paint(style, "dim", text);
}

function runColor(status: RunStatus): keyof typeof ANSI {
  if (status === RunStatus.RUN_STATUS_SUCCEEDED) return "green";
  if (status === RunStatus.RUN_STATUS_RUNNING) return "cyan";
  if (status === RunStatus.RUN_STATUS_QUEUED) return "dim";
  return "red";
}

/** Counts in a fixed order, e.g. `12 succeeded · 3 running · 1 failed`. */
export function formatCounts(counts: Record<string, number>): string {
  const order = [
    "SUCCEEDED",
    "RUNNING",
    "LAUNCHING",
    "RETRYING",
    "QUEUED",
    "WAITING_FOR_DATA",
    "ACTIVATED",
    "FAILED",
    "TIMED_OUT",
    "STOPPED",
    "SKIPPED",
    "NOT_STARTED",
  ];
  const merged: Record<string, number> = { ...counts };
  // A launching step is about to run; one "running" figure reads better.
  if (merged.LAUNCHING) {
    merged.RUNNING = (merged.RUNNING ?? 0) + merged.LAUNCHING;
    delete merged.LAUNCHING;
  }
  const names = [
    ...order,
    ...Object.keys(merged)
      .filter((k) => !order.includes(k))
      .sort(),
  ];
  const parts: string[] = [];
  for (const name of names) {
    const n = merged[name];
    if (!n) continue;
    const label = name === "NOT_STARTED" ? "pending" : name.toLowerCase().replace(/_/g, " ");
    parts.push(`${n} ${label}`);
  }
  return parts.length > 0 ? parts.join(" · ") : "no steps yet";
}

/** `regional 3/5 ✓ · 2 running` for one foreach. */
export function formatForeach(progress: RunProgress, fe: ForeachView, style: Style): string {
  const c = progress.iterationCounts(fe);
  const total = c.total ?? c.seen;
  const parts = [`${c.succeeded}/${total} ${symbol(style, "SUCCEEDED")}`];
  if (c.running > 0) parts.push(`${c.running} running`);
  if (c.failed > 0) parts.push(paint(style, "red", `${c.failed} failed`));
  const pending = total - c.seen;
  if (pending > 0) parts.push(`${pending} pending`);
  return `${fe.path} ${parts.join(" · ")}`;
}

function progressBar(percent: number, width: number, style: Style): string {
  const filled = Math.round((Math.min(100, Math.max(0, percent)) / 100) * width);
  const [on, off] = style.unicode ? ["█", "░"] : ["#", "-"];
  return `${on.repeat(filled)}${off.repeat(width - filled)}`;
}

function stepLine(step: StepView, pathWidth: number, style: Style): string {
  const name = step.path.padEnd(pathWidth);
  const retry = step.attempts > 1 ? ` (attempt ${step.attempts})` : "";
  if (step.progress < 0) {
    return `  ${symbol(style, stepStatusName(step.status))} ${name}  ${paint(style, "dim", "running")}${retry}`;
  }
  const pct = `${Math.round(step.progress)}%`.padStart(4);
  const msg = step.progressMessage ? `  ${step.progressMessage}` : "";
  return `  ${symbol(style, stepStatusName(step.status))} ${name}  ${progressBar(step.progress, 10, style)} ${pct}${msg}${retry}`;
}

function noteText(note: Note, style: Style): string {
  switch (note.kind) {
    case "milestone":
      return `${paint(style, "blue", style.unicode ? "◆" : "*")} ${note.text}`;
    case "warning":
      return paint(style, "yellow", `${style.unicode ? "⚠" : "!"} ${note.text}`);
    case "error":
      return paint(style, "red", `${style.unicode ? "✗" : "x"} ${note.text}`);
    case "artifact":
      return `${style.unicode ? "▣" : "#"} artifact ${note.text}`;
    case "link":
      return `${style.unicode ? "↗" : ">"} ${note.text}`;
    default:
      return note.text;
  }
}

function runStart(progress: RunProgress): number | undefined {
  const run = progress.run;
  return (run?.startedAt ?? run?.createdAt)?.getTime();
}

function clip(line: string, width: number): string {
  if (width <= 0) return line;
  // Measure without ANSI escapes; cut the visible text only.
  let visible = 0;
  let out = "";
  for (let i = 0; i < line.length; i++) {
    if (line[i] === "\x1b") {
      const end = line.indexOf("m", i);
      if (end >= 0) {
        out += line.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (visible >= width - 1 && i < line.length - 1) {
      return `${out}…${line.includes("\x1b") ? ANSI.reset : ""}`;
    }
    out += line[i];
    visible++;
  }
  return out;
}

export interface FrameOptions {
  style: Style;
  /** Terminal width; lines are clipped to it. 0 means no clipping. */
  width: number;
  /** Most running steps listed before "… N more". */
  maxRunning?: number;
  /** Most notes in the tail. */
  maxNotes?: number;
  /** Most foreach lines. */
  maxForeach?: number;
}

/** The compact view redrawn on a terminal. */
export function renderFrame(progress: RunProgress, now: number, options: FrameOptions): string[] {
  const { style, width } = options;
  const maxRunning = options.maxRunning ?? 6;
  const maxNotes = options.maxNotes ?? 4;
  const maxForeach = options.maxForeach ?? 3;
  const run = progress.run;
  const lines: string[] = [];
  const status = progress.status;
  const head = [
    paint(style, "bold", run?.workflowId ?? "run"),
    paint(style, "dim", `run ${progress.runId}`),
    paint(style, runColor(status), runStatusName(status)),
    formatDuration(progress.elapsedMs(now)),
  ];
  if (run && run.version > 0) head.splice(1, 0, paint(style, "dim", `v${run.version}`));
  lines.push(head.join("  "));
  lines.push(`steps    ${formatCounts(progress.stepCounts())}`);

  const liveLoops = [...progress.loops.values()]
    .filter((l) => !isDone(l.status))
    .sort((a, b) => a.path.length - b.path.length);
  for (const loop of liveLoops) {
    lines.push(`loop     ${loop.path}  iteration ${loop.iteration + 1}`);
  }
  const foreaches = [...progress.foreaches.values()]
    .sort((a, b) => {
      const live = Number(isDone(a.status)) - Number(isDone(b.status));
      return live !== 0 ? live : b.updatedAt - a.updatedAt;
    })
    .slice(0, maxForeach);
  for (const fe of foreaches) lines.push(`foreach  ${formatForeach(progress, fe, style)}`);

  const running = progress.runningSteps();
  if (running.length > 0) {
    const shown = running.slice(0, maxRunning);
    const pathWidth = Math.min(40, Math.max(...shown.map((s) => s.path.length)));
    lines.push("running");
    for (const s of shown) lines.push(stepLine(s, pathWidth, style));
    if (running.length > shown.length) {
      lines.push(paint(style, "dim", `  … ${running.length - shown.length} more running`));
    }
  }
  const waiting = progress.waitingSteps();
  if (waiting.length > 0) {
    const first = waiting[0] as StepView;
    const why = first.reason ? ` (${first.path}: ${first.reason})` : "";
    lines.push(paint(style, "dim", `waiting  ${waiting.length}${why}`));
  }
  const notes = progress.notes.slice(-maxNotes);
  if (notes.length > 0) {
    const start = runStart(progress) ?? now;
    lines.push("latest");
    for (const n of notes) {
      const where = n.path ? `${n.path} ` : "";
      lines.push(
        `  ${paint(style, "dim", formatClock(n.time - start))} ${where}${noteText(n, style)}`,
      );
    }
  }
  return lines.map((l) => clip(l, width));
}

function isDone(status: StepStatus): boolean {
  return (
    status === StepStatus.STEP_STATUS_SUCCEEDED ||
    status === StepStatus.STEP_STATUS_FAILED ||
    status === StepStatus.STEP_STATUS_SKIPPED ||
    status === StepStatus.STEP_STATUS_STOPPED ||
    status === StepStatus.STEP_STATUS_TIMED_OUT
  );
}

export interface PlainOptions {
  /** Print a heartbeat when nothing was printed for this long (ms). Default 10 s. */
  heartbeatMs?: number;
  /** Print a step's progress when it moved this many points. Default 10. */
  progressStep?: number;
  /** … or when this long passed since its last progress line (ms). Default 5 s. */
  progressEveryMs?: number;
  /** Iterations of a foreach beyond this index print only their failures. Default 20. */
  iterationLines?: number;
}

/**
 * Plain lines for logs. Stateful only in what it already printed (throttles); feed it the
 * progress after each `apply` and call `tick` from a timer for the heartbeat.
 */
export class PlainLog {
  private lastPrintedAt: number | undefined;
  private readonly progressPrinted = new Map<string, { percent: number; at: number }>();
  private readonly heartbeatMs: number;
  private readonly progressStep: number;
  private readonly progressEveryMs: number;
  private readonly iterationLines: number;

  constructor(options: PlainOptions = {}) {
    this.heartbeatMs = options.heartbeatMs ?? 10_000;
    this.progressStep = options.progressStep ?? 10;
    this.progressEveryMs = options.progressEveryMs ?? 5_000;
    this.iterationLines = options.iterationLines ?? 20;
  }

  /** Lines for what the latest `apply` brought. */
  lines(progress: RunProgress, now: number): string[] {
    const start = runStart(progress) ?? now;
    const at = (time: number) => `[${formatClock(time - start)}]`;
    const out: string[] = [];
    for (const f of progress.fresh) {
      const line = this.line(progress, f, at);
      if (line !== undefined) out.push(line);
    }
    if (out.length > 0) this.lastPrintedAt = now;
    return out;
  }

  private line(progress: RunProgress, f: Fresh, at: (time: number) => string): string | undefined {
    switch (f.kind) {
      case "run": {
        const why = f.message ? ` (${f.message})` : "";
        return `${at(f.time)} run ${progress.runId} ${runStatusName(f.status)}${why}`;
      }
      case "step": {
        if (!this.worthALine(f.path, f.status)) return undefined;
        if (f.status === StepStatus.STEP_STATUS_RUNNING) this.progressPrinted.delete(f.path);
        const why = f.reason ? ` (${f.reason})` : "";
        return `${at(f.time)} ${f.path} ${stepStatusName(f.status)}${why}`;
      }
      case "progress": {
        const last = this.progressPrinted.get(f.path);
        if (last !== undefined && f.percent === last.percent) return undefined;
        const due =
          last === undefined ||
          f.percent >= 100 ||
          f.percent - last.percent >= this.progressStep ||
          f.time - last.at >= this.progressEveryMs;
        if (!due) return undefined;
        this.progressPrinted.set(f.path, { percent: f.percent, at: f.time });
        const msg = f.message ? ` ${f.message}` : "";
        return `${at(f.time)} ${f.path} ${Math.round(f.percent)}%${msg}`;
      }
      case "note": {
        const n = f.note;
        if (n.kind === "error" && n.path) return undefined; // the status line already said it
        const where = n.path ? `${n.path} ` : "";
        return `${at(n.time)} ${where}${noteText(n, PLAIN_STYLE)}`;
      }
    }
  }

  /** A heartbeat line when the run is going and nothing was printed for a while. */
  tick(progress: RunProgress, now: number): string[] {
    if (progress.ended || progress.run === undefined) return [];
    this.lastPrintedAt ??= now;
    if (now - this.lastPrintedAt < this.heartbeatMs) return [];
    this.lastPrintedAt = now;
    return [heartbeatLine(progress, now)];
  }

  private worthALine(path: string, status: StepStatus): boolean {
    if (
      status === StepStatus.STEP_STATUS_LAUNCHING ||
      status === StepStatus.STEP_STATUS_NOT_STARTED
    ) {
      return false;
    }
    const iterations = [...path.matchAll(/\[(\d+)\]/g)];
    const deep = iterations.some((m) => Number(m[1]) >= this.iterationLines);
    if (!deep) return true;
    return (
      status === StepStatus.STEP_STATUS_FAILED ||
      status === StepStatus.STEP_STATUS_TIMED_OUT ||
      status === StepStatus.STEP_STATUS_RETRYING
    );
  }
}

/** `[01:20] … still RUNNING 1m20s: 3 running · 12 succeeded | regional 3/5 ✓ · 2 running`. */
export function heartbeatLine(progress: RunProgress, now: number): string {
  const start = runStart(progress) ?? now;
  const parts = [formatCounts(progress.stepCounts())];
  for (const fe of progress.foreaches.values()) {
    if (!isDone(fe.status)) parts.push(formatForeach(progress, fe, PLAIN_STYLE));
  }
  for (const loop of progress.loops.values()) {
    if (!isDone(loop.status)) parts.push(`${loop.path} iteration ${loop.iteration + 1}`);
  }
  const running = progress.runningSteps().slice(0, 3);
  if (running.length > 0) {
    parts.push(
      `running: ${running
        .map((s) => (s.progress >= 0 ? `${s.path} ${Math.round(s.progress)}%` : s.path))
        .join(", ")}`,
    );
  }
  return `[${formatClock(now - start)}] … ${runStatusName(progress.status)} ${formatDuration(progress.elapsedMs(now))}: ${parts.join(" | ")}`;
}

/** The outcome: `run 01J… SUCCEEDED in 3m12s · 31 succeeded · 2 skipped`, plus failures. */
export function renderOutcome(progress: RunProgress, now: number, style: Style): string[] {
  const status = progress.status;
  const lines = [
    `run ${progress.runId} ${paint(style, runColor(status), runStatusName(status))} in ${formatDuration(progress.elapsedMs(now))} · ${formatCounts(progress.stepCounts())}`,
  ];
  const message = progress.run?.message;
  if (message && status !== RunStatus.RUN_STATUS_SUCCEEDED) lines.push(`  ${message}`);
  const failed = [...progress.steps.values()].filter(
    (s) =>
      (s.status === StepStatus.STEP_STATUS_FAILED ||
        s.status === StepStatus.STEP_STATUS_TIMED_OUT) &&
      !progress.containers.has(s.path),
  );
  for (const s of failed.slice(0, 10)) {
    lines.push(
      `  ${symbol(style, stepStatusName(s.status))} ${s.path}${s.reason ? `: ${s.reason}` : ""}`,
    );
  }
  if (failed.length > 10) lines.push(`  … ${failed.length - 10} more failed steps`);
  return lines;
}
