// Steps and how they connect. A step joins the graph that is open when it is created (the
// callback of `workflow`, or of a `foreach`/`loop` body), so the order of `steps` in the
// definition is the order in which the author wrote them — the same rule as the Python SDK,
// which keeps the canonical JSON of both languages identical. Edges are kept on the source step
// in the order they were added, which is the order an XOR split tries them.
import {
  type ArtifactRef,
  type Constraint as ConstraintMessage,
  ConstraintOperator,
  JoinMode,
  type Resources as ResourcesMessage,
  RetryOn,
  type RetryPolicy,
  SkipPolicy,
  SplitMode,
  type Step as StepMessage,
  type Transition,
} from "@kaon/proto";
import { EncodeError, KaonError } from "../errors.js";
import {
  compileDuration,
  compileParams,
  type DurationInput,
  Expr,
  type JsonObject,
  OutputRef,
  type ParamsInput,
} from "./values.js";

/** Compute resources of each attempt. Zero or unset means the server default. */
export interface ResourcesInput {
  cpus?: number;
  memMb?: number;
  gpus?: number;
  diskMb?: number;
}

/** Constraint operators by their DSL name. */
export type ConstraintOperatorName = "equals" | "not_equals" | "like" | "exists" | "unique";

/** A placement rule over agent attributes, e.g. `{ attribute: "pool", operator: "equals", value: "gpu" }`. */
export interface ConstraintInput {
  attribute: string;
  operator: ConstraintOperatorName;
  value?: string;
  soft?: boolean;
}

/** Failure kinds a retry policy retries. */
export type RetryOnName = "exit_code" | "timeout" | "lost";

/** Retries with exponential backoff. Core's defaults apply to what is left out. */
export interface RetryInput {
  maxAttempts: number;
  initialBackoff?: DurationInput;
  backoffMultiplier?: number;
  maxBackoff?: DurationInput;
  retryOn?: RetryOnName[];
  exitCodes?: number[];
}

/** A data artifact a step waits for or announces. Partition values may hold `${ <CEL> }`. */
export interface ArtifactRefInput {
  name: string;
  partitions?: Record<string, string>;
  uri?: string;
}

/** Options every step accepts, containers included. */
export interface StepOptions {
  description?: string;
  params?: ParamsInput;
  resources?: ResourcesInput;
  constraints?: ConstraintInput[];
  /** A policy, or a number for `{ maxAttempts: n }`. */
  retry?: RetryInput | number;
  timeout?: DurationInput;
  /**
   * An attempt that reports nothing (e.g. `job.heartbeat()`) for this long is taken as hung and
   * killed (TIMED_OUT). Only for steps that run as processes.
   */
  heartbeatTimeout?: DurationInput;
  env?: Record<string, string>;
  inputs?: ArtifactRefInput[];
  outputs?: ArtifactRefInput[];
  /** How incoming edges are awaited: every live branch ("all", default) or the first ("any"). */
  join?: "all" | "any";
  /** How outgoing edges are chosen: every edge that holds ("and", default) or the first ("xor"). */
  split?: "and" | "xor";
  ignoreFailure?: boolean;
  tags?: Record<string, string>;
  skipIfOutputsExist?: "never" | "on_restart" | "always";
}

/** Something that can be wired into a graph: a step, or a composition of steps. */
export interface Node {
  /** Steps that incoming edges attach to. */
  readonly entries: readonly Step[];
  /** Steps that outgoing edges leave from. */
  readonly exits: readonly Step[];
}

/** What `seq` accepts: a node, or an array of nodes meaning "these in parallel". */
export type NodeInput = Node | readonly NodeInput[];

/** A graph under construction: the workflow's top level or a container's body. */
export class Graph {
  readonly steps: Step[] = [];
  constructor(readonly owner: string) {}
}

const openGraphs: Graph[] = [];

/**
 * Runs `build` with `graph` open, so steps created inside join it. A returned composition is
 * already wired (returning it is only for readability).
 */
export function withGraph(graph: Graph, build: () => unknown): void {
  openGraphs.push(graph);
  try {
    const result = build();
    if (result instanceof Promise) {
      throw new KaonError(
        `${graph.owner}: the build callback returned a Promise; build graphs synchronously`,
      );
    }
  } finally {
    openGraphs.pop();
  }
}

function currentGraph(what: string): Graph {
  const graph = openGraphs[openGraphs.length - 1];
  if (!graph) {
    throw new KaonError(
      `${what} was created outside a workflow: create steps inside ` +
        "workflow({ … }, (wf) => { … }) or inside a foreach/loop body callback",
    );
  }
  return graph;
}

/** Base of every step. Create steps with the constructors (`command`, `foreach`, …). */
export class Step implements Node {
  readonly graph: Graph;
  private readonly edges: Transition[] = [];
  private splitMode: "and" | "xor" | undefined;

