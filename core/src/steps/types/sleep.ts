// `sleep`: waits inside core without a process (cool-downs, tests, demos). Stops at once
// when the attempt is aborted (stop, timeout).
import { ConfigCheck } from "../config-check.js";
import type { InlineStepType } from "../step-type.js";

/** One week: longer waits belong in a trigger, not in a running step. */
export const MAX_SLEEP_SECONDS = 7 * 24 * 3600;

export const sleepStepType: InlineStepType = {
  kind: "inline",
  name: "sleep",
  description: "Waits `seconds` inside core without a process.",
  validate(config, path) {
    const check = new ConfigCheck(config, path, "sleep").allowKeys(["seconds"]);
    check.number("seconds", { required: true, min: 0, max: MAX_SLEEP_SECONDS });
    return check.violations;
  },
  run(ctx, _report, signal) {
    const ms = Math.round((ctx.config.seconds as number) * 1000);
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortError(signal));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener("abort", onAbort);
        resolve({ succeeded: true });
      }, ms);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  },
};

function abortError(signal: AbortSignal): Error {
  const reason = signal.reason;
  return new Error(
    `sleep interrupted: ${reason instanceof Error ? reason.message : String(reason ?? "aborted")}`,
  );
}
