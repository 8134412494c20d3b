// Deploy-time validation of workflow definitions: every rule a definition must satisfy before
// it is stored, each failure reported as a FieldViolation with the exact field path
// (`steps[2].next[0].to`), a description naming the bad value and, where there is one, a fix
// ("did you mean 'validate'?"). Validation never throws for bad input and reports every
// problem it finds (up to a cap), so a user fixes a file in one round. SDKs add no rules of
// their own: this module is the single source of truth (docs/definitions.md lists the rules).
import {
  ConstraintOperator,
  type Duration,
  FailureMode,
  type FieldViolation,
  JoinMode,
  type Param,
  ParamType,
  RetryOn,
  RunStatus,
  RunStrategyMode,
  SkipPolicy,
  SplitMode,
  type Step,
  type Trigger,
  type WorkflowDefinition,
  WorkflowDefinition as WorkflowDefinitionCodec,
} from "@kaon/proto";
import { Cron } from "croner";
import { CONTAINER_TYPES, defaultStepTypeSettings, stepTypeRegistry } from "../steps/registry.js";
import type { JsonObject, StepType, StepTypeSettings } from "../steps/step-type.js";
import {
  type ExpressionRoot,
  paramTypeName,
  parseExpression,
  parseTemplate,
  suggest,
} from "./expr/index.js";

type ContainerType = "foreach" | "loop" | "subworkflow";

/** Bounds on definitions (ARCHITECTURE §9: every input is bounded). */
export const DEFINITION_LIMITS = {
  /** Encoded (protobuf binary) size of a whole definition. */
  maxDefinitionBytes: 1024 * 1024,
  /** Steps in all graphs of a definition, container bodies included. */
  maxSteps: 10_000,
  /** JSON size of one param literal. */
  maxParamValueBytes: 64 * 1024,
  /** JSON size of one env value. */
  maxEnvValueBytes: 64 * 1024,
  /** Container nesting (a foreach inside a loop inside a foreach ...). */
  maxNestingDepth: 16,
  maxCpus: 1024,
  /** 16 TiB in MiB. */
  maxMemMb: 16 * 1024 * 1024,
  maxGpus: 1024,
  /** 1 PiB in MiB. */
  maxDiskMb: 1024 * 1024 * 1024,
  maxLoopIterations: 1000,
  maxAttempts: 100,
  /** Longest workflow or step timeout and retry backoff, in seconds (366 days / 1 day). */
  maxTimeoutSeconds: 366 * 24 * 3600,
  maxBackoffSeconds: 24 * 3600,
  maxBackoffMultiplier: 100,
  maxConcurrentRuns: 100_000,
  maxTagKeyLength: 128,
  maxTagValueLength: 256,
  maxDescriptionLength: 16 * 1024,
  /** Validation stops collecting after this many violations. */
  maxViolations: 200,
} as const;

export const WORKFLOW_ID_PATTERN = /^[a-z][a-z0-9_.-]{0,127}$/;
export const STEP_ID_PATTERN = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
export const PARAM_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
export const NAMESPACE_PATTERN = /^[a-z][a-z0-9_.-]{0,127}$/;
export const ARTIFACT_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,255}$/;
const PARTITION_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;
const SIGNAL_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]{0,255}$/;
const CONSTRAINT_ATTRIBUTE_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;

/** Where step types come from: a StepTypeRegistry (core/src/steps/registry.ts) fits. */
export interface StepTypeCatalog {
  get(name: string): StepType | undefined;
  names(): readonly string[];
}

export interface ValidateOptions {
  /** Default: the server's registry (`stepTypeRegistry()`). */
  stepTypes?: StepTypeCatalog;
  /** Server settings some step types check configs against. Default: nothing configured. */
  settings?: StepTypeSettings;
}

/** Checks a definition; an empty result means it may be deployed. */
export function validateDefinition(
  def: WorkflowDefinition,
  options: ValidateOptions = {},
): FieldViolation[] {
  const v = new Validator(def, options);
  v.run();
  return v.out.list;
}

// ---------------------------------------------------------------------------------------

class ViolationList {
  private readonly collected: FieldViolation[] = [];
  private dropped = 0;

  add(field: string, description: string, hint = ""): void {
    if (this.collected.length < DEFINITION_LIMITS.maxViolations) {
      this.collected.push({ field, description, hint });
    } else {
      this.dropped++;
    }
  }

  /** The violations in definition order (stable), plus a note on any left out. */
  get list(): FieldViolation[] {
    const keyed = this.collected.map((v, i) => ({ v, key: orderKey(v.field), i }));
    keyed.sort((a, b) => compareKeys(a.key, b.key) || a.i - b.i);
    const out = keyed.map((k) => k.v);
    if (this.dropped > 0) {
      out.push({
        field: "definition",
        description: `and ${this.dropped} more violations not listed`,
        hint: "fix the ones above and validate again",
      });
    }
    return out;
  }
}

/** Field numbers of WorkflowDefinition, so top-level violations follow the proto's order. */
const TOP_LEVEL_ORDER: Record<string, number> = {
  definition: 0,
  id: 1,
  description: 2,
  namespace: 3,
  owner: 4,
  tags: 5,
  params: 6,
  steps: 7,
  triggers: 8,
  notifications: 9,
  run_strategy: 10,
  timeout: 11,
  failure_mode: 12,
  step_type_concurrency: 13,
  priority: 14,
};

/** Sort key of a path: its top-level field, then the positions of the steps it is inside. */
function orderKey(field: string): number[] {
  const top = /^[a-z_]+/.exec(field)?.[0] ?? "";
  const key = [TOP_LEVEL_ORDER[top] ?? 99];
  const first = /^(?:params|triggers|notifications)\[(\d+)\]/.exec(field);
  if (first) key.push(Number(first[1]));
  for (const m of field.matchAll(/(?:^steps|\.body)\[(\d+)\]/g)) key.push(Number(m[1]));
  return key;
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i]! - b[i]!;
  }
  return a.length - b.length;
}

/** What an expression at some place in the definition may refer to. */
interface ExprScope {
  /** Human label of the place, e.g. "step 'train'". */
  where: string;
  roots: ReadonlySet<ExpressionRoot>;
  params: ReadonlySet<string>;
  /** True when `steps.<id>` is visible (upstream, or the step itself where allowed). */
  stepVisible(id: string): boolean;
  /** Every step id that exists in this graph and enclosing ones (for better messages). */
  knownSteps: ReadonlySet<string>;
  /** Foreach axis names, inside a foreach body. */
  axes?: ReadonlySet<string>;
}

/** Context of one graph: the top level or a container body. */
interface GraphContext {
  /** Steps of enclosing graphs visible from inside this body. */
  outerVisible(id: string): boolean;
  outerKnown: ReadonlySet<string>;
  /** Innermost foreach axes, when inside a foreach body. */
  axes?: ReadonlySet<string>;
  inLoop: boolean;
  depth: number;
}

const BASE_ROOTS: readonly ExpressionRoot[] = ["params", "steps", "run", "RUN_TS"];

const STEP_FIELDS = new Set(["outputs", "status"]);
const FOREACH_FIELDS = new Set(["value", "index", "values"]);
const LOOP_FIELDS = new Set(["iteration"]);

class Validator {
  readonly out = new ViolationList();
  private readonly workflowParams = new Map<string, Param>();
  private readonly settings: StepTypeSettings;
  private readonly stepTypes: StepTypeCatalog;
  private stepCount = 0;

  constructor(
    private readonly def: WorkflowDefinition,
    options: ValidateOptions,
  ) {
    this.settings = options.settings ?? defaultStepTypeSettings();
    this.stepTypes = options.stepTypes ?? stepTypeRegistry();
  }

