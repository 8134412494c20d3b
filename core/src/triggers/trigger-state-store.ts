// The `trigger_states` table (migration 003): per (workflow, trigger) the operator's enable/
// disable override, the last fire, and the cron watermark. Small, keyed writes only — one
// upsert per fire or per override change — so it never sits on the engine's hot path.
import type { Db } from "../store/db.js";

export interface TriggerStateRow {
  workflowId: string;
  triggerId: string;
  /** undefined: follow the definition's `disabled`. */
  enabledOverride: boolean | undefined;
  lastFiredAt: number | undefined;
  /** Cron: every planned time at or before this is settled. */
  cronSettledUntil: number | undefined;
  /** Why the latest fire could not start a run; undefined once one does. */
  lastError: { message: string; at: number } | undefined;
}

interface Row {
  workflow_id: string;
  trigger_id: string;
  enabled_override: number | null;
  last_fired_at: number | string | null;
  cron_settled_until: number | string | null;
  last_error: string | null;
  last_error_at: number | string | null;
  updated_at: number | string;
}

const num = (v: number | string | null): number | undefined =>
  v === null || v === undefined ? undefined : Number(v);

function fromRow(r: Row): TriggerStateRow {
  return {
    workflowId: r.workflow_id,
    triggerId: r.trigger_id,
    enabledOverride: r.enabled_override === null ? undefined : r.enabled_override !== 0,
    lastFiredAt: num(r.last_fired_at),
    cronSettledUntil: num(r.cron_settled_until),
    lastError:
      r.last_error === null || r.last_error === undefined
        ? undefined
        : { message: r.last_error, at: num(r.last_error_at) ?? 0 },
  };
}

export class TriggerStateStore {
  constructor(private readonly db: Db) {}

  /** Every row, or the rows of one workflow. */
  async load(workflowId?: string): Promise<TriggerStateRow[]> {
    const q = this.db("trigger_states");
    if (workflowId !== undefined) q.where({ workflow_id: workflowId });
    return ((await q.select()) as Row[]).map(fromRow);
  }

  /** Sets (or clears, with undefined) the override; a re-enabled cron settles up to `now`. */
  async setOverride(
    workflowId: string,
    triggerId: string,
    enabled: boolean,
    now: number,
    cronSettledUntil?: number,
  ): Promise<void> {
    const changes: Partial<Row> = { enabled_override: enabled ? 1 : 0, updated_at: now };
    if (cronSettledUntil !== undefined) changes.cron_settled_until = cronSettledUntil;
    await this.upsert(workflowId, triggerId, changes);
  }

  /**
   * Records a fire (`firedAt`: a run started; `clearError`: the last error no longer holds)
   * and, for cron, the planned time now settled.
   */
  async recordFire(
    workflowId: string,
    triggerId: string,
    fire: { firedAt?: number; settledUntil?: number; clearError?: boolean },
  ): Promise<void> {
    const changes: Partial<Row> = { updated_at: Date.now() };
    if (fire.firedAt !== undefined) changes.last_fired_at = fire.firedAt;
    if (fire.clearError) {
      changes.last_error = null;
      changes.last_error_at = null;
    }
    if (fire.settledUntil !== undefined) changes.cron_settled_until = fire.settledUntil;
    await this.upsert(workflowId, triggerId, changes);
  }

  /**
   * Settles cron triggers up to `now` that start from now: seen for the first time, or
   * enabled again by a new version (nothing from their past fires).
   */
  async settleNew(keys: Array<{ workflowId: string; triggerId: string }>, now: number) {
    // Chunked: SQLite bounds the variables of one statement.
    for (let i = 0; i < keys.length; i += 100) {
      const chunk = keys.slice(i, i + 100);
      await this.db("trigger_states")
        .insert(
          chunk.map((k) => ({
            workflow_id: k.workflowId,
            trigger_id: k.triggerId,
            enabled_override: null,
            last_fired_at: null,
            cron_settled_until: now,
            updated_at: now,
          })),
        )
        .onConflict(["workflow_id", "trigger_id"])
        .merge(["cron_settled_until", "updated_at"]);
    }
  }

  /** Records why a fire could not start a run. */
  async recordError(
    workflowId: string,
    triggerId: string,
    error: { message: string; at: number },
  ): Promise<void> {
    await this.upsert(workflowId, triggerId, {
      last_error: error.message,
      last_error_at: error.at,
      updated_at: error.at,
    });
  }

  private async upsert(workflowId: string, triggerId: string, changes: Partial<Row>) {
    await this.db("trigger_states")
      .insert({
        workflow_id: workflowId,
        trigger_id: triggerId,
        enabled_override: null,
        last_fired_at: null,
        cron_settled_until: null,
        ...changes,
      })
      .onConflict(["workflow_id", "trigger_id"])
      .merge(Object.keys(changes));
  }
}
