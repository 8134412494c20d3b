// Cold-path reads of the run tables through knex: runs, step instances, attempts, events,
// artifacts. Everything the API serves about finished or live runs comes from here — the
// database is the source of truth; the engine only overlays live step counts. Results are
// API messages (ts-proto shapes) so the services stay thin.
import {
  type Artifact,
  type Attempt,
  type Initiator,
  type ReportItem,
  type Run,
  type RunEvent,
  type RunStatus,
  type StepInstance,
  StepStatus,
} from "@kaon/proto";
import type { Knex } from "knex";
import { EventKind } from "./rows.js";

export interface RunRecordRow {
  id: string;
  workflow_id: string;
  version: number;
  namespace: string;
  status: number;
  params_json: string;
  initiator_json: string;
  tags_json: string;
  created_at: number;
  started_at: number | null;
  ended_at: number | null;
  message: string;
  step_counts_json: string;
  run_ts: number;
  outputs_json: string;
  restart_count: number;
  request_id: string | null;
  parent_run_id: string | null;
  priority: number;
}

export interface StepRecordRow {
  run_id: string;
  path: string;
  sort_key: string;
  step_id: string;
  type: string;
  status: number;
  reason: string;
  params_json: string;
  outputs_json: string;
  attempt_count: number;
  progress: number;
  message: string;
  ready_at: number | null;
  started_at: number | null;
  ended_at: number | null;
  child_counts_json: string;
  loop_iteration: number;
  reports_json: string;
  state_json: string;
}

export interface AttemptRecordRow {
  run_id: string;
  path: string;
  number: number;
  status: number;
  task_id: string;
  agent_id: string;
  resources_json: string;
  exit_code: number;
  started_at: number | null;
  ended_at: number | null;
  message: string;
  report_seq: number;
}

interface EventRecordRow {
  run_id: string;
  seq: number;
  time: number;
  path: string;
  kind: number;
  status: number;
  message: string;
  data_json: string | null;
}

interface ArtifactRecordRow {
  id: number;
  namespace: string;
  name: string;
  partition_key: string;
  partitions_json: string;
  uri: string;
  metadata_json: string;
  producer_run_id: string;
  producer_path: string;
  announced_at: number;
  revision: number;
}

const date = (ms: number | null | undefined): Date | undefined =>
  ms === null || ms === undefined ? undefined : new Date(Number(ms));

export function runFromRow(r: RunRecordRow): Run {
  return {
    id: r.id,
    workflowId: r.workflow_id,
    version: r.version,
    namespace: r.namespace,
    status: r.status as RunStatus,
    params: JSON.parse(r.params_json),
    initiator: JSON.parse(r.initiator_json) as Initiator,
    tags: JSON.parse(r.tags_json),
    createdAt: date(r.created_at),
    startedAt: date(r.started_at),
    endedAt: date(r.ended_at),
    message: r.message,
    stepCounts: JSON.parse(r.step_counts_json),
    runTs: Number(r.run_ts),
    outputs: JSON.parse(r.outputs_json),
    restartCount: r.restart_count,
  };
}

export function stepFromRow(r: StepRecordRow): StepInstance {
  const reports = JSON.parse(r.reports_json) as {
    milestones?: Array<{ name: string; time: number }>;
    links?: Array<{ name: string; url: string }>;
    counters?: Record<string, number>;
    images?: Array<{ name: string; mimeType: string }>;
    messages?: Array<{ level: number; text: string; time: number }>;
  };
  return {
    runId: r.run_id,
    path: r.path,
    stepId: r.step_id,
    type: r.type,
    status: r.status as StepStatus,
    reason: r.reason,
    params: JSON.parse(r.params_json),
    outputs: JSON.parse(r.outputs_json),
    attemptCount: r.attempt_count,
    progress: r.progress,
    message: r.message,
    readyAt: date(r.ready_at),
    startedAt: date(r.started_at),
    endedAt: date(r.ended_at),
    childCounts: JSON.parse(r.child_counts_json),
    loopIteration: r.loop_iteration,
    reports: {
      milestones: (reports.milestones ?? []).map((m) => ({ name: m.name, time: new Date(m.time) })),
      links: reports.links ?? [],
      counters: reports.counters ?? {},
      images: (reports.images ?? []).map((i) => ({
        name: i.name,
        mimeType: i.mimeType,
        data: new Uint8Array(),
      })),
      messages: (reports.messages ?? []).map((m) => ({
        level: m.level,
        text: m.text,
        time: new Date(m.time),
      })),
    },
  };
}

