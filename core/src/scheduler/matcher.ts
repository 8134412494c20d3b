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
  /**
   * The agent's total capacity, when known: an offer is reserved for a higher-priority task
   * that missed only if its agent could ever hold that task (unknown: assumed it could).
   */
  total?: ResourceAmounts;
}

export interface MatchTask {
  resources: ResourceAmounts;
  constraints: readonly Constraint[];
  /** Run priority; tasks without one never reserve offers nor are held back by a reservation. */
  priority?: number;
}

export interface MatchResult<T> {
  placed: Array<{ task: T; offer: OfferSlot }>;
  /** Why a scanned task was not placed; `refused` when the admission (quota) held it back. */
  waiting: Array<{ task: T; reason: string; refused?: boolean }>;
  /** Tasks left unscanned behind `maxMisses` consecutive misses (their reasons are stale). */
  unscanned: T[];
}

/** Consecutive misses after which a pass stops looking at the queue. */
export const MAX_MISSES = 32;

/** The reason of a task the matcher did not look at because of the miss limit. */
export const BEHIND_MISSES = `waiting for resources: not considered yet, queued behind ${MAX_MISSES} or more tasks that fit none of the free resources`;

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
const NO_MATCHING_AGENT = "waiting for an agent matching its constraints";

/**
 * Places tasks (already in priority order) onto offers. Scanning stops after `maxMisses`
 * consecutive tasks that fit nowhere, so a long queue costs O(placed + maxMisses) per call.
 * Tasks `admission` refuses (quota) wait with its reason and do not count as misses, nor do
 * tasks whose hard constraints no offer meets.
 *
 * A task that misses reserves the offers of the agents that could ever hold it (hard
 * constraints met, total large enough) against tasks of lower priority: otherwise a stream of
 * small low-priority work keeps taking the resources it frees and the large task never runs
 * (priority inversion). Agents that could never hold it stay open to everyone.
 */
