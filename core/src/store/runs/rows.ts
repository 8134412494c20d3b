// Row shapes of the run tables (migration 002), as the engine writes them. Column order in
// these tuples is the order of the INSERT statements in ./batch-writer.ts; keeping rows as
// tuples lets the hot path hand them straight to prepared statements without copying.

/** runs: id .. priority, in RUN_COLUMNS order. */
export type RunRow = [
  id: string,
  workflowId: string,
  version: number,
  namespace: string,
  status: number,
  paramsJson: string,
  initiatorJson: string,
  tagsJson: string,
  createdAt: number,
  startedAt: number | null,
  endedAt: number | null,
  message: string,
  stepCountsJson: string,
  runTs: number,
  outputsJson: string,
  restartCount: number,
  requestId: string | null,
  parentRunId: string | null,
  priority: number,
];
export const RUN_COLUMNS = [
  "id",
  "workflow_id",
  "version",
  "namespace",
  "status",
  "params_json",
  "initiator_json",
  "tags_json",
  "created_at",
  "started_at",
  "ended_at",
  "message",
  "step_counts_json",
  "run_ts",
  "outputs_json",
  "restart_count",
  "request_id",
  "parent_run_id",
  "priority",
] as const;

export type StepRow = [
  runId: string,
  path: string,
  sortKey: string,
  stepId: string,
  type: string,
  status: number,
  reason: string,
  paramsJson: string,
  outputsJson: string,
  attemptCount: number,
  progress: number,
  message: string,
  readyAt: number | null,
  startedAt: number | null,
  endedAt: number | null,
  childCountsJson: string,
  loopIteration: number,
  reportsJson: string,
  stateJson: string,
];
export const STEP_COLUMNS = [
  "run_id",
  "path",
  "sort_key",
  "step_id",
  "type",
  "status",
  "reason",
  "params_json",
  "outputs_json",
  "attempt_count",
  "progress",
  "message",
  "ready_at",
  "started_at",
  "ended_at",
  "child_counts_json",
  "loop_iteration",
  "reports_json",
  "state_json",
] as const;

export type AttemptRow = [
  runId: string,
  path: string,
  number: number,
  status: number,
  taskId: string,
  agentId: string,
  resourcesJson: string,
  exitCode: number,
  startedAt: number | null,
  endedAt: number | null,
  message: string,
  reportSeq: number,
];
export const ATTEMPT_COLUMNS = [
  "run_id",
  "path",
  "number",
  "status",
  "task_id",
  "agent_id",
  "resources_json",
  "exit_code",
  "started_at",
  "ended_at",
  "message",
  "report_seq",
] as const;

/** Event kinds stored in run_events.kind. */
export const EventKind = {
  runStatus: 1,
  stepStatus: 2,
  attempt: 3,
  report: 4,
  artifact: 5,
  /**
   * Two events in one row: an attempt event (seq - 1; its data in data_json, its message in
   * the data's `message`) and the step-status event that followed it (seq, status, message).
   * The journal folds them (engine/journal.ts); run-queries.ts expands them again.
   */
  attemptAndStep: 6,
} as const;

export type EventRow = [
  runId: string,
  seq: number,
  time: number,
  path: string,
  kind: number,
  status: number,
  message: string,
  dataJson: string | null,
];
export const EVENT_COLUMNS = [
  "run_id",
  "seq",
  "time",
  "path",
  "kind",
  "status",
  "message",
  "data_json",
] as const;

export type ImageRow = [runId: string, path: string, name: string, mimeType: string, data: Buffer];
export const IMAGE_COLUMNS = ["run_id", "path", "name", "mime_type", "data"] as const;

export type ArtifactRow = [
  namespace: string,
  name: string,
  partitionKey: string,
  partitionsJson: string,
  uri: string,
  metadataJson: string,
  producerRunId: string,
  producerPath: string,
  announcedAt: number,
  revision: number,
];
export const ARTIFACT_COLUMNS = [
  "namespace",
  "name",
  "partition_key",
  "partitions_json",
  "uri",
  "metadata_json",
  "producer_run_id",
  "producer_path",
  "announced_at",
  "revision",
] as const;

/** Everything one group commit writes, in one transaction. */
export interface WriteBatch {
  runs: RunRow[];
  steps: StepRow[];
  /**
   * Step rows the engine already wrote (or loaded): on SQLite an UPDATE of the columns that
   * change, which leaves the sort-order index alone and is cheaper than an upsert; a row that
   * turns out to be missing is upserted like `steps`.
   */
  stepUpdates: StepRow[];
  attempts: AttemptRow[];
  /** Attempt rows already written, like `stepUpdates`. */
  attemptUpdates: AttemptRow[];
  events: EventRow[];
  images: ImageRow[];
  artifacts: ArtifactRow[];
  requestKeys: Array<[key: string, resultJson: string, createdAt: number]>;
  /** Step rows removed before the upserts, in the same transaction (a restart's old iterations). */
  stepDeletes?: Array<[runId: string, path: string]>;
}

export function emptyBatch(): WriteBatch {
  return {
    runs: [],
    steps: [],
    stepUpdates: [],
    attempts: [],
    attemptUpdates: [],
    events: [],
    images: [],
    artifacts: [],
    requestKeys: [],
  };
}

export function batchSize(b: WriteBatch): number {
  return (
    b.runs.length +
    b.steps.length +
    b.stepUpdates.length +
    b.attempts.length +
    b.attemptUpdates.length +
    b.events.length +
    b.images.length +
    b.artifacts.length +
    b.requestKeys.length +
    (b.stepDeletes?.length ?? 0)
  );
}
