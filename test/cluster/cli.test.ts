// The cluster CLI commands (`agents`, `queue`, `tenants`, `quota set`, `artifacts`,
// `artifact history`) run through the real `main()` against a real server: the human output
// and the --json output, and bad input turned into a usage error or the server's field list.
import { join } from "node:path";
import { StepStatus } from "@kaon/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../core/src/cli/main.js";
import { type ClusterKaon, openGate, startClusterKaon, waitForGate } from "./support.js";

let k: ClusterKaon;
let env: Record<string, string>;
let gate: string;

beforeAll(async () => {
  k = await startClusterKaon();
  gate = join(k.dataDir, "gate-cli");
  env = {
    KAON_ADDRESS: k.kaon.grpcAddress,
    KAON_TOKEN: k.kaon.authFiles.adminToken,
    KAON_HOME: k.dataDir,
  };
});
afterAll(async () => {
  if (gate) openGate(gate);
  await k?.stop();
});

async function kaon(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(["node", "kaon", ...args], {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    env,
  });
  return { code, out: out.join(""), err: err.join("") };
}

describe("kaon cluster commands", () => {
  it("sets a quota, keeping limits not given, and lists tenants", async () => {
    const set = await kaon(
      "quota",
      "set",
      "ml",
      "--max-tasks",
      "4",
      "--cpus",
      "2.5",
      "--mem",
      "2048",
    );
    expect(set.err).toBe("");
    expect(set.code).toBe(0);
    expect(set.out).toMatch(/NAMESPACE\s+TASKS\s+CPUS\s+MEM \(MIB\)\s+GPUS/);
    expect(set.out).toMatch(/ml\s+0\/4\s+0\/2\.5\s+0\/2048\s+0\/-/);

    const more = await kaon("--json", "quota", "set", "ml", "--gpus", "1");
    expect(JSON.parse(more.out)).toMatchObject({
      namespace: "ml",
      quota: { maxTasks: 4, maxResources: { cpus: 2.5, memMb: 2048, gpus: 1 } },
    });

    const tenants = await kaon("--json", "tenants");
    expect(tenants.code).toBe(0);
    const ml = (JSON.parse(tenants.out) as Array<{ namespace: string }>).find(
      (t) => t.namespace === "ml",
    );
    expect(ml).toMatchObject({ quota: { maxTasks: 4 } });
    expect((await kaon("tenants")).out).toMatch(/^ml\s+0\/4/m);
  });

  it("reports bad quota input with the option or the server's field", async () => {
    const none = await kaon("quota", "set", "ml");
    expect(none.code).toBe(2);
    expect(none.err).toContain("--max-tasks");
    const word = await kaon("quota", "set", "ml", "--cpus", "lots");
    expect(word.code).toBe(2);
    expect(word.err).toContain("--cpus: 'lots' is not a number");
    const negative = await kaon("quota", "set", "ml", "--mem=-5");
    expect(negative.code).toBe(1);
    expect(negative.err).toContain("quota.max_resources.mem_mb");
  });

  it("shows agents with totals and use", async () => {
    const human = await kaon("agents");
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/AGENT\s+HOST\s+BACKEND/);
    expect(human.out).toMatch(/cluster-test\s+local\s+\d+\s+[\d.]+\/4\s+\d+\/4096/);
    expect(human.out).toContain("pool=test");
    const json = JSON.parse((await kaon("--json", "agents")).out) as unknown[];
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({ hostname: "cluster-test", total: { cpus: 4, memMb: 4096 } });
  });

  it("shows the queue with the reason each step waits", async () => {
    expect((await kaon("queue")).out).toContain("nothing queued");
    await kaon("quota", "set", "cli-q", "--max-tasks", "1");
    await k.deploy({
      id: "cli-queue",
      namespace: "cli-q",
      steps: [
        { id: "first", type: "command", config: { shell: waitForGate(gate) } },
        { id: "second", type: "command", config: { shell: waitForGate(gate) } },
      ],
    });
    const runId = (await k.runs.startRun({ workflowId: "cli-queue", params: {} })).run
      ?.id as string;
    await k.watchUntil(runId, (evs) =>
      evs.some(
        (e) => e.kind?.$case === "stepStatus" && e.kind.value === StepStatus.STEP_STATUS_RUNNING,
      ),
    );
    const human = await kaon("queue", "--namespace", "cli-q");
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/RUN\s+STEP\s+NAMESPACE\s+PRIO\s+RESOURCES\s+WAITING\s+REASON/);
    expect(human.out).toContain("namespace 'cli-q' quota: 1/1 running tasks");
    expect(human.out).toContain("cpus 1, mem 256M");
    const json = JSON.parse((await kaon("--json", "queue")).out) as Array<{ reason: string }>;
    expect(json).toHaveLength(1);
    expect(json[0]).toMatchObject({
      runId,
      namespace: "cli-q",
      reason: "namespace 'cli-q' quota: 1/1 running tasks",
    });
    openGate(gate);
    await k.finish(runId);
  });

  it("lists artifacts and an artifact's history", async () => {
    for (const [dateint, rmse] of [
      ["20261120", 0.5],
      ["20261121", 0.4],
    ] as const) {
      await k.artifacts.announce({
        artifact: {
          name: "models.regional",
          partitions: { country: "US", dateint },
          uri: `s3://models/US/${dateint}`,
          metadata: { rmse },
          namespace: "",
          producerRunId: "",
          producerPath: "",
          announcedAt: undefined,
          revision: 0,
        },
        requestId: "",
      });
    }
    const all = await kaon("artifacts");
    expect(all.code).toBe(0);
    expect(all.out).toMatch(/NAME\s+PARTITIONS\s+REV/);
    expect(all.out).toContain("country=US,dateint=20261121");
    const one = await kaon(
      "--json",
      "artifacts",
      "models.regional",
      "--partition",
      "dateint=20261120",
    );
    const listed = JSON.parse(one.out) as Array<{ uri: string }>;
    expect(listed.map((a) => a.uri)).toEqual(["s3://models/US/20261120"]);
    const history = await kaon("artifact", "history", "models.regional");
    expect(history.code).toBe(0);
    expect(history.out).toContain('{"rmse":0.5}');
    expect(history.out.indexOf("20261120")).toBeLessThan(history.out.indexOf("20261121"));
    const json = JSON.parse(
      (await kaon("--json", "artifact", "history", "models.regional", "--partition", "country=US"))
        .out,
    ) as Array<{ metadata: { rmse: number } }>;
    expect(json.map((a) => a.metadata.rmse)).toEqual([0.5, 0.4]);
    const bad = await kaon("artifacts", "--partition", "nokey");
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("expected key=value");
  });
});