export function matchTasks<T extends MatchTask>(
  tasks: Iterable<T>,
  offers: OfferSlot[],
  maxMisses = MAX_MISSES,
  admission?: Admission<T>,
): MatchResult<T> {
  const placed: MatchResult<T>["placed"] = [];
  const waiting: MatchResult<T>["waiting"] = [];
  const unscanned: T[] = [];
  let misses = 0;
  /** Constraint lists (shared by the tasks of one step) that no held offer meets. */
  const unmet = new Set<readonly Constraint[]>();
  /** Offers held for a task that missed: the highest priority among such tasks. */
  const reservedFor = new Map<OfferSlot, { priority: number; need: ResourceAmounts }>();
  for (const task of tasks) {
    if (misses >= maxMisses) {
      unscanned.push(task);
      continue;
    }
    const refused = admission?.blocked(task);
    if (refused !== undefined) {
      waiting.push({ task, reason: refused, refused: true });
      continue;
    }
    if (unmet.has(task.constraints)) {
      waiting.push({ task, reason: NO_MATCHING_AGENT });
      continue;
    }
    let best: OfferSlot | undefined;
    let bestScore = Number.POSITIVE_INFINITY;
    let anyHard = false;
    /** The eligible offer closest to fitting it, which its reason measures against. */
    let closest: ResourceAmounts = ZERO;
    let closestGap = Number.POSITIVE_INFINITY;
    /** A reservation that keeps this task off an offer it would fit. */
    let heldBack: { priority: number; need: ResourceAmounts } | undefined;
    for (const offer of offers) {
      const hard = task.constraints.every((c) => c.soft || constraintHolds(c, offer));
      if (!hard) continue;
      anyHard = true;
      if (!fits(task.resources, offer.free)) {
        const g = gap(task.resources, offer.free);
        if (g < closestGap) {
          closestGap = g;
          closest = offer.free;
        }
        continue;
      }
      const reservation = reservedFor.size > 0 ? reservedFor.get(offer) : undefined;
      if (
        reservation !== undefined &&
        task.priority !== undefined &&
        reservation.priority > task.priority
      ) {
        heldBack = reservation;
        continue;
      }
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
    if (offers.length === 0) {
      misses++;
      waiting.push({ task, reason: "waiting for resources: none free" });
    } else if (!anyHard) {
      // Not a miss: offers it cannot use say nothing about the tasks behind it, which a run
      // of such tasks (a foreach for another pool) would otherwise hide from every offer.
      unmet.add(task.constraints);
      waiting.push({ task, reason: NO_MATCHING_AGENT });
    } else if (heldBack) {
      misses++;
      waiting.push({
        task,
        reason: `waiting for resources: held for a task of priority ${heldBack.priority} that needs cpus ${fmt(heldBack.need.cpus)}, mem ${fmt(heldBack.need.memMb)} MiB`,
      });
    } else {
      misses++;
      waiting.push({
        task,
        reason: `waiting for resources: ${shortfall(task.resources, closest)}`,
      });
      if (task.priority !== undefined) reserve(task, task.priority, offers, reservedFor);
    }
  }
  return { placed, waiting, unscanned };
}

/**
 * How far an offer is from fitting a task: the number of resources short first, then the
 * sum of the missing fractions, so the reason names what is really lacking.
 */
function gap(need: ResourceAmounts, free: ResourceAmounts): number {
  let short = 0;
  let fraction = 0;
  const add = (n: number, f: number) => {
    if (n > f + EPS) {
      short++;
      fraction += (n - f) / n;
    }
  };
  add(need.cpus, free.cpus);
  add(need.memMb, free.memMb);
  add(need.gpus, free.gpus);
  add(need.diskMb, free.diskMb);
  return short * 10 + fraction;
}

/** Reserves, for a task that missed, the offers whose agents could ever hold it. */
function reserve(
  task: MatchTask,
  priority: number,
  offers: readonly OfferSlot[],
  reservedFor: Map<OfferSlot, { priority: number; need: ResourceAmounts }>,
): void {
  for (const offer of offers) {
    if (reservedFor.has(offer)) continue; // tasks come by priority: the first holder ranks highest
    if (offer.total !== undefined && !fits(task.resources, offer.total)) continue;
    if (!task.constraints.every((c) => c.soft || constraintHolds(c, offer))) continue;
    reservedFor.set(offer, { priority, need: task.resources });
  }
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
  if (eligible.length === 0) return unmetConstraints(constraints, agents);
  if (eligible.some((a) => fits(need, a.total))) return undefined;
  const largest = eligible.reduce((m, a) => (a.total.cpus > m.total.cpus ? a : m));
  return `can never fit: ${shortfall(need, largest.total).replace(/ free/g, " in total on the largest agent")}`;
}

/** An agent as placement sees it when asking what could ever run: totals and attributes. */
export interface AgentShape {
  agentId: string;
  hostname: string;
  total: ResourceAmounts;
  attributes: Record<string, string>;
}

/**
 * Why no agent can ever meet these hard constraints: names the first constraint no agent
 * meets (or all of them when only their combination fails) and what the agents have for it.
 * Undefined when some agent meets them all, and when no agent is known: unknown is not never.
 */
export function unmetConstraints(
  constraints: readonly Constraint[],
  agents: readonly AgentShape[],
): string | undefined {
  const hard = constraints.filter((c) => !c.soft);
  if (hard.length === 0 || agents.length === 0) return undefined;
  const slots = agents.map(
    (a): OfferSlot => ({
      id: "",
      agentId: a.agentId,
      hostname: a.hostname,
      free: a.total,
      attributes: a.attributes,
    }),
  );
  if (slots.some((s) => hard.every((c) => constraintHolds(c, s)))) return undefined;
  const alone = hard.find((c) => !slots.some((s) => constraintHolds(c, s)));
  if (alone) {
    return `no agent meets its constraint ${describeConstraint(alone)}: ${agentsHave(alone.attribute, slots)}`;
  }
  const names = [...new Set(hard.map((c) => c.attribute))];
  return (
    `no agent meets all of its constraints at once (${hard.map(describeConstraint).join(", ")}): ` +
    names.map((n) => agentsHave(n, slots)).join("; ")
  );
}

/** `pool EQUALS "gpu"`, as a deployer wrote it. */
function describeConstraint(c: Constraint): string {
  const op = (ConstraintOperator[c.operator] ?? String(c.operator)).replace(
    "CONSTRAINT_OPERATOR_",
    "",
  );
  return c.operator === ConstraintOperator.CONSTRAINT_OPERATOR_EXISTS
    ? `${c.attribute} ${op}`
    : `${c.attribute} ${op} ${JSON.stringify(c.value)}`;
}

/** What the agents have for one attribute: the value per agent, counted when there are many. */
function agentsHave(attribute: string, slots: readonly OfferSlot[]): string {
  const [only] = slots;
  if (slots.length === 1 && only) {
    const v = attributeOf(only, attribute);
    if (v !== undefined) return `agent ${only.hostname} has ${attribute}=${v}`;
    const all = Object.entries(only.attributes).map(([k, val]) => `${k}=${val}`);
    return `agent ${only.hostname} has no attribute '${attribute}' (it has ${all.join(", ") || "no attributes"})`;
  }
  const counts = new Map<string | undefined, number>();
  for (const s of slots) {
    const v = attributeOf(s, attribute);
    counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  const shown = [...counts].slice(0, 8).map(([v, n]) => {
    const agents = n === 1 ? "1 agent" : `${n} agents`;
    return v === undefined
      ? `${agents} without '${attribute}'`
      : `${agents} with ${attribute}=${v}`;
  });
  if (counts.size > 8) shown.push(`${counts.size - 8} more values`);
  return `the ${slots.length} agents: ${shown.join(", ")}`;
}
