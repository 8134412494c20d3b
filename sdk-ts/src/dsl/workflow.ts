// The workflow: its policies, params and triggers, and the top-level graph built by a callback.
// `toDefinition()` gives the kaon.v1.WorkflowDefinition message; `toCanonicalJson()` its
// canonical proto3 JSON text, byte-identical to what the Python SDK emits for the same workflow.
import {
  type CronTrigger,
  canonicalJsonText,
  FailureMode,
  messageToJson,
  type Notification,
  RunStrategyMode,
  type Trigger,
  WorkflowDefinition,
} from "@kaon/proto";
import { KaonError } from "../errors.js";
import { Graph, type Step, withGraph } from "./graph.js";
import {
  compileDuration,
  compileParams,
  type DurationInput,
  type Expr,
  expr,
  type ParamsInput,
} from "./values.js";

/** Who hears about run outcomes. */
export interface NotificationInput {
  /** Run status names that notify, e.g. ["FAILED", "SUCCEEDED"]; unset means failures only. */
  on?: string[];
  webhookUrl: string;
}

/** How a new run relates to runs already going. */
export type RunStrategyName = "parallel" | "sequential" | "skip_if_running" | "cancel_previous";

/** Options of a workflow. Everything except `id` is optional; core applies its defaults. */
export interface WorkflowOptions {
  /** Lowercase letters, digits, `_` `-` `.`, starting with a letter. */
  id: string;
  description?: string;
  namespace?: string;
  owner?: string;
  tags?: Record<string, string>;
  /** Workflow params in evaluation order (a param may refer to earlier ones). */
  params?: ParamsInput;
  triggers?: TriggerSpec[];
  notifications?: NotificationInput[];
  /** A mode, or a mode with a limit: `{ mode: "parallel", maxConcurrentRuns: 2 }`. */
  runStrategy?: RunStrategyName | { mode: RunStrategyName; maxConcurrentRuns?: number };
  /** The whole run times out after this long. */
  timeout?: DurationInput;
  failureMode?: "finish_running" | "stop_all";
  /** Most steps of a type running at once in one run, e.g. `{ spark: 2 }`. */
  stepTypeConcurrency?: Record<string, number>;
  priority?: number;
}

/** A trigger; create with `trigger.cron`, `trigger.artifact` or `trigger.signal`. */
export class TriggerSpec {
  constructor(readonly message: Trigger) {}
}

/** Options every trigger accepts. */
export interface TriggerOptions {
  /** Params of the runs it starts; expressions see `trigger.*`. */
  params?: ParamsInput;
  disabled?: boolean;
}

function makeTrigger(id: string, kind: Trigger["kind"], options: TriggerOptions): TriggerSpec {
  return new TriggerSpec({
    id,
    kind,
    params: compileParams(options.params),
    disabled: options.disabled ?? false,
  });
}

/** Trigger constructors. */
export const trigger = {
  /** Fires on a cron schedule: `trigger.cron("nightly", "0 3 * * *", { timezone: "UTC" })`. */
  cron(id: string, expression: string, options: TriggerOptions & { timezone?: string } = {}) {
    const cron: CronTrigger = { expression, timezone: options.timezone ?? "" };
    return makeTrigger(id, { $case: "cron", value: cron }, options);
  },
  /** Fires when a matching artifact partition is announced. */
  artifact(
    id: string,
    name: string,
    options: TriggerOptions & { partitions?: Record<string, string> } = {},
  ) {
    return makeTrigger(
      id,
      { $case: "artifact", value: { name, partitions: { ...options.partitions } } },
      options,
    );
  },
  /** Fires on a named signal sent through TriggerService.Signal. */
  signal(id: string, name: string, options: TriggerOptions = {}) {
    return makeTrigger(id, { $case: "signal", value: { name } }, options);
  },
};

