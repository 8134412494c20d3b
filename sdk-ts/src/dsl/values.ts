// The small value vocabulary of the DSL: JSON values, CEL expressions (`expr("…")`, references
// to upstream outputs), typed params and durations. Everything here compiles to the kaon.v1
// messages without adding rules of its own; core validates the result.
import { type Duration, type Param, ParamType } from "@kaon/proto";
import { EncodeError } from "../errors.js";

/** A JSON value: what params, outputs and step configs are made of. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** A CEL expression, evaluated by core at run time. Create with {@link expr}. */
export class Expr {
  constructor(readonly source: string) {}
  toString(): string {
    return this.source;
  }
}

/** A CEL expression, e.g. `expr("tsToDateInt(RUN_TS) - 1")`. */
export function expr(source: string): Expr {
  return new Expr(source);
}

/** An upstream step's output, `steps.<step>.outputs.<name>`; usable wherever an Expr is. */
export class OutputRef extends Expr {
  constructor(
    readonly stepId: string,
    readonly name: string,
  ) {
    super(`steps.${stepId}.outputs.${name}`);
  }
}

/** Param types by their DSL name; `any` leaves the type unspecified (any JSON value). */
export type ParamTypeName = "any" | "string" | "int" | "double" | "bool" | "list" | "map" | "json";

const PARAM_TYPES: Record<ParamTypeName, ParamType> = {
  any: ParamType.PARAM_TYPE_UNSPECIFIED,
  string: ParamType.PARAM_TYPE_STRING,
  int: ParamType.PARAM_TYPE_INT,
  double: ParamType.PARAM_TYPE_DOUBLE,
  bool: ParamType.PARAM_TYPE_BOOL,
  list: ParamType.PARAM_TYPE_LIST,
  map: ParamType.PARAM_TYPE_MAP,
  json: ParamType.PARAM_TYPE_JSON,
};

/** Everything a param can say; at most one of `value` and `expr`. */
export interface ParamOptions {
  type?: ParamTypeName;
  value?: JsonValue;
  expr?: string | Expr;
  required?: boolean;
  description?: string;
}

/** Extra facts for the typed shorthands (`param.int(5, { description })`). */
export interface ParamExtras {
  required?: boolean;
  description?: string;
}

/** A fully described param. Create with {@link param} or its typed shorthands. */
export class ParamSpec {
  constructor(readonly options: ParamOptions) {}
}

type Shorthand<T extends JsonValue> = (value?: T | Expr, extras?: ParamExtras) => ParamSpec;

function typed<T extends JsonValue>(type: ParamTypeName): Shorthand<T> {
  return (value, extras = {}) =>
    new ParamSpec({
      type,
      ...(value instanceof Expr ? { expr: value } : value === undefined ? {} : { value }),
      ...extras,
    });
}

/**
 * A param with every option: `param({ type: "int", expr: "tsToDateInt(RUN_TS)" })`.
 * Shorthands: `param.int(5)`, `param.string(expr("…"))`, `param.required("string", "why")`.
 */
export const param = Object.assign((options: ParamOptions) => new ParamSpec(options), {
  any: typed<JsonValue>("any"),
  string: typed<string>("string"),
  int: typed<number>("int"),
  double: typed<number>("double"),
  bool: typed<boolean>("bool"),
  list: typed<JsonValue[]>("list"),
  map: typed<JsonObject>("map"),
  json: typed<JsonValue>("json"),
  /** A param every run must supply. */
  required: (type: ParamTypeName, description?: string) =>
    new ParamSpec({ type, required: true, ...(description === undefined ? {} : { description }) }),
});

/**
 * Params by name, in evaluation order. A plain JSON value is a literal whose type follows from
 * the value (string, bool, int for integral numbers, double otherwise, list, map; null: any);
 * an Expr is an expression of any type; a ParamSpec says everything explicitly.
 */
export type ParamsInput = Record<string, JsonValue | Expr | ParamSpec>;

/** Compiles params to their messages, keeping the declaration order. */
export function compileParams(params: ParamsInput | undefined): Param[] {
  if (params === undefined) return [];
  return Object.entries(params).map(([name, input]) => compileParam(name, input));
}

function compileParam(name: string, input: JsonValue | Expr | ParamSpec): Param {
  const options: ParamOptions =
    input instanceof ParamSpec
      ? input.options
      : input instanceof Expr
        ? { expr: input }
        : { type: inferType(input), value: input };
  const message: Param = {
    name,
    type: PARAM_TYPES[options.type ?? "any"],
    expr: options.expr === undefined ? "" : String(options.expr),
    required: options.required ?? false,
    description: options.description ?? "",
  };
  if (options.value !== undefined) message.value = options.value;
  return message;
}

function inferType(value: JsonValue): ParamTypeName {
  if (value === null) return "any";
  if (Array.isArray(value)) return "list";
  switch (typeof value) {
    case "string":
      return "string";
    case "boolean":
      return "bool";
    case "number":
      return Number.isInteger(value) ? "int" : "double";
    default:
      return "map";
  }
}

/**
 * A duration: seconds as a number, `{ seconds, nanos }`, or text such as "90s", "1.5s",
 * "250ms", "5m", "1h30m", "2d".
 */
export type DurationInput = number | string | { seconds: number; nanos?: number };

const UNIT_NANOS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
  d: 86_400_000_000_000n,
};

/** Converts a DurationInput to a google.protobuf.Duration; `field` names it in errors. */
export function compileDuration(input: DurationInput, field: string): Duration {
  let nanos: bigint;
  if (typeof input === "object") return { seconds: input.seconds, nanos: input.nanos ?? 0 };
  if (typeof input === "number") {
    if (!Number.isFinite(input)) {
      throw new EncodeError(`${field}: ${input} is not a duration (use seconds, or "90s")`);
    }
    // floor + rounded nanos: the rule both SDKs follow (test/vectors/README.md).
    let seconds = Math.floor(input);
    let fraction = Math.round((input - seconds) * 1e9);
    if (fraction >= 1_000_000_000) {
      seconds += 1;
      fraction -= 1_000_000_000;
    }
    return { seconds, nanos: fraction };
  } else {
    const text = input.trim();
    const part = /(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d)/y;
    nanos = 0n;
    let at = 0;
    while (at < text.length) {
      part.lastIndex = at;
      const m = part.exec(text);
      if (!m) {
        throw new EncodeError(
          `${field}: "${input}" is not a duration (write e.g. "30s", "1.5s", "250ms", "5m", "1h30m")`,
        );
      }
      nanos += decimalTimes(m[1]!, UNIT_NANOS[m[2]!]!);
      at = part.lastIndex;
    }
    if (text.length === 0) throw new EncodeError(`${field}: an empty string is not a duration`);
  }
  return { seconds: Number(nanos / 1_000_000_000n), nanos: Number(nanos % 1_000_000_000n) };
}

function decimalTimes(decimal: string, unit: bigint): bigint {
  const [whole = "0", fraction = ""] = decimal.split(".");
  const scale = 10n ** BigInt(fraction.length);
  return ((BigInt(whole) * scale + BigInt(fraction || "0")) * unit) / scale;
}
