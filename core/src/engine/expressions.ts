// The engine's view of expressions: evaluate a CEL expression or condition, render a
// `${ <CEL> }` template, coerce a value to a declared param type. The language lives in
// model/expr (one implementation shared with validation); this adapter turns its outcomes into
// exceptions carrying a message that names the expression, which the engine records on the
// step that failed — a CEL error fails a step, never the server.
import type { ParamType } from "@kaon/proto";
import {
  coerceParam,
  type ExprScope,
  evaluate,
  evaluateCondition,
  formatExprError,
  renderTemplate,
} from "../model/expr/index.js";
import type { JsonValue } from "../steps/step-type.js";

export class ExpressionError extends Error {}

export function evalExpr(expr: string, scope: ExprScope, what: string): JsonValue {
  const out = evaluate(expr, scope);
  if (!out.ok) throw new ExpressionError(`${what}: ${formatExprError(expr, out.error)}`);
  return out.value;
}

export function evalCondition(expr: string, scope: ExprScope, what: string): boolean {
  const out = evaluateCondition(expr, scope);
  if (!out.ok) throw new ExpressionError(`${what}: ${formatExprError(expr, out.error)}`);
  return out.value;
}

export function render(template: string, scope: ExprScope, what: string): string {
  if (!template.includes("${")) return template;
  const out = renderTemplate(template, scope);
  if (!out.ok) throw new ExpressionError(`${what}: ${formatExprError(template, out.error)}`);
  return out.value;
}

export function coerce(value: unknown, type: ParamType, name: string): JsonValue {
  const out = coerceParam(value, type, name);
  if (!out.ok) throw new ExpressionError(out.error);
  return out.value;
}
