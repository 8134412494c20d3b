// String templates with embedded expressions, for data-artifact partitions and URIs
// (workflow.proto ArtifactRef): "models/${params.region}/${tsToDateInt(RUN_TS)}". Each
// `${ ... }` holds one CEL expression; `$${` writes a literal `${`. Strings are inserted as
// they are, other values as JSON (ints without a fraction, so dateints read naturally).
import type { JsonValue } from "../../steps/step-type.js";
import {
  type EvalOptions,
  type ExprError,
  type ExprScope,
  evaluate,
  type Program,
  parseExpression,
} from "./expression.js";
import { MAX_STRING_LENGTH, MAX_TEMPLATE_LENGTH } from "./limits.js";

export type TemplatePart = { text: string } | { program: Program; offset: number };

export interface Template {
  readonly source: string;
  readonly parts: readonly TemplatePart[];
  readonly references: readonly string[];
}

export type TemplateParseOutcome =
  | { ok: true; template: Template; references: readonly string[] }
  | { ok: false; error: ExprError };

export function parseTemplate(source: string): TemplateParseOutcome {
  if (typeof source !== "string") {
    return { ok: false, error: { message: `a template must be a string, got ${typeof source}` } };
  }
  if (source.length > MAX_TEMPLATE_LENGTH) {
    return {
      ok: false,
      error: {
        message: `template is ${source.length} characters long; the limit is ${MAX_TEMPLATE_LENGTH}`,
      },
    };
  }
  const parts: TemplatePart[] = [];
  const references = new Set<string>();
  let text = "";
  let i = 0;
  while (i < source.length) {
    if (source.startsWith("$${", i)) {
      text += "${";
      i += 3;
      continue;
    }
    if (!source.startsWith("${", i)) {
      text += source[i];
      i++;
      continue;
    }
    const start = i + 2;
    const end = findClose(source, start);
    if (end < 0) {
      return {
        ok: false,
        error: { message: "unterminated '${' in template (no matching '}')", position: i },
      };
    }
    const body = source.slice(start, end);
    const parsed = parseExpression(body);
    if (!parsed.ok) {
      const error: ExprError = { message: parsed.error.message, position: start };
      if (parsed.error.position !== undefined) error.position = start + parsed.error.position;
      return { ok: false, error };
    }
    if (text) parts.push({ text });
    text = "";
    parts.push({ program: parsed.program, offset: start });
    for (const r of parsed.references) references.add(r);
    i = end + 1;
  }
  if (text) parts.push({ text });
  const refs = [...references];
  return { ok: true, template: { source, parts, references: refs }, references: refs };
}

/** Index of the `}` closing an expression that starts at `from`, skipping strings and braces. */
function findClose(source: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < source.length) {
    const c = source[i];
    if (c === '"' || c === "'") {
      const triple = source.startsWith(c.repeat(3), i);
      const quote = triple ? c.repeat(3) : c;
      i += quote.length;
      while (i < source.length && !source.startsWith(quote, i)) {
        if (source[i] === "\\") i++;
        i++;
      }
      i += quote.length;
      continue;
    }
    if (c === "{") depth++;
    else if (c === "}") {
      if (depth === 0) return i;
      depth--;
    }
    i++;
  }
  return -1;
}

/** How a value appears inside rendered text. */
export function stringifyForTemplate(value: JsonValue): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** Renders a parsed template (or a source, parsed on the fly) over `scope`. */
export function renderTemplate(
  templateOrSource: Template | string,
  scope: ExprScope,
  options: EvalOptions = {},
): { ok: true; value: string } | { ok: false; error: ExprError } {
  let template: Template;
  if (typeof templateOrSource === "string") {
    const parsed = parseTemplate(templateOrSource);
    if (!parsed.ok) return parsed;
    template = parsed.template;
  } else {
    template = templateOrSource;
  }
  let out = "";
  for (const part of template.parts) {
    if ("text" in part) {
      out += part.text;
      continue;
    }
    const r = evaluate(part.program, scope, options);
    if (!r.ok) {
      const error: ExprError = { message: r.error.message, position: part.offset };
      if (r.error.position !== undefined) error.position = part.offset + r.error.position;
      return { ok: false, error };
    }
    out += stringifyForTemplate(r.value);
    if (out.length > MAX_STRING_LENGTH) {
      return {
        ok: false,
        error: { message: `rendered template is longer than ${MAX_STRING_LENGTH} characters` },
      };
    }
  }
  return { ok: true, value: out };
}
