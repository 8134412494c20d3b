// Small helpers for step types' config validation, so that every type reports problems the
// same way: one FieldViolation per problem, with the exact field path
// (`steps[2].config.argv[0]`), the bad value, and a fix when there is an obvious one.
import type { FieldViolation } from "@kaon/proto";
import { parseTemplate, suggest } from "../model/expr/index.js";
import type { JsonObject, JsonValue } from "./step-type.js";

export function violation(field: string, description: string, hint = ""): FieldViolation {
  return { field, description, hint };
}

/** Short JSON of a value for messages. */
export function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}

/** Roots a `${...}` template in step config may use (ctx has params and run identity only). */
const CONFIG_TEMPLATE_ROOTS = new Set(["params", "run"]);

/**
 * Collects violations for one step config. Every check is a no-op when the key is absent
 * and not required, so types read as a list of their keys.
 */
export class ConfigCheck {
  readonly violations: FieldViolation[] = [];

  constructor(
    readonly config: JsonObject,
    readonly path: string,
    readonly typeName: string,
  ) {}

  field(key: string): string {
    return `${this.path}.${key}`;
  }

  add(field: string, description: string, hint = ""): void {
    this.violations.push(violation(field, description, hint));
  }

  has(key: string): boolean {
    return this.config[key] !== undefined && this.config[key] !== null;
  }

  /** Flags keys the type does not know, with a did-you-mean hint. */
  allowKeys(known: readonly string[]): this {
    for (const key of Object.keys(this.config)) {
      if (known.includes(key)) continue;
      const near = suggest(key, known);
      this.add(
        this.field(key),
        `unknown ${this.typeName} config key '${key}'`,
        near ? `did you mean '${near}'?` : `known keys: ${known.join(", ")}`,
      );
    }
    return this;
  }

  /** Exactly one of `keys` must be present (or at most one when `required` is false). */
  oneOf(keys: readonly string[], required = true): string | undefined {
    const present = keys.filter((k) => this.has(k));
    if (present.length > 1) {
      this.add(
        this.field(present[1]!),
        `${this.typeName} config has both '${present[0]}' and '${present[1]}'`,
        `use only one of ${keys.map((k) => `'${k}'`).join(", ")}`,
      );
      return undefined;
    }
    if (present.length === 0 && required) {
      this.add(
        this.path,
        `${this.typeName} config needs one of ${keys.map((k) => `'${k}'`).join(", ")}`,
      );
      return undefined;
    }
    return present[0];
  }

  string(
    key: string,
    opts: { required?: boolean; nonEmpty?: boolean; maxLength?: number; template?: boolean } = {},
  ): string | undefined {
    const v = this.config[key];
    if (v === undefined || v === null) {
      if (opts.required) this.add(this.field(key), `${this.typeName} config needs '${key}'`);
      return undefined;
    }
    if (typeof v !== "string") {
      this.add(this.field(key), `'${key}' must be a string, got ${typeName(v)} ${show(v)}`);
      return undefined;
    }
    this.checkString(v, this.field(key), opts);
    return v;
  }

  private checkString(
    v: string,
    field: string,
    opts: { nonEmpty?: boolean; maxLength?: number; template?: boolean },
  ): void {
    if (opts.nonEmpty !== false && v.trim() === "") {
      this.add(field, "must not be empty");
      return;
    }
    if (opts.maxLength !== undefined && v.length > opts.maxLength) {
      this.add(field, `is ${v.length} characters long; the limit is ${opts.maxLength}`);
      return;
    }
    if (opts.template) this.template(v, field);
  }

  /** Checks `${...}` placeholders: they must parse and may use only params and run. */
  template(v: string, field: string): void {
    if (!v.includes("${")) return;
    const parsed = parseTemplate(v);
    if (!parsed.ok) {
      const at =
        parsed.error.position !== undefined ? ` (at character ${parsed.error.position})` : "";
      this.add(field, `bad template ${show(v)}: ${parsed.error.message}${at}`);
      return;
    }
    for (const ref of parsed.references) {
      const root = ref.split(".")[0]!;
      if (!CONFIG_TEMPLATE_ROOTS.has(root)) {
        this.add(
          field,
          `template ${show(v)} uses '${ref}'; step config templates see only params.* and run.*`,
          "declare a step param with that expression and use ${params.<name>} here",
        );
      }
    }
  }

