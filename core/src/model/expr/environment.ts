// The one CEL environment every kaon expression runs in: the root variables a workflow may
// use, the date macros, and mixed int/double arithmetic (JSON has one number type, so a
// DOUBLE param holding `1` must still multiply with `0.5`). Built once at module load,
// because building an environment is the expensive part of cel-js.
import { Environment } from "@marcbachmann/cel-js";
import {
  dateIntDaysBetween,
  dateIntToTs,
  dayFromDateInt,
  parseDateInt,
  tsToDateInt,
} from "./dates.js";
import {
  MAX_AST_DEPTH,
  MAX_AST_NODES,
  MAX_LITERAL_LIST_ELEMENTS,
  MAX_LITERAL_MAP_ENTRIES,
} from "./limits.js";

/** Root identifiers an expression may use, with what they hold (docs/expressions.md). */
export const EXPRESSION_ROOTS = {
  params: "workflow params overlaid by the step's params evaluated so far",
  steps: "upstream steps: steps.<id>.outputs.<name>, steps.<id>.status",
  foreach: "inside a foreach body: foreach.value, foreach.index, foreach.values.<axis>",
  loop: "inside a loop body: loop.iteration (0-based)",
  run: "run metadata: run.id, run.workflow_id, run.version",
  RUN_TS: "the run's clock in epoch milliseconds (a cron trigger's planned fire time)",
  trigger: "in trigger params: what fired the trigger (e.g. trigger.artifact.partitions)",
  signal: "in signal trigger params: the signal's params (signal.params.<name>)",
} as const;

export type ExpressionRoot = keyof typeof EXPRESSION_ROOTS;

/**
 * `loop` is a reserved word in CEL, yet `loop.iteration` is how kaon's definitions spell the
 * loop counter (workflow.proto). The source is rewritten to this same-length identifier
 * before parsing (./reserved.ts) so positions in error messages stay exact.
 */
export const LOOP_ALIAS = "__lp";

export function celName(root: ExpressionRoot): string {
  return root === "loop" ? LOOP_ALIAS : root;
}

/** Functions kaon adds to standard CEL, with their signatures, for docs and error hints. */
export const KAON_FUNCTIONS = [
  "tsToDateInt(int ts_ms) -> int",
  "tsToDateInt(int ts_ms, string tz) -> int",
  "dateIntToTs(int dateint) -> int",
  "dateIntToTs(int dateint, string tz) -> int",
  "dayFromDateInt(int dateint, int days) -> int",
  "dateIntDaysBetween(int from, int to) -> int",
  "dateIntToIso(int dateint) -> string",
] as const;

const int = (n: bigint): number => Number(n);
const big = (n: number): bigint => BigInt(n);

function build(): Environment {
  const env = new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: false,
    enableOptionalTypes: false,
    limits: {
      maxAstNodes: MAX_AST_NODES,
      maxDepth: MAX_AST_DEPTH,
      maxListElements: MAX_LITERAL_LIST_ELEMENTS,
      maxMapEntries: MAX_LITERAL_MAP_ENTRIES,
      maxCallArguments: 16,
    },
  });
  for (const root of Object.keys(EXPRESSION_ROOTS) as ExpressionRoot[]) {
    env.registerVariable(celName(root), root === "RUN_TS" ? "int" : "map");
  }
  env
    .registerFunction("tsToDateInt(int): int", (ts: bigint) => big(tsToDateInt(int(ts))))
    .registerFunction("tsToDateInt(int, string): int", (ts: bigint, tz: string) =>
      big(tsToDateInt(int(ts), tz)),
    )
    .registerFunction("dateIntToTs(int): int", (d: bigint) => big(dateIntToTs(int(d))))
    .registerFunction("dateIntToTs(int, string): int", (d: bigint, tz: string) =>
      big(dateIntToTs(int(d), tz)),
    )
    .registerFunction("dayFromDateInt(int, int): int", (d: bigint, n: bigint) =>
      big(dayFromDateInt(int(d), int(n))),
    )
    .registerFunction("dateIntDaysBetween(int, int): int", (a: bigint, b: bigint) =>
      big(dateIntDaysBetween(int(a), int(b))),
    )
    .registerFunction("dateIntToIso(int): string", (d: bigint) => {
      const { year, month, day } = parseDateInt(int(d));
      return `${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
    });

  // Mixed int/double arithmetic and equality (comparisons are built in).
  const arith = {
    "+": (a: number, b: number) => a + b,
    "-": (a: number, b: number) => a - b,
    "*": (a: number, b: number) => a * b,
    "/": (a: number, b: number) => a / b,
  };
  for (const [op, f] of Object.entries(arith)) {
    env.registerOperator(`int ${op} double`, (a: bigint, b: number) => f(Number(a), b));
    env.registerOperator(`double ${op} int`, (a: number, b: bigint) => f(a, Number(b)));
  }
  env.registerOperator("int == double", (a: bigint, b: number) => Number(a) === b);
  return env;
}

export const celEnvironment: Environment = build();
