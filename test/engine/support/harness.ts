// A real kaon for engine tests: real database (SQLite in a temp dir, or PostgreSQL), the
// workflow repository, the real local backend (agent process), the engine, and the gRPC
// server with RunService/JobService/ArtifactService behind real auth. Tests drive it with
// real gRPC clients and wait on WatchRun events with deadlines — never on sleeps.
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ArtifactServiceDefinition,
  JobServiceDefinition,
  messageFromJson,
  messageToJson,
  type Run,
  type RunEvent,
  RunServiceDefinition,
  RunStatus,
  StepStatus,
  WorkflowDefinition,
} from "@kaon/proto";
import { type Client, createChannel, createClient, Metadata } from "nice-grpc";
import { Authenticator, loadOrCreateAuthFiles, StepTokens } from "../../../core/src/api/auth.js";
import { engineServices } from "../../../core/src/api/run-service.js";
import { type KaonServer, startServer } from "../../../core/src/api/server.js";
import { LocalBackend } from "../../../core/src/backends/local/index.js";
import { killAgent } from "../../../core/src/backends/local/test-support.js";
import { resolveServerConfig } from "../../../core/src/config.js";
import { workflowRepoDefinitions } from "../../../core/src/engine/definitions.js";
import { Engine } from "../../../core/src/engine/engine.js";
import { type Logger, silentLogger } from "../../../core/src/log.js";
import { StepTypeRegistry } from "../../../core/src/steps/registry.js";
import { type Db, openDatabase } from "../../../core/src/store/db.js";
import { WorkflowRepo } from "../../../core/src/store/workflow-repo.js";

