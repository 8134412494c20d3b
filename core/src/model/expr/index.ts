// The public surface of kaon's expression language (docs/expressions.md): CEL with kaon's
// roots and date macros, bounded evaluation, string templates, and typed-param coercion.
export {
  dateIntDaysBetween,
  dateIntToTs,
  dayFromDateInt,
  parseDateInt,
  tsToDateInt,
} from "./dates.js";
export { EXPRESSION_ROOTS, type ExpressionRoot, KAON_FUNCTIONS } from "./environment.js";
export {
  type EvalOptions,
  type EvalOutcome,
  type ExprError,
  type ExprScope,
  evaluate,
  evaluateCondition,
  formatExprError,
  type ParseOutcome,
  type Program,
  parseExpression,
  suggest,
} from "./expression.js";
export * as exprLimits from "./limits.js";
export { type CoerceOutcome, coerceParam, paramTypeName } from "./params.js";
export {
  parseTemplate,
  renderTemplate,
  stringifyForTemplate,
  type Template,
  type TemplateParseOutcome,
  type TemplatePart,
} from "./template.js";
