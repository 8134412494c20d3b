// `${...}` placeholders in step config strings (argv items, env values, URLs, headers, SQL
// bind values). Rendering happens here, once per attempt, from the step's resolved params and
// the run's identity — values are inserted into a single argv item / header / bind value,
// never into a shell line (shell scripts read params from the environment instead).
import { type ExprScope, renderTemplate } from "../model/expr/index.js";
import type { StepContext } from "./step-type.js";

/** A step config that cannot be turned into a task at run time; fails the attempt. */
export class StepConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StepConfigError";
  }
}

export function configScope(ctx: StepContext): ExprScope {
  return {
    params: ctx.params,
    run: {
      id: ctx.runId,
      workflow_id: ctx.workflowId,
      step: ctx.stepId,
      path: ctx.path,
      attempt: ctx.attempt,
    },
  };
}

/** Renders one config string; `field` names it in the error (e.g. `argv[2]`). */
export function renderConfigString(value: string, scope: ExprScope, field: string): string {
  if (!value.includes("${")) return value;
  const r = renderTemplate(value, scope);
  if (!r.ok)
    throw new StepConfigError(`config ${field} ${JSON.stringify(value)}: ${r.error.message}`);
  return r.value;
}

export function renderConfigList(
  values: readonly string[],
  scope: ExprScope,
  field: string,
): string[] {
  return values.map((v, i) => renderConfigString(v, scope, `${field}[${i}]`));
}

export function renderConfigMap(
  values: Readonly<Record<string, string>> | undefined,
  scope: ExprScope,
  field: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (!values) return out;
  for (const [k, v] of Object.entries(values))
    out[k] = renderConfigString(v, scope, `${field}.${k}`);
  return out;
}