export function attemptFromRow(r: AttemptRecordRow): Attempt {
  return {
    runId: r.run_id,
    path: r.path,
    number: r.number,
    status: r.status,
    taskId: r.task_id,
    agentId: r.agent_id,
    resources: JSON.parse(r.resources_json),
    exitCode: r.exit_code,
    startedAt: date(r.started_at),
    endedAt: date(r.ended_at),
    message: r.message,
  };
}

function eventFromRow(r: EventRecordRow): RunEvent {
  const base = {
    seq: Number(r.seq),
    runId: r.run_id,
    time: new Date(Number(r.time)),
    path: r.path,
    message: r.message,
  };
  switch (r.kind) {
    case EventKind.runStatus:
      return { ...base, kind: { $case: "runStatus", value: r.status } };
    case EventKind.stepStatus:
      return { ...base, kind: { $case: "stepStatus", value: r.status } };
    case EventKind.attempt: {
      const a = JSON.parse(r.data_json ?? "{}") as AttemptRecordRow;
      return { ...base, kind: { $case: "attempt", value: attemptFromRow(a) } };
    }
    case EventKind.report:
      return { ...base, kind: { $case: "report", value: reportFromJson(r.data_json ?? "{}") } };
    case EventKind.artifact:
      return { ...base, kind: { $case: "artifact", value: r.data_json ?? "" } };
    default:
      return base;
  }
}

/** Report items are stored in a compact JSON form; see engine reportToJson. */
function reportFromJson(text: string): ReportItem {
  const j = JSON.parse(text) as Record<string, unknown> & { k: string };
  switch (j.k) {
    case "output":
      return { kind: { $case: "output", value: { name: j.n as string, value: j.v } } };
    case "progress":
      return {
        kind: {
          $case: "progress",
          value: { percent: j.p as number, message: (j.m as string) ?? "" },
        },
      };
    case "milestone":
      return { kind: { $case: "milestone", value: j.n as string } };
    case "link":
      return { kind: { $case: "link", value: { name: j.n as string, url: j.u as string } } };
    case "counter":
      return { kind: { $case: "counter", value: { name: j.n as string, delta: j.d as number } } };
    case "image":
      return {
        kind: {
          $case: "image",
          value: { name: j.n as string, mimeType: j.t as string, data: new Uint8Array() },
        },
      };
    case "message":
      return {
        kind: {
          $case: "message",
          value: { level: j.l as number, text: j.x as string, time: new Date(j.ts as number) },
        },
      };
    default:
      return { kind: { $case: "heartbeat", value: true } };
  }
}

export function partitionKey(partitions: Record<string, string>): string {
  return Object.keys(partitions)
    .sort()
    .map((k) => `${k}=${partitions[k]}`)
    .join(",");
}

export function artifactFromRow(r: ArtifactRecordRow): Artifact {
  return {
    name: r.name,
    partitions: JSON.parse(r.partitions_json),
    uri: r.uri,
    metadata: JSON.parse(r.metadata_json),
    namespace: r.namespace,
    producerRunId: r.producer_run_id,
    producerPath: r.producer_path,
    announcedAt: new Date(Number(r.announced_at)),
    revision: Number(r.revision),
  };
}

export interface RunListFilter {
  workflowId?: string;
  statuses?: number[];
  createdAfter?: number;
  createdBefore?: number;
  namespace?: string;
  /** Cursor: (created_at, id) of the last item of the previous page. */
  after?: { createdAt: number; id: string };
  limit: number;
}

export interface StepListFilter {
  runId: string;
  statuses?: number[];
  pathPrefix?: string;
  afterSortKey?: string;
  limit: number;
}

export class RunQueries {
  constructor(readonly db: Knex) {}