  constructor(
    readonly id: string,
    readonly type: string,
    protected readonly options: StepOptions,
  ) {
    this.graph = currentGraph(`${type}(${JSON.stringify(id)})`);
    this.splitMode = options.split;
    this.graph.steps.push(this);
  }

  get entries(): readonly Step[] {
    return [this];
  }
  get exits(): readonly Step[] {
    return [this];
  }

  /** This step's output `name`, as an expression for params, conditions and foreach. */
  output(name: string): OutputRef {
    return new OutputRef(this.id, name);
  }

  /**
   * Edges from this step to each target (several targets run in parallel). Named `to`, not
   * `then`, so that a step is never mistaken for a promise by `await`.
   */
  to(...targets: NodeInput[]): Flow {
    return seq(this, targets.length === 1 ? targets[0]! : targets);
  }

  /**
   * Starts conditional edges: `check.branch({ xor: true }).when("…", a).otherwise(b)`.
   * With `xor`, only the first edge whose condition holds is taken (else `otherwise`);
   * without it, every edge whose condition holds is taken.
   */
  branch(options: { xor?: boolean } = {}): Branch {
    if (options.xor) this.splitMode = "xor";
    return new Branch(this);
  }

  /** Shorthand for `branch().when(condition, target)`. */
  when(condition: string | Expr, target: NodeInput): Branch {
    return this.branch().when(condition, target);
  }

  /** @internal */
  setXor(): void {
    this.splitMode = "xor";
  }

  /** @internal */
  addConditionalEdge(to: Step, condition: string, otherwise: boolean): void {
    this.edges.push({ to: to.id, condition, otherwise });
  }

  /** @internal */
  addEdge(to: Step): void {
    this.edges.push({ to: to.id, condition: "", otherwise: false });
  }

  /** @internal The step-type specific part of the message (config or container). */
  protected body(): Partial<StepMessage> {
    return {};
  }

  /** Compiles this step to its message. */
  toMessage(): StepMessage {
    const o = this.options;
    const message: StepMessage = {
      id: this.id,
      description: o.description ?? "",
      type: this.type,
      params: compileParams(o.params),
      constraints: (o.constraints ?? []).map(compileConstraint),
      env: { ...o.env },
      inputs: (o.inputs ?? []).map(compileArtifactRef),
      outputs: (o.outputs ?? []).map(compileArtifactRef),
      next: this.edges.map((e) => ({ ...e })),
      split: SPLIT[this.splitMode ?? "unset"],
      join: JOIN[o.join ?? "unset"],
      ignoreFailure: o.ignoreFailure ?? false,
      tags: { ...o.tags },
      skipIfOutputsExist: SKIP[o.skipIfOutputsExist ?? "unset"],
      ...this.body(),
    };
    if (o.resources !== undefined) message.resources = compileResources(o.resources);
    if (o.retry !== undefined) message.retry = compileRetry(o.retry, `step ${this.id}: retry`);
    if (o.timeout !== undefined) {
      message.timeout = compileDuration(o.timeout, `step ${this.id}: timeout`);
    }
    if (o.heartbeatTimeout !== undefined) {
      message.heartbeatTimeout = compileDuration(
        o.heartbeatTimeout,
        `step ${this.id}: heartbeatTimeout`,
      );
    }
    return message;
  }
}

const SPLIT = {
  unset: SplitMode.SPLIT_MODE_UNSPECIFIED,
  and: SplitMode.SPLIT_MODE_AND,
  xor: SplitMode.SPLIT_MODE_XOR,
};
const JOIN = {
  unset: JoinMode.JOIN_MODE_UNSPECIFIED,
  all: JoinMode.JOIN_MODE_ALL,
  any: JoinMode.JOIN_MODE_ANY,
};
const SKIP = {
  unset: SkipPolicy.SKIP_POLICY_UNSPECIFIED,
  never: SkipPolicy.SKIP_POLICY_NEVER,
  on_restart: SkipPolicy.SKIP_POLICY_ON_RESTART,
  always: SkipPolicy.SKIP_POLICY_ALWAYS,
};
const OPERATORS: Record<ConstraintOperatorName, ConstraintOperator> = {
  equals: ConstraintOperator.CONSTRAINT_OPERATOR_EQUALS,
  not_equals: ConstraintOperator.CONSTRAINT_OPERATOR_NOT_EQUALS,
  like: ConstraintOperator.CONSTRAINT_OPERATOR_LIKE,
  exists: ConstraintOperator.CONSTRAINT_OPERATOR_EXISTS,
  unique: ConstraintOperator.CONSTRAINT_OPERATOR_UNIQUE,
};
const RETRY_ON: Record<RetryOnName, RetryOn> = {
  exit_code: RetryOn.RETRY_ON_EXIT_CODE,
  timeout: RetryOn.RETRY_ON_TIMEOUT,
  lost: RetryOn.RETRY_ON_LOST,
};

function compileResources(r: ResourcesInput): ResourcesMessage {
  return { cpus: r.cpus ?? 0, memMb: r.memMb ?? 0, gpus: r.gpus ?? 0, diskMb: r.diskMb ?? 0 };
}

