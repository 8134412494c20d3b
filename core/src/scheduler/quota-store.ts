// The persisted namespace quotas (table `namespace_quotas`, migration 004), kept in memory
// for the scheduler: the matcher reads limits on every placement pass, so a lookup must be a
// map access, not a query. Writes go to the database first and then to memory, so a quota
// that was acknowledged survives a restart.
import type { Db } from "../store/db.js";
import { isUnlimited, type QuotaLimits, UNLIMITED } from "./quota.js";

interface QuotaRow {
  namespace: string;
  max_tasks: number;
  cpus: number;
  mem_mb: number;
  gpus: number;
  disk_mb: number;
}

export class QuotaStore {
  private readonly limits = new Map<string, QuotaLimits>();
  /** Namespaces with at least one non-zero limit; 0 lets the scheduler skip quotas entirely. */
  private limited = 0;

  constructor(private readonly db: Db) {}

  async load(): Promise<void> {
    const rows = (await this.db("namespace_quotas").select()) as QuotaRow[];
    this.limits.clear();
    for (const r of rows) {
      this.limits.set(r.namespace, {
        maxTasks: Number(r.max_tasks),
        cpus: Number(r.cpus),
        memMb: Number(r.mem_mb),
        gpus: Number(r.gpus),
        diskMb: Number(r.disk_mb),
      });
    }
    this.recount();
  }

  /** The namespace's limits (all zeros when none were set). */
  get(namespace: string): QuotaLimits {
    return this.limits.get(namespace) ?? UNLIMITED;
  }

  /** Whether any namespace is limited at all. */
  get any(): boolean {
    return this.limited > 0;
  }

  /** Namespaces that have a stored quota row (possibly all zeros). */
  namespaces(): string[] {
    return [...this.limits.keys()];
  }

  async set(namespace: string, limits: QuotaLimits): Promise<void> {
    const row: QuotaRow & { updated_at: number } = {
      namespace,
      max_tasks: limits.maxTasks,
      cpus: limits.cpus,
      mem_mb: limits.memMb,
      gpus: limits.gpus,
      disk_mb: limits.diskMb,
      updated_at: Date.now(),
    };
    await this.db("namespace_quotas").insert(row).onConflict("namespace").merge();
    this.limits.set(namespace, { ...limits });
    this.recount();
  }

  private recount(): void {
    let n = 0;
    for (const q of this.limits.values()) if (!isUnlimited(q)) n++;
    this.limited = n;
  }
}
