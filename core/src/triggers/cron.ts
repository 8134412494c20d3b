// Cron arithmetic for triggers, as pure functions over epoch milliseconds: the next planned fire
// time after an instant, and the latest planned time in a window (catch-up after downtime).
// croner does the calendar work in the trigger's IANA timezone, configured exactly as
// model/validate.ts checks it, so a definition that validates is one this module can schedule.
// croner has no "previous run", and one nextRun costs ~0.2 ms (timezone conversion), so the
// latest fire in a long window is found by bisection (~40 calls), never by stepping through it.
import { Cron } from "croner";

export interface CronSchedule {
  readonly expression: string;
  readonly timezone: string;
  /** The first planned fire time strictly after `afterMs`, or undefined if it never fires again. */
  next(afterMs: number): number | undefined;
  /** The latest planned fire time in (afterMs, atMs], or undefined when there is none. */
  latestIn(afterMs: number, atMs: number): number | undefined;
}

/** Compiles a cron expression (5 fields, or 6 with seconds first) in `timezone` (default UTC). */
export function cronSchedule(expression: string, timezone = ""): CronSchedule {
  const zone = timezone || "UTC";
  const cron = new Cron(expression, { timezone: zone });
  const next = (afterMs: number): number | undefined => {
    const d = cron.nextRun(new Date(afterMs));
    return d ? d.getTime() : undefined;
  };
  return {
    expression,
    timezone: zone,
    next,
    latestIn(afterMs, atMs) {
      const first = next(afterMs);
      if (first === undefined || first > atMs) return undefined;
      // Invariant: next(lo) <= atMs < next(hi). next() is non-decreasing, so the largest lo
      // with next(lo) <= atMs gives the latest fire time in the window.
      let lo = afterMs;
      let hi = atMs;
      while (hi - lo > 1) {
        const mid = lo + Math.floor((hi - lo) / 2);
        const t = next(mid);
        if (t !== undefined && t <= atMs) lo = mid;
        else hi = mid;
      }
      return next(lo);
    },
  };
}