function compileConstraint(c: ConstraintInput): ConstraintMessage {
  return {
    attribute: c.attribute,
    // An unknown name passes through as UNSPECIFIED, which core rejects with the field path.
    operator: OPERATORS[c.operator] ?? ConstraintOperator.CONSTRAINT_OPERATOR_UNSPECIFIED,
    value: c.value ?? "",
    soft: c.soft ?? false,
  };
}

function compileRetry(input: RetryInput | number, field: string): RetryPolicy {
  const r: RetryInput = typeof input === "number" ? { maxAttempts: input } : input;
  const policy: RetryPolicy = {
    maxAttempts: r.maxAttempts,
    backoffMultiplier: r.backoffMultiplier ?? 0,
    retryOn: (r.retryOn ?? []).map((k) => RETRY_ON[k] ?? RetryOn.RETRY_ON_UNSPECIFIED),
    exitCodes: [...(r.exitCodes ?? [])],
  };
  if (r.initialBackoff !== undefined) {
    policy.initialBackoff = compileDuration(r.initialBackoff, `${field}.initialBackoff`);
  }
  if (r.maxBackoff !== undefined) {
    policy.maxBackoff = compileDuration(r.maxBackoff, `${field}.maxBackoff`);
  }
  return policy;
}

/** @internal */
export function compileArtifactRef(a: ArtifactRefInput): ArtifactRef {
  return { name: a.name, partitions: { ...a.partitions }, uri: a.uri ?? "" };
}

/** A composition of steps with its entry and exit steps. Returned by `seq`, `par`, `to`. */
export class Flow implements Node {
  constructor(
    readonly entries: readonly Step[],
    readonly exits: readonly Step[],
  ) {}

  /** Edges from every exit of this flow to each target. */
  to(...targets: NodeInput[]): Flow {
    return seq(this, targets.length === 1 ? targets[0]! : targets);
  }
}

/**
 * Conditional edges out of one step. As a node, its exits are the branch targets, so
 * `seq(check.branch({ xor: true }).when("…", a).otherwise(b), publish)` joins a and b.
 */
export class Branch implements Node {
  private readonly targets: Node[] = [];
  constructor(readonly source: Step) {}

  get entries(): readonly Step[] {
    return [this.source];
  }
  get exits(): readonly Step[] {
    return this.targets.flatMap((t) => t.exits);
  }

  /** An edge to `target`, taken when the CEL `condition` holds. */
  when(condition: string | Expr, target: NodeInput): this {
    return this.add(target, String(condition), false);
  }

  /** The edge taken when no other condition holds; makes the split XOR. */
  otherwise(target: NodeInput): this {
    this.source.setXor();
    return this.add(target, "", true);
  }

  /** Edges from every branch target to each of `targets`. */
  to(...targets: NodeInput[]): Flow {
    return seq(this, targets.length === 1 ? targets[0]! : targets);
  }

  private add(target: NodeInput, condition: string, otherwise: boolean): this {
    const node = toNode(target);
    for (const entry of node.entries) this.source.addConditionalEdge(entry, condition, otherwise);
    this.targets.push(node);
    return this;
  }
}

function toNode(input: NodeInput): Node {
  return isNodeArray(input) ? par(...input) : input;
}

function isNodeArray(input: NodeInput): input is readonly NodeInput[] {
  return Array.isArray(input);
}

/**
 * A sequence: each element runs after the previous one. An array element is a parallel
 * fan-out, and the element after it joins the branches: `seq(a, [b, c], d)`.
 */
export function seq(...nodes: NodeInput[]): Flow {
  const resolved = nodes.map(toNode);
  for (let i = 1; i < resolved.length; i++) {
    for (const from of resolved[i - 1]!.exits) {
      for (const to of resolved[i]!.entries) from.addEdge(to);
    }
  }
  const first = resolved[0];
  const last = resolved[resolved.length - 1];
  return new Flow(first?.entries ?? [], last?.exits ?? []);
}

/** Branches side by side: they start together and the next element joins them. */
export function par(...nodes: NodeInput[]): Flow {
  const resolved = nodes.map(toNode);
  return new Flow(
    resolved.flatMap((n) => n.entries),
    resolved.flatMap((n) => n.exits),
  );
}

/** Drops keys whose value is undefined, so configs carry only what the author set. */
export function definedOnly(config: Record<string, unknown>): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(config)) {
    if (value === undefined) continue;
    if (value instanceof Expr) {
      throw new EncodeError(
        `config.${key}: an expression cannot be a config value; pass it as a step param ` +
          `and refer to it from the config the way the step type documents`,
      );
    }
    out[key] = value as JsonObject[string];
  }
  return out;
}

/** `seq` under the Python SDK's name: `sequence(a, b, c)`. */
export const sequence = seq;

/** `par` under the Python SDK's name: `parallel(b, c)`. */
export const parallel = par;
