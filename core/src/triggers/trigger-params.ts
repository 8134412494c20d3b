// The params a trigger gives the run it starts. Each `Param` of the trigger is a literal or a
// CEL expression; expressions see what fired the trigger (`trigger.*`, and `signal.params` for
// signal triggers) plus `RUN_TS`. The result is passed to the engine as the run's supplied
// params, so the workflow's own declarations still decide types, defaults and required-ness.
import type { Trigger } from "@kaon/proto";
import { coerceParam, type ExprScope, evaluate, formatExprError } from "../model/expr/index.js";
import type { JsonValue } from "../steps/step-type.js";

/** Why a trigger could not produce params; the message names the trigger and the param. */
export class TriggerParamError extends Error {}

/** What a trigger's expressions see. */
export interface TriggerFiring {
  /** `trigger.*`: at least `id`, `kind`, `scheduled_ts`; `artifact` for artifact triggers. */
  trigger: Record<string, JsonValue>;
  /** The run's RUN_TS (the planned time of a cron fire; otherwise the time of the event). */
  runTs: number;
  /** `signal.*` for signal triggers: `{ name, params }`. */
  signal?: Record<string, JsonValue>;
}

export function evaluateTriggerParams(
  trigger: Trigger,
  firing: TriggerFiring,
): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  const scope: ExprScope = { trigger: firing.trigger, RUN_TS: firing.runTs };
  if (firing.signal) scope.signal = firing.signal;
  for (const p of trigger.params) {
    const what = `trigger '${trigger.id}' param '${p.name}'`;
    let value: unknown;
    if (p.expr) {
      const result = evaluate(p.expr, scope);
      if (!result.ok)
        throw new TriggerParamError(`${what}: ${formatExprError(p.expr, result.error)}`);
      value = result.value;
    } else if (p.value !== undefined) {
      value = p.value;
    } else {
      continue;
    }
    const coerced = coerceParam(value, p.type, p.name);
    if (!coerced.ok) throw new TriggerParamError(`${what}: ${coerced.error}`);
    out[p.name] = coerced.value;
  }
  return out;
}
