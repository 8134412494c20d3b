// RunService (run_service.proto): starts, observes and steers runs. Writes go through the
// engine (which journals them); reads come from the database through RunQueries, with live
// step counts overlaid for runs the engine holds. Streams (WatchRun, TailLogs) are
// event-driven: they re-read after the engine's notifier says something committed, and end
// when the run (or attempt) ends.
import { closeSync, openSync, readSync, statSync, watch } from "node:fs";
import { join } from "node:path";
import {
  ArtifactServiceDefinition,
  InitiatorKind,
  JobServiceDefinition,
  LogStream,
  RestartFrom,
  type Run,
  RunServiceDefinition,
  RunStatus,
  type StepInstance,
} from "@kaon/proto";
import type { ServiceImplementation } from "nice-grpc";
import { ATTEMPT_STDERR, ATTEMPT_STDOUT, attemptLogFile } from "../engine/attempt-layout.js";
import { type Engine, EngineError } from "../engine/engine.js";
import { attemptKey, runKey } from "../engine/notifier.js";
import { attemptFromRow, runFromRow, stepFromRow } from "../store/runs/run-queries.js";
import { createArtifactService } from "./artifact-service.js";
import type { CallContextExt } from "./auth.js";
import { InvalidArgumentError, ServerError, Status } from "./errors.js";
import { createJobService } from "./job-service.js";
import { registerService, type ServiceRegistration } from "./registration.js";

export function toApiError(err: unknown): unknown {
  if (!(err instanceof EngineError)) return err;
  switch (err.code) {
    case "INVALID_ARGUMENT":
      return new InvalidArgumentError(err.message, err.violations);
    case "NOT_FOUND":
      return new ServerError(Status.NOT_FOUND, err.message);
    case "FAILED_PRECONDITION":
      return new ServerError(Status.FAILED_PRECONDITION, err.message);
    case "PERMISSION_DENIED":
      return new ServerError(Status.PERMISSION_DENIED, err.message);
    case "UNAVAILABLE":
      return new ServerError(Status.UNAVAILABLE, err.message);
    default:
      return err;
  }
}

/** Awaits `fn`, rethrowing engine errors as API errors. */
export async function engineCall<T>(fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw toApiError(err);
  }
}

export function encodePageToken(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/**
 * Decodes a token made by encodePageToken. A token is an object of strings and finite numbers;
 * with `shape`, each named field must be there with that type. Anything else (garbage, a crafted
 * token of the wrong shape that would reach the query as an undefined binding) is the same
 * INVALID_ARGUMENT.
 */
export function decodePageToken<T>(
  token: string,
  field = "page_token",
  shape?: Record<string, "string" | "number">,
): T | undefined {
  if (!token) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error();
    const fields = value as Record<string, unknown>;
    for (const v of Object.values(fields)) {
      if (typeof v !== "string" && !(typeof v === "number" && Number.isFinite(v)))
        throw new Error();
    }
    for (const [name, type] of Object.entries(shape ?? {})) {
      if (typeof fields[name] !== type) throw new Error();
    }
    return value as T;
  } catch {
    throw new InvalidArgumentError(`invalid ${field}`, [
      {
        field,
        description: `'${token.slice(0, 40)}' is not a page token of this list`,
        hint: "pass next_page_token from the previous response unchanged",
      },
    ]);
  }
}

export function pageSize(requested: number, max = 1000, fallback = 100): number {
  if (!requested || requested <= 0) return fallback;
  return Math.min(requested, max);
}

function requireField(value: string, field: string, what: string): void {
  if (!value) {
    throw new InvalidArgumentError(`${field} is required`, [
      { field, description: `${field} is empty`, hint: `pass the ${what}` },
    ]);
  }
}

const TERMINAL_RUN = new Set<number>([
  RunStatus.RUN_STATUS_SUCCEEDED,
  RunStatus.RUN_STATUS_FAILED,
  RunStatus.RUN_STATUS_STOPPED,
  RunStatus.RUN_STATUS_TIMED_OUT,
]);

const LOG_CHUNK = 64 * 1024;

export interface RunServiceOptions {
  engine: Engine;
  /** The server's data directory (attempt logs live under `<dataDir>/runs`). */
  dataDir: string;
}