  async runRow(id: string): Promise<RunRecordRow | undefined> {
    return (await this.db("runs").where({ id }).first()) as RunRecordRow | undefined;
  }

  async runByRequestId(workflowId: string, requestId: string): Promise<RunRecordRow | undefined> {
    return (await this.db("runs")
      .where({ workflow_id: workflowId, request_id: requestId })
      .first()) as RunRecordRow | undefined;
  }

  async unfinishedRunRows(): Promise<RunRecordRow[]> {
    return (await this.db("runs")
      .whereIn("status", [1, 2])
      .orderBy("created_at")) as RunRecordRow[];
  }

  async listRuns(f: RunListFilter): Promise<RunRecordRow[]> {
    const q = this.db("runs");
    if (f.workflowId) q.where("workflow_id", f.workflowId);
    if (f.namespace) q.where("namespace", f.namespace);
    if (f.statuses && f.statuses.length > 0) q.whereIn("status", f.statuses);
    if (f.createdAfter !== undefined) q.where("created_at", ">=", f.createdAfter);
    if (f.createdBefore !== undefined) q.where("created_at", "<", f.createdBefore);
    if (f.after) {
      const { createdAt, id } = f.after;
      q.where((w) =>
        w
          .where("created_at", "<", createdAt)
          .orWhere((w2) => w2.where("created_at", createdAt).andWhere("id", "<", id)),
      );
    }
    return (await q
      .orderBy([
        { column: "created_at", order: "desc" },
        { column: "id", order: "desc" },
      ])
      .limit(f.limit)) as RunRecordRow[];
  }

  async stepRows(runId: string): Promise<StepRecordRow[]> {
    return (await this.db("step_instances")
      .where({ run_id: runId })
      .orderBy("sort_key")) as StepRecordRow[];
  }

  async stepRow(runId: string, path: string): Promise<StepRecordRow | undefined> {
    return (await this.db("step_instances").where({ run_id: runId, path }).first()) as
      | StepRecordRow
      | undefined;
  }

  async listSteps(f: StepListFilter): Promise<StepRecordRow[]> {
    const q = this.db("step_instances").where("run_id", f.runId);
    if (f.statuses && f.statuses.length > 0) q.whereIn("status", f.statuses);
    if (f.pathPrefix)
      q.where("path", ">=", f.pathPrefix).andWhere("path", "<", `${f.pathPrefix}\uffff`);
    if (f.afterSortKey !== undefined) q.where("sort_key", ">", f.afterSortKey);
    return (await q.orderBy("sort_key").limit(f.limit)) as StepRecordRow[];
  }

  async attemptRows(runId: string, path?: string): Promise<AttemptRecordRow[]> {
    const q = this.db("attempts").where("run_id", runId);
    if (path !== undefined) q.where("path", path);
    return (await q.orderBy([{ column: "path" }, { column: "number" }])) as AttemptRecordRow[];
  }

  /** Attempts still LAUNCHING or RUNNING (recovery). */
  async liveAttemptRows(runId: string): Promise<AttemptRecordRow[]> {
    return (await this.db("attempts")
      .where("run_id", runId)
      .whereIn("status", [1, 2])) as AttemptRecordRow[];
  }

  async maxSeq(runId: string): Promise<number> {
    const row = (await this.db("run_events").where({ run_id: runId }).max({ m: "seq" }).first()) as
      | { m: number | null }
      | undefined;
    return Number(row?.m ?? 0);
  }

  async events(runId: string, afterSeq: number, limit: number): Promise<RunEvent[]> {
    const rows = (await this.db("run_events")
      .where("run_id", runId)
      .andWhere("seq", ">", afterSeq)
      .orderBy("seq")
      .limit(limit)) as EventRecordRow[];
    const out: RunEvent[] = [];
    for (const r of rows) {
      if (r.kind !== EventKind.attemptAndStep) {
        out.push(eventFromRow(r));
        continue;
      }
      // A folded pair (rows.ts): its attempt half is seq - 1, which a resumed watch may
      // already have seen.
      const attempt = JSON.parse(r.data_json ?? "{}") as AttemptRecordRow;
      const seq = Number(r.seq);
      if (seq - 1 > afterSeq) {
        out.push({
          seq: seq - 1,
          runId: r.run_id,
          time: new Date(Number(r.time)),
          path: r.path,
          message: attempt.message ?? "",
          kind: { $case: "attempt", value: attemptFromRow(attempt) },
        });
      }
      out.push(eventFromRow({ ...r, kind: EventKind.stepStatus, data_json: null }));
    }
    // Pairs can make more events than rows; the caller resumes after the last one it got.
    if (out.length > limit) out.length = limit;
    return out;
  }

