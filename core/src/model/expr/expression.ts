// Parse once, evaluate many: CEL expressions for params, edge conditions, foreach lists and
// loop conditions. Parsing type-checks against kaon's environment, lists the references an
// expression makes (so deploy-time validation can flag unknown params and steps), and
// instruments the syntax tree so that evaluation stays bounded (./limits.ts): cel-js is
// synchronous and cannot be interrupted, so every comprehension pays for the items it visits,
// every concatenation and call is size-checked, and the clock is read between operations.
import type { ParseResult } from "@marcbachmann/cel-js";
import type { JsonValue } from "../../steps/step-type.js";
import { DateError } from "./dates.js";
import {
  celEnvironment,
  celName,
  EXPRESSION_ROOTS,
  type ExpressionRoot,
  LOOP_ALIAS,
} from "./environment.js";
import {
  DEFAULT_TIMEOUT_MS,
  MAX_COMPREHENSION_ITEMS,
  MAX_EXPRESSION_LENGTH,
  MAX_LIST_LENGTH,
  MAX_REGEX_INPUT_LENGTH,
  MAX_STRING_LENGTH,
} from "./limits.js";
import { unsafeRegexReason } from "./regex-safety.js";
import { rewriteReservedRoots } from "./reserved.js";
import { celToJson, describeValue, jsonToCel, ValueError } from "./values.js";

/** An expression problem; `position` is a 0-based offset into the source when known. */
export interface ExprError {
  message: string;
  position?: number;
}

/** A parsed, checked expression. Reuse it: evaluation of a Program skips all parsing. */
export interface Program {
  readonly source: string;
  /**
   * Longest static member chains from a root, deduplicated, in source order:
   * `params.epochs`, `steps.train.outputs.auc`, `foreach.value`, `RUN_TS`, ...
   * A chain stops where access becomes dynamic (`steps[x]` yields `steps`).
   * Inside `has(...)` the tested field is left off (`has(params.x)` yields `params`).
   */
  readonly references: readonly string[];
  /** Root identifiers used (a subset of EXPRESSION_ROOTS). */
  readonly roots: ReadonlySet<ExpressionRoot>;
  /** @internal */
  readonly compiled: ParseResult;
  /** @internal Per root: first-level keys used statically, or "all". */
  readonly usedKeys: ReadonlyMap<string, Set<string> | "all">;
}

export type ParseOutcome =
  | { ok: true; program: Program; references: readonly string[] }
  | { ok: false; error: ExprError };

export type EvalOutcome<T = JsonValue> = { ok: true; value: T } | { ok: false; error: ExprError };

/** What an expression can see. Every root is optional; using a missing one is an error. */
export interface ExprScope {
  params?: Record<string, JsonValue>;
  steps?: Record<string, { outputs?: Record<string, JsonValue>; status?: string }>;
  foreach?: { value?: JsonValue; index?: number; values?: Record<string, JsonValue> };
  loop?: { iteration: number };
  /** Run metadata: `id`, `workflow_id`, `version` (step config templates also get `step`, `path`, `attempt`). */
  run?: Record<string, JsonValue>;
  /** Epoch milliseconds. */
  RUN_TS?: number;
  trigger?: Record<string, JsonValue>;
  signal?: Record<string, JsonValue>;
}

export interface EvalOptions {
  /** Wall-clock budget, checked between operations. Default 100 ms. */
  timeoutMs?: number;
}

// ---------------------------------------------------------------------------------------
// Parsing

/** The subset of cel-js's AST node we rely on (their typings hide meta/setMeta). */
interface RawNode {
  op: string;
  // biome-ignore lint/suspicious/noExplicitAny: the payload's shape depends on `op`
  args: any;
  start: number;
  end: number;
  meta: {
    alternate?: RawNode;
    // biome-ignore lint/suspicious/noExplicitAny: cel-js macro objects are untyped
    macro?: any;
    // biome-ignore lint/suspicious/noExplicitAny: cel-js evaluators are untyped
    evaluate: (...a: any[]) => unknown;
  };
  setMeta(key: string, value: unknown): RawNode;
}

