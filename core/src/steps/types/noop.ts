// `noop`: succeeds at once. A join or fan-out point, and the unit of the engine benchmark
// (100,000 of them), so it allocates nothing per call.
import { violation } from "../config-check.js";
import type { EndResult, InlineStepType } from "../step-type.js";

const SUCCEEDED: EndResult = Object.freeze({ succeeded: true }) as EndResult;
const DONE: Promise<EndResult> = Promise.resolve(SUCCEEDED);

export const noopStepType: InlineStepType = {
  kind: "inline",
  name: "noop",
  description: "Does nothing and succeeds at once; a join or fan-out point.",
  validate(config, path) {
    const keys = Object.keys(config);
    if (keys.length === 0) return [];
    return keys.map((k) =>
      violation(`${path}.${k}`, `noop takes no config, got key '${k}'`, "remove it"),
    );
  },
  run() {
    return DONE;
  },
};