  run(): void {
    const def = this.def;
    this.checkSize();
    this.checkWorkflowFields();

    // Workflow params: each may refer to the ones before it.
    const seen = new Set<string>();
    def.params.forEach((p, i) => {
      const path = `params[${i}]`;
      this.checkParam(p, path, "workflow", seen, {
        where: `param '${p.name}'`,
        roots: new Set<ExpressionRoot>(["params", "run", "RUN_TS"]),
        params: new Set(seen),
        stepVisible: () => false,
        knownSteps: new Set(),
      });
      if (p.name && !this.workflowParams.has(p.name)) this.workflowParams.set(p.name, p);
      seen.add(p.name);
    });

    if (def.steps.length === 0) {
      this.out.add("steps", "a workflow needs at least one step", "add a step under `steps`");
    }
    this.checkGraph(def.steps, "steps", {
      outerVisible: () => false,
      outerKnown: new Set(),
      inLoop: false,
      depth: 0,
    });
    if (this.stepCount > DEFINITION_LIMITS.maxSteps) {
      this.out.add(
        "steps",
        `the definition has ${this.stepCount} steps; the limit is ${DEFINITION_LIMITS.maxSteps}`,
        "use a foreach to repeat a step over many values instead of listing it",
      );
    }
    this.checkTriggers();
    this.checkPolicies();
  }

  // ---- whole definition ----------------------------------------------------------------

  private checkSize(): void {
    let bytes: number;
    try {
      bytes = WorkflowDefinitionCodec.encode(this.def).finish().length;
    } catch (err) {
      this.out.add("definition", `the definition cannot be encoded: ${(err as Error).message}`);
      return;
    }
    if (bytes > DEFINITION_LIMITS.maxDefinitionBytes) {
      this.out.add(
        "definition",
        `the encoded definition is ${bytes} bytes; the limit is ${DEFINITION_LIMITS.maxDefinitionBytes} (1 MiB)`,
        "move large literals (lists, configs) into data artifacts or compute them with expressions",
      );
    }
  }

  private checkWorkflowFields(): void {
    const def = this.def;
    if (!def.id) {
      this.out.add("id", "the workflow id is missing", "set `id`, e.g. `id: recommendations`");
    } else if (!WORKFLOW_ID_PATTERN.test(def.id)) {
      this.out.add(
        "id",
        `workflow id '${def.id}' is not valid`,
        `use 1-128 lowercase letters, digits, '_', '-' or '.', starting with a letter${suggestId(def.id, /[^a-z0-9_.-]/g, true)}`,
      );
    }
    if (def.namespace && !NAMESPACE_PATTERN.test(def.namespace)) {
      this.out.add(
        "namespace",
        `namespace '${def.namespace}' is not valid`,
        "use 1-128 lowercase letters, digits, '_', '-' or '.', starting with a letter (empty means 'default')",
      );
    }
    this.checkText(def.description, "description");
    if (def.owner.length > 256) {
      this.out.add("owner", `owner is ${def.owner.length} characters long; the limit is 256`);
    }
    this.checkNoNul(def.owner, "owner");
    this.checkTags(def.tags, "tags");
    if (def.priority < -1000 || def.priority > 1000) {
      this.out.add("priority", `priority ${def.priority} is out of range`, "use -1000 to 1000");
    }
  }

  private checkPolicies(): void {
    const def = this.def;
    if (def.timeout) {
      this.checkDuration(def.timeout, "timeout", DEFINITION_LIMITS.maxTimeoutSeconds, true);
    }
    if (!isEnumValue(FailureMode, def.failureMode)) {
      this.out.add(
        "failure_mode",
        `unknown failure mode ${def.failureMode}`,
        "use FAILURE_MODE_FINISH_RUNNING or FAILURE_MODE_STOP_ALL",
      );
    }
    const rs = def.runStrategy;
    if (rs) {
      if (!isEnumValue(RunStrategyMode, rs.mode)) {
        this.out.add(
          "run_strategy.mode",
          `unknown run strategy mode ${rs.mode}`,
          "use PARALLEL, SEQUENTIAL, SKIP_IF_RUNNING or CANCEL_PREVIOUS",
        );
      }
      const parallel =
        rs.mode === RunStrategyMode.RUN_STRATEGY_MODE_PARALLEL ||
        rs.mode === RunStrategyMode.RUN_STRATEGY_MODE_UNSPECIFIED;
      if (rs.maxConcurrentRuns > 0 && !parallel) {
        this.out.add(
          "run_strategy.max_concurrent_runs",
          `max_concurrent_runs ${rs.maxConcurrentRuns} applies only to the PARALLEL mode, not ${enumName(RunStrategyMode, rs.mode)}`,
          "remove max_concurrent_runs or use mode RUN_STRATEGY_MODE_PARALLEL",
        );
      }
      if (rs.maxConcurrentRuns > DEFINITION_LIMITS.maxConcurrentRuns) {
        this.out.add(
          "run_strategy.max_concurrent_runs",
          `max_concurrent_runs ${rs.maxConcurrentRuns} is more than ${DEFINITION_LIMITS.maxConcurrentRuns}`,
          "use 0 for unlimited",
        );
      }
    }
    const known = this.knownTypeNames();
    for (const [type, limit] of Object.entries(def.stepTypeConcurrency)) {
      const path = `step_type_concurrency.${type}`;
      if (!known.includes(type)) {
        const close = suggest(type, known);
        this.out.add(
          path,
          `unknown step type '${type}'`,
          close ? `did you mean '${close}'?` : `known types: ${known.join(", ")}`,
        );
      }
      if (limit < 1) {
        this.out.add(
          path,
          `a concurrency of ${limit} would never run a '${type}' step`,
          "use 1 or more, or remove the entry",
        );
      }
    }
    def.notifications.forEach((n, i) => {
      const path = `notifications[${i}]`;
      n.on.forEach((status, j) => {
        const full = status.startsWith("RUN_STATUS_") ? status : `RUN_STATUS_${status}`;
        if (!isEnumName(RunStatus, full) || full === "RUN_STATUS_UNSPECIFIED") {
          const names = enumNames(RunStatus)
            .filter((s) => s !== "RUN_STATUS_UNSPECIFIED")
            .map((s) => s.slice("RUN_STATUS_".length));
          const close = suggest(status.replace(/^RUN_STATUS_/, ""), names);
          this.out.add(
            `${path}.on[${j}]`,
            `unknown run status '${status}'`,
            close ? `did you mean '${close}'?` : `use one of ${names.join(", ")}`,
          );
        }
      });
      if (!n.webhookUrl) {
        this.out.add(
          `${path}.webhook_url`,
          "a notification needs a webhook_url",
          "e.g. https://hooks.example.com/kaon",
        );
      } else if (!isHttpUrl(n.webhookUrl)) {
        this.out.add(`${path}.webhook_url`, `webhook_url '${n.webhookUrl}' is not an http(s) URL`);
      }
    });
  }

  // ---- params --------------------------------------------------------------------------

  /**
   * Checks one param. `kind` decides what an empty param means: a workflow param may be
   * `required` (supplied by the run); step, subworkflow and trigger params need a value.
   */
  private checkParam(
    p: Param,
    path: string,
    kind: "workflow" | "step" | "subworkflow" | "trigger",
    seenNames: Set<string>,
    scope: ExprScope,
    declaredType?: ParamType,
  ): void {
    if (!p.name) {
      this.out.add(
        `${path}.name`,
        "a param needs a name",
        "names use letters, digits and '_', starting with a letter",
      );
    } else if (!PARAM_NAME_PATTERN.test(p.name)) {
      this.out.add(
        `${path}.name`,
        `param name '${p.name}' is not valid`,
        `use 1-64 letters, digits and '_', starting with a letter${suggestId(p.name, /[^A-Za-z0-9_]/g, false)}`,
      );
    } else if (seenNames.has(p.name)) {
      this.out.add(
        `${path}.name`,
        `duplicate param '${p.name}'`,
        "each param name may appear once in a list",
      );
    }
    if (!isEnumValue(ParamType, p.type)) {
      this.out.add(`${path}.type`, `unknown param type ${p.type}`, `use one of ${typeNames()}`);
    }
    const hasValue = p.value !== undefined;
    if (hasValue && p.expr) {
      this.out.add(
        path,
        `param '${p.name}' has both a value and an expr`,
        "keep one: `value` for a literal, `expr` for a CEL expression",
      );
    }
    if (p.required && (hasValue || p.expr)) {
      this.out.add(
        `${path}.required`,
        `param '${p.name}' is required but also has a ${hasValue ? "value" : "expr"}`,
        "a required param is supplied by each run; remove `required` to make the value a default",
      );
    }
    if (p.required && kind !== "workflow") {
      this.out.add(`${path}.required`, `only workflow params can be required, not ${kind} params`);
    }
    if (!hasValue && !p.expr && !p.required && kind !== "workflow") {
      this.out.add(
        path,
        `param '${p.name}' has neither a value nor an expr`,
        "set `value` or `expr`",
      );
    }
    if (hasValue) {
      const type =
        p.type === ParamType.PARAM_TYPE_UNSPECIFIED && declaredType ? declaredType : p.type;
      this.checkLiteral(p.value, type, `${path}.value`, `param '${p.name}'`);
    }
    if (p.expr)
      this.checkExpression(p.expr, `${path}.expr`, scope, `the expr of param '${p.name}'`);
    this.checkText(p.description, `${path}.description`);
  }

