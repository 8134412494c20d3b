// Drives the live progress view from RunService.WatchRun: each streamed batch is folded into a
// RunProgress and shown — a redrawn frame on a terminal, plain lines otherwise. The only
// timer redraws the clock (TTY) or emits the heartbeat (plain); the server is never polled.
// A dropped stream (server restart) resumes from the last event seen.
import type { Run, RunServiceDefinition } from "@kaon/proto";
import { type Client, ClientError, Status } from "nice-grpc";
import { PlainLog, renderFrame, renderOutcome, type Style } from "./render.js";
import { RunProgress } from "./state.js";

export interface WatchOptions {
  client: Client<typeof RunServiceDefinition>;
  runId: string;
  /** Where the view goes (stdout). */
  write: (text: string) => void;
  /** Redrawn frame (true) or plain lines (false). */
  tty: boolean;
  /** ANSI colours (TTY only). */
  color?: boolean;
  /** Terminal width for clipping; read at every redraw. */
  columns?: () => number;
  /** Stops watching (the run goes on). */
  signal?: AbortSignal;
  /** Print the outcome line(s) at the end. Default true. */
  outcome?: boolean;
  /** Clock, for tests. */
  now?: () => number;
  /** Give up reconnecting after the server has been unreachable this long. Default 30 s. */
  reconnectMs?: number;
}

export interface WatchResult {
  run: Run | undefined;
  progress: RunProgress;
  /** True when the watch was stopped by the signal before the run ended. */
  detached: boolean;
}

const HIDE_CURSOR = "\x1b[?25l";
const SHOW_CURSOR = "\x1b[?25h";

/** Watches a run to its end (or until `signal` aborts), showing live progress. */
export async function watchRun(options: WatchOptions): Promise<WatchResult> {
  const now = options.now ?? Date.now;
  const progress = new RunProgress(options.runId);
  const style: Style = { color: options.tty && (options.color ?? true), unicode: true };
  const plain = new PlainLog();
  const columns = options.columns ?? (() => 0);
  let drawn = 0;
  let redrawQueued: NodeJS.Immediate | undefined;
  const foreachAsked = new Set<string>();

  const draw = () => {
    redrawQueued = undefined;
    const lines = renderFrame(progress, now(), { style, width: columns() });
    const up = drawn > 0 ? `\x1b[${drawn}F\x1b[0J` : "";
    options.write(`${up}${lines.join("\n")}\n`);
    drawn = lines.length;
  };
  const scheduleDraw = () => {
    redrawQueued ??= setImmediate(draw);
  };

  const askForeachTotals = () => {
    for (const fe of progress.foreaches.values()) {
      if (fe.total !== undefined || foreachAsked.has(fe.path)) continue;
      foreachAsked.add(fe.path);
      // Once per foreach, when it first shows up: its size is in the container's child counts.
      options.client
        .getStep({ runId: options.runId, path: fe.path })
        .then((res) => {
          const counts = res.step?.childCounts ?? {};
          const total = Object.values(counts).reduce((a, b) => a + Number(b), 0);
          if (total > 0 && fe.total === undefined) {
            progress.setForeachTotal(fe.path, total);
            if (options.tty) scheduleDraw();
          }
        })
        .catch(() => {});
    }
  };

  if (options.tty) options.write(HIDE_CURSOR);
  const timer = setInterval(() => {
    if (options.tty) scheduleDraw();
    else for (const line of plain.tick(progress, now())) options.write(`${line}\n`);
  }, 1000);
  timer.unref();

  let detached = false;
  let unreachableSince: number | undefined;
  try {
    for (;;) {
      try {
        for await (const msg of options.client.watchRun(
          { runId: options.runId, afterSeq: progress.lastSeq },
          options.signal ? { signal: options.signal } : {},
        )) {
          unreachableSince = undefined;
          progress.apply(msg.events, msg.run, now());
          askForeachTotals();
          if (options.tty) scheduleDraw();
          else for (const line of plain.lines(progress, now())) options.write(`${line}\n`);
        }
        break;
      } catch (err) {
        if (options.signal?.aborted) {
          detached = true;
          break;
        }
        const retriable = err instanceof ClientError && err.code === Status.UNAVAILABLE;
        unreachableSince ??= now();
        if (!retriable || now() - unreachableSince > (options.reconnectMs ?? 30_000)) throw err;
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    // The stream ends after the terminal event; fetch the final run for its outputs/timings.
    if (!detached && !options.signal?.aborted) {
      const final = await options.client.getRun({ runId: options.runId });
      if (final.run) progress.apply([], final.run, now());
    } else {
      detached = true;
    }
  } finally {
    clearInterval(timer);
    if (redrawQueued) clearImmediate(redrawQueued);
    if (options.tty) {
      draw();
      options.write(SHOW_CURSOR);
    }
  }
  if (options.outcome ?? true) {
    if (detached) {
      options.write(
        `detached; run ${options.runId} goes on (kaon watch ${options.runId} to follow it again)\n`,
      );
    } else {
      for (const line of renderOutcome(progress, now(), style)) options.write(`${line}\n`);
    }
  }
  return { run: progress.run, progress, detached };
}
