// The local backend's resource accounting: a fixed pool (this machine, or what the operator
// configured) minus what running tasks reserved. Pure arithmetic, kept apart so that the
// rules (what fits, what can never fit) are testable without processes.

import type { ResourceAmounts } from "../backend.js";

export const RESOURCE_KINDS = ["cpus", "memMb", "gpus", "diskMb"] as const;

/** Tolerance for sums of fractional cpus (0.1 + 0.2 ...). */
const EPSILON = 1e-9;

export const NO_RESOURCES: Readonly<ResourceAmounts> = Object.freeze({
  cpus: 0,
  memMb: 0,
  gpus: 0,
  diskMb: 0,
});

/** Whether `need` fits into `available`, kind by kind. */
export function fits(need: ResourceAmounts, available: ResourceAmounts): boolean {
  return RESOURCE_KINDS.every((k) => need[k] <= available[k] + EPSILON);
}

export function isEmpty(amounts: ResourceAmounts): boolean {
  return RESOURCE_KINDS.every((k) => amounts[k] <= EPSILON);
}

export function formatResources(r: ResourceAmounts): string {
  return `cpus=${round(r.cpus)} memMb=${round(r.memMb)} gpus=${round(r.gpus)} diskMb=${round(r.diskMb)}`;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/**
 * Checks resource amounts from outside (options, task specs); returns an error message
 * naming the field, or undefined when valid.
 */
export function checkResources(r: unknown, field: string): string | undefined {
  if (typeof r !== "object" || r === null)
    return `${field} must be an object with ${RESOURCE_KINDS.join(", ")}`;
  for (const k of RESOURCE_KINDS) {
    const v = (r as Record<string, unknown>)[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
      return `${field}.${k} must be a finite number >= 0, got ${JSON.stringify(v)}`;
    }
  }
  if (!Number.isInteger((r as ResourceAmounts).gpus)) {
    return `${field}.gpus must be a whole number, got ${(r as ResourceAmounts).gpus}`;
  }
  return undefined;
}

export class ResourcePool {
  private readonly usedAmounts: ResourceAmounts = { ...NO_RESOURCES };

  constructor(readonly total: Readonly<ResourceAmounts>) {}

  get used(): ResourceAmounts {
    return { ...this.usedAmounts };
  }

  free(): ResourceAmounts {
    const free = { ...NO_RESOURCES };
    for (const k of RESOURCE_KINDS) free[k] = Math.max(0, this.total[k] - this.usedAmounts[k]);
    return free;
  }

  /** Whether a task of this size could ever run here (when nothing else runs). */
  fitsEver(need: ResourceAmounts): boolean {
    return fits(need, this.total);
  }

  /** Why a task of this size can never run here, or undefined if it can. */
  whyNeverFits(need: ResourceAmounts): string | undefined {
    const over = RESOURCE_KINDS.filter((k) => need[k] > this.total[k] + EPSILON);
    if (over.length === 0) return undefined;
    const parts = over.map((k) => `${k} ${round(need[k])} > ${round(this.total[k])}`);
    return (
      `needs more than the local pool holds (${parts.join(", ")}); lower the step's resources ` +
      "or enlarge the pool (local backend option `resources`)"
    );
  }

  reserve(r: ResourceAmounts): void {
    for (const k of RESOURCE_KINDS) this.usedAmounts[k] += r[k];
  }

  release(r: ResourceAmounts): void {
    for (const k of RESOURCE_KINDS) {
      const left = this.usedAmounts[k] - r[k];
      this.usedAmounts[k] = left < EPSILON ? 0 : left;
    }
  }
}
