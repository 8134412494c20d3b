import { describe, expect, it } from "vitest";
import {
  type ExprScope,
  evaluate,
  evaluateCondition,
  formatExprError,
  parseExpression,
} from "./expression.js";
import { MAX_COMPREHENSION_ITEMS, MAX_EXPRESSION_LENGTH } from "./limits.js";

const RUN_TS = Date.UTC(2026, 10, 21, 23, 30); // 2026-11-21T23:30Z
const scope: ExprScope = {
  params: { epochs: 5, lr: 1, region: "us", regions: ["us", "eu", "br"], dateint: 20261121 },
  steps: {
    wrangle: { outputs: { regions: ["us", "eu"], count: 3 }, status: "SUCCEEDED" },
    "train-global": { outputs: { auc: 0.91 }, status: "SUCCEEDED" },
  },
  foreach: { value: "eu", index: 1, values: { region: "eu", model: "gbm" } },
  loop: { iteration: 2 },
  run: { id: "r-1", workflow_id: "recs", version: 3 },
  RUN_TS,
};

function ok(src: string, s: ExprScope = scope) {
  const r = evaluate(src, s);
  if (!r.ok) throw new Error(`${src}: ${r.error.message}`);
  return r.value;
}

function err(src: string, s: ExprScope = scope) {
  const r = evaluate(src, s);
  if (r.ok) throw new Error(`${src}: expected an error, got ${JSON.stringify(r.value)}`);
  return r.error;
}

function parseErr(src: string) {
  const p = parseExpression(src);
  if (p.ok) throw new Error(`${src}: expected a parse error`);
  return p.error;
}

describe("parseExpression", () => {
  it("lists the member chains an expression uses", () => {
    const p = parseExpression(
      'steps.wrangle.outputs.regions.map(r, r + params.region).size() > foreach.index && steps["train-global"].status == "SUCCEEDED" && loop.iteration < 3 && RUN_TS > 0 && run.id != ""',
    );
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(p.references).toEqual([
      "steps.wrangle.outputs.regions",
      "params.region",
      "foreach.index",
      "steps.train-global.status",
      "loop.iteration",
      "RUN_TS",
      "run.id",
    ]);
  });

  it("does not report comprehension or bind variables as references", () => {
    const p = parseExpression(
      "params.regions.filter(x, x != 'us').all(y, size(y) == 2) && cel.bind(z, params.epochs, z > 1)",
    );
    expect(p.ok && p.references).toEqual(["params.regions", "params.epochs"]);
  });

  it("stops a chain at dynamic access and leaves off the field tested by has()", () => {
    const p = parseExpression("has(params.maybe) && steps[params.region].status == 'x'");
    expect(p.ok && p.references).toEqual(["params", "params.region", "steps"]);
  });

  it("accepts the reserved word loop as kaon's loop root, keeping positions", () => {
    expect(ok("loop.iteration + 1")).toBe(3);
    expect(ok("'loop' + \"loop\"")).toBe("looploop");
    const e = err("loop.nope");
    expect(e.message).toContain("'nope'");
    expect(e.position).toBe(5);
  });

  it("rejects unknown identifiers with a hint", () => {
    const e = parseErr("parms.epochs + 1");
    expect(e.message).toContain("unknown identifier 'parms' (did you mean 'params'?)");
    expect(e.position).toBe(0);
    expect(parseErr("x > 1").message).toContain("unknown identifier 'x'");
  });

  it("rejects now() and points at RUN_TS", () => {
    const e = parseErr("now() > 1");
    expect(e.message).toContain("RUN_TS");
  });

  it("reports syntax errors with a position", () => {
    const e = parseErr("params.epochs +");
    expect(e.position).toBe(15);
    expect(formatExprError("params.epochs +", e)).toContain("               ^");
  });

  it("reports unknown functions and type errors at parse time", () => {
    expect(parseErr("frobnicate(1)").message).toContain("frobnicate");
    expect(parseErr("1 + 'a'").message).toMatch(/overload/);
  });

  it("bounds the source length", () => {
    const long = `${"1 + ".repeat(MAX_EXPRESSION_LENGTH / 4)}1`;
    expect(parseErr(long).message).toContain(`limit is ${MAX_EXPRESSION_LENGTH}`);
    expect(parseErr("   ").message).toBe("expression is empty");
  });

  it("requires literal, non-backtracking patterns for matches()", () => {
    expect(parseErr("params.region.matches(params.region)").message).toContain("string literal");
    expect(parseErr("params.region.matches('(a+)+$')").message).toContain("exponential");
    expect(parseErr("params.region.matches('(a|aa)*b')").message).toContain("exponential");
    expect(parseErr("params.region.matches('(a)\\\\1')").message).toContain("backreferences");
    expect(parseErr("params.region.matches('[')").message).toContain("invalid regular expression");
    expect(ok("params.region.matches('^[a-z]+$')")).toBe(true);
  });
});