  async image(runId: string, path: string, name: string): Promise<Uint8Array | undefined> {
    const row = (await this.db("step_images").where({ run_id: runId, path, name }).first()) as
      | { data: Buffer }
      | undefined;
    return row ? new Uint8Array(row.data) : undefined;
  }

  async latestArtifact(
    namespace: string,
    name: string,
    partitions: Record<string, string>,
  ): Promise<Artifact | undefined> {
    const row = (await this.db("artifacts")
      .where({ namespace, name, partition_key: partitionKey(partitions) })
      .orderBy("revision", "desc")
      .first()) as ArtifactRecordRow | undefined;
    return row ? artifactFromRow(row) : undefined;
  }

  async maxRevision(namespace: string, name: string, key: string): Promise<number> {
    const row = (await this.db("artifacts")
      .where({ namespace, name, partition_key: key })
      .max({ m: "revision" })
      .first()) as { m: number | null } | undefined;
    return Number(row?.m ?? 0);
  }

  /** Latest revision of each partition, newest first. */
  async listArtifacts(f: {
    name?: string;
    namespace?: string;
    partitions?: Record<string, string>;
    afterId?: number;
    limit: number;
  }): Promise<Array<Artifact & { id: number }>> {
    const q = this.db("artifacts as a").whereNotExists(
      this.db("artifacts as b")
        .whereRaw(
          "b.namespace = a.namespace and b.name = a.name and b.partition_key = a.partition_key and b.revision > a.revision",
        )
        .select(this.db.raw("1")),
    );
    if (f.name) q.where("a.name", f.name);
    if (f.namespace) q.where("a.namespace", f.namespace);
    if (f.afterId !== undefined) q.where("a.id", "<", f.afterId);
    // Partition filters match `k=v` inside the canonical key; checked exactly below.
    const rows = (await q
      .select("a.*")
      .orderBy("a.id", "desc")
      .limit(f.partitions ? f.limit * 20 : f.limit)) as ArtifactRecordRow[];
    const matching = rows.filter((r) =>
      matchesPartitions(JSON.parse(r.partitions_json), f.partitions),
    );
    return matching.slice(0, f.limit).map((r) => ({ ...artifactFromRow(r), id: r.id }));
  }

  async artifactHistory(f: {
    name: string;
    namespace: string;
    partitions?: Record<string, string>;
    limit: number;
  }): Promise<Artifact[]> {
    const rows = (await this.db("artifacts")
      .where({ name: f.name, namespace: f.namespace })
      .orderBy("id", "asc")) as ArtifactRecordRow[];
    return rows
      .filter((r) => matchesPartitions(JSON.parse(r.partitions_json), f.partitions))
      .slice(0, f.limit)
      .map(artifactFromRow);
  }

  async requestKey(key: string): Promise<string | undefined> {
    const row = (await this.db("request_keys").where({ key }).first()) as
      | { result_json: string }
      | undefined;
    return row?.result_json;
  }
}

export function matchesPartitions(
  have: Record<string, string>,
  want: Record<string, string> | undefined,
): boolean {
  if (!want) return true;
  for (const [k, v] of Object.entries(want)) if (have[k] !== v) return false;
  return true;
}

export const TERMINAL_STEP_STATUSES = [
  StepStatus.STEP_STATUS_SUCCEEDED,
  StepStatus.STEP_STATUS_FAILED,
  StepStatus.STEP_STATUS_SKIPPED,
  StepStatus.STEP_STATUS_STOPPED,
  StepStatus.STEP_STATUS_TIMED_OUT,
];