  private checkLiteral(value: unknown, type: ParamType, path: string, label: string): void {
    const problem = jsonProblem(value);
    if (problem) {
      this.out.add(path, `${label}: ${problem}`);
      return;
    }
    const bytes = Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
    if (bytes > DEFINITION_LIMITS.maxParamValueBytes) {
      this.out.add(
        path,
        `${label} has a ${bytes}-byte value; the limit is ${DEFINITION_LIMITS.maxParamValueBytes} (64 KiB)`,
        "pass large data as a data artifact and its URI as the param",
      );
      return;
    }
    const mismatch = literalTypeProblem(value, type);
    if (mismatch) {
      this.out.add(
        path,
        `${label} is declared ${paramTypeName(type)} but its value is ${mismatch}`,
        literalHint(value, type),
      );
    }
  }

  // ---- graphs --------------------------------------------------------------------------

  private checkGraph(steps: Step[], path: string, ctx: GraphContext): void {
    this.stepCount += steps.length;
    const graph = new GraphInfo(steps);
    const known = new Set([...ctx.outerKnown, ...graph.index.keys()]);

    // Ids, first: everything else refers to steps by id.
    const firstAt = new Map<string, number>();
    steps.forEach((s, i) => {
      const p = `${path}[${i}].id`;
      if (!s.id) {
        this.out.add(
          p,
          "a step needs an id",
          "ids use letters, digits, '_' and '-', starting with a letter",
        );
      } else if (!STEP_ID_PATTERN.test(s.id)) {
        this.out.add(
          p,
          `step id '${s.id}' is not valid`,
          `use 1-64 letters, digits, '_' or '-', starting with a letter${suggestId(s.id, /[^A-Za-z0-9_-]/g, false)}`,
        );
      }
      const first = firstAt.get(s.id);
      if (s.id && first !== undefined) {
        this.out.add(
          p,
          `duplicate step id '${s.id}' (first used by ${path}[${first}])`,
          "step ids must be unique within their graph",
        );
      } else if (s.id) {
        firstAt.set(s.id, i);
      }
    });

    for (const [i, s] of steps.entries()) this.checkStep(s, `${path}[${i}]`, graph, i, ctx, known);
    this.checkEdges(steps, path, graph);
    this.checkShape(steps, path, graph);
  }

  private checkEdges(steps: Step[], path: string, graph: GraphInfo): void {
    const ids = [...graph.index.keys()];
    steps.forEach((s, i) => {
      const targets = new Set<string>();
      let otherwiseAt: number | undefined;
      const xor = s.split === SplitMode.SPLIT_MODE_XOR;
      s.next.forEach((t, j) => {
        const p = `${path}[${i}].next[${j}]`;
        if (!t.to) {
          this.out.add(
            `${p}.to`,
            `step '${s.id}' has an edge without a target`,
            "set `to` to a step id of the same graph",
          );
        } else if (!graph.index.has(t.to)) {
          const close = suggest(t.to, ids);
          this.out.add(
            `${p}.to`,
            `step '${s.id}': unknown successor '${t.to}'`,
            close
              ? `did you mean '${close}'?`
              : `successors must be steps of the same graph: ${ids.slice(0, 20).join(", ")}`,
          );
        } else if (targets.has(t.to)) {
          this.out.add(
            `${p}.to`,
            `step '${s.id}' has two edges to '${t.to}'`,
            "merge them into one edge (combine the conditions with ||)",
          );
        }
        targets.add(t.to);
        if (t.otherwise) {
          if (!xor) {
            this.out.add(
              `${p}.otherwise`,
              `step '${s.id}': an otherwise edge needs split XOR, but the split is ${enumName(SplitMode, s.split)}`,
              "set `split: SPLIT_MODE_XOR` on the step, or remove `otherwise`",
            );
          } else if (otherwiseAt !== undefined) {
            this.out.add(
              `${p}.otherwise`,
              `step '${s.id}' has a second otherwise edge (the first is next[${otherwiseAt}])`,
              "an XOR split has at most one otherwise edge",
            );
          }
          otherwiseAt ??= j;
          if (t.condition) {
            this.out.add(
              `${p}.condition`,
              `step '${s.id}': the otherwise edge to '${t.to}' also has a condition`,
              "an otherwise edge is taken when no other condition holds; remove its condition",
            );
          }
        }
      });
    });
  }

  /** Cycles (only loop containers repeat) and steps no start step reaches. */
  private checkShape(steps: Step[], path: string, graph: GraphInfo): void {
    const n = graph.nodes.length;
    if (n === 0) return;
    const comp = stronglyConnectedComponents(graph.adj);
    const compSize = new Map<number, number>();
    for (const c of comp) compSize.set(c, (compSize.get(c) ?? 0) + 1);
    const cyclic = (u: number) => (compSize.get(comp[u]!) ?? 0) > 1 || graph.adj[u]!.includes(u);

    const reported = new Set<number>();
    for (let u = 0; u < n; u++) {
      if (!cyclic(u) || reported.has(comp[u]!)) continue;
      reported.add(comp[u]!);
      const cycle = findCycle(u, graph.adj, comp);
      const closing = cycle[cycle.length - 2]!;
      const closingStep = graph.nodes[closing]!;
      const edge = steps[closingStep.position]!.next.findIndex((t) => t.to === graph.nodes[u]!.id);
      const names = cycle.map((k) => graph.nodes[k]!.id);
      this.out.add(
        `${path}[${closingStep.position}].next[${edge}].to`,
        `cycle: ${names.join(" → ")}`,
        "only a loop container repeats steps: put the steps to repeat in the body of a step with `type: loop` and an `until` condition",
      );
    }

    const roots = graph.nodes.map((_, u) => u).filter((u) => graph.preds[u]!.length === 0);
    if (roots.length === 0) {
      this.out.add(
        path,
        "the graph has no start step: every step has a predecessor",
        "at least one step must have no incoming edges",
      );
      return;
    }
    const reached = new Set<number>(roots);
    const queue = [...roots];
    while (queue.length > 0) {
      const u = queue.pop()!;
      for (const w of graph.adj[u]!) {
        if (!reached.has(w)) {
          reached.add(w);
          queue.push(w);
        }
      }
    }
    for (let u = 0; u < n; u++) {
      if (reached.has(u) || cyclic(u)) continue;
      const node = graph.nodes[u]!;
      const preds = graph.preds[u]!.map((k) => `'${graph.nodes[k]!.id}'`).join(", ");
      this.out.add(
        `${path}[${node.position}]`,
        `step '${node.id}' is unreachable: no start step leads to it (its predecessors ${preds} are only reached through a cycle)`,
        "connect it to a step that runs, or remove it",
      );
    }
  }

  // ---- steps ---------------------------------------------------------------------------