describe("evaluate", () => {
  it("reads params, outputs, foreach, loop and run metadata", () => {
    expect(ok("params.epochs * 2")).toBe(10);
    expect(ok("steps.wrangle.outputs.regions")).toEqual(["us", "eu"]);
    expect(ok('steps["train-global"].outputs.auc > 0.9')).toBe(true);
    expect(ok("foreach.value + '-' + string(foreach.index)")).toBe("eu-1");
    expect(ok("foreach.values.model")).toBe("gbm");
    expect(ok("run.workflow_id + ':' + string(run.version)")).toBe("recs:3");
  });

  it("treats integral JSON numbers as ints and mixes ints with doubles", () => {
    expect(ok("params.epochs / 2")).toBe(2); // int division
    expect(ok("params.lr * 0.5")).toBe(0.5); // DOUBLE param that holds 1
    expect(ok("0.5 + params.epochs")).toBe(5.5);
    expect(ok("params.epochs - 0.5")).toBe(4.5);
    expect(ok("1 == 1.0")).toBe(true);
    expect(ok("2.5 > params.epochs")).toBe(false);
  });

  it("supports the standard macros", () => {
    expect(ok("params.regions.map(r, r + '!')")).toEqual(["us!", "eu!", "br!"]);
    expect(ok("params.regions.filter(r, r != 'us')")).toEqual(["eu", "br"]);
    expect(ok("params.regions.exists(r, r == 'br')")).toBe(true);
    expect(ok("params.regions.all(r, size(r) == 2)")).toBe(true);
    expect(ok("params.regions.exists_one(r, r.startsWith('e'))")).toBe(true);
    expect(ok("has(params.missing) ? 1 : 2")).toBe(2);
    expect(ok("{'a': [1, 2.5, 'x', null, true]}")).toEqual({ a: [1, 2.5, "x", null, true] });
  });

  it("converts results to JSON", () => {
    expect(ok("timestamp('2024-01-01T00:00:00Z')")).toBe("2024-01-01T00:00:00.000Z");
    expect(ok("duration('90m')")).toBe("5400s");
    expect(ok("{1: 'a'}")).toEqual({ 1: "a" });
    expect(err("9007199254740993").message).toContain("9007199254740993");
    expect(err("b'abc'").message).toContain("bytes");
  });

  it("explains missing keys and missing roots", () => {
    const e = err("params.nope + 1");
    expect(e.message).toContain("no such key 'nope'");
    expect(e.position).toBe(7);
    expect(err("foreach.value", { params: {} }).message).toBe(
      "'foreach' exists only inside a foreach body",
    );
    expect(err("RUN_TS", {}).message).toBe("RUN_TS is not set here");
  });

  it("reports runtime errors without throwing", () => {
    expect(err("params.epochs / 0").message).toContain("division by zero");
    expect(err("9223372036854775807 + params.epochs").message).toContain("overflow");
    expect(err("int('x')").message.length).toBeGreaterThan(0);
  });

  it("passes only the scope it uses and still sees later changes", () => {
    const s: ExprScope = { params: { a: 1 }, steps: { x: { outputs: { v: 1 } } } };
    const p = parseExpression("steps.x.outputs.v + params.a");
    expect(p.ok).toBe(true);
    if (!p.ok) return;
    expect(evaluate(p.program, s)).toEqual({ ok: true, value: 2 });
    s.steps!.x!.outputs!.v = 10;
    expect(evaluate(p.program, s)).toEqual({ ok: true, value: 11 });
  });

  it("evaluateCondition insists on a bool", () => {
    expect(evaluateCondition("params.epochs > 3", scope)).toEqual({ ok: true, value: true });
    const r = evaluateCondition("params.epochs", scope);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toBe("a condition must be a bool, got int 5");
  });
});

describe("bounds", () => {
  const big = Array.from({ length: 400 }, (_, i) => i);

  it("caps the items comprehensions visit, nested ones included", () => {
    const s: ExprScope = { params: { big } };
    // A generous time limit: the item cap must be what stops it, even on a loaded machine.
    const slow = { timeoutMs: 60_000 };
    // 400 + 400*400 = 160,400 visits > 100,000
    const e = evaluate("params.big.map(a, params.big.map(b, a * b))", s, slow);
    expect(e.ok).toBe(false);
    if (!e.ok) expect(e.error.message).toContain(String(MAX_COMPREHENSION_ITEMS));
    // 400 + 400*200 = 80,400 fits
    const small = big.slice(0, 200);
    const fits = evaluate(
      "params.big.map(a, params.small.map(b, b).size())",
      { params: { big, small } },
      slow,
    );
    expect(fits.ok).toBe(true);
  });

  it("caps strings and lists built by doubling", () => {
    const doubling = (v: string, n: number) => {
      let src = v;
      for (let i = 0; i < n; i++) src = `cel.bind(x${i}, ${src}, x${i} + x${i})`;
      return src;
    };
    expect(err(doubling("'aaaaaaaa'", 25)).message).toMatch(/string of \d+ characters; the limit/);
    expect(err(doubling("[1, 2, 3, 4]", 25)).message).toMatch(/list of \d+ items; the limit/);
  });

  it("caps the result size", () => {
    const s: ExprScope = { params: { s: "x".repeat(600_000) } };
    expect(err("[params.s, params.s]", s).message).toContain("larger than");
  });

  it("stops at the time limit", () => {
    const s: ExprScope = { params: { big: Array.from({ length: 300 }, (_, i) => i) } };
    // 300 + 300*300 = 90,300 visits (under the item cap), with a costly step each.
    const r = evaluate(
      "params.big.map(a, params.big.map(b, string(a) + string(b) + string(a * b)).size())",
      s,
      { timeoutMs: 1 },
    );
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.message).toContain("time limit");
  });

  it("caps the input of matches()", () => {
    const s: ExprScope = { params: { s: "a".repeat(5000) } };
    expect(err("params.s.matches('^a+$')", s).message).toContain("matches() on a string");
  });
});