const ROOT_NAMES = new Set<string>(Object.keys(EXPRESSION_ROOTS));

/** The name a user wrote for a cel identifier (undoes ./reserved.ts). */
function userName(celIdentifier: string): string {
  return celIdentifier === LOOP_ALIAS ? "loop" : celIdentifier;
}
const COMPREHENSION_MACROS = new Set(["all", "exists", "exists_one", "map", "filter"]);

export function parseExpression(source: string): ParseOutcome {
  if (typeof source !== "string") {
    return {
      ok: false,
      error: { message: `an expression must be a string, got ${typeof source}` },
    };
  }
  if (source.length > MAX_EXPRESSION_LENGTH) {
    return {
      ok: false,
      error: {
        message: `expression is ${source.length} characters long; the limit is ${MAX_EXPRESSION_LENGTH}`,
      },
    };
  }
  if (source.trim() === "") return { ok: false, error: { message: "expression is empty" } };
  let compiled: ParseResult;
  try {
    compiled = celEnvironment.parse(rewriteReservedRoots(source));
  } catch (e) {
    return { ok: false, error: toExprError(e) };
  }
  const ast = compiled.ast as unknown as RawNode;

  // Friendlier errors for the common mistakes, before the type checker's generic ones.
  const walk = new ReferenceWalk();
  walk.visit(ast, new Set());
  if (walk.error) return { ok: false, error: walk.error };

  const checked = compiled.check();
  if (!checked.valid) {
    return { ok: false, error: toExprError(checked.error) };
  }
  const instrumentError = instrument(ast);
  if (instrumentError) return { ok: false, error: instrumentError };

  const references = [...walk.references];
  const program: Program = {
    source,
    references,
    roots: walk.roots,
    compiled,
    usedKeys: walk.usedKeys,
  };
  return { ok: true, program, references };
}

/** Collects references and rejects unknown roots, `now()` and unsafe regexes. */
class ReferenceWalk {
  references = new Set<string>();
  roots = new Set<ExpressionRoot>();
  usedKeys = new Map<string, Set<string> | "all">();
  error: ExprError | undefined;

  private fail(message: string, node: RawNode): void {
    this.error ??= { message, position: node.start };
  }

  private useRoot(root: string, firstKey: string | undefined): void {
    this.roots.add(root as ExpressionRoot);
    const prev = this.usedKeys.get(root);
    if (prev === "all") return;
    if (firstKey === undefined) {
      this.usedKeys.set(root, "all");
      return;
    }
    const set = prev ?? new Set<string>();
    set.add(firstKey);
    this.usedKeys.set(root, set);
  }

  /** Handles an access chain ending at `node`; returns false when it is not a chain. */
  private chain(node: RawNode, locals: ReadonlySet<string>, dropLast: boolean): boolean {
    const segments: string[] = [];
    let cur = node;
    const dynamicIndexes: RawNode[] = [];
    for (;;) {
      if (cur.op === "." || cur.op === ".?") {
        segments.unshift(cur.args[1] as string);
        cur = cur.args[0];
      } else if (cur.op === "[]" || cur.op === "[?]") {
        const index = cur.args[1] as RawNode;
        if (index.op === "value" && typeof index.args === "string") {
          segments.unshift(index.args);
        } else {
          // Dynamic index: the chain restarts here.
          segments.length = 0;
          dynamicIndexes.push(index);
        }
        cur = cur.args[0];
      } else break;
    }
    if (cur.op !== "id") {
      this.visit(cur, locals);
      for (const ix of dynamicIndexes) this.visit(ix, locals);
      return true;
    }
    for (const ix of dynamicIndexes) this.visit(ix, locals);
    const root = userName(cur.args as string);
    if (locals.has(root)) return true;
    this.checkRoot(root, cur);
    if (dynamicIndexes.length > 0) {
      this.references.add(root);
      this.useRoot(root, undefined);
      return true;
    }
    const kept = dropLast ? segments.slice(0, -1) : segments;
    this.references.add([root, ...kept].join("."));
    this.useRoot(root, kept[0]);
    return true;
  }