  private checkStep(
    s: Step,
    path: string,
    graph: GraphInfo,
    position: number,
    ctx: GraphContext,
    known: ReadonlySet<string>,
  ): void {
    const label = `step '${s.id}'`;
    const node = graph.index.get(s.id);
    const isFirst = node?.position === position;
    const upstream = (id: string) =>
      (isFirst && node !== undefined && graph.isAncestor(id, node.index)) || ctx.outerVisible(id);
    const roots = new Set<ExpressionRoot>(BASE_ROOTS);
    if (ctx.axes) roots.add("foreach");
    if (ctx.inLoop) roots.add("loop");
    const workflowParamNames = new Set(this.workflowParams.keys());

    // Step params, in order: each sees the workflow params and the earlier step params.
    const stepParamNames = new Set<string>();
    s.params.forEach((p, i) => {
      this.checkParam(p, `${path}.params[${i}]`, "step", stepParamNames, {
        where: label,
        roots,
        params: new Set([...workflowParamNames, ...stepParamNames]),
        stepVisible: upstream,
        knownSteps: known,
        ...(ctx.axes ? { axes: ctx.axes } : {}),
      });
      stepParamNames.add(p.name);
    });
    const allParams = new Set([...workflowParamNames, ...stepParamNames]);
    const scope = (self: boolean): ExprScope => ({
      where: label,
      roots,
      params: allParams,
      stepVisible: self ? (id) => id === s.id || upstream(id) : upstream,
      knownSteps: known,
      ...(ctx.axes ? { axes: ctx.axes } : {}),
    });

    this.checkText(s.description, `${path}.description`);
    this.checkType(s, path, ctx, scope(false), known);
    if (s.resources) this.checkResources(s, path);
    for (const [i, c] of s.constraints.entries()) {
      this.checkConstraint(c, `${path}.constraints[${i}]`, label);
    }
    if (s.retry) this.checkRetry(s, path);
    if (s.timeout) {
      this.checkDuration(s.timeout, `${path}.timeout`, DEFINITION_LIMITS.maxTimeoutSeconds, true);
    }
    if (s.heartbeatTimeout) this.checkHeartbeatTimeout(s, path, label);
    for (const [name, value] of Object.entries(s.env)) {
      const p = `${path}.env.${name}`;
      if (!ENV_NAME_PATTERN.test(name)) {
        this.out.add(
          p,
          `${label}: '${name}' is not a valid environment variable name`,
          "use letters, digits and '_', not starting with a digit",
        );
      } else if (name.startsWith("KAON_")) {
        this.out.add(
          p,
          `${label}: environment variable '${name}' uses the reserved prefix KAON_`,
          "kaon sets KAON_* variables itself; choose another name",
        );
      }
      const bytes = Buffer.byteLength(value, "utf8");
      if (bytes > DEFINITION_LIMITS.maxEnvValueBytes) {
        this.out.add(
          p,
          `${label}: environment variable '${name}' is ${bytes} bytes; the limit is 65536`,
        );
      }
    }
    for (const [i, a] of s.inputs.entries()) {
      this.checkArtifact(a, `${path}.inputs[${i}]`, scope(false), "input");
    }
    for (const [i, a] of s.outputs.entries()) {
      this.checkArtifact(a, `${path}.outputs[${i}]`, scope(true), "output");
    }
    s.next.forEach((t, i) => {
      if (t.condition) {
        this.checkExpression(
          t.condition,
          `${path}.next[${i}].condition`,
          scope(true),
          `the condition of the edge to '${t.to}'`,
        );
      }
    });
    if (!isEnumValue(SplitMode, s.split)) {
      this.out.add(
        `${path}.split`,
        `unknown split mode ${s.split}`,
        "use SPLIT_MODE_AND or SPLIT_MODE_XOR",
      );
    }
    if (!isEnumValue(JoinMode, s.join)) {
      this.out.add(
        `${path}.join`,
        `unknown join mode ${s.join}`,
        "use JOIN_MODE_ALL or JOIN_MODE_ANY",
      );
    }
    if (!isEnumValue(SkipPolicy, s.skipIfOutputsExist)) {
      this.out.add(
        `${path}.skip_if_outputs_exist`,
        `unknown skip policy ${s.skipIfOutputsExist}`,
        "use SKIP_POLICY_NEVER, SKIP_POLICY_ON_RESTART or SKIP_POLICY_ALWAYS",
      );
    }
    this.checkTags(s.tags, `${path}.tags`);
  }

  private knownTypeNames(): string[] {
    return [...this.stepTypes.names(), ...CONTAINER_TYPES];
  }

  /** Only a process can report; containers and inline steps would always time out. */
  private checkHeartbeatTimeout(s: Step, path: string, label: string): void {
    const field = `${path}.heartbeat_timeout`;
    this.checkDuration(
      s.heartbeatTimeout as NonNullable<Step["heartbeatTimeout"]>,
      field,
      DEFINITION_LIMITS.maxTimeoutSeconds,
      true,
    );
    const kind = CONTAINER_TYPES.has(s.type) ? "container" : this.stepTypes.get(s.type)?.kind;
    if (kind === "container" || kind === "inline") {
      this.out.add(
        field,
        `${label}: heartbeat_timeout applies to steps that run as processes; a '${s.type}' step ${kind === "container" ? "is a container" : "runs inside the server"} and sends no heartbeats`,
        kind === "container"
          ? "set heartbeat_timeout on the steps inside it"
          : "remove it, or use timeout to bound the step",
      );
    }
  }

  private checkType(
    s: Step,
    path: string,
    ctx: GraphContext,
    scope: ExprScope,
    known: ReadonlySet<string>,
  ): void {
    const label = `step '${s.id}'`;
    const containers: Array<[ContainerType, unknown]> = [
      ["foreach", s.foreach],
      ["loop", s.loop],
      ["subworkflow", s.subworkflow],
    ];
    for (const [name, spec] of containers) {
      if (spec !== undefined && s.type !== name) {
        this.out.add(
          `${path}.${name}`,
          `${label} has a \`${name}\` block but its type is '${s.type}'`,
          `set \`type: ${name}\`, or remove the \`${name}\` block`,
        );
      }
    }
    if (!s.type) {
      this.out.add(
        `${path}.type`,
        `${label} has no type`,
        `known types: ${this.knownTypeNames().join(", ")}`,
      );
      return;
    }
    if (CONTAINER_TYPES.has(s.type)) {
      if (s.config && Object.keys(s.config).length > 0) {
        this.out.add(
          `${path}.config`,
          `${label}: a ${s.type} container has no config`,
          `describe it in the \`${s.type}\` block instead`,
        );
      }
      if (ctx.depth + 1 > DEFINITION_LIMITS.maxNestingDepth) {
        this.out.add(
          path,
          `${label}: containers nest deeper than ${DEFINITION_LIMITS.maxNestingDepth} levels`,
        );
        return;
      }
      if (s.type === "foreach") this.checkForeach(s, path, ctx, scope, known);
      else if (s.type === "loop") this.checkLoop(s, path, ctx, scope, known);
      else this.checkSubworkflow(s, path, scope);
      return;
    }
    const type = this.stepTypes.get(s.type);
    if (!type) {
      const names = this.knownTypeNames();
      const close = suggest(s.type, names);
      this.out.add(
        `${path}.type`,
        `${label}: unknown step type '${s.type}'`,
        `${close ? `did you mean '${close}'? ` : ""}known types: ${names.join(", ")}`,
      );
      return;
    }
    const config = (s.config ?? {}) as JsonObject;
    try {
      for (const v of type.validate(config, `${path}.config`, this.settings)) {
        this.out.add(v.field, v.description, v.hint);
      }
    } catch (err) {
      this.out.add(
        `${path}.config`,
        `${label}: the '${s.type}' step type could not check its config: ${(err as Error).message}`,
      );
    }
  }

  private bodyContext(
    ctx: GraphContext,
    scope: ExprScope,
    known: ReadonlySet<string>,
    patch: Partial<GraphContext>,
  ): GraphContext {
    return {
      outerVisible: (id) => scope.stepVisible(id),
      outerKnown: known,
      inLoop: ctx.inLoop,
      depth: ctx.depth + 1,
      ...(ctx.axes ? { axes: ctx.axes } : {}),
      ...patch,
    };
  }

