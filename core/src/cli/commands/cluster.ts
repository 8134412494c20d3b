// Cluster and data commands: where work runs and why it waits (`agents`, `queue`), tenants and
// their quotas (`tenants`, `quota set`), and data artifacts (`artifacts`, `artifact history`).
// Reads go through ClusterService and ArtifactService; `--json` prints proto3 JSON.
import {
  Agent,
  Artifact,
  ArtifactServiceDefinition,
  ClusterServiceDefinition,
  messageToJson,
  QueueEntry,
  type Resources,
  Tenant,
} from "@kaon/proto";
import type { Command } from "commander";
import { type CliContext, CliError, EXIT, formatTable } from "../client.js";

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `--partition k=v …` → partitions. */
export function parsePartitions(items: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    for (const part of item.split(",")) {
      const eq = part.indexOf("=");
      if (eq <= 0) {
        throw new CliError(
          `--partition '${item}': expected key=value, e.g. --partition country=US --partition dateint=20261121`,
          EXIT.usage,
        );
      }
      out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
    }
  }
  return out;
}

/** A number option: finite, else a usage error naming the option. Negative values pass to the server. */
export function parseNumberOption(text: string, option: string, whole = false): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isFinite(n) || (whole && !Number.isInteger(n))) {
    throw new CliError(
      `${option}: '${text}' is not a ${whole ? "whole number" : "number"} (0 means unlimited)`,
      EXIT.usage,
    );
  }
  return n;
}

function parsePositiveInt(text: string, option: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) {
    throw new CliError(`${option}: '${text}' is not a positive whole number`, EXIT.usage);
  }
  return n;
}

function num(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2).replace(/0+$/, "");
}

/** "3/4" with "-" for an unlimited (0) limit. */
function usedOf(used: number, limit: number): string {
  return `${num(used)}/${limit > 0 ? num(limit) : "-"}`;
}

function resourcesText(r: Resources | undefined): string {
  if (!r) return "";
  const parts = [`cpus ${num(r.cpus)}`, `mem ${num(r.memMb)}M`];
  if (r.gpus > 0) parts.push(`gpus ${num(r.gpus)}`);
  if (r.diskMb > 0) parts.push(`disk ${num(r.diskMb)}M`);
  return parts.join(", ");
}

function partitionsText(p: Record<string, string>): string {
  return Object.entries(p)
    .map(([k, v]) => `${k}=${v}`)
    .join(",");
}