  private checkRoot(name: string, node: RawNode): void {
    if (ROOT_NAMES.has(name)) return;
    const hint = suggest(name, [...ROOT_NAMES]);
    this.fail(
      `unknown identifier '${name}'${hint ? ` (did you mean '${hint}'?)` : ""}; expressions see ${[...ROOT_NAMES].join(", ")}`,
      node,
    );
  }

  visit(node: RawNode | undefined, locals: ReadonlySet<string>): void {
    if (!node || typeof node !== "object" || this.error) return;
    switch (node.op) {
      case "value":
        return;
      case "id": {
        const name = userName(node.args as string);
        if (locals.has(name)) return;
        this.checkRoot(name, node);
        this.references.add(name);
        this.useRoot(name, undefined);
        return;
      }
      case ".":
      case ".?":
      case "[]":
      case "[?]":
        this.chain(node, locals, false);
        return;
      case "call": {
        const [name, args] = node.args as [string, RawNode[]];
        if (name === "now") {
          this.fail(
            "now() is not available: expressions are deterministic so that retries and restarts see the same values; use RUN_TS (the run's clock, epoch ms)",
            node,
          );
          return;
        }
        if (name === "has" && args.length === 1 && args[0]) {
          this.chain(args[0], locals, true);
          return;
        }
        if (name === "matches" && args.length === 2) this.checkPattern(args[1], node);
        for (const a of args) this.visit(a, locals);
        return;
      }
      case "rcall": {
        const [name, receiver, args] = node.args as [string, RawNode, RawNode[]];
        if (
          name === "bind" &&
          receiver.op === "id" &&
          receiver.args === "cel" &&
          args.length === 3 &&
          args[0]?.op === "id"
        ) {
          this.visit(args[1], locals);
          this.visit(args[2], new Set([...locals, args[0].args as string]));
          return;
        }
        this.visit(receiver, locals);
        if (COMPREHENSION_MACROS.has(name) && args[0]?.op === "id") {
          const inner = new Set([...locals, args[0].args as string]);
          for (const a of args.slice(1)) this.visit(a, inner);
          return;
        }
        if (name === "matches" && args.length === 1) this.checkPattern(args[0], node);
        for (const a of args) this.visit(a, locals);
        return;
      }
      case "map":
        for (const [k, v] of node.args as Array<[RawNode, RawNode]>) {
          this.visit(k, locals);
          this.visit(v, locals);
        }
        return;
      default:
        if (Array.isArray(node.args)) {
          for (const a of node.args) this.visit(a as RawNode, locals);
        } else if (node.args && typeof node.args === "object" && "op" in node.args) {
          this.visit(node.args as RawNode, locals);
        }
    }
  }

  private checkPattern(pattern: RawNode | undefined, call: RawNode): void {
    if (pattern?.op !== "value" || typeof pattern.args !== "string") {
      this.fail(
        "matches() needs a string literal pattern, so that it can be checked for catastrophic backtracking when the workflow is deployed",
        pattern ?? call,
      );
      return;
    }
    const reason = unsafeRegexReason(pattern.args);
    if (reason) this.fail(reason, pattern);
  }
}

// ---------------------------------------------------------------------------------------
// Bounded evaluation

/** State of the evaluation in progress (evaluation is synchronous, so one at a time). */
interface Meter {
  items: number;
  deadline: number;
  ticks: number;
}
let meter: Meter | undefined;

class LimitError extends Error {}

function tick(): void {
  const m = meter;
  if (m && (++m.ticks & 63) === 0 && performance.now() > m.deadline) {
    throw new LimitError("the expression ran longer than its time limit");
  }
}

function chargeItems(collection: unknown): void {
  const m = meter;
  if (!m) return;
  let n = 0;
  if (Array.isArray(collection)) n = collection.length;
  else if (collection instanceof Map || collection instanceof Set) n = collection.size;
  else if (collection && typeof collection === "object") n = Object.keys(collection).length;
  m.items += n;
  if (m.items > MAX_COMPREHENSION_ITEMS) {
    throw new LimitError(
      `the expression's comprehensions (map/filter/all/exists) visited more than ${MAX_COMPREHENSION_ITEMS} items`,
    );
  }
  if (performance.now() > m.deadline) {
    throw new LimitError("the expression ran longer than its time limit");
  }
}