  private checkForeach(
    s: Step,
    path: string,
    ctx: GraphContext,
    scope: ExprScope,
    known: ReadonlySet<string>,
  ): void {
    const f = s.foreach;
    const p = `${path}.foreach`;
    if (!f) {
      this.out.add(
        p,
        `step '${s.id}' has type foreach but no \`foreach\` block`,
        "add `foreach: {axes: [...], body: [...]}`",
      );
      return;
    }
    if (f.axes.length === 0) {
      this.out.add(
        `${p}.axes`,
        `foreach '${s.id}' has no axes`,
        "add an axis with `values: [...]` or `expr: ...`",
      );
    }
    const axisNames = new Set<string>();
    f.axes.forEach((axis, i) => {
      const ap = `${p}.axes[${i}]`;
      const name = axis.name || "value";
      if (!PARAM_NAME_PATTERN.test(name)) {
        this.out.add(
          `${ap}.name`,
          `axis name '${name}' is not valid`,
          "use letters, digits and '_', starting with a letter",
        );
      } else if (axisNames.has(name)) {
        this.out.add(
          `${ap}.name`,
          `foreach '${s.id}' has two axes named '${name}'`,
          f.axes.length > 1 ? "name every axis of a multi-axis foreach" : "",
        );
      }
      axisNames.add(name);
      const hasValues = axis.values !== undefined;
      if (hasValues && axis.expr) {
        this.out.add(
          ap,
          `axis '${name}' has both values and an expr`,
          "keep one: `values` for a literal list, `expr` for a CEL expression",
        );
      } else if (!hasValues && !axis.expr) {
        this.out.add(
          ap,
          `axis '${name}' has neither values nor an expr`,
          "set `values: [...]` or `expr: steps.<id>.outputs.<name>`",
        );
      }
      if (hasValues) {
        const problem = jsonProblem(axis.values);
        if (problem) this.out.add(`${ap}.values`, `axis '${name}': ${problem}`);
      }
      if (axis.expr)
        this.checkExpression(axis.expr, `${ap}.expr`, scope, `the expr of axis '${name}'`);
    });
    if (f.body.length === 0) {
      this.out.add(
        `${p}.body`,
        `foreach '${s.id}' has an empty body`,
        "add the steps to run for each value under `body`",
      );
    }
    this.checkGraph(f.body, `${p}.body`, this.bodyContext(ctx, scope, known, { axes: axisNames }));
  }

  private checkLoop(
    s: Step,
    path: string,
    ctx: GraphContext,
    scope: ExprScope,
    known: ReadonlySet<string>,
  ): void {
    const l = s.loop;
    const p = `${path}.loop`;
    if (!l) {
      this.out.add(
        p,
        `step '${s.id}' has type loop but no \`loop\` block`,
        "add `loop: {body: [...], until: ..., max_iterations: N}`",
      );
      return;
    }
    const max = DEFINITION_LIMITS.maxLoopIterations;
    if (l.maxIterations < 1 || l.maxIterations > max) {
      this.out.add(
        `${p}.max_iterations`,
        l.maxIterations === 0
          ? `loop '${s.id}' needs max_iterations`
          : `loop '${s.id}': max_iterations ${l.maxIterations} is out of range`,
        `use 1-${max}; it bounds the loop even when its condition never ends it`,
      );
    }
    if (l.body.length === 0) {
      this.out.add(
        `${p}.body`,
        `loop '${s.id}' has an empty body`,
        "add the steps to repeat under `body`",
      );
    }
    const bodyCtx = this.bodyContext(ctx, scope, known, { inLoop: true });
    this.checkGraph(l.body, `${p}.body`, bodyCtx);
    // until/while see the body's latest outputs and loop.iteration.
    const bodyIds = new Set(l.body.map((b) => b.id));
    const condScope: ExprScope = {
      ...scope,
      roots: new Set([...scope.roots, "loop"]),
      stepVisible: (id) => bodyIds.has(id) || scope.stepVisible(id),
      knownSteps: new Set([...known, ...bodyIds]),
    };
    if (l.until)
      this.checkExpression(
        l.until,
        `${p}.until`,
        condScope,
        `the until condition of loop '${s.id}'`,
      );
    if (l.while)
      this.checkExpression(
        l.while,
        `${p}.while`,
        condScope,
        `the while condition of loop '${s.id}'`,
      );
  }

  private checkSubworkflow(s: Step, path: string, scope: ExprScope): void {
    const w = s.subworkflow;
    const p = `${path}.subworkflow`;
    if (!w) {
      this.out.add(
        p,
        `step '${s.id}' has type subworkflow but no \`subworkflow\` block`,
        "add `subworkflow: {workflow_id: ...}`",
      );
      return;
    }
    if (!w.workflowId) {
      this.out.add(
        `${p}.workflow_id`,
        `subworkflow '${s.id}' does not name a workflow`,
        "set `workflow_id`",
      );
    } else if (!WORKFLOW_ID_PATTERN.test(w.workflowId)) {
      this.out.add(
        `${p}.workflow_id`,
        `'${w.workflowId}' is not a valid workflow id`,
        "workflow ids use lowercase letters, digits, '_', '-' and '.'",
      );
    } else if (w.workflowId === this.def.id) {
      this.out.add(
        `${p}.workflow_id`,
        `subworkflow '${s.id}' starts its own workflow '${w.workflowId}'`,
        "a workflow cannot start itself; use a loop to repeat steps",
      );
    }
    if (w.version < 0) {
      this.out.add(
        `${p}.version`,
        `version ${w.version} is not valid`,
        "use 0 for the active version or a version number",
      );
    }
    const names = new Set<string>();
    w.params.forEach((param, i) => {
      this.checkParam(param, `${p}.params[${i}]`, "subworkflow", names, scope);
      names.add(param.name);
    });
  }

  private checkResources(s: Step, path: string): void {
    const r = s.resources!;
    const L = DEFINITION_LIMITS;
    const check = (
      value: number,
      field: string,
      max: number,
      unit: string,
      hint: string,
      min = 0,
      minText = "",
    ) => {
      const p = `${path}.resources.${field}`;
      if (!Number.isFinite(value)) this.out.add(p, `${field} is ${value}, not a number`, hint);
      else if (value < 0) this.out.add(p, `step '${s.id}': ${field} ${value} is negative`, hint);
      else if (value > max)
        this.out.add(p, `step '${s.id}': ${field} ${value} is more than ${max}${unit}`, hint);
      else if (value > 0 && value < min)
        // A near-zero request would let any number of tasks share an agent (no concurrency
        // bound), and Mesos keeps 3 decimals, so it would become a 0 request there.
        this.out.add(
          p,
          `step '${s.id}': ${field} ${value} is less than the minimum of ${minText}`,
          `use 0 for the default, or at least ${min}`,
        );
    };
    check(
      r.cpus,
      "cpus",
      L.maxCpus,
      " cores",
      "use 0 (default: 1 core) up to 1024; fractions such as 0.5 are allowed",
      0.01,
      "0.01 cores",
    );
    check(
      r.memMb,
      "mem_mb",
      L.maxMemMb,
      " MiB (16 TiB)",
      "memory is in MiB: 4096 is 4 GiB; use 0 for the default (256 MiB)",
      1,
      "1 MiB",
    );
    check(r.gpus, "gpus", L.maxGpus, "", "use a whole number of GPUs");
    if (Number.isFinite(r.gpus) && r.gpus >= 0 && !Number.isInteger(r.gpus)) {
      this.out.add(
        `${path}.resources.gpus`,
        `step '${s.id}': gpus ${r.gpus} is not a whole number`,
        "GPUs cannot be shared: use 0, 1, 2, ...",
      );
    }
    check(r.diskMb, "disk_mb", L.maxDiskMb, " MiB (1 PiB)", "disk is in MiB", 1, "1 MiB");
  }