export function createRunService(
  options: RunServiceOptions,
): ServiceImplementation<typeof RunServiceDefinition, CallContextExt> {
  const { engine, dataDir } = options;
  const q = engine.queries;

  async function getRun(runId: string): Promise<Run> {
    const row = await q.runRow(runId);
    if (!row) throw new ServerError(Status.NOT_FOUND, `run '${runId}' does not exist`);
    const run = runFromRow(row);
    const counts = engine.liveStepCounts(runId);
    if (counts) run.stepCounts = counts;
    return run;
  }

  async function getStep(runId: string, path: string): Promise<StepInstance> {
    const row = await q.stepRow(runId, path);
    if (!row) {
      if (!(await q.runRow(runId)))
        throw new ServerError(Status.NOT_FOUND, `run '${runId}' does not exist`);
      throw new ServerError(Status.NOT_FOUND, `run '${runId}' has no step instance '${path}'`);
    }
    return stepFromRow(row);
  }

  return {
    async startRun(req) {
      requireField(req.workflowId, "workflow_id", "workflow id");
      const sel = req.version?.selector;
      const version =
        sel?.$case === "number" ? sel.value : sel?.$case === "latest" && sel.value ? -1 : 0;
      if (sel?.$case === "number" && sel.value <= 0) {
        throw new InvalidArgumentError("invalid version", [
          {
            field: "version.number",
            description: `version ${sel.value} does not exist`,
            hint: "versions start at 1",
          },
        ]);
      }
      const { runId, created } = await engineCall(() =>
        engine.startRun({
          workflowId: req.workflowId,
          version,
          params: req.params,
          tags: req.tags,
          ...(req.requestId ? { requestId: req.requestId } : {}),
          initiator: {
            kind: InitiatorKind.INITIATOR_KIND_MANUAL,
            detail: req.client?.user ?? "",
            parentRunId: "",
            client: req.client,
          },
          runTs: req.runTs,
        }),
      );
      return { run: await getRun(runId), created };
    },

    async getRun(req) {
      requireField(req.runId, "run_id", "run id");
      return { run: await getRun(req.runId) };
    },

    async listRuns(req) {
      const limit = pageSize(req.pageSize);
      const after = decodePageToken<{ c: number; i: string }>(req.pageToken, "page_token", {
        c: "number",
        i: "string",
      });
      const rows = await q.listRuns({
        ...(req.workflowId ? { workflowId: req.workflowId } : {}),
        ...(req.namespace ? { namespace: req.namespace } : {}),
        ...(req.statuses.length > 0 ? { statuses: req.statuses } : {}),
        ...(req.createdAfter ? { createdAfter: req.createdAfter.getTime() } : {}),
        ...(req.createdBefore ? { createdBefore: req.createdBefore.getTime() } : {}),
        ...(after ? { after: { createdAt: after.c, id: after.i } } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const runs = page.map((r) => {
        const run = runFromRow(r);
        const counts = engine.liveStepCounts(r.id);
        if (counts) run.stepCounts = counts;
        return run;
      });
      return {
        runs,
        nextPageToken:
          rows.length > limit && last
            ? encodePageToken({ c: Number(last.created_at), i: last.id })
            : "",
      };
    },

    async *watchRun(req, context) {
      requireField(req.runId, "run_id", "run id");
      if (!(await q.runRow(req.runId))) {
        throw new ServerError(Status.NOT_FOUND, `run '${req.runId}' does not exist`);
      }
      let after = Number(req.afterSeq) || 0;
      let dirty = true;
      let wake: (() => void) | undefined;
      const signal = context.signal;
      const off = engine.notifier.subscribe(runKey(req.runId), () => {
        dirty = true;
        wake?.();
      });
      const onAbort = () => wake?.();
      signal.addEventListener("abort", onAbort);
      try {
        while (!signal.aborted) {
          if (!dirty) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
            continue;
          }
          dirty = false;
          for (;;) {
            const events = await q.events(req.runId, after, 1000);
            if (events.length === 0) break;
            after = (events[events.length - 1] as (typeof events)[number]).seq;
            yield { events, run: await getRun(req.runId) };
            if (signal.aborted) return;
          }
          const run = await getRun(req.runId);
          if (TERMINAL_RUN.has(run.status) && !engine.isLive(req.runId)) {
            // Anything committed with the terminal status was read above; one more look in
            // case the final batch landed between the read and the status check.
            const tail = await q.events(req.runId, after, 1000);
            if (tail.length > 0) {
              after = (tail[tail.length - 1] as (typeof tail)[number]).seq;
              yield { events: tail, run };
            }
            return;
          }
        }
      } finally {
        off();
        signal.removeEventListener("abort", onAbort);
      }
    },

    async stopRun(req) {
      requireField(req.runId, "run_id", "run id");
      const run = await getRun(req.runId);
      if (!TERMINAL_RUN.has(run.status)) {
        engine.stopRun(req.runId, req.reason || "stopped by request");
        await engineCall(() => engine.flushed());
      }
      return { run: await getRun(req.runId) };
    },

    async restartRun(req) {
      requireField(req.runId, "run_id", "run id");
      const from =
        req.from === RestartFrom.RESTART_FROM_STEP
          ? "step"
          : req.from === RestartFrom.RESTART_FROM_BEGINNING
            ? "beginning"
            : "failed";
      if (from === "step") requireField(req.stepId, "step_id", "top-level step id to restart from");
      if (req.requestId) {
        const done = await q.requestKey(`restart:${req.runId}:${req.requestId}`);
        if (done) return { run: await getRun(req.runId) };
      }
      await engineCall(() =>
        engine.restartRun({ runId: req.runId, from, stepId: req.stepId, params: req.params }),
      );
      if (req.requestId)
        await engineCall(() => engine.recordRequest(`restart:${req.runId}:${req.requestId}`, "{}"));
      return { run: await getRun(req.runId) };
    },

    async backfill(req) {
      requireField(req.workflowId, "workflow_id", "workflow id");
      const step = Number(req.stepMs) || 86_400_000;
      const start = Number(req.startTs);
      const end = Number(req.endTs);
      if (!Number.isFinite(step) || step < 1) {
        // A negative step would count down from start forever, starting runs as it goes.
        throw new InvalidArgumentError("invalid backfill step", [
          {
            field: "step_ms",
            description: `step ${req.stepMs} ms is not positive`,
            hint: "set step_ms to the interval between runs (default one day, 86400000)",
          },
        ]);
      }
      if (!start || !end || end < start) {
        throw new InvalidArgumentError("invalid backfill range", [
          {
            field: "end_ts",
            description: `range ${start}..${end} is empty`,
            hint: "set start_ts <= end_ts (epoch ms)",
          },
        ]);
      }
      if ((end - start) / step > 10_000) {
        throw new InvalidArgumentError("backfill range too large", [
          {
            field: "step_ms",
            description: `${Math.floor((end - start) / step) + 1} runs requested`,
            hint: "at most 10000 runs per backfill",
          },
        ]);
      }
      const runs: Run[] = [];
      for (let ts = start; ts <= end; ts += step) {
        const { runId } = await engineCall(() =>
          engine.startRun({
            workflowId: req.workflowId,
            version: 0,
            params: req.params,
            ...(req.requestId ? { requestId: `${req.requestId}:${ts}` } : {}),
            initiator: {
              kind: InitiatorKind.INITIATOR_KIND_BACKFILL,
              detail: new Date(ts).toISOString(),
              parentRunId: "",
              client: undefined,
            },
            runTs: ts,
          }),
        );
        runs.push(await getRun(runId));
      }
      return { runs };
    },

    async getStep(req) {
      requireField(req.runId, "run_id", "run id");
      requireField(req.path, "path", "step instance path");
      const step = await getStep(req.runId, req.path);
      for (const image of step.reports?.images ?? []) {
        image.data = (await q.image(req.runId, req.path, image.name)) ?? new Uint8Array();
      }
      const attempts = (await q.attemptRows(req.runId, req.path)).map(attemptFromRow);
      return { step, attempts };
    },

    async listSteps(req) {
      requireField(req.runId, "run_id", "run id");
      const limit = pageSize(req.pageSize);
      const after = decodePageToken<{ k: string }>(req.pageToken, "page_token", { k: "string" });
      const rows = await q.listSteps({
        runId: req.runId,
        ...(req.statuses.length > 0 ? { statuses: req.statuses } : {}),
        ...(req.pathPrefix ? { pathPrefix: req.pathPrefix } : {}),
        ...(after ? { afterSortKey: after.k } : {}),
        limit: limit + 1,
      });
      if (rows.length === 0 && !after && !(await q.runRow(req.runId))) {
        throw new ServerError(Status.NOT_FOUND, `run '${req.runId}' does not exist`);
      }
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        steps: page.map(stepFromRow),
        nextPageToken: rows.length > limit && last ? encodePageToken({ k: last.sort_key }) : "",
      };
    },

    async stopStep(req) {
      requireField(req.runId, "run_id", "run id");
      requireField(req.path, "path", "step instance path");
      await getStep(req.runId, req.path);
      if (engine.stopStep(req.runId, req.path)) await engineCall(() => engine.flushed());
      return { step: await getStep(req.runId, req.path) };
    },

    async retryStep(req) {
      requireField(req.runId, "run_id", "run id");
      requireField(req.path, "path", "step instance path");
      await engineCall(() => engine.retryStep(req.runId, req.path));
      return { step: await getStep(req.runId, req.path) };
    },

    async *tailLogs(req, context) {
      requireField(req.runId, "run_id", "run id");
      requireField(req.path, "path", "step instance path");
      const step = await getStep(req.runId, req.path);
      const number = req.attempt > 0 ? req.attempt : step.attemptCount;
      if (number <= 0) {
        throw new ServerError(
          Status.FAILED_PRECONDITION,
          `step '${req.path}' has not started an attempt yet`,
        );
      }
      const attempts = await q.attemptRows(req.runId, req.path);
      if (!attempts.some((a) => a.number === number) && req.attempt > 0) {
        throw new ServerError(Status.NOT_FOUND, `step '${req.path}' has no attempt ${number}`);
      }
      const file = attemptLogFile(
        dataDir,
        req.runId,
        req.path,
        number,
        req.stream === LogStream.LOG_STREAM_STDERR ? ATTEMPT_STDERR : ATTEMPT_STDOUT,
      );
      const size = () => {
        try {
          return statSync(file).size;
        } catch {
          return 0;
        }
      };
      let offset = Number(req.offset) || 0;
      if (offset < 0) offset = Math.max(0, size() + offset);
      const identity = { runId: req.runId, path: req.path, attempt: number };
      const live = () => engine.isAttemptLive(identity);
      const readMore = function* (): Generator<{ data: Uint8Array; nextOffset: number }> {
        let fd: number;
        try {
          fd = openSync(file, "r");
        } catch {
          return;
        }
        try {
          for (;;) {
            const buf = Buffer.alloc(LOG_CHUNK);
            const n = readSync(fd, buf, 0, LOG_CHUNK, offset);
            if (n <= 0) return;
            offset += n;
            yield { data: buf.subarray(0, n), nextOffset: offset };
          }
        } finally {
          closeSync(fd);
        }
      };
      yield* readMore();
      if (!req.follow) return;
      const signal = context.signal;
      let dirty = false;
      let wake: (() => void) | undefined;
      const poke = () => {
        dirty = true;
        wake?.();
      };
      const off = engine.notifier.subscribe(attemptKey(req.runId, req.path, number), poke);
      let watcher: ReturnType<typeof watch> | undefined;
      const watchFile = () => {
        if (watcher) return;
        try {
          watcher = watch(file, poke);
          watcher.on("error", () => {});
        } catch {
          watcher = undefined;
        }
      };
      watchFile();
      // The file may not exist yet: watch its directory until it appears.
      let dirWatcher: ReturnType<typeof watch> | undefined;
      if (!watcher) {
        try {
          dirWatcher = watch(join(file, ".."), () => {
            watchFile();
            poke();
          });
          dirWatcher.on("error", () => {});
        } catch {
          dirWatcher = undefined;
        }
      }
      signal.addEventListener("abort", poke);
      try {
        while (!signal.aborted) {
          yield* readMore();
          if (!live()) {
            yield* readMore();
            return;
          }
          if (!dirty) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
          }
          dirty = false;
        }
      } finally {
        off();
        watcher?.close();
        dirWatcher?.close();
        signal.removeEventListener("abort", poke);
      }
    },
  };
}

/** The engine's three services, ready for startServer (the composition root adds them). */
export function engineServices(engine: Engine, dataDir: string): ServiceRegistration[] {
  return [
    registerService(RunServiceDefinition, createRunService({ engine, dataDir })),
    registerService(JobServiceDefinition, createJobService({ engine })),
    registerService(ArtifactServiceDefinition, createArtifactService({ engine })),
  ];
}