const RUN_STRATEGY: Record<RunStrategyName, RunStrategyMode> = {
  parallel: RunStrategyMode.RUN_STRATEGY_MODE_PARALLEL,
  sequential: RunStrategyMode.RUN_STRATEGY_MODE_SEQUENTIAL,
  skip_if_running: RunStrategyMode.RUN_STRATEGY_MODE_SKIP_IF_RUNNING,
  cancel_previous: RunStrategyMode.RUN_STRATEGY_MODE_CANCEL_PREVIOUS,
};
const FAILURE_MODE = {
  finish_running: FailureMode.FAILURE_MODE_FINISH_RUNNING,
  stop_all: FailureMode.FAILURE_MODE_STOP_ALL,
};

/** What the build callback gets: the workflow's params as expressions. */
export interface WorkflowScope {
  readonly id: string;
  /** `params.<name>` as an expression. */
  param(name: string): Expr;
}

/** A workflow definition built with the DSL. */
export class Workflow {
  readonly graph: Graph;
  constructor(
    readonly options: WorkflowOptions,
    build: (wf: WorkflowScope) => unknown,
  ) {
    this.graph = new Graph(`workflow(${JSON.stringify(options.id)})`);
    const scope: WorkflowScope = { id: options.id, param: (name) => expr(`params.${name}`) };
    withGraph(this.graph, () => build(scope));
  }

  get id(): string {
    return this.options.id;
  }

  /** The top-level steps in definition order. */
  get steps(): readonly Step[] {
    return this.graph.steps;
  }

  /** The kaon.v1.WorkflowDefinition message. */
  toDefinition(): WorkflowDefinition {
    const o = this.options;
    const def: WorkflowDefinition = {
      id: o.id,
      description: o.description ?? "",
      namespace: o.namespace ?? "",
      owner: o.owner ?? "",
      tags: { ...o.tags },
      params: compileParams(o.params),
      steps: this.graph.steps.map((s) => s.toMessage()),
      triggers: (o.triggers ?? []).map((t) => t.message),
      notifications: (o.notifications ?? []).map(compileNotification),
      failureMode: o.failureMode
        ? (FAILURE_MODE[o.failureMode] ?? FailureMode.FAILURE_MODE_UNSPECIFIED)
        : FailureMode.FAILURE_MODE_UNSPECIFIED,
      stepTypeConcurrency: { ...o.stepTypeConcurrency },
      priority: o.priority ?? 0,
    };
    if (o.runStrategy !== undefined) {
      const rs = typeof o.runStrategy === "string" ? { mode: o.runStrategy } : o.runStrategy;
      def.runStrategy = {
        mode: RUN_STRATEGY[rs.mode] ?? RunStrategyMode.RUN_STRATEGY_MODE_UNSPECIFIED,
        maxConcurrentRuns: rs.maxConcurrentRuns ?? 0,
      };
    }
    if (o.timeout !== undefined) def.timeout = compileDuration(o.timeout, "workflow timeout");
    return def;
  }

  /** Proto3 JSON of the definition (lowerCamelCase, defaults omitted), as a plain object. */
  toJson(): unknown {
    return messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", this.toDefinition());
  }

  /** Canonical JSON text: proto3 JSON with sorted keys and no whitespace. */
  toCanonicalJson(): string {
    return canonicalJsonText(
      messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", this.toDefinition()),
    );
  }
}

function compileNotification(n: NotificationInput): Notification {
  return {
    on: [...(n.on ?? [])],
    webhookUrl: n.webhookUrl,
  };
}

/**
 * Defines a workflow. Steps created inside `build` belong to it, in the order they are created;
 * wire them with `seq`, `par`, `a.to(b)`, `a.branch({ xor: true }).when(cond, b).otherwise(c)`.
 *
 * ```ts
 * const wf = workflow({ id: "hello" }, () => {
 *   seq(command("greet", ["echo", "hello"]), noop("done"));
 * });
 * ```
 */
export function workflow(
  options: WorkflowOptions,
  build: (wf: WorkflowScope) => unknown,
): Workflow {
  if (typeof options?.id !== "string") {
    throw new KaonError('workflow: `id` is required, e.g. workflow({ id: "nightly-train" }, …)');
  }
  return new Workflow(options, build);
}
