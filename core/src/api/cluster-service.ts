// ClusterService (cluster_service.proto): the compute side as the scheduler sees it — the
// backend's agents, the queue of step instances with the reason each waits, and namespaces
// (tenants) with their quotas and what they hold now. SetQuota persists a namespace's limits
// and the engine re-matches queued work at once, so a raised quota takes effect immediately.
import type {
  Agent,
  ClusterServiceDefinition,
  FieldViolation,
  QueueEntry,
  Quota,
  Resources,
  Tenant,
} from "@kaon/proto";
import type { ServiceImplementation } from "nice-grpc";
import type { ComputeBackend, ResourceAmounts } from "../backends/backend.js";
import type { Engine } from "../engine/engine.js";
import { NAMESPACE_PATTERN } from "../model/validate.js";
import { emptyUsage, type NamespaceUsage, type QuotaLimits } from "../scheduler/quota.js";
import type { Db } from "../store/db.js";
import type { CallContextExt } from "./auth.js";
import { InvalidArgumentError } from "./errors.js";
import { decodePageToken, encodePageToken, pageSize } from "./run-service.js";

export interface ClusterServiceOptions {
  engine: Engine;
  backend: ComputeBackend;
  db: Db;
}

function toResources(r: ResourceAmounts): Resources {
  return { cpus: r.cpus, memMb: r.memMb, gpus: r.gpus, diskMb: r.diskMb };
}

function toQuota(q: QuotaLimits): Quota {
  return {
    maxTasks: q.maxTasks,
    maxResources: { cpus: q.cpus, memMb: q.memMb, gpus: q.gpus, diskMb: q.diskMb },
  };
}

function toTenant(namespace: string, limits: QuotaLimits, usage: NamespaceUsage): Tenant {
  return {
    namespace,
    quota: toQuota(limits),
    runningTasks: usage.tasks,
    used: { cpus: usage.cpus, memMb: usage.memMb, gpus: usage.gpus, diskMb: usage.diskMb },
  };
}

function checkNamespace(namespace: string, field: string): void {
  if (!NAMESPACE_PATTERN.test(namespace)) {
    throw new InvalidArgumentError(`invalid ${field}`, [
      {
        field,
        description: namespace
          ? `namespace '${namespace.slice(0, 80)}' is not valid`
          : "namespace is required",
        hint: "use 1-128 lowercase letters, digits, '_', '-' or '.', starting with a letter, e.g. ml",
      },
    ]);
  }
}

/** The quota of a SetQuota request as limits; INVALID_ARGUMENT naming every bad field. */
export function quotaFromRequest(quota: Quota | undefined): QuotaLimits {
  const r = quota?.maxResources;
  const limits: QuotaLimits = {
    maxTasks: quota?.maxTasks ?? 0,
    cpus: r?.cpus ?? 0,
    memMb: r?.memMb ?? 0,
    gpus: r?.gpus ?? 0,
    diskMb: r?.diskMb ?? 0,
  };
  const problems: FieldViolation[] = [];
  const fields: Array<[string, number]> = [
    ["quota.max_tasks", limits.maxTasks],
    ["quota.max_resources.cpus", limits.cpus],
    ["quota.max_resources.mem_mb", limits.memMb],
    ["quota.max_resources.gpus", limits.gpus],
    ["quota.max_resources.disk_mb", limits.diskMb],
  ];
  for (const [field, value] of fields) {
    if (!Number.isFinite(value) || value < 0) {
      problems.push({
        field,
        description: `${value} is not a valid limit`,
        hint: "use a number >= 0; 0 means unlimited",
      });
    }
  }
  if (Number.isFinite(limits.gpus) && limits.gpus > 0 && !Number.isInteger(limits.gpus)) {
    problems.push({
      field: "quota.max_resources.gpus",
      description: `${limits.gpus} is not a whole number of GPUs`,
      hint: "GPUs are whole devices, e.g. 2",
    });
  }
  if (problems.length > 0) throw new InvalidArgumentError("invalid quota", problems);
  return limits;
}

/** Namespaces that have workflows or runs (plus quotas and live usage), sorted. */
async function knownNamespaces(db: Db, extra: Iterable<string>): Promise<string[]> {
  const [workflows, runs] = await Promise.all([
    db("workflows").distinct("namespace") as Promise<Array<{ namespace: string }>>,
    db("runs").distinct("namespace") as Promise<Array<{ namespace: string }>>,
  ]);
  const names = new Set<string>(extra);
  for (const r of workflows) names.add(r.namespace);
  for (const r of runs) names.add(r.namespace);
  return [...names].sort();
}

export function createClusterService(
  options: ClusterServiceOptions,
): ServiceImplementation<typeof ClusterServiceDefinition, CallContextExt> {
  const { engine, backend, db } = options;
  return {
    async listAgents() {
      const agents: Agent[] = (backend.agents?.() ?? []).map((a) => ({
        id: a.id,
        hostname: a.hostname,
        backend: a.backend,
        attributes: { ...a.attributes },
        total: toResources(a.total),
        used: toResources(a.used),
        runningTasks: a.runningTasks,
        lastSeenAt: a.lastSeenAt,
      }));
      return { agents };
    },

    async listQueue(req) {
      if (req.namespace) checkNamespace(req.namespace, "namespace");
      const limit = pageSize(req.pageSize);
      // The queue moves between pages; an offset into the current order is the honest cursor
      // (an entry may shift by the number that left the queue meanwhile).
      const after = decodePageToken<{ o: number }>(req.pageToken);
      const offset = after && Number.isInteger(after.o) && after.o >= 0 ? after.o : 0;
      const all = engine.queueEntries(req.namespace);
      const page = all.slice(offset, offset + limit);
      const entries: QueueEntry[] = page.map((e) => ({
        runId: e.runId,
        path: e.path,
        workflowId: e.workflowId,
        namespace: e.namespace,
        resources: toResources(e.resources),
        reason: e.reason,
        priority: e.priority,
        queuedAt: new Date(e.queuedAt),
      }));
      const next = offset + limit;
      return {
        entries,
        nextPageToken: next < all.length ? encodePageToken({ o: next }) : "",
      };
    },

    async listTenants() {
      const usage = engine.namespaceUsage();
      const names = await knownNamespaces(db, [...engine.quotas.namespaces(), ...usage.keys()]);
      return {
        tenants: names.map((ns) =>
          toTenant(ns, engine.quotas.get(ns), usage.get(ns) ?? emptyUsage()),
        ),
      };
    },

    async setQuota(req) {
      checkNamespace(req.namespace, "namespace");
      const limits = quotaFromRequest(req.quota);
      await engine.setQuota(req.namespace, limits);
      const usage = engine.namespaceUsage().get(req.namespace) ?? emptyUsage();
      return { tenant: toTenant(req.namespace, engine.quotas.get(req.namespace), usage) };
    },
  };
}