function checkSize(value: unknown): void {
  if (typeof value === "string") {
    if (value.length > MAX_STRING_LENGTH) {
      throw new LimitError(
        `the expression built a string of ${value.length} characters; the limit is ${MAX_STRING_LENGTH}`,
      );
    }
  } else if (Array.isArray(value) && value.length > MAX_LIST_LENGTH) {
    throw new LimitError(
      `the expression built a list of ${value.length} items; the limit is ${MAX_LIST_LENGTH}`,
    );
  }
  tick();
}

function checkRegexInput(value: unknown): void {
  if (typeof value === "string" && value.length > MAX_REGEX_INPUT_LENGTH) {
    throw new LimitError(
      `matches() on a string of ${value.length} characters; the limit is ${MAX_REGEX_INPUT_LENGTH}`,
    );
  }
}

/** The node that actually evaluates (macros expand into an alternate node). */
function effective(node: RawNode): RawNode {
  let n = node;
  while (n.meta.alternate) n = n.meta.alternate;
  return n;
}

/** Runs `after` on every value `node` produces. Must run after type checking. */
function wrapResult(node: RawNode, after: (value: unknown) => void): void {
  const n = effective(node);
  const macro = n.meta.macro;
  if (macro) {
    const original = macro.evaluate;
    // biome-ignore lint/suspicious/noExplicitAny: cel-js evaluator internals
    macro.evaluate = (...a: any[]) => {
      const v = original.apply(macro, a);
      after(v);
      return v;
    };
    return;
  }
  const original = n.meta.evaluate;
  // biome-ignore lint/suspicious/noExplicitAny: cel-js evaluator internals
  n.setMeta("evaluate", (...a: any[]) => {
    const v = original(...a);
    after(v);
    return v;
  });
}

function instrument(root: RawNode): ExprError | undefined {
  const seen = new Set<RawNode>();
  const visit = (node: RawNode | undefined): void => {
    if (!node || typeof node !== "object" || !("op" in node) || seen.has(node)) return;
    seen.add(node);
    if (node.meta?.alternate) {
      visit(node.meta.alternate);
      return;
    }
    const macro = node.meta?.macro;
    if (macro) {
      for (const k of ["args", "val", "exp"]) {
        const v = macro[k];
        if (Array.isArray(v)) for (const a of v) visit(a);
        else visit(v);
      }
      return;
    }
    switch (node.op) {
      case "comprehension":
        wrapResult(node.args.iterable, chargeItems);
        visit(node.args.iterable);
        visit(node.args.init);
        visit(node.args.step);
        return;
      case "+":
      case "call":
        wrapResult(node, checkSize);
        break;
      case "rcall":
        wrapResult(node, checkSize);
        if (node.args[0] === "matches") wrapResult(node.args[1], checkRegexInput);
        break;
    }
    if (node.op === "call" && node.args[0] === "matches" && node.args[1]?.[0]) {
      wrapResult(node.args[1][0], checkRegexInput);
    }
    const args = node.args;
    if (Array.isArray(args)) {
      for (const a of args) {
        if (Array.isArray(a)) for (const b of a) visit(b);
        else visit(a);
      }
    } else if (args && typeof args === "object") {
      visit(args);
    }
  };
  visit(root);
  return undefined;
}

// Parsed programs by source, so callers may pass strings on hot paths.
const cache = new Map<string, ParseOutcome>();
const CACHE_SIZE = 2000;

function parseCached(source: string): ParseOutcome {
  const hit = cache.get(source);
  if (hit) return hit;
  const parsed = parseExpression(source);
  if (cache.size >= CACHE_SIZE) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(source, parsed);
  return parsed;
}

const ROOT_HELP: Record<ExpressionRoot, string> = {
  params: "params are not available here",
  steps: "no step outputs are available here",
  foreach: "'foreach' exists only inside a foreach body",
  loop: "'loop' exists only inside a loop body",
  run: "run metadata is not available here",
  RUN_TS: "RUN_TS is not set here",
  trigger: "'trigger' exists only in the params of a trigger",
  signal: "'signal' exists only in the params of a signal trigger",
};

