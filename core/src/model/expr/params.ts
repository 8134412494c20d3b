// Typed params (workflow.proto ParamType): a literal, a run's override (often a string from
// the CLI, `-p epochs=10`) or an expression's result must match the declared type. Coercion is
// deliberately narrow: strings that spell a value of the declared type are accepted (that is
// how command lines and environment variables carry values), nothing else is guessed.
import { ParamType } from "@kaon/proto";
import type { JsonValue } from "../../steps/step-type.js";
import { describeValue } from "./values.js";

export type CoerceOutcome = { ok: true; value: JsonValue } | { ok: false; error: string };

const TYPE_NAMES: Record<number, string> = {
  [ParamType.PARAM_TYPE_UNSPECIFIED]: "ANY",
  [ParamType.PARAM_TYPE_STRING]: "STRING",
  [ParamType.PARAM_TYPE_INT]: "INT",
  [ParamType.PARAM_TYPE_DOUBLE]: "DOUBLE",
  [ParamType.PARAM_TYPE_BOOL]: "BOOL",
  [ParamType.PARAM_TYPE_LIST]: "LIST",
  [ParamType.PARAM_TYPE_MAP]: "MAP",
  [ParamType.PARAM_TYPE_JSON]: "JSON",
};

export function paramTypeName(type: ParamType): string {
  return TYPE_NAMES[type] ?? `UNKNOWN(${type})`;
}

const INT_TEXT = /^[+-]?\d+$/;
const NUMBER_TEXT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks that `value` is JSON (finite numbers, plain objects), naming the first bad spot. */
function jsonProblem(value: unknown, where: string, depth = 0): string | undefined {
  if (depth > 64) return `${where} nests deeper than 64 levels`;
  switch (typeof value) {
    case "string":
    case "boolean":
      return undefined;
    case "number":
      return Number.isFinite(value) ? undefined : `${where} is ${value}, which JSON cannot hold`;
    case "object": {
      if (value === null) return undefined;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const p = jsonProblem(value[i], `${where}[${i}]`, depth + 1);
          if (p) return p;
        }
        return undefined;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        return `${where} is a ${(value as object).constructor?.name ?? "object"}, not JSON`;
      }
      for (const [k, v] of Object.entries(value)) {
        const p = jsonProblem(v, `${where}.${k}`, depth + 1);
        if (p) return p;
      }
      return undefined;
    }
    default:
      return `${where} is a ${typeof value}, not JSON`;
  }
}

function parseJsonText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * Coerces `value` to `type`. `name` is used in the error, e.g.
 * "param 'epochs' expects INT, got double 2.5".
 */
export function coerceParam(value: unknown, type: ParamType, name = "value"): CoerceOutcome {
  const label = name === "value" ? "value" : `param '${name}'`;
  const fail = (extra = ""): CoerceOutcome => ({
    ok: false,
    error: `${label} expects ${paramTypeName(type)}, got ${describeValue(value)}${extra}`,
  });
  if (value === undefined) return { ok: false, error: `${label} has no value` };
  switch (type) {
    case ParamType.PARAM_TYPE_UNSPECIFIED:
    case ParamType.PARAM_TYPE_JSON: {
      const problem = jsonProblem(value, label);
      return problem ? { ok: false, error: problem } : { ok: true, value: value as JsonValue };
    }
    case ParamType.PARAM_TYPE_STRING:
      return typeof value === "string" ? { ok: true, value } : fail();
    case ParamType.PARAM_TYPE_INT: {
      if (typeof value === "bigint") {
        return Number.isSafeInteger(Number(value)) && BigInt(Number(value)) === value
          ? { ok: true, value: Number(value) }
          : fail(" (outside ±2^53-1, the range JSON numbers hold exactly)");
      }
      if (typeof value === "number") {
        if (!Number.isInteger(value)) return fail();
        return Number.isSafeInteger(value)
          ? { ok: true, value }
          : fail(" (outside ±2^53-1, the range JSON numbers hold exactly)");
      }
      if (typeof value === "string" && INT_TEXT.test(value.trim())) {
        const n = Number(value.trim());
        return Number.isSafeInteger(n)
          ? { ok: true, value: n }
          : fail(" (outside ±2^53-1, the range JSON numbers hold exactly)");
      }
      return fail();
    }
    case ParamType.PARAM_TYPE_DOUBLE: {
      if (typeof value === "number") return Number.isFinite(value) ? { ok: true, value } : fail();
      if (typeof value === "bigint") return { ok: true, value: Number(value) };
      if (typeof value === "string" && NUMBER_TEXT.test(value.trim())) {
        return { ok: true, value: Number(value.trim()) };
      }
      return fail();
    }
    case ParamType.PARAM_TYPE_BOOL:
      if (typeof value === "boolean") return { ok: true, value };
      if (value === "true") return { ok: true, value: true };
      if (value === "false") return { ok: true, value: false };
      return fail();
    case ParamType.PARAM_TYPE_LIST: {
      const v = typeof value === "string" ? parseJsonText(value) : value;
      if (!Array.isArray(v))
        return fail(typeof value === "string" ? " (a string must hold a JSON list)" : "");
      const problem = jsonProblem(v, label);
      return problem ? { ok: false, error: problem } : { ok: true, value: v as JsonValue };
    }
    case ParamType.PARAM_TYPE_MAP: {
      const v = typeof value === "string" ? parseJsonText(value) : value;
      if (!isPlainObject(v))
        return fail(typeof value === "string" ? " (a string must hold a JSON object)" : "");
      const problem = jsonProblem(v, label);
      return problem ? { ok: false, error: problem } : { ok: true, value: v as JsonValue };
    }
    default:
      return { ok: false, error: `${label} has an unknown type ${type}` };
  }
}
