// Namespace quotas and the cluster view through a real server (createKaon), real local agent
// and real processes: a namespace at its task quota runs one step at a time while the others
// wait QUEUED with the quota as their reason (in ListQueue and ListSteps), another namespace
// is not held up, the next step launches when one ends, higher priority goes first, and a
// quota survives a restart.
import { join } from "node:path";
import { type RunEvent, RunStatus, type StepInstance, StepStatus } from "@kaon/proto";
import { Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ClusterKaon,
  maxConcurrentlyActive,
  openGate,
  startClusterKaon,
  waitForGate,
} from "./support.js";

let k: ClusterKaon;
const gates: string[] = [];

beforeAll(async () => {
  k = await startClusterKaon();
});
afterAll(async () => {
  for (const g of gates) openGate(g); // never leave a job blocked behind a failed assertion
  await k?.stop();
});

function gate(name: string): string {
  const path = join(k.dataDir, `gate-${name}`);
  gates.push(path);
  return path;
}

const quota = (maxTasks: number, cpus = 0, memMb = 0, gpus = 0) => ({
  maxTasks,
  maxResources: { cpus, memMb, gpus, diskMb: 0 },
});

async function steps(runId: string): Promise<StepInstance[]> {
  const out: StepInstance[] = [];
  let pageToken = "";
  do {
    const page = await k.runs.listSteps({
      runId,
      statuses: [],
      pathPrefix: "",
      pageSize: 100,
      pageToken,
    });
    out.push(...page.steps);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

const launched = (path: string) => (events: RunEvent[]) =>
  events.some(
    (e) =>
      e.path === path &&
      e.kind?.$case === "stepStatus" &&
      e.kind.value === StepStatus.STEP_STATUS_RUNNING,
  );

describe("namespace quotas", () => {
  it("runs at most the quota of tasks at once, explains the wait, and does not hold up other namespaces", async () => {
    const g = gate("ml");
    await k.cluster.setQuota({ namespace: "ml", quota: quota(1) });
    await k.deploy({
      id: "ml-train",
      namespace: "ml",
      steps: [
        {
          id: "regional",
          type: "foreach",
          foreach: {
            axes: [{ name: "region", values: ["US", "BR", "IN"] }],
            body: [{ id: "train", type: "command", config: { shell: waitForGate(g) } }],
          },
        },
      ],
    });
    await k.deploy({
      id: "web-report",
      namespace: "web",
      steps: [
        {
          id: "fan",
          type: "foreach",
          foreach: {
            axes: [{ values: [1, 2] }],
            body: [{ id: "report", type: "command", config: { shell: "true" } }],
          },
        },
      ],
    });

    const ml = (await k.runs.startRun({ workflowId: "ml-train", params: {} })).run?.id as string;
    // Wait until one iteration runs; the matching pass that launched it also queued the rest
    // with the quota reason, committed in the same flush.
    await k.watchUntil(ml, (evs) =>
      evs.some(
        (e) =>
          e.path.startsWith("regional[") &&
          e.kind?.$case === "stepStatus" &&
          e.kind.value === StepStatus.STEP_STATUS_RUNNING,
      ),
    );

    // The first task held back carries the live figures; the ones behind it a stable text
    // (they are not measured again in that pass, review Q7).
    const reason = "namespace 'ml' quota: 1/1 running tasks";
    const behind =
      "namespace 'ml' quota: full, queued behind an earlier task of the namespace that waits for room";
    const queue = await k.cluster.listQueue({ namespace: "ml", pageSize: 0, pageToken: "" });
    expect(queue.entries).toHaveLength(2);
    expect(queue.entries.map((e) => e.reason)).toEqual([reason, behind]);
    for (const e of queue.entries) {
      expect(e).toMatchObject({ runId: ml, workflowId: "ml-train", namespace: "ml" });
      expect(e.path).toMatch(/^regional\[\d\]\/train$/);
      expect(e.resources).toEqual({ cpus: 1, memMb: 256, gpus: 0, diskMb: 0 });
      expect(e.queuedAt?.getTime()).toBeGreaterThan(Date.now() - 60_000);
    }
    const queued = (await steps(ml)).filter((s) => s.status === StepStatus.STEP_STATUS_QUEUED);
    expect(queued.map((s) => s.reason).sort()).toEqual([reason, behind].sort());

    // Paging walks the same queue.
    const first = await k.cluster.listQueue({ namespace: "ml", pageSize: 1, pageToken: "" });
    expect(first.entries).toHaveLength(1);
    const second = await k.cluster.listQueue({
      namespace: "ml",
      pageSize: 1,
      pageToken: first.nextPageToken,
    });
    expect(second.entries).toHaveLength(1);
    expect(second.nextPageToken).toBe("");
    expect(second.entries[0]?.path).not.toBe(first.entries[0]?.path);

    // Usage while one ml task runs: tenants and the agent.
    const { tenants } = await k.cluster.listTenants({});
    const mlTenant = tenants.find((t) => t.namespace === "ml");
    expect(mlTenant).toMatchObject({
      runningTasks: 1,
      used: { cpus: 1, memMb: 256, gpus: 0 },
      quota: { maxTasks: 1 },
    });
    expect(tenants.map((t) => t.namespace)).toContain("web");
    const { agents } = await k.cluster.listAgents({});
    expect(agents).toHaveLength(1);
    expect(agents[0]).toMatchObject({
      hostname: "cluster-test",
      backend: "local",
      attributes: { pool: "test" },
      total: { cpus: 4, memMb: 4096 },
    });
    expect(agents[0]?.used?.cpus).toBeGreaterThanOrEqual(1);
    expect(agents[0]?.runningTasks).toBeGreaterThanOrEqual(1);

    // Another namespace runs to the end while ml is held at its quota — at once: not after
    // the backend's 5 s offer refusal that a declined offer would cause.
    const webStarted = Date.now();
    const web = (await k.runs.startRun({ workflowId: "web-report", params: {} })).run?.id as string;
    const webDone = await k.finish(web);
    expect(webDone.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(Date.now() - webStarted).toBeLessThan(2500);
    expect((await k.runs.getRun({ runId: ml })).run?.status).toBe(RunStatus.RUN_STATUS_RUNNING);
    expect(
      (await k.cluster.listQueue({ namespace: "ml", pageSize: 0, pageToken: "" })).entries,
    ).toHaveLength(2);

    // Open the gate: each iteration starts only when the previous one ended.
    openGate(g);
    const { run, events } = await k.finish(ml);
    expect(run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(maxConcurrentlyActive(events, (p) => p.includes("/"))).toBe(1);
    const done = (await steps(ml))
      .filter((s) => s.path.includes("/"))
      .sort((a, b) => (a.startedAt?.getTime() ?? 0) - (b.startedAt?.getTime() ?? 0));
    expect(done).toHaveLength(3);
    for (let i = 1; i < done.length; i++) {
      const prev = done[i - 1] as StepInstance;
      const cur = done[i] as StepInstance;
      expect(cur.startedAt?.getTime()).toBeGreaterThanOrEqual(prev.endedAt?.getTime() ?? 0);
    }
    expect(
      (await k.cluster.listTenants({})).tenants.find((t) => t.namespace === "ml")?.runningTasks,
    ).toBe(0);
  });

  it("launches higher-priority work first across runs", async () => {
    const g = gate("prio");
    await k.cluster.setQuota({ namespace: "prio", quota: quota(1) });
    const wf = (id: string, priority: number, script: string) => ({
      id,
      namespace: "prio",
      priority,
      steps: [{ id: "work", type: "command", config: { shell: script } }],
    });
    await k.deploy(wf("prio-blocker", 0, waitForGate(g)));
    await k.deploy(wf("prio-low", 1, "true"));
    await k.deploy(wf("prio-high", 9, "true"));
    const blocker = (await k.runs.startRun({ workflowId: "prio-blocker", params: {} })).run
      ?.id as string;
    await k.watchUntil(blocker, launched("work"));
    const low = (await k.runs.startRun({ workflowId: "prio-low", params: {} })).run?.id as string;
    const high = (await k.runs.startRun({ workflowId: "prio-high", params: {} })).run?.id as string;
    // Both wait behind the quota; the queue lists the later, higher-priority one first.
    await k.watchUntil(high, (evs) =>
      evs.some(
        (e) => e.kind?.$case === "stepStatus" && e.kind.value === StepStatus.STEP_STATUS_QUEUED,
      ),
    );
    const queue = (await k.cluster.listQueue({ namespace: "prio", pageSize: 0, pageToken: "" }))
      .entries;
    expect(queue.map((e) => [e.workflowId, e.priority])).toEqual([
      ["prio-high", 9],
      ["prio-low", 1],
    ]);
    openGate(g);
    const [h, l] = await Promise.all([k.finish(high), k.finish(low)]);
    expect(h.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(l.run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    const hs = (await k.runs.getStep({ runId: high, path: "work" })).step as StepInstance;
    const ls = (await k.runs.getStep({ runId: low, path: "work" })).step as StepInstance;
    expect(ls.startedAt?.getTime()).toBeGreaterThanOrEqual(hs.endedAt?.getTime() ?? Infinity);
  });

  it("launches held work at once when the quota is raised", async () => {
    const g = gate("raise");
    await k.cluster.setQuota({ namespace: "raise", quota: quota(1) });
    await k.deploy({
      id: "raise-wf",
      namespace: "raise",
      steps: [
        { id: "a", type: "command", config: { shell: waitForGate(g) } },
        { id: "b", type: "command", config: { shell: waitForGate(g) } },
      ],
    });
    const id = (await k.runs.startRun({ workflowId: "raise-wf", params: {} })).run?.id as string;
    const events = await k.watchUntil(id, (evs) => launched("a")(evs) || launched("b")(evs));
    const waiting = launched("a")(events) ? "b" : "a";
    // Raising the limit (no task ended, no resources changed) lets the other one start.
    const res = await k.cluster.setQuota({ namespace: "raise", quota: quota(2) });
    expect(res.tenant).toMatchObject({
      namespace: "raise",
      runningTasks: 1,
      quota: { maxTasks: 2 },
    });
    await k.watchUntil(id, launched(waiting));
    openGate(g);
    expect((await k.finish(id)).run.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
  });

  it("rejects negative limits naming the field, and a bad namespace", async () => {
    const bad = await k.cluster
      .setQuota({ namespace: "ml", quota: quota(1, -2) })
      .catch((e: unknown) => e as { code: Status; details: string });
    expect(bad).toMatchObject({ code: Status.INVALID_ARGUMENT });
    expect((bad as { details: string }).details).toContain("quota.max_resources.cpus");
    const tasks = await k.cluster
      .setQuota({ namespace: "ml", quota: quota(-1) })
      .catch((e: unknown) => e as { code: Status; details: string });
    expect((tasks as { details: string }).details).toContain("quota.max_tasks");
    const ns = await k.cluster
      .setQuota({ namespace: "Not A Namespace", quota: quota(1) })
      .catch((e: unknown) => e as { code: Status; details: string });
    expect(ns).toMatchObject({ code: Status.INVALID_ARGUMENT });
    expect((ns as { details: string }).details).toContain("namespace");
  });
});

describe("quota persistence", () => {
  it("keeps a quota across a restart", async () => {
    const first = await startClusterKaon();
    const dataDir = first.dataDir;
    let second: ClusterKaon | undefined;
    try {
      await first.cluster.setQuota({ namespace: "team-a", quota: quota(3, 2.5, 2048, 1) });
      await first.stop({ keepDataDir: true });
      second = await startClusterKaon(dataDir);
      const tenant = (await second.cluster.listTenants({})).tenants.find(
        (t) => t.namespace === "team-a",
      );
      expect(tenant?.quota).toEqual(quota(3, 2.5, 2048, 1));
      expect(tenant?.runningTasks).toBe(0);
    } finally {
      await second?.stop();
    }
  });
});