export interface EngineKaon {
  dataDir: string;
  db: Db;
  engine: Engine;
  server: KaonServer;
  backend: LocalBackend;
  adminToken: string;
  stepTokens: StepTokens;
  runs: Client<typeof RunServiceDefinition>;
  artifacts: Client<typeof ArtifactServiceDefinition>;
  jobClient(token: string): Client<typeof JobServiceDefinition>;
  deploy(def: unknown): Promise<void>;
  /** Starts a run and waits for its end (via WatchRun); returns the run and every event. */
  run(
    workflowId: string,
    params?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<{ run: Run; events: RunEvent[] }>;
  watch(runId: string, timeoutMs?: number): Promise<{ run: Run; events: RunEvent[] }>;
  stop(options?: { keepDataDir?: boolean }): Promise<void>;
}

export interface StartOptions {
  dataDir?: string;
  dbUrl?: string;
  resources?: { cpus?: number; memMb?: number };
  /** What the engine does when a journal write fails; default: exit the process (75). */
  onFatal?: (err: Error) => void;
  /** The engine's logger; default silent. */
  log?: Logger;
  reconcileIntervalMs?: number;
}

export async function startEngineKaon(options: StartOptions = {}): Promise<EngineKaon> {
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), "kaon-eng-"));
  const db = await openDatabase({ url: options.dbUrl ?? `sqlite:${join(dataDir, "kaon.db")}` });
  const repo = new WorkflowRepo(db);
  const auth = loadOrCreateAuthFiles(dataDir);
  const stepTokens = new StepTokens(auth.secret);
  const authenticator = new Authenticator({
    adminToken: auth.adminToken,
    adminTokenPath: auth.adminTokenPath,
    stepTokens,
  });
  const backend = new LocalBackend({
    dataDir,
    resources: { cpus: options.resources?.cpus ?? 4, memMb: options.resources?.memMb ?? 4096 },
    killGraceMs: 2000,
  });
  let grpcAddress = "";
  const engine = new Engine({
    db,
    definitions: workflowRepoDefinitions(repo),
    stepTypes: new StepTypeRegistry(),
    backend,
    tokens: stepTokens,
    dataDir,
    endpoint: () => grpcAddress,
    ...(options.onFatal ? { onFatal: options.onFatal } : {}),
    ...(options.log ? { log: options.log } : {}),
    ...(options.reconcileIntervalMs ? { reconcileIntervalMs: options.reconcileIntervalMs } : {}),
  });
  stepTokens.isAttemptLive = (id) => engine.isAttemptLive(id);
  await engine.start();
  const config = resolveServerConfig(
    { dataDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0" },
    {},
  );
  const server = await startServer({
    config,
    services: engineServices(engine, dataDir),
    authenticator,
    log: silentLogger,
    publishServerInfo: false,
    onShutdown: () => engine.shutdown(),
  });
  grpcAddress = server.grpcAddress;
  const channel = createChannel(server.grpcAddress);
  const metadata = Metadata();
  metadata.set("authorization", `Bearer ${auth.adminToken}`);
  const runs = createClient(RunServiceDefinition, channel, { "*": { metadata } });
  const artifacts = createClient(ArtifactServiceDefinition, channel, { "*": { metadata } });

  const watch = async (runId: string, timeoutMs = 30_000) => {
    const events: RunEvent[] = [];
    let run: Run | undefined;
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), timeoutMs);
    try {
      for await (const msg of runs.watchRun({ runId, afterSeq: 0 }, { signal: ac.signal })) {
        events.push(...msg.events);
        run = msg.run;
      }
    } catch (err) {
      if (ac.signal.aborted) {
        throw new Error(
          `run ${runId} did not end within ${timeoutMs} ms; last status ${run ? RunStatus[run.status] : "?"}; events: ${events.length}`,
        );
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
    const final = (await runs.getRun({ runId })).run as Run;
    return { run: final, events };
  };

  return {
    dataDir,
    db,
    engine,
    server,
    backend,
    adminToken: auth.adminToken,
    stepTokens,
    runs,
    artifacts,
    jobClient(token: string) {
      const md = Metadata();
      md.set("authorization", `Bearer ${token}`);
      return createClient(JobServiceDefinition, channel, { "*": { metadata: md } });
    },
    async deploy(json: unknown) {
      const def = messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", json);
      const text = JSON.stringify(
        messageToJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", def),
      );
      await repo.deploy({
        workflowId: def.id,
        namespace: def.namespace || "default",
        description: def.description,
        owner: def.owner,
        tags: def.tags,
        definitionJson: text,
        contentHash: createHash("sha256").update(text).digest("hex"),
        activate: true,
      });
    },
    async run(workflowId, params = {}, timeoutMs = 30_000) {
      const { run } = await runs.startRun({ workflowId, params });
      return watch((run as Run).id, timeoutMs);
    },
    watch,
    async stop(opts = {}) {
      channel.close();
      await server.shutdown("test finished");
      await db.destroy();
      if (!opts.keepDataDir) {
        // By its pid file, which an agent that already exited idle has removed.
        killAgent(dataDir);
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** Stops a process we started (the local agent outlives core by design). */
export function killQuietly(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** Events of one step path, as status names. */
export function stepStatuses(events: RunEvent[], path: string): string[] {
  return events
    .filter((e) => e.path === path && e.kind?.$case === "stepStatus")
    .map((e) => String(e.kind?.value));
}

/** Resolves once step `path` of the run reaches `status` (WatchRun events, 15 s deadline). */
export async function waitForStepStatus(
  runs: Client<typeof RunServiceDefinition>,
  runId: string,
  path: string,
  status: StepStatus,
): Promise<void> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), 15_000);
  try {
    for await (const msg of runs.watchRun({ runId, afterSeq: 0 }, { signal: ac.signal })) {
      if (
        msg.events.some(
          (e) => e.path === path && e.kind?.$case === "stepStatus" && e.kind.value === status,
        )
      )
        return;
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`step '${path}' never reached ${StepStatus[status]}`);
}

/**
 * The step token a job wrote to `<dir>/token` (tests' jobs do `echo "$KAON_TOKEN" > token`
 * in their attempt directory), waited for with a 15 s deadline.
 */
export async function readJobToken(dir: string): Promise<string> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const token = readFileSync(join(dir, "token"), "utf8").trim();
      if (token) return token;
    } catch {
      // not written yet
    }
    if (Date.now() > deadline) throw new Error(`the job never wrote its token to ${dir}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
