// Offer matching, as a pure function so it can be unit-tested without a backend: given the
// resources currently offered (one slot per offer) and the ready tasks in priority order,
// decide which task goes on which offer, and say in words why each unplaced task waits.
// Fitness is Fenzo-like: hard constraints filter agents, then the offer that leaves the least
// unused CPU wins (bin packing), with soft constraints breaking ties. An optional Admission
// (namespace quotas, ./quota.ts) is asked first: a task it refuses waits with its reason and
// is passed over without counting as a miss, so one tenant at its quota never blocks the
// tasks of other tenants queued behind it.
import { type Constraint, ConstraintOperator } from "@kaon/proto";
import type { ResourceAmounts } from "../backends/backend.js";
import type { Admission } from "./quota.js";

export interface OfferSlot {
  id: string;
  agentId: string;
  hostname: string;
  /** What is still free in this offer (decremented as tasks are placed). */
  free: ResourceAmounts;
  attributes: Record<string, string>;
}

export interface MatchTask {
  resources: ResourceAmounts;
  constraints: readonly Constraint[];
}

export interface MatchResult<T> {
  placed: Array<{ task: T; offer: OfferSlot }>;
  /** Why a scanned task was not placed; `refused` when the admission (quota) held it back. */
  waiting: Array<{ task: T; reason: string; refused?: boolean }>;
}

const EPS = 1e-9;

export function fits(need: ResourceAmounts, free: ResourceAmounts): boolean {
  return (
    need.cpus <= free.cpus + EPS &&
    need.memMb <= free.memMb + EPS &&
    need.gpus <= free.gpus + EPS &&
    need.diskMb <= free.diskMb + EPS
  );
}

function attributeOf(offer: OfferSlot, name: string): string | undefined {
  if (name === "hostname") return offer.hostname;
  return offer.attributes[name];
}

export function constraintHolds(c: Constraint, offer: OfferSlot): boolean {
  const v = attributeOf(offer, c.attribute);
  switch (c.operator) {
    case ConstraintOperator.CONSTRAINT_OPERATOR_EQUALS:
      return v === c.value;
    case ConstraintOperator.CONSTRAINT_OPERATOR_NOT_EQUALS:
      return v !== c.value;
    case ConstraintOperator.CONSTRAINT_OPERATOR_LIKE:
      try {
        return v !== undefined && new RegExp(`^(?:${c.value})$`).test(v);
      } catch {
        return false;
      }
    case ConstraintOperator.CONSTRAINT_OPERATOR_EXISTS:
      return v !== undefined;
    default:
      // UNIQUE needs placement history; treated as a preference only.
      return true;
  }
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0+$/, "");
}

/** "needs cpus 4, 1.5 free" for the first resource that does not fit. */
export function shortfall(need: ResourceAmounts, free: ResourceAmounts): string {
  const parts: string[] = [];
  if (need.cpus > free.cpus + EPS) parts.push(`cpus ${fmt(need.cpus)}, ${fmt(free.cpus)} free`);
  if (need.memMb > free.memMb + EPS)
    parts.push(`mem ${fmt(need.memMb)} MiB, ${fmt(free.memMb)} free`);
  if (need.gpus > free.gpus + EPS) parts.push(`gpus ${fmt(need.gpus)}, ${fmt(free.gpus)} free`);
  if (need.diskMb > free.diskMb + EPS)
    parts.push(`disk ${fmt(need.diskMb)} MiB, ${fmt(free.diskMb)} free`);
  return parts.length > 0 ? `needs ${parts.join("; ")}` : "";
}

const ZERO: ResourceAmounts = { cpus: 0, memMb: 0, gpus: 0, diskMb: 0 };

/**
 * Places tasks (already in priority order) onto offers. Scanning stops after `maxMisses`
 * consecutive tasks that fit nowhere, so a long queue costs O(placed + maxMisses) per call.
 * Tasks `admission` refuses (quota) wait with its reason and do not count as misses.
 */
export function matchTasks<T extends MatchTask>(
  tasks: Iterable<T>,
  offers: OfferSlot[],
  maxMisses = 32,
  admission?: Admission<T>,
): MatchResult<T> {
  const placed: MatchResult<T>["placed"] = [];
  const waiting: MatchResult<T>["waiting"] = [];
  let misses = 0;
  for (const task of tasks) {
    if (misses >= maxMisses) break;
    const refused = admission?.blocked(task);
    if (refused !== undefined) {
      waiting.push({ task, reason: refused, refused: true });
      continue;
    }
    let best: OfferSlot | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    let anyHard = false;
    let largest: ResourceAmounts = ZERO;
    for (const offer of offers) {
      const hard = task.constraints.every((c) => c.soft || constraintHolds(c, offer));
      if (!hard) continue;
      anyHard = true;
      if (offer.free.cpus > largest.cpus || largest === ZERO) largest = offer.free;
      if (!fits(task.resources, offer.free)) continue;
      const softMisses = task.constraints.filter(
        (c) => c.soft && !constraintHolds(c, offer),
      ).length;
      const score = softMisses * 1e6 + (offer.free.cpus - task.resources.cpus);
      if (score < bestScore) {
        bestScore = score;
        best = offer;
      }
    }
    if (best) {
      best.free = {
        cpus: best.free.cpus - task.resources.cpus,
        memMb: best.free.memMb - task.resources.memMb,
        gpus: best.free.gpus - task.resources.gpus,
        diskMb: best.free.diskMb - task.resources.diskMb,
      };
      placed.push({ task, offer: best });
      admission?.charge(task);
      misses = 0;
      continue;
    }
    misses++;
    if (offers.length === 0) {
      waiting.push({ task, reason: "waiting for resources: none free" });
    } else if (!anyHard) {
      waiting.push({ task, reason: "waiting for an agent matching its constraints" });
    } else {
      waiting.push({
        task,
        reason: `waiting for resources: ${shortfall(task.resources, largest)}`,
      });
    }
  }
  return { placed, waiting };
}

/**
 * Why a task can never run on agents of these total capacities (undefined when it can).
 * Only hard constraints and totals matter: a task larger than every agent waits forever.
 */
export function neverFits(
  need: ResourceAmounts,
  constraints: readonly Constraint[],
  agents: Array<{
    agentId: string;
    hostname: string;
    total: ResourceAmounts;
    attributes: Record<string, string>;
  }>,
): string | undefined {
  if (agents.length === 0) return undefined;
  const eligible = agents.filter((a) =>
    constraints.every(
      (c) =>
        c.soft ||
        constraintHolds(c, {
          id: "",
          agentId: a.agentId,
          hostname: a.hostname,
          free: a.total,
          attributes: a.attributes,
        }),
    ),
  );
  if (eligible.length === 0) return "no agent satisfies its placement constraints";
  if (eligible.some((a) => fits(need, a.total))) return undefined;
  const largest = eligible.reduce((m, a) => (a.total.cpus > m.total.cpus ? a : m));
  return `can never fit: ${shortfall(need, largest.total).replace(/ free/g, " in total on the largest agent")}`;
}
