// A real kaon for cluster tests, built by the composition root (createKaon) exactly as
// `kaon server` builds it — so ClusterService is tested as registered — over a small local
// backend pool (4 cpus, 4 GiB) so resources never get in the way of quota assertions.
// Steps that must stay running wait on a gate file the test creates: nothing sleeps to wait.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ArtifactServiceDefinition,
  ClusterServiceDefinition,
  messageFromJson,
  type Run,
  type RunEvent,
  RunServiceDefinition,
  StepStatus,
  WorkflowDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import { type Client, createChannel, createClient, Metadata } from "nice-grpc";
import { LocalBackend } from "../../core/src/backends/local/index.js";
import { killAgent } from "../../core/src/backends/local/test-support.js";
import { resolveServerConfig } from "../../core/src/config.js";
import { silentLogger } from "../../core/src/log.js";
import { createKaon, type Kaon } from "../../core/src/server-main.js";
import { finishRun, watchUntil } from "../support/watch.js";

export interface ClusterKaon {
  kaon: Kaon;
  dataDir: string;
  backend: LocalBackend;
  workflows: Client<typeof WorkflowServiceDefinition>;
  runs: Client<typeof RunServiceDefinition>;
  cluster: Client<typeof ClusterServiceDefinition>;
  artifacts: Client<typeof ArtifactServiceDefinition>;
  deploy(def: unknown): Promise<void>;
  /** Streams the run's events until `done(events)` holds; deadline-bound (test/support/watch.ts). */
  watchUntil(
    runId: string,
    done: (events: RunEvent[]) => boolean,
    timeoutMs?: number,
  ): Promise<RunEvent[]>;
  /** Waits for the run to end; returns it and all its events. */
  finish(runId: string, timeoutMs?: number): Promise<{ run: Run; events: RunEvent[] }>;
  /** Shuts the server down; the data dir is kept when asked (restart tests). */
  stop(options?: { keepDataDir?: boolean }): Promise<void>;
}

export async function startClusterKaon(dataDir?: string): Promise<ClusterKaon> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), "kaon-cluster-"));
  const config = resolveServerConfig(
    { dataDir: dir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", shutdownGraceMs: 2000 },
    {},
  );
  const backend = new LocalBackend({
    dataDir: dir,
    resources: { cpus: 4, memMb: 4096 },
    killGraceMs: 1000,
    hostname: "cluster-test",
    attributes: { pool: "test" },
  });
  const kaon = await createKaon({ config, log: silentLogger, backend });
  const channel = createChannel(kaon.grpcAddress);
  const metadata = Metadata();
  metadata.set("authorization", `Bearer ${kaon.authFiles.adminToken}`);
  const opts = { "*": { metadata } };
  const workflows = createClient(WorkflowServiceDefinition, channel, opts);
  const runs = createClient(RunServiceDefinition, channel, opts);

  return {
    kaon,
    dataDir: dir,
    backend,
    workflows,
    runs,
    cluster: createClient(ClusterServiceDefinition, channel, opts),
    artifacts: createClient(ArtifactServiceDefinition, channel, opts),
    async deploy(json: unknown) {
      const definition = messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", json);
      await workflows.deploy({ definition, activate: true });
    },
    watchUntil: (runId, done, timeoutMs) => watchUntil(runs, runId, done, timeoutMs),
    finish: (runId, timeoutMs) => finishRun(runs, runId, timeoutMs),
    async stop(options = {}) {
      channel.close();
      await kaon.shutdown("test finished");
      if (!options.keepDataDir) {
        // By its pid file, which an agent that already exited idle has removed.
        killAgent(dir);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/** A shell script that blocks until `gate` exists (then exits 0). */
export function waitForGate(gate: string): string {
  return `while [ ! -e '${gate}' ]; do sleep 0.02; done`;
}

export function openGate(gate: string): void {
  if (!existsSync(gate)) writeFileSync(gate, "open");
}

/**
 * The largest number of steps (among those `counted`) that were LAUNCHING or RUNNING at the
 * same time, replaying one run's events in commit order.
 */
export function maxConcurrentlyActive(
  events: readonly RunEvent[],
  counted: (path: string) => boolean,
): number {
  const active = new Set<string>();
  let max = 0;
  for (const e of events) {
    if (e.kind?.$case !== "stepStatus" || !counted(e.path)) continue;
    const s = e.kind.value;
    if (s === StepStatus.STEP_STATUS_LAUNCHING || s === StepStatus.STEP_STATUS_RUNNING)
      active.add(e.path);
    else active.delete(e.path);
    max = Math.max(max, active.size);
  }
  return max;
}