  stringList(
    key: string,
    opts: { required?: boolean; nonEmpty?: boolean; template?: boolean; maxItems?: number } = {},
  ): string[] | undefined {
    const v = this.config[key];
    if (v === undefined || v === null) {
      if (opts.required) this.add(this.field(key), `${this.typeName} config needs '${key}'`);
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.add(
        this.field(key),
        `'${key}' must be a list of strings, got ${typeName(v)} ${show(v)}`,
        typeof v === "string" ? `write it as a list: [${show(v)}]` : "",
      );
      return undefined;
    }
    if (opts.nonEmpty && v.length === 0) {
      this.add(this.field(key), `'${key}' must not be empty`);
      return undefined;
    }
    if (opts.maxItems !== undefined && v.length > opts.maxItems) {
      this.add(this.field(key), `'${key}' has ${v.length} items; the limit is ${opts.maxItems}`);
      return undefined;
    }
    let ok = true;
    v.forEach((item, i) => {
      const f = `${this.field(key)}[${i}]`;
      if (typeof item !== "string") {
        ok = false;
        this.add(
          f,
          `must be a string, got ${typeName(item)} ${show(item)}`,
          typeof item === "number" || typeof item === "boolean" ? `quote it: "${item}"` : "",
        );
      } else if (opts.template) {
        this.template(item, f);
      }
    });
    return ok ? (v as string[]) : undefined;
  }

  /** An object of string values (env, headers, conf). */
  stringMap(
    key: string,
    opts: { keyPattern?: RegExp; keyRule?: string; template?: boolean } = {},
  ): Record<string, string> | undefined {
    const v = this.config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "object" || Array.isArray(v)) {
      this.add(
        this.field(key),
        `'${key}' must be an object of strings, got ${typeName(v)} ${show(v)}`,
      );
      return undefined;
    }
    let ok = true;
    for (const [k, item] of Object.entries(v)) {
      const f = `${this.field(key)}.${k}`;
      if (opts.keyPattern && !opts.keyPattern.test(k)) {
        ok = false;
        this.add(f, `'${k}' is not a valid name${opts.keyRule ? `: ${opts.keyRule}` : ""}`);
      }
      if (typeof item !== "string") {
        ok = false;
        this.add(f, `must be a string, got ${typeName(item)} ${show(item)}`);
      } else if (opts.template) {
        this.template(item, f);
      }
    }
    return ok ? (v as Record<string, string>) : undefined;
  }

  number(
    key: string,
    opts: { required?: boolean; min?: number; max?: number; integer?: boolean } = {},
  ): number | undefined {
    const v = this.config[key];
    if (v === undefined || v === null) {
      if (opts.required) this.add(this.field(key), `${this.typeName} config needs '${key}'`);
      return undefined;
    }
    if (typeof v !== "number" || !Number.isFinite(v)) {
      this.add(this.field(key), `'${key}' must be a number, got ${typeName(v)} ${show(v)}`);
      return undefined;
    }
    if (opts.integer && !Number.isInteger(v)) {
      this.add(this.field(key), `'${key}' must be a whole number, got ${v}`);
      return undefined;
    }
    if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
      this.add(
        this.field(key),
        `'${key}' is ${v}; it must be between ${opts.min ?? "-∞"} and ${opts.max ?? "∞"}`,
      );
      return undefined;
    }
    return v;
  }

  /** The raw value, for keys of any JSON type. */
  value(key: string): JsonValue | undefined {
    return this.config[key];
  }
}

/** Environment variable names a step may set: POSIX-style, and not kaon's own. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function checkEnv(check: ConfigCheck, key = "env"): Record<string, string> | undefined {
  const env = check.stringMap(key, {
    keyPattern: ENV_NAME,
    keyRule: "letters, digits and _, not starting with a digit",
    template: true,
  });
  const raw = check.value(key);
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) return env;
  for (const name of Object.keys(raw)) {
    if (name.startsWith("KAON_")) {
      check.add(
        `${check.field(key)}.${name}`,
        `'${name}' is reserved: kaon sets the KAON_* variables of every job`,
        "pick another name",
      );
    }
  }
  return env;
}