/** Builds the cel-js context: only the roots (and first-level keys) the program uses. */
function buildContext(program: Program, scope: ExprScope): Record<string, unknown> {
  const ctx: Record<string, unknown> = {};
  const budget = { nodes: 1_000_000 };
  for (const root of program.roots) {
    const value = (scope as Record<string, unknown>)[root];
    if (value === undefined) throw new ValueError(ROOT_HELP[root]);
    const keys = program.usedKeys.get(root);
    if (keys === undefined || keys === "all" || typeof value !== "object" || value === null) {
      ctx[celName(root)] = jsonToCel(value, budget);
      continue;
    }
    const partial: Record<string, unknown> = {};
    for (const k of keys) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) partial[k] = jsonToCel(v, budget);
    }
    ctx[celName(root)] = partial;
  }
  return ctx;
}

/**
 * Evaluates a program (or a source, parsed and cached) over `scope`. Never throws for a bad
 * expression or a bad value: the outcome carries the error.
 */
export function evaluate(
  programOrSource: Program | string,
  scope: ExprScope,
  options: EvalOptions = {},
): EvalOutcome {
  let program: Program;
  if (typeof programOrSource === "string") {
    const parsed = parseCached(programOrSource);
    if (!parsed.ok) return parsed;
    program = parsed.program;
  } else {
    program = programOrSource;
  }
  const previous = meter;
  meter = {
    items: 0,
    ticks: 0,
    deadline: performance.now() + (options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
  };
  try {
    const ctx = buildContext(program, scope);
    const raw: unknown = program.compiled(ctx);
    if (raw instanceof Promise) {
      raw.catch(() => {});
      return { ok: false, error: { message: "asynchronous expressions are not supported" } };
    }
    return { ok: true, value: celToJson(raw) };
  } catch (e) {
    return { ok: false, error: toExprError(e) };
  } finally {
    meter = previous;
  }
}

/** Evaluates a condition (edge, loop until/while): the result must be a bool. */
export function evaluateCondition(
  programOrSource: Program | string,
  scope: ExprScope,
  options: EvalOptions = {},
): EvalOutcome<boolean> {
  const out = evaluate(programOrSource, scope, options);
  if (!out.ok) return out;
  if (typeof out.value !== "boolean") {
    return {
      ok: false,
      error: { message: `a condition must be a bool, got ${describeValue(out.value)}` },
    };
  }
  return { ok: true, value: out.value };
}

/** Renders an error with the source and a caret under the position, for messages and logs. */
export function formatExprError(source: string, error: ExprError): string {
  if (error.position === undefined) return `${error.message} in \`${source}\``;
  const line = source.replace(/[\r\n\t]/g, " ");
  return `${error.message} at position ${error.position}:\n  ${line}\n  ${" ".repeat(error.position)}^`;
}

function toExprError(e: unknown): ExprError {
  if (e instanceof LimitError || e instanceof ValueError || e instanceof DateError) {
    return { message: e.message };
  }
  const err = e as {
    summary?: string;
    message?: string;
    range?: { start: number };
    cause?: unknown;
  };
  // A helper's own error (a bad dateint, an unknown timezone) may arrive wrapped.
  if (err?.cause instanceof DateError || err?.cause instanceof LimitError) {
    const out: ExprError = { message: err.cause.message };
    if (err.range) out.position = err.range.start;
    return out;
  }
  let message = (err?.summary ?? err?.message ?? String(e)).replaceAll(LOOP_ALIAS, "loop");
  const noKey = /^No such key: (.*)$/.exec(message);
  if (noKey) message = `no such key '${noKey[1]}' (use has(...) to test for optional fields)`;
  const out: ExprError = { message };
  if (err?.range && typeof err.range.start === "number") out.position = err.range.start;
  return out;
}

/** Closest candidate by edit distance, for "did you mean" hints. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j]!;
      prev[j] = Math.min(prev[j]! + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length]!;
}