  private checkConstraint(
    c: { attribute: string; operator: ConstraintOperator; value: string },
    path: string,
    label: string,
  ): void {
    if (!CONSTRAINT_ATTRIBUTE_PATTERN.test(c.attribute)) {
      this.out.add(
        `${path}.attribute`,
        c.attribute
          ? `${label}: '${c.attribute}' is not a valid attribute name`
          : `${label}: a constraint needs an attribute`,
        "e.g. `pool` or `hostname`",
      );
    }
    if (
      !isEnumValue(ConstraintOperator, c.operator) ||
      c.operator === ConstraintOperator.CONSTRAINT_OPERATOR_UNSPECIFIED
    ) {
      this.out.add(
        `${path}.operator`,
        `${label}: constraint on '${c.attribute}' has no valid operator`,
        "use EQUALS, NOT_EQUALS, LIKE, EXISTS or UNIQUE (CONSTRAINT_OPERATOR_*)",
      );
      return;
    }
    const O = ConstraintOperator;
    const needsValue = [
      O.CONSTRAINT_OPERATOR_EQUALS,
      O.CONSTRAINT_OPERATOR_NOT_EQUALS,
      O.CONSTRAINT_OPERATOR_LIKE,
    ].includes(c.operator);
    if (needsValue && !c.value) {
      this.out.add(
        `${path}.value`,
        `${label}: ${enumName(O, c.operator)} on '${c.attribute}' needs a value`,
      );
    }
    if (!needsValue && c.value) {
      this.out.add(
        `${path}.value`,
        `${label}: ${enumName(O, c.operator)} takes no value, got '${c.value}'`,
        "remove `value`",
      );
    }
    if (c.operator === O.CONSTRAINT_OPERATOR_LIKE && c.value) {
      try {
        new RegExp(c.value);
      } catch (err) {
        this.out.add(
          `${path}.value`,
          `${label}: pattern '${c.value}' does not compile: ${(err as Error).message}`,
        );
      }
    }
  }

  private checkRetry(s: Step, path: string): void {
    const r = s.retry!;
    const p = `${path}.retry`;
    const label = `step '${s.id}'`;
    if (r.maxAttempts < 1 || r.maxAttempts > DEFINITION_LIMITS.maxAttempts) {
      this.out.add(
        `${p}.max_attempts`,
        `${label}: max_attempts ${r.maxAttempts} is out of range`,
        `use 1-${DEFINITION_LIMITS.maxAttempts} (attempts including the first)`,
      );
    }
    const maxB = DEFINITION_LIMITS.maxBackoffSeconds;
    if (r.initialBackoff) this.checkDuration(r.initialBackoff, `${p}.initial_backoff`, maxB, false);
    if (r.maxBackoff) this.checkDuration(r.maxBackoff, `${p}.max_backoff`, maxB, false);
    if (r.initialBackoff && r.maxBackoff && seconds(r.maxBackoff) < seconds(r.initialBackoff)) {
      this.out.add(
        `${p}.max_backoff`,
        `${label}: max_backoff ${fmtDuration(r.maxBackoff)} is shorter than initial_backoff ${fmtDuration(r.initialBackoff)}`,
      );
    }
    const m = r.backoffMultiplier;
    if (m !== 0 && (!Number.isFinite(m) || m < 1 || m > DEFINITION_LIMITS.maxBackoffMultiplier)) {
      this.out.add(
        `${p}.backoff_multiplier`,
        `${label}: backoff_multiplier ${m} is out of range`,
        "use 1-100 (0 means the default, 2)",
      );
    }
    r.retryOn.forEach((kind, i) => {
      if (!isEnumValue(RetryOn, kind) || kind === RetryOn.RETRY_ON_UNSPECIFIED) {
        this.out.add(
          `${p}.retry_on[${i}]`,
          `${label}: unknown retry_on value ${kind}`,
          "use RETRY_ON_EXIT_CODE, RETRY_ON_TIMEOUT or RETRY_ON_LOST",
        );
      }
    });
    r.exitCodes.forEach((code, i) => {
      if (code < 1 || code > 255) {
        this.out.add(
          `${p}.exit_codes[${i}]`,
          `${label}: exit code ${code} cannot mean failure`,
          "exit codes that fail are 1-255",
        );
      }
    });
    if (
      r.exitCodes.length > 0 &&
      r.retryOn.length > 0 &&
      !r.retryOn.includes(RetryOn.RETRY_ON_EXIT_CODE)
    ) {
      this.out.add(
        `${p}.exit_codes`,
        `${label}: exit_codes are set but retry_on does not include RETRY_ON_EXIT_CODE`,
        "add RETRY_ON_EXIT_CODE to retry_on or remove exit_codes",
      );
    }
  }

  private checkArtifact(
    a: { name: string; partitions: Record<string, string>; uri: string },
    path: string,
    scope: ExprScope,
    kind: "input" | "output",
  ): void {
    if (!ARTIFACT_NAME_PATTERN.test(a.name)) {
      this.out.add(
        `${path}.name`,
        a.name
          ? `${scope.where}: artifact name '${a.name}' is not valid`
          : `${scope.where}: an ${kind} artifact needs a name`,
        "use letters, digits, '_', '-' and '.', starting with a letter, e.g. models.regional",
      );
    }
    for (const [key, value] of Object.entries(a.partitions)) {
      if (!PARTITION_KEY_PATTERN.test(key)) {
        this.out.add(
          `${path}.partitions.${key}`,
          `${scope.where}: partition key '${key}' is not valid`,
          "use letters, digits and '_', starting with a letter",
        );
      }
      this.checkTemplate(
        value,
        `${path}.partitions.${key}`,
        scope,
        `partition '${key}' of artifact '${a.name}'`,
      );
    }
    if (a.uri) this.checkTemplate(a.uri, `${path}.uri`, scope, `the uri of artifact '${a.name}'`);
  }

  // ---- triggers ------------------------------------------------------------------------

  private checkTriggers(): void {
    const ids = new Map<string, number>();
    this.def.triggers.forEach((t, i) => {
      const path = `triggers[${i}]`;
      if (!t.id) {
        this.out.add(`${path}.id`, "a trigger needs an id", "e.g. `id: nightly`");
      } else if (!STEP_ID_PATTERN.test(t.id)) {
        this.out.add(
          `${path}.id`,
          `trigger id '${t.id}' is not valid`,
          "use 1-64 letters, digits, '_' or '-', starting with a letter",
        );
      } else if (ids.has(t.id)) {
        this.out.add(
          `${path}.id`,
          `duplicate trigger id '${t.id}' (first used by triggers[${ids.get(t.id)}])`,
        );
      }
      if (t.id && !ids.has(t.id)) ids.set(t.id, i);
      this.checkTriggerKind(t, path);
      const roots = new Set<ExpressionRoot>(["trigger", "RUN_TS"]);
      if (t.kind?.$case === "signal") roots.add("signal");
      const names = new Set<string>();
      t.params.forEach((p, j) => {
        const pp = `${path}.params[${j}]`;
        const declared = this.workflowParams.get(p.name);
        if (p.name && PARAM_NAME_PATTERN.test(p.name) && !declared) {
          const close = suggest(p.name, [...this.workflowParams.keys()]);
          this.out.add(
            `${pp}.name`,
            `trigger '${t.id}' sets '${p.name}', which is not a workflow param`,
            close ? `did you mean '${close}'?` : "declare it under the workflow's `params` first",
          );
        }
        this.checkParam(
          p,
          pp,
          "trigger",
          names,
          {
            where: `trigger '${t.id}'`,
            roots,
            params: new Set(),
            stepVisible: () => false,
            knownSteps: new Set(),
          },
          declared?.type,
        );
        names.add(p.name);
      });
    });
  }