function age(since: Date | undefined, now = Date.now()): string {
  if (!since) return "";
  const s = Math.max(0, Math.round((now - since.getTime()) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

const agentJson = (a: Agent) => messageToJson(Agent, "kaon.v1.Agent", a);
const entryJson = (e: QueueEntry) => messageToJson(QueueEntry, "kaon.v1.QueueEntry", e);
const tenantJson = (t: Tenant) => messageToJson(Tenant, "kaon.v1.Tenant", t);
const artifactJson = (a: Artifact) => messageToJson(Artifact, "kaon.v1.Artifact", a);

function tenantRows(tenants: readonly Tenant[]): string {
  return formatTable(tenants, [
    { header: "namespace", value: (t) => t.namespace },
    { header: "tasks", value: (t) => usedOf(t.runningTasks, t.quota?.maxTasks ?? 0) },
    {
      header: "cpus",
      value: (t) => usedOf(t.used?.cpus ?? 0, t.quota?.maxResources?.cpus ?? 0),
    },
    {
      header: "mem (MiB)",
      value: (t) => usedOf(t.used?.memMb ?? 0, t.quota?.maxResources?.memMb ?? 0),
    },
    {
      header: "gpus",
      value: (t) => usedOf(t.used?.gpus ?? 0, t.quota?.maxResources?.gpus ?? 0),
    },
  ]);
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("agents")
    .description("agents (machines) that run tasks, with resources total and in use")
    .action(async () => {
      const { agents } = await ctx.client(ClusterServiceDefinition).listAgents({});
      ctx.print(ctx.json ? agents.map(agentJson) : undefined, () =>
        agents.length === 0
          ? "no agents"
          : formatTable(agents, [
              { header: "agent", value: (a) => a.id },
              { header: "host", value: (a) => a.hostname },
              { header: "backend", value: (a) => a.backend },
              { header: "tasks", value: (a) => a.runningTasks },
              {
                header: "cpus",
                value: (a) => `${num(a.used?.cpus ?? 0)}/${num(a.total?.cpus ?? 0)}`,
              },
              {
                header: "mem (MiB)",
                value: (a) => `${num(a.used?.memMb ?? 0)}/${num(a.total?.memMb ?? 0)}`,
              },
              {
                header: "gpus",
                value: (a) => `${num(a.used?.gpus ?? 0)}/${num(a.total?.gpus ?? 0)}`,
              },
              { header: "last seen", value: (a) => a.lastSeenAt },
              { header: "attributes", value: (a) => partitionsText(a.attributes) },
            ]),
      );
    });

  program
    .command("queue")
    .description("queued step instances in scheduling order, with the reason each waits")
    .option("--namespace <ns>", "only this namespace")
    .option("--limit <n>", "at most this many entries (default 100)")
    .action(async (options: { namespace?: string; limit?: string }) => {
      const limit = options.limit === undefined ? 100 : parsePositiveInt(options.limit, "--limit");
      const client = ctx.client(ClusterServiceDefinition);
      const entries: QueueEntry[] = [];
      let pageToken = "";
      do {
        const page = await client.listQueue({
          namespace: options.namespace ?? "",
          pageSize: Math.min(1000, limit - entries.length),
          pageToken,
        });
        entries.push(...page.entries);
        pageToken = page.nextPageToken;
      } while (pageToken && entries.length < limit);
      const more = pageToken !== "";
      ctx.print(ctx.json ? entries.map(entryJson) : undefined, () =>
        entries.length === 0
          ? "nothing queued"
          : `${formatTable(entries, [
              { header: "run", value: (e) => e.runId },
              { header: "step", value: (e) => e.path },
              { header: "namespace", value: (e) => e.namespace },
              { header: "prio", value: (e) => e.priority },
              { header: "resources", value: (e) => resourcesText(e.resources) },
              { header: "waiting", value: (e) => age(e.queuedAt) },
              { header: "reason", value: (e) => e.reason },
            ])}${more ? `\n… more than ${limit}; raise --limit or narrow with --namespace` : ""}`,
      );
    });

  program
    .command("tenants")
    .description("namespaces with their quotas and what they run now (used/limit; - = unlimited)")
    .action(async () => {
      const { tenants } = await ctx.client(ClusterServiceDefinition).listTenants({});
      ctx.print(ctx.json ? tenants.map(tenantJson) : undefined, () =>
        tenants.length === 0 ? "no namespaces yet" : tenantRows(tenants),
      );
    });

  const quota = program.command("quota").description("namespace quotas");
  quota
    .command("set")
    .description(
      "set a namespace's limits on running tasks and resources (0 = unlimited; limits not given stay as they are)",
    )
    .argument("<namespace>", "namespace, e.g. ml")
    .option("--max-tasks <n>", "running tasks at once")
    .option("--cpus <x>", "cpus held by running tasks")
    .option("--mem <mb>", "memory in MiB held by running tasks")
    .option("--gpus <n>", "gpus held by running tasks")
    .action(
      async (
        namespace: string,
        options: { maxTasks?: string; cpus?: string; mem?: string; gpus?: string },
      ) => {
        if (
          options.maxTasks === undefined &&
          options.cpus === undefined &&
          options.mem === undefined &&
          options.gpus === undefined
        ) {
          throw new CliError(
            "quota set: give at least one of --max-tasks, --cpus, --mem, --gpus (0 = unlimited)",
            EXIT.usage,
          );
        }
        const client = ctx.client(ClusterServiceDefinition);
        const current = (await client.listTenants({})).tenants.find(
          (t) => t.namespace === namespace,
        )?.quota;
        const r = current?.maxResources;
        const pick = (text: string | undefined, option: string, was: number, whole = false) =>
          text === undefined ? was : parseNumberOption(text, option, whole);
        const res = await client.setQuota({
          namespace,
          quota: {
            maxTasks: pick(options.maxTasks, "--max-tasks", current?.maxTasks ?? 0, true),
            maxResources: {
              cpus: pick(options.cpus, "--cpus", r?.cpus ?? 0),
              memMb: pick(options.mem, "--mem", r?.memMb ?? 0),
              gpus: pick(options.gpus, "--gpus", r?.gpus ?? 0, true),
              diskMb: r?.diskMb ?? 0,
            },
          },
        });
        const tenant = res.tenant as Tenant;
        ctx.print(ctx.json ? tenantJson(tenant) : undefined, () => tenantRows([tenant]));
      },
    );
  quota.exitOverride();
  for (const sub of quota.commands) sub.exitOverride();

  program
    .command("artifacts")
    .description("data artifacts (latest revision of each partition), optionally of one name")
    .argument("[name]", "artifact name, e.g. models.regional")
    .option("--partition <k=v>", "only partitions with these key values (repeatable)", collect)
    .option("--namespace <ns>", "only this namespace")
    .option("--limit <n>", "at most this many (default 100)")
    .action(
      async (
        name: string | undefined,
        options: { partition?: string[]; namespace?: string; limit?: string },
      ) => {
        const limit =
          options.limit === undefined ? 100 : parsePositiveInt(options.limit, "--limit");
        const res = await ctx.client(ArtifactServiceDefinition).listArtifacts({
          name: name ?? "",
          partitions: parsePartitions(options.partition),
          namespace: options.namespace ?? "",
          pageSize: Math.min(1000, limit),
          pageToken: "",
        });
        ctx.print(ctx.json ? res.artifacts.map(artifactJson) : undefined, () =>
          res.artifacts.length === 0
            ? "no artifacts"
            : formatTable(res.artifacts, [
                { header: "name", value: (a) => a.name },
                { header: "partitions", value: (a) => partitionsText(a.partitions) },
                { header: "rev", value: (a) => a.revision },
                { header: "announced", value: (a) => a.announcedAt },
                {
                  header: "producer",
                  value: (a) =>
                    a.producerRunId ? `${a.producerRunId}/${a.producerPath}` : "external",
                },
                { header: "uri", value: (a) => a.uri },
              ]),
        );
      },
    );

  const artifact = program.command("artifact").description("one data artifact");
  artifact
    .command("history")
    .description("every announcement of an artifact across partitions, oldest first, with metadata")
    .argument("<name>", "artifact name")
    .option("--partition <k=v>", "only partitions with these key values (repeatable)", collect)
    .option("--namespace <ns>", "namespace (default 'default')")
    .option("--limit <n>", "at most this many (default 1000)")
    .action(
      async (
        name: string,
        options: { partition?: string[]; namespace?: string; limit?: string },
      ) => {
        const limit =
          options.limit === undefined ? 1000 : parsePositiveInt(options.limit, "--limit");
        const res = await ctx.client(ArtifactServiceDefinition).history({
          name,
          partitions: parsePartitions(options.partition),
          namespace: options.namespace ?? "",
          limit,
        });
        ctx.print(ctx.json ? res.artifacts.map(artifactJson) : undefined, () =>
          res.artifacts.length === 0
            ? `no announcements of '${name}'`
            : formatTable(res.artifacts, [
                { header: "announced", value: (a) => a.announcedAt },
                { header: "partitions", value: (a) => partitionsText(a.partitions) },
                { header: "rev", value: (a) => a.revision },
                { header: "metadata", value: (a) => a.metadata ?? {} },
                { header: "uri", value: (a) => a.uri },
              ]),
        );
      },
    );
  artifact.exitOverride();
  for (const sub of artifact.commands) sub.exitOverride();
}
