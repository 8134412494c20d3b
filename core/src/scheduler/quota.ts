// Per-namespace (tenant) quotas, as pure accounting the offer matcher can consult: how much
// a namespace may hold at once (running tasks, cpus, mem, gpus, disk; 0 = unlimited), what it
// holds now, and — when a task would exceed a limit — the sentence a user sees as the reason
// the task waits. No I/O here: limits are persisted by QuotaStore, usage is derived by the
// engine from the attempts it has handed to the backend.
import type { ResourceAmounts } from "../backends/backend.js";

/** Limits of one namespace; every 0 means "no limit on this dimension". */
export interface QuotaLimits {
  maxTasks: number;
  cpus: number;
  memMb: number;
  gpus: number;
  diskMb: number;
}

/** What a namespace's running (launching or running) tasks hold. */
export interface NamespaceUsage {
  tasks: number;
  cpus: number;
  memMb: number;
  gpus: number;
  diskMb: number;
}

export const UNLIMITED: QuotaLimits = { maxTasks: 0, cpus: 0, memMb: 0, gpus: 0, diskMb: 0 };

export function emptyUsage(): NamespaceUsage {
  return { tasks: 0, cpus: 0, memMb: 0, gpus: 0, diskMb: 0 };
}

export function isUnlimited(q: QuotaLimits): boolean {
  return q.maxTasks === 0 && q.cpus === 0 && q.memMb === 0 && q.gpus === 0 && q.diskMb === 0;
}

const EPS = 1e-9;

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0+$/, "");
}

const DIMENSIONS = [
  { key: "cpus", name: "cpus", unit: "" },
  { key: "memMb", name: "mem", unit: " MiB" },
  { key: "gpus", name: "gpus", unit: "" },
  { key: "diskMb", name: "disk", unit: " MiB" },
] as const;

/**
 * Why a task needing `need` may not start in namespace `ns` now, or undefined when it may.
 * E.g. "namespace 'ml' quota: 4/4 running tasks" or
 * "namespace 'ml' quota: cpus 3/4 in use, needs 2".
 */
export function quotaBlock(
  ns: string,
  limits: QuotaLimits,
  usage: NamespaceUsage,
  need: ResourceAmounts,
): string | undefined {
  return overLimit(ns, limits, need) ?? usageBlock(ns, limits, usage, need);
}

/** Why a task can never start under this quota (it needs more than a limit), or undefined. */
function overLimit(ns: string, limits: QuotaLimits, need: ResourceAmounts): string | undefined {
  for (const d of DIMENSIONS) {
    const limit = limits[d.key];
    if (limit > 0 && need[d.key] > limit + EPS) {
      // Waiting cannot help until someone raises the quota: say so.
      return `namespace '${ns}' quota: needs ${d.name} ${fmt(need[d.key])}${d.unit}, more than the limit of ${fmt(limit)}${d.unit} (raise it with 'kaon quota set ${ns}')`;
    }
  }
  return undefined;
}

/** Why the namespace's current usage leaves no room for the task now, or undefined. */
function usageBlock(
  ns: string,
  limits: QuotaLimits,
  usage: NamespaceUsage,
  need: ResourceAmounts,
): string | undefined {
  const prefix = `namespace '${ns}' quota:`;
  if (limits.maxTasks > 0 && usage.tasks >= limits.maxTasks) {
    return `${prefix} ${usage.tasks}/${limits.maxTasks} running tasks`;
  }
  for (const d of DIMENSIONS) {
    const limit = limits[d.key];
    if (limit > 0 && usage[d.key] + need[d.key] > limit + EPS) {
      return `${prefix} ${d.name} ${fmt(usage[d.key])}/${fmt(limit)}${d.unit} in use, needs ${fmt(need[d.key])}`;
    }
  }
  return undefined;
}

/** Lets the matcher ask, per task, whether quotas allow it, and book what it places. */
export interface Admission<T> {
  /** The reason the task must wait, or undefined when it may be placed. */
  blocked(task: T): string | undefined;
  /** The task was placed: count it against its namespace. */
  charge(task: T): void;
}

/** The reason of the tasks queued behind a namespace's first task its quota holds back. */
export function behindQuotaReason(ns: string): string {
  return `namespace '${ns}' quota: full, queued behind an earlier task of the namespace that waits for room`;
}

/**
 * An Admission over namespaces for one matching pass. `usage` is copied, so charges made
 * while matching never leak into the caller's figures.
 *
 * Once a namespace's usage holds back one of its tasks, the rest of its queue is held back
 * for the pass without being measured: usage only grows while matching, and later smaller
 * tasks must not overtake that task (they would keep the usage up and starve it, the quota
 * side of priority inversion). So a blocked queue costs a set lookup per task, and only its
 * first task carries a reason with the live figures, which change with every launch and end.
 * A task that needs more than a limit holds nothing back: only a quota change lets it run.
 */
export class QuotaGate<T> implements Admission<T> {
  private readonly usage = new Map<string, NamespaceUsage>();
  /** Namespaces whose usage held back a task in this pass. */
  private readonly full = new Set<string>();

  constructor(
    private readonly limitsOf: (ns: string) => QuotaLimits | undefined,
    usage: ReadonlyMap<string, NamespaceUsage>,
    private readonly namespaceOf: (task: T) => string,
    private readonly needOf: (task: T) => ResourceAmounts,
  ) {
    for (const [ns, u] of usage) this.usage.set(ns, { ...u });
  }

  blocked(task: T): string | undefined {
    const ns = this.namespaceOf(task);
    const limits = this.limitsOf(ns);
    if (!limits || isUnlimited(limits)) return undefined;
    if (this.full.has(ns)) return behindQuotaReason(ns);
    const need = this.needOf(task);
    const over = overLimit(ns, limits, need);
    if (over !== undefined) return over;
    const blocked = usageBlock(ns, limits, this.usage.get(ns) ?? emptyUsage(), need);
    if (blocked !== undefined) this.full.add(ns);
    return blocked;
  }

  charge(task: T): void {
    addUsage(this.usage, this.namespaceOf(task), this.needOf(task));
  }
}

/** Adds one running task's resources to a usage map (the engine's per-namespace sums). */
export function addUsage(
  usage: Map<string, NamespaceUsage>,
  ns: string,
  resources: ResourceAmounts,
): void {
  const u = usage.get(ns) ?? emptyUsage();
  u.tasks += 1;
  u.cpus += resources.cpus;
  u.memMb += resources.memMb;
  u.gpus += resources.gpus;
  u.diskMb += resources.diskMb;
  usage.set(ns, u);
}