  private checkTriggerKind(t: Trigger, path: string): void {
    const kind = t.kind;
    if (!kind) {
      this.out.add(
        path,
        `trigger '${t.id}' has no kind`,
        "set one of `cron`, `artifact` or `signal`",
      );
      return;
    }
    if (kind.$case === "cron") {
      const c = kind.value;
      const p = `${path}.cron`;
      const zone = c.timezone || "UTC";
      let zoneOk = true;
      if (c.timezone) {
        try {
          new Intl.DateTimeFormat("en", { timeZone: c.timezone });
        } catch {
          zoneOk = false;
          const close = suggest(c.timezone, Intl.supportedValuesOf("timeZone"));
          this.out.add(
            `${p}.timezone`,
            `trigger '${t.id}': unknown timezone '${c.timezone}'`,
            close
              ? `did you mean '${close}'?`
              : "use an IANA timezone such as UTC or America/Los_Angeles",
          );
        }
      }
      if (!c.expression.trim()) {
        this.out.add(
          `${p}.expression`,
          `trigger '${t.id}' has an empty cron expression`,
          'e.g. "0 3 * * *" for 03:00 every day',
        );
        return;
      }
      try {
        const cron = new Cron(c.expression, zoneOk ? { timezone: zone } : {});
        if (cron.nextRun() === null) {
          this.out.add(
            `${p}.expression`,
            `trigger '${t.id}': cron expression '${c.expression}' never fires`,
            "check the day of month and month fields",
          );
        }
      } catch (err) {
        this.out.add(
          `${p}.expression`,
          `trigger '${t.id}': cron expression '${c.expression}' is not valid: ${(err as Error).message.replace(/^CronPattern: /, "")}`,
          'use five fields (minute hour day-of-month month day-of-week, e.g. "0 3 * * *") or six with seconds first',
        );
      }
    } else if (kind.$case === "artifact") {
      const a = kind.value;
      if (!ARTIFACT_NAME_PATTERN.test(a.name)) {
        this.out.add(
          `${path}.artifact.name`,
          a.name
            ? `trigger '${t.id}': artifact name '${a.name}' is not valid`
            : `trigger '${t.id}' needs an artifact name`,
          "e.g. `name: models.regional`",
        );
      }
      for (const key of Object.keys(a.partitions)) {
        if (!PARTITION_KEY_PATTERN.test(key)) {
          this.out.add(
            `${path}.artifact.partitions.${key}`,
            `trigger '${t.id}': partition key '${key}' is not valid`,
          );
        }
      }
    } else if (kind.$case === "signal") {
      const name = kind.value.name;
      if (!SIGNAL_NAME_PATTERN.test(name)) {
        this.out.add(
          `${path}.signal.name`,
          name
            ? `trigger '${t.id}': signal name '${name}' is not valid`
            : `trigger '${t.id}' needs a signal name`,
          "use letters, digits, '_', '-' and '.', starting with a letter",
        );
      }
    }
  }

  // ---- expressions ---------------------------------------------------------------------

  private checkExpression(source: string, path: string, scope: ExprScope, what: string): void {
    const parsed = parseExpression(source);
    if (!parsed.ok) {
      const at = parsed.error.position !== undefined ? ` at position ${parsed.error.position}` : "";
      this.out.add(
        path,
        `${scope.where}: ${what} \`${source}\` does not parse${at}: ${parsed.error.message}`,
      );
      return;
    }
    this.checkReferences(parsed.references, path, scope, what);
  }

  private checkTemplate(source: string, path: string, scope: ExprScope, what: string): void {
    const parsed = parseTemplate(source);
    if (!parsed.ok) {
      const at = parsed.error.position !== undefined ? ` at position ${parsed.error.position}` : "";
      this.out.add(
        path,
        `${scope.where}: ${what} template '${source}' does not parse${at}: ${parsed.error.message}`,
        "templates embed CEL as ${ <expr> }; write $${ for a literal ${",
      );
      return;
    }
    this.checkReferences(parsed.references, path, scope, what);
  }

  private checkReferences(
    refs: readonly string[],
    path: string,
    scope: ExprScope,
    what: string,
  ): void {
    const reported = new Set<string>();
    const add = (key: string, description: string, hint = "") => {
      if (reported.has(key)) return;
      reported.add(key);
      this.out.add(path, `${scope.where}: ${what} ${description}`, hint);
    };
    for (const ref of refs) {
      const [root, first, second] = ref.split(".") as [string, string?, string?];
      if (!scope.roots.has(root as ExpressionRoot)) {
        add(root, `uses '${root}', which is not available here`, rootHelp(root as ExpressionRoot));
        continue;
      }
      if (first === undefined) continue;
      if (root === "params" && !scope.params.has(first)) {
        const close = suggest(first, [...scope.params]);
        add(
          `params.${first}`,
          `refers to unknown param '${first}'`,
          close
            ? `did you mean '${close}'?`
            : scope.params.size
              ? `params here: ${[...scope.params].join(", ")}`
              : "declare it under `params` (a param may only use the params before it)",
        );
      } else if (root === "steps") {
        if (!scope.knownSteps.has(first)) {
          const close = suggest(first, [...scope.knownSteps]);
          add(
            `steps.${first}`,
            `refers to unknown step '${first}'`,
            close ? `did you mean '${close}'?` : "",
          );
        } else if (!scope.stepVisible(first)) {
          add(
            `steps.${first}`,
            `refers to step '${first}', which does not run before it`,
            `only upstream steps' outputs exist at that point: add an edge from '${first}' or move the expression`,
          );
        } else if (second !== undefined && !STEP_FIELDS.has(second)) {
          add(
            `steps.${first}.${second}`,
            `uses steps.${first}.${second}`,
            `a step exposes 'outputs' and 'status' (steps.${first}.outputs.<name>)`,
          );
        }
      } else if (root === "foreach") {
        if (!FOREACH_FIELDS.has(first)) {
          add(
            `foreach.${first}`,
            `uses foreach.${first}`,
            "a foreach body sees foreach.value, foreach.index and foreach.values.<axis>",
          );
        } else if (
          first === "values" &&
          second !== undefined &&
          scope.axes &&
          !scope.axes.has(second)
        ) {
          const close = suggest(second, [...scope.axes]);
          add(
            `foreach.values.${second}`,
            `refers to unknown foreach axis '${second}'`,
            close ? `did you mean '${close}'?` : `axes: ${[...scope.axes].join(", ")}`,
          );
        }
      } else if (root === "loop" && !LOOP_FIELDS.has(first)) {
        add(`loop.${first}`, `uses loop.${first}`, "a loop body sees loop.iteration (0-based)");
      }
    }
  }

  // ---- small shared checks -------------------------------------------------------------

  private checkDuration(d: Duration, path: string, maxSeconds: number, positive: boolean): void {
    const valid = Number.isFinite(d.seconds) && d.nanos >= 0 && d.nanos < 1e9 && d.seconds >= 0;
    if (!valid) {
      this.out.add(
        path,
        `${fmtDuration(d)} is not a valid duration`,
        'durations are non-negative, e.g. "90s" or "1.5s"',
      );
      return;
    }
    const s = seconds(d);
    if (positive && s === 0) {
      this.out.add(
        path,
        "a zero timeout would fail at once",
        'use a positive duration such as "3600s", or leave it unset for no limit',
      );
    } else if (s > maxSeconds) {
      this.out.add(path, `${fmtDuration(d)} is longer than the limit of ${maxSeconds}s`);
    }
  }

  private checkTags(tags: Record<string, string>, path: string): void {
    const L = DEFINITION_LIMITS;
    for (const [key, value] of Object.entries(tags)) {
      if (key.length === 0 || key.length > L.maxTagKeyLength) {
        this.out.add(
          `${path}.${key}`,
          `tag key '${key}' must be 1-${L.maxTagKeyLength} characters`,
        );
      }
      if (value.length > L.maxTagValueLength) {
        this.out.add(
          `${path}.${key}`,
          `tag '${key}' has a ${value.length}-character value; the limit is ${L.maxTagValueLength}`,
        );
      }
      this.checkNoNul(key, `${path}.${key}`, "tag key");
      this.checkNoNul(value, `${path}.${key}`, "tag value");
    }
  }

  private checkText(text: string, path: string): void {
    if (text.length > DEFINITION_LIMITS.maxDescriptionLength) {
      this.out.add(
        path,
        `${text.length} characters; the limit is ${DEFINITION_LIMITS.maxDescriptionLength}`,
      );
    }
    this.checkNoNul(text, path);
  }

  /** Stored as plain text columns, which PostgreSQL refuses to hold a NUL in. */
  private checkNoNul(text: string, path: string, what = path): void {
    if (text.includes("\u0000")) {
      this.out.add(path, `${what} contains a NUL character (\\u0000)`, "remove it");
    }
  }
}

// ---------------------------------------------------------------------------------------
// Graph helpers

interface GraphNode {
  id: string;
  /** Position in the steps list (first occurrence of the id). */
  position: number;
  index: number;
}

/** One graph's nodes and edges (first occurrence of each id; edges to known ids only). */
class GraphInfo {
  readonly nodes: GraphNode[] = [];
  readonly index = new Map<string, GraphNode>();
  readonly adj: number[][] = [];
  readonly preds: number[][] = [];
  private readonly ancestors = new Map<number, Set<string>>();

