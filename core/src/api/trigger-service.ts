// TriggerService (trigger_service.proto): sends named signals and lists, enables and disables
// the triggers of active workflow versions. The work is the trigger manager's
// (core/src/triggers/trigger-manager.ts); this module checks requests, pages, and turns the
// manager's outcomes into API messages and errors.
import type { Run, TriggerServiceDefinition, TriggerState } from "@kaon/proto";
import type { ServiceImplementation } from "nice-grpc";
import type { Engine } from "../engine/engine.js";
import { runFromRow } from "../store/runs/run-queries.js";
import {
  type TriggerManager,
  TriggerNotFoundError,
  type TriggerView,
} from "../triggers/trigger-manager.js";
import type { CallContextExt } from "./auth.js";
import { InvalidArgumentError, ServerError, Status, violation } from "./errors.js";
import { decodePageToken, encodePageToken, pageSize } from "./run-service.js";

const SIGNAL_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const MAX_REQUEST_ID = 128;

export interface TriggerServiceOptions {
  triggers: TriggerManager;
  engine: Pick<Engine, "queries" | "liveStepCounts">;
}

function toState(v: TriggerView): TriggerState {
  return {
    workflowId: v.workflowId,
    trigger: v.trigger,
    enabled: v.enabled,
    ...(v.nextFireAt !== undefined ? { nextFireAt: new Date(v.nextFireAt) } : {}),
    ...(v.lastFiredAt !== undefined ? { lastFiredAt: new Date(v.lastFiredAt) } : {}),
    lastError: v.lastError?.message ?? "",
    ...(v.lastError !== undefined ? { lastErrorAt: new Date(v.lastError.at) } : {}),
  };
}

function required(value: string, field: string, example: string): void {
  if (!value) {
    throw new InvalidArgumentError(`${field} is required`, [
      violation(field, "missing", `set ${field}, e.g. ${example}`),
    ]);
  }
}

async function managerCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof TriggerNotFoundError) throw new ServerError(Status.NOT_FOUND, err.message);
    throw err;
  }
}

export function createTriggerService(
  options: TriggerServiceOptions,
): ServiceImplementation<typeof TriggerServiceDefinition, CallContextExt> {
  const { triggers, engine } = options;

  async function getRun(runId: string): Promise<Run | undefined> {
    const row = await engine.queries.runRow(runId);
    if (!row) return undefined;
    const run = runFromRow(row);
    const counts = engine.liveStepCounts(runId);
    if (counts) run.stepCounts = counts;
    return run;
  }

  async function setEnabled(workflowId: string, triggerId: string, enabled: boolean) {
    required(workflowId, "workflow_id", "nightly-train");
    required(triggerId, "trigger_id", "nightly");
    const v = await managerCall(() => triggers.setEnabled(workflowId, triggerId, enabled));
    return { trigger: toState(v) };
  }

  return {
    async signal(req) {
      if (!SIGNAL_NAME.test(req.name)) {
        throw new InvalidArgumentError("invalid signal name", [
          violation(
            "name",
            req.name ? `'${req.name.slice(0, 80)}' is not a valid signal name` : "missing",
            "use letters, digits, '_', '-' and '.', starting with a letter, e.g. data.ready",
          ),
        ]);
      }
      if (req.requestId.length > MAX_REQUEST_ID) {
        throw new InvalidArgumentError("invalid request_id", [
          violation(
            "request_id",
            `${req.requestId.length} characters is too long`,
            `use at most ${MAX_REQUEST_ID} characters (a UUID fits)`,
          ),
        ]);
      }
      const outcome = await triggers.signal(req.name, req.params ?? {}, req.requestId);
      if (outcome.failures.length > 0) {
        const total = outcome.failures.length + outcome.runIds.length;
        const started =
          outcome.runIds.length > 0 ? ` (runs started: ${outcome.runIds.join(", ")})` : "";
        throw new InvalidArgumentError(
          `signal '${req.name}': ${outcome.failures.length} of ${total} trigger(s) could not start a run${started}`,
          outcome.failures.map((f) =>
            violation(
              `triggers.${f.workflowId}.${f.triggerId}`,
              f.message,
              "fix the signal's params or the trigger's params; resending with the same request_id does not start the other runs again",
            ),
          ),
        );
      }
      const runs = await Promise.all(outcome.runIds.map(getRun));
      return { runs: runs.filter((r): r is Run => r !== undefined) };
    },

    async listTriggers(req) {
      const limit = pageSize(req.pageSize);
      const after = decodePageToken<{ w: string; t: string }>(req.pageToken);
      const all = await managerCall(() =>
        triggers.list(req.workflowId ? req.workflowId : undefined),
      );
      const start = after
        ? all.findIndex(
            (v) => v.workflowId > after.w || (v.workflowId === after.w && v.trigger.id > after.t),
          )
        : 0;
      const rest = start < 0 ? [] : all.slice(start);
      const page = rest.slice(0, limit);
      const last = page[page.length - 1];
      return {
        triggers: page.map(toState),
        nextPageToken:
          rest.length > limit && last
            ? encodePageToken({ w: last.workflowId, t: last.trigger.id })
            : "",
      };
    },

    async enableTrigger(req) {
      return setEnabled(req.workflowId, req.triggerId, true);
    },

    async disableTrigger(req) {
      return setEnabled(req.workflowId, req.triggerId, false);
    },
  };
}
