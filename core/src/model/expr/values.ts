// Conversion between kaon's JSON values and cel-js values. CEL distinguishes int (BigInt in
// cel-js) from double (number); JSON does not. Integral JSON numbers become CEL ints so that
// `params.dateint - 1` stays an int, fractional ones become doubles; mixed int/double
// arithmetic is allowed by the environment (./environment.ts), so a DOUBLE param that
// happens to hold `1` still works in `params.lr * 0.5`. Results go back to plain JSON.
import type { JsonValue } from "../../steps/step-type.js";
import { MAX_RESULT_JSON_BYTES, MAX_SCOPE_NODES } from "./limits.js";

export class ValueError extends Error {}

/** Deep-converts a JSON value for cel-js, counting nodes against `budget`. */
export function jsonToCel(
  value: unknown,
  budget: { nodes: number } = { nodes: MAX_SCOPE_NODES },
): unknown {
  if (--budget.nodes < 0) {
    throw new ValueError(`the expression scope is too large (more than ${MAX_SCOPE_NODES} values)`);
  }
  switch (typeof value) {
    case "number":
      return Number.isInteger(value) ? BigInt(value) : value;
    case "string":
    case "boolean":
    case "bigint":
      return value;
    case "undefined":
      return null;
    case "object": {
      if (value === null) return null;
      if (Array.isArray(value)) return value.map((v) => jsonToCel(v, budget));
      if (value instanceof Date) return value;
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (v !== undefined) out[k] = jsonToCel(v, budget);
      }
      return out;
    }
    default:
      throw new ValueError(`cannot use a ${typeof value} in an expression`);
  }
}

/** Converts a cel-js result to plain JSON; throws ValueError naming what cannot be converted. */
export function celToJson(value: unknown): JsonValue {
  const budget = { bytes: MAX_RESULT_JSON_BYTES };
  return toJson(value, budget, "result");
}

function charge(budget: { bytes: number }, n: number): void {
  budget.bytes -= n;
  if (budget.bytes < 0) {
    throw new ValueError(`the result is larger than ${MAX_RESULT_JSON_BYTES} bytes of JSON`);
  }
}

function toJson(value: unknown, budget: { bytes: number }, where: string): JsonValue {
  switch (typeof value) {
    case "bigint": {
      if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
        throw new ValueError(
          `${where} is the integer ${value}, outside the range JSON numbers hold exactly (±2^53-1); convert it with string()`,
        );
      }
      charge(budget, 8);
      return Number(value);
    }
    case "number":
      if (!Number.isFinite(value)) {
        throw new ValueError(`${where} is ${value}, which JSON cannot represent`);
      }
      charge(budget, 8);
      return value;
    case "string":
      charge(budget, value.length + 2);
      return value;
    case "boolean":
      charge(budget, 5);
      return value;
    case "object": {
      if (value === null) {
        charge(budget, 4);
        return null;
      }
      if (Array.isArray(value)) {
        charge(budget, 2 + value.length);
        return value.map((v, i) => toJson(v, budget, `${where}[${i}]`));
      }
      if (value instanceof Date) {
        charge(budget, 26);
        return value.toISOString();
      }
      if (value instanceof Uint8Array) {
        throw new ValueError(
          `${where} is bytes, which JSON cannot hold; use .base64() or .string()`,
        );
      }
      if (value instanceof Set) {
        return toJson([...value], budget, where);
      }
      if (value instanceof Map) {
        const out: Record<string, JsonValue> = {};
        charge(budget, 2);
        for (const [k, v] of value) {
          const key = String(k);
          charge(budget, key.length + 4);
          out[key] = toJson(v, budget, `${where}.${key}`);
        }
        return out;
      }
      const ctorName = (value as object).constructor?.name;
      if (ctorName === "Duration") {
        const d = value as { seconds: number | bigint; nanos: number };
        const secs = Number(d.seconds) + d.nanos / 1e9;
        charge(budget, 16);
        return `${secs}s`;
      }
      if (ctorName === "UnsignedInt") {
        return toJson((value as { value: bigint }).value, budget, where);
      }
      if (ctorName !== "Object" && ctorName !== undefined) {
        throw new ValueError(`${where} is a ${ctorName}, which has no JSON form`);
      }
      const out: Record<string, JsonValue> = {};
      charge(budget, 2);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        charge(budget, k.length + 4);
        out[k] = toJson(v, budget, `${where}.${k}`);
      }
      return out;
    }
    default:
      throw new ValueError(`${where} is a ${typeof value}, which has no JSON form`);
  }
}

/** A short, type-naming description of a JSON value for error messages. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return `list ${truncate(JSON.stringify(value))}`;
  switch (typeof value) {
    case "number":
      return Number.isInteger(value) ? `int ${value}` : `double ${value}`;
    case "bigint":
      return `int ${value}`;
    case "string":
      return `string ${truncate(JSON.stringify(value))}`;
    case "boolean":
      return `bool ${value}`;
    case "object":
      return `map ${truncate(JSON.stringify(value))}`;
    default:
      return typeof value;
  }
}

function truncate(s: string | undefined, max = 60): string {
  if (s === undefined) return "";
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