  constructor(steps: Step[]) {
    steps.forEach((s, position) => {
      if (!s.id || this.index.has(s.id)) return;
      const node = { id: s.id, position, index: this.nodes.length };
      this.nodes.push(node);
      this.index.set(s.id, node);
      this.adj.push([]);
      this.preds.push([]);
    });
    for (const node of this.nodes) {
      for (const t of steps[node.position]!.next) {
        const target = this.index.get(t.to);
        if (!target || this.adj[node.index]!.includes(target.index)) continue;
        this.adj[node.index]!.push(target.index);
        this.preds[target.index]!.push(node.index);
      }
    }
  }

  /** True when step `id` is a transitive predecessor of node `u`. */
  isAncestor(id: string, u: number): boolean {
    let set = this.ancestors.get(u);
    if (!set) {
      set = new Set<string>();
      const queue = [...this.preds[u]!];
      const seen = new Set<number>(queue);
      while (queue.length > 0) {
        const k = queue.pop()!;
        set.add(this.nodes[k]!.id);
        for (const p of this.preds[k]!) {
          if (!seen.has(p)) {
            seen.add(p);
            queue.push(p);
          }
        }
      }
      this.ancestors.set(u, set);
    }
    return set.has(id);
  }
}

/** Tarjan's algorithm, iterative (graphs may hold 10,000 steps): component id per node. */
export function stronglyConnectedComponents(adj: number[][]): number[] {
  const n = adj.length;
  const index = new Array<number>(n).fill(-1);
  const low = new Array<number>(n).fill(0);
  const onStack = new Array<boolean>(n).fill(false);
  const comp = new Array<number>(n).fill(-1);
  const stack: number[] = [];
  let counter = 0;
  let components = 0;
  for (let start = 0; start < n; start++) {
    if (index[start] !== -1) continue;
    const work: Array<[number, number]> = [[start, 0]];
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const [u, i] = frame;
      if (i === 0 && index[u] === -1) {
        index[u] = low[u] = counter++;
        stack.push(u);
        onStack[u] = true;
      }
      const edges = adj[u]!;
      if (i < edges.length) {
        frame[1] = i + 1;
        const w = edges[i]!;
        if (index[w] === -1) work.push([w, 0]);
        else if (onStack[w]) low[u] = Math.min(low[u]!, index[w]!);
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low[parent[0]] = Math.min(low[parent[0]]!, low[u]!);
      if (low[u] === index[u]) {
        for (;;) {
          const w = stack.pop()!;
          onStack[w] = false;
          comp[w] = components;
          if (w === u) break;
        }
        components++;
      }
    }
  }
  return comp;
}

/** A shortest cycle through `start` inside its component: [start, ..., start]. */
function findCycle(start: number, adj: number[][], comp: number[]): number[] {
  if (adj[start]!.includes(start)) return [start, start];
  const prev = new Map<number, number>();
  const queue = [start];
  for (let head = 0; head < queue.length; head++) {
    const u = queue[head]!;
    for (const w of adj[u]!) {
      if (comp[w] !== comp[start]) continue;
      if (w === start) {
        const path = [start];
        for (let k = u; k !== start; k = prev.get(k)!) path.unshift(k);
        path.unshift(start);
        return path;
      }
      if (!prev.has(w)) {
        prev.set(w, u);
        queue.push(w);
      }
    }
  }
  return [start, start];
}

// ---------------------------------------------------------------------------------------
// Value helpers

function jsonProblem(value: unknown, depth = 0): string | undefined {
  if (depth > 64) return "the value nests deeper than 64 levels";
  if (typeof value === "number") {
    return Number.isFinite(value) ? undefined : `${value} is not a JSON number`;
  }
  if (Array.isArray(value)) {
    for (const v of value) {
      const p = jsonProblem(v, depth + 1);
      if (p) return p;
    }
  } else if (value && typeof value === "object") {
    for (const v of Object.values(value)) {
      const p = jsonProblem(v, depth + 1);
      if (p) return p;
    }
  }
  return undefined;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  if (typeof value === "string") {
    const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
    return `the string "${shown}"`;
  }
  if (typeof value === "number")
    return Number.isInteger(value) ? `the integer ${value}` : `the number ${value}`;
  return `${typeof value} ${String(value)}`;
}

/** Strict: a literal in a definition must already have its declared type. */
function literalTypeProblem(value: unknown, type: ParamType): string | undefined {
  switch (type) {
    case ParamType.PARAM_TYPE_STRING:
      return typeof value === "string" ? undefined : describe(value);
    case ParamType.PARAM_TYPE_INT:
      if (typeof value !== "number" || !Number.isInteger(value)) return describe(value);
      return Number.isSafeInteger(value)
        ? undefined
        : `${value}, outside ±2^53-1 (the range JSON holds exactly)`;
    case ParamType.PARAM_TYPE_DOUBLE:
      return typeof value === "number" ? undefined : describe(value);
    case ParamType.PARAM_TYPE_BOOL:
      return typeof value === "boolean" ? undefined : describe(value);
    case ParamType.PARAM_TYPE_LIST:
      return Array.isArray(value) ? undefined : describe(value);
    case ParamType.PARAM_TYPE_MAP:
      return value !== null && typeof value === "object" && !Array.isArray(value)
        ? undefined
        : describe(value);
    default:
      return undefined;
  }
}

function literalHint(value: unknown, type: ParamType): string {
  if (
    type === ParamType.PARAM_TYPE_INT &&
    typeof value === "string" &&
    /^[+-]?\d+$/.test(value.trim())
  ) {
    return `write the number without quotes: ${value.trim()}`;
  }
  if (type === ParamType.PARAM_TYPE_INT && typeof value === "number") {
    return "use a whole number, or declare the param PARAM_TYPE_DOUBLE";
  }
  if (type === ParamType.PARAM_TYPE_BOOL && (value === "true" || value === "false")) {
    return `write ${value} without quotes`;
  }
  if (
    type === ParamType.PARAM_TYPE_DOUBLE &&
    typeof value === "string" &&
    value.trim() !== "" &&
    Number.isFinite(Number(value))
  ) {
    return `write the number without quotes: ${value.trim()}`;
  }
  return `give a ${paramTypeName(type)} literal, or change the declared type`;
}

function typeNames(): string {
  return enumNames(ParamType)
    .filter((n) => n !== "UNRECOGNIZED")
    .join(", ");
}

function rootHelp(root: ExpressionRoot): string {
  switch (root) {
    case "foreach":
      return "'foreach' exists only inside a foreach body";
    case "loop":
      return "'loop' exists only inside a loop body and in its until/while conditions";
    case "steps":
      return "step outputs are not available here (workflow and trigger params are evaluated before any step runs)";
    case "params":
      return "trigger params are evaluated before the run's params exist; use trigger.* here";
    case "trigger":
      return "'trigger' exists only in the params of a trigger";
    case "signal":
      return "'signal' exists only in the params of a signal trigger";
    default:
      return "";
  }
}

// ---------------------------------------------------------------------------------------
// Enum and formatting helpers (ts-proto enums are numeric TS enums with an UNRECOGNIZED = -1)

type NumericEnum = Record<string, string | number>;

function isEnumValue(e: NumericEnum, value: number): boolean {
  return value !== -1 && typeof e[value] === "string";
}

function isEnumName(e: NumericEnum, name: string): boolean {
  return typeof e[name] === "number" && e[name] !== -1;
}

function enumNames(e: NumericEnum): string[] {
  return Object.keys(e).filter((k) => typeof e[k] === "number" && e[k] !== -1);
}

function enumName(e: NumericEnum, value: number): string {
  const name = e[value];
  return typeof name === "string" ? name : String(value);
}

function seconds(d: Duration): number {
  return d.seconds + d.nanos / 1e9;
}

function fmtDuration(d: Duration): string {
  return `${seconds(d)}s`;
}

function isHttpUrl(text: string): boolean {
  try {
    const u = new URL(text);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

/** A fix for an id with bad characters, e.g. "Train Model" → "train_model". */
function suggestId(id: string, bad: RegExp, lower: boolean): string {
  let fixed = (lower ? id.toLowerCase() : id).replace(bad, "_").replace(/^[^A-Za-z]+/, "");
  fixed = fixed.slice(0, lower ? 128 : 64);
  return fixed && fixed !== id ? ` (e.g. '${fixed}')` : "";
}
