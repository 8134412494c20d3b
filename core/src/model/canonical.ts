// The canonical form of a workflow definition and its content hash. Two definitions that
// mean the same thing must hash the same, whichever client produced them (Python DSL, TS DSL,
// a YAML file), so that deploying unchanged content returns the existing version instead of
// making a new one. The canonical form is the proto3 JSON mapping (lowerCamelCase JSON names,
// defaults omitted) with object keys sorted, after normalizing spellings that are
// semantically identical. Order that carries meaning (params, steps, edges) is kept.
// docs/definitions.md ("Canonical form") is the user-facing description of these rules.
import { createHash } from "node:crypto";
import {
  canonicalJsonText,
  FailureMode,
  JoinMode,
  messageFromJson,
  messageToJson,
  RunStrategyMode,
  SkipPolicy,
  SplitMode,
  type Step,
  WorkflowDefinition,
} from "@kaon/proto";

export const WORKFLOW_DEFINITION_TYPE = "kaon.v1.WorkflowDefinition";
export const DEFAULT_NAMESPACE = "default";
export const DEFAULT_AXIS_NAME = "value";

export interface CanonicalDefinition {
  /** The normalized definition (what GetWorkflow returns). */
  definition: WorkflowDefinition;
  /** Canonical JSON text (what the store keeps). */
  json: string;
  /** SHA-256 of `json` (UTF-8), lowercase hex. */
  hash: string;
}

/** Normalizes, serializes and hashes a definition. Call on validated definitions only. */
export function canonicalize(def: WorkflowDefinition): CanonicalDefinition {
  const definition = normalizeDefinition(def);
  const json = canonicalJsonText(
    messageToJson(WorkflowDefinition, WORKFLOW_DEFINITION_TYPE, definition),
  );
  return { definition, json, hash: contentHash(json) };
}

export function contentHash(canonicalJson: string): string {
  return createHash("sha256").update(canonicalJson, "utf8").digest("hex");
}

/** Reads a definition back from its canonical JSON text (as stored). */
export function definitionFromCanonicalJson(json: string): WorkflowDefinition {
  return messageFromJson(WorkflowDefinition, WORKFLOW_DEFINITION_TYPE, JSON.parse(json));
}

/**
 * Returns a normalized deep copy:
 * - empty namespace → "default";
 * - enum values that the proto documents as "same as X" are stored as the unspecified value
 *   (split AND, join ALL, skip-if-outputs-exist ON_RESTART, run strategy PARALLEL, failure
 *   mode FINISH_RUNNING), so spelling the default explicitly changes nothing;
 * - messages whose every field is at its default (run_strategy, resources, an empty config)
 *   are dropped, as if unset;
 * - an unnamed foreach axis is named "value";
 * - set-like lists (retry_on, exit_codes, notification `on`) are sorted and deduplicated.
 */
export function normalizeDefinition(def: WorkflowDefinition): WorkflowDefinition {
  const copy = WorkflowDefinition.decode(WorkflowDefinition.encode(def).finish());
  if (copy.namespace === "") copy.namespace = DEFAULT_NAMESPACE;
  if (copy.failureMode === FailureMode.FAILURE_MODE_FINISH_RUNNING) {
    copy.failureMode = FailureMode.FAILURE_MODE_UNSPECIFIED;
  }
  if (copy.runStrategy) {
    if (copy.runStrategy.mode === RunStrategyMode.RUN_STRATEGY_MODE_PARALLEL) {
      copy.runStrategy.mode = RunStrategyMode.RUN_STRATEGY_MODE_UNSPECIFIED;
    }
    if (copy.runStrategy.mode === 0 && copy.runStrategy.maxConcurrentRuns === 0) {
      copy.runStrategy = undefined;
    }
  }
  for (const n of copy.notifications) n.on = sortedUnique(n.on);
  normalizeSteps(copy.steps);
  return copy;
}

function normalizeSteps(steps: Step[]): void {
  for (const step of steps) {
    if (step.split === SplitMode.SPLIT_MODE_AND) step.split = SplitMode.SPLIT_MODE_UNSPECIFIED;
    if (step.join === JoinMode.JOIN_MODE_ALL) step.join = JoinMode.JOIN_MODE_UNSPECIFIED;
    if (step.skipIfOutputsExist === SkipPolicy.SKIP_POLICY_ON_RESTART) {
      step.skipIfOutputsExist = SkipPolicy.SKIP_POLICY_UNSPECIFIED;
    }
    if (step.config && Object.keys(step.config).length === 0) step.config = undefined;
    const r = step.resources;
    if (r && r.cpus === 0 && r.memMb === 0 && r.gpus === 0 && r.diskMb === 0) {
      step.resources = undefined;
    }
    if (step.retry) {
      step.retry.retryOn = sortedUnique(step.retry.retryOn);
      step.retry.exitCodes = sortedUnique(step.retry.exitCodes);
    }
    if (step.foreach) {
      for (const axis of step.foreach.axes) if (axis.name === "") axis.name = DEFAULT_AXIS_NAME;
      normalizeSteps(step.foreach.body);
    }
    if (step.loop) normalizeSteps(step.loop.body);
  }
}

function sortedUnique<T extends string | number>(values: T[]): T[] {
  return [...new Set(values)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
