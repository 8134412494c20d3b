// In-process wake-ups for readers that follow a run live (WatchRun, TailLogs, the CLI's
// --wait): the journal publishes after every commit which runs changed and which attempts
// ended, and subscribers re-read from the database from their cursor. Nobody polls.

type Listener = () => void;

export class Notifier {
  private readonly listeners = new Map<string, Set<Listener>>();

  /** Calls `fn` after each commit touching `key`; returns the unsubscribe function. */
  subscribe(key: string, fn: Listener): () => void {
    let set = this.listeners.get(key);
    if (!set) {
      set = new Set();
      this.listeners.set(key, set);
    }
    set.add(fn);
    return () => {
      const s = this.listeners.get(key);
      if (!s) return;
      s.delete(fn);
      if (s.size === 0) this.listeners.delete(key);
    };
  }

  publish(key: string): void {
    const set = this.listeners.get(key);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn();
      } catch {
        // A broken subscriber must not break the commit path.
      }
    }
  }

  hasListeners(key: string): boolean {
    return this.listeners.has(key);
  }

  /** Resolves at the next publish of `key`, or when `signal` aborts. */
  next(key: string, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const off = this.subscribe(key, () => {
        off();
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      const onAbort = () => {
        off();
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

export const runKey = (runId: string) => `run:${runId}`;
export const attemptKey = (runId: string, path: string, attempt: number) =>
  `attempt:${runId}\u0000${path}\u0000${attempt}`;
/** Published when any run reaches a terminal status (subworkflow parents, run strategies). */
export const RUN_ENDED = "run-ended";
