// A real kaon for step-type tests, built by the composition root (createKaon) exactly as
// `kaon server` builds it — SQLite store, the real local backend and its agent, gRPC with
// auth — with the step-type settings a test needs (SQL connections, Spark versions, the
// Python interpreter, the http allow-list). Tests deploy through WorkflowService, start runs
// through RunService and wait on WatchRun with deadlines; they check what a user would see
// through GetStep, ListSteps and TailLogs.
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type GetStepResponse,
  LogStream,
  messageFromJson,
  type Run,
  type RunEvent,
  RunServiceDefinition,
  RunStatus,
  StepStatus,
  WorkflowDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import {
  type Channel,
  type Client,
  ClientError,
  createChannel,
  createClient,
  Metadata,
} from "nice-grpc";
import { resolveServerConfig } from "../../core/src/config.js";
import { silentLogger } from "../../core/src/log.js";
import { createKaon, type Kaon } from "../../core/src/server-main.js";
import { finishRun, watchUntil } from "../support/watch.js";

export { isRunEnd } from "../support/watch.js";

import type { StepTypeSettings } from "../../core/src/steps/step-type.js";

export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The repo's virtual environment (scripts/setup.sh): the Python SDK, cloudpickle, pyspark. */
export const VENV_PYTHON = join(REPO_ROOT, ".venv", "bin", "python");
export const hasVenv = existsSync(VENV_PYTHON);

export interface StepsKaon {
  kaon: Kaon;
  dataDir: string;
  workflows: Client<typeof WorkflowServiceDefinition>;
  runs: Client<typeof RunServiceDefinition>;
  /** Deploys (and activates) a workflow given as proto JSON. */
  deploy(json: unknown): Promise<void>;
  /** Deploys expecting INVALID_ARGUMENT; returns the error's text (violations included). */
  deployError(json: unknown): Promise<string>;
  /** Starts a run; returns its id. */
  start(workflowId: string, params?: Record<string, unknown>): Promise<string>;
  /** Streams the run's events until `done(events)` holds; deadline-bound. */
  watchUntil(
    runId: string,
    done: (events: RunEvent[]) => boolean,
    timeoutMs?: number,
  ): Promise<RunEvent[]>;
  /** Waits for the run to end; returns it and all its events. */
  finish(runId: string, timeoutMs?: number): Promise<{ run: Run; events: RunEvent[] }>;
  /** Starts a run and waits for its end. */
  run(
    workflowId: string,
    params?: Record<string, unknown>,
    timeoutMs?: number,
  ): Promise<{ run: Run; events: RunEvent[] }>;
  step(runId: string, path: string): Promise<GetStepResponse>;
  /** The whole stdout (or stderr) of the latest attempt of a step, via TailLogs. */
  logs(runId: string, path: string, stream?: "stdout" | "stderr"): Promise<string>;
  stop(): Promise<void>;
}

export async function startStepsKaon(
  settings: Partial<StepTypeSettings> = {},
  prefix = "kaon-steps-",
): Promise<StepsKaon> {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const config = resolveServerConfig(
    { dataDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", shutdownGraceMs: 2_000 },
    {},
  );
  config.stepTypeSettings = settings;
  let kaon: Kaon;
  try {
    kaon = await createKaon({ config, log: silentLogger });
  } catch (e) {
    killAgent(dataDir);
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const channel: Channel = createChannel(kaon.grpcAddress);
  const metadata = Metadata();
  metadata.set("authorization", `Bearer ${kaon.authFiles.adminToken}`);
  const opts = { "*": { metadata } };
  const workflows = createClient(WorkflowServiceDefinition, channel, opts);
  const runs = createClient(RunServiceDefinition, channel, opts);

  const watch = (runId: string, done: (events: RunEvent[]) => boolean, timeoutMs?: number) =>
    watchUntil(runs, runId, done, timeoutMs);
  const finish = (runId: string, timeoutMs?: number) => finishRun(runs, runId, timeoutMs);

  const deploy = async (json: unknown) => {
    const definition = messageFromJson(WorkflowDefinition, "kaon.v1.WorkflowDefinition", json);
    await workflows.deploy({ definition, activate: true });
  };

  return {
    kaon,
    dataDir,
    workflows,
    runs,
    deploy,
    async deployError(json) {
      try {
        await deploy(json);
      } catch (e) {
        if (e instanceof ClientError && e.code === 3 /* INVALID_ARGUMENT */) return e.details;
        throw e;
      }
      throw new Error("expected the deploy to be refused with INVALID_ARGUMENT");
    },
    async start(workflowId, params = {}) {
      const { run } = await runs.startRun({ workflowId, params });
      return (run as Run).id;
    },
    watchUntil: watch,
    finish,
    async run(workflowId, params = {}, timeoutMs = 30_000) {
      const { run } = await runs.startRun({ workflowId, params });
      return finish((run as Run).id, timeoutMs);
    },
    step: (runId, path) => runs.getStep({ runId, path }),
    async logs(runId, path, stream = "stdout") {
      let out = "";
      for await (const chunk of runs.tailLogs({
        runId,
        path,
        attempt: 0,
        offset: 0,
        follow: false,
        stream: stream === "stdout" ? LogStream.LOG_STREAM_STDOUT : LogStream.LOG_STREAM_STDERR,
      })) {
        out += Buffer.from(chunk.data).toString();
      }
      return out;
    },
    async stop() {
      channel.close();
      await kaon.shutdown("test finished");
      killAgent(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** The local agent outlives core by design; a test's agent must not outlive the test. */
export function killAgent(dataDir: string): void {
  try {
    const pid = Number(readFileSync(join(dataDir, "agent", "agent.pid"), "utf8").trim());
    if (pid > 0) process.kill(pid, "SIGKILL");
  } catch {
    // no agent, or already gone
  }
}

/** Whether the step at `path` reached `status` among `events`. */
export function reached(events: readonly RunEvent[], path: string, status: StepStatus): boolean {
  return events.some(
    (e) => e.path === path && e.kind?.$case === "stepStatus" && e.kind.value === status,
  );
}

export const statusName = (s: StepStatus | undefined): string =>
  s === undefined ? "?" : (StepStatus[s] ?? String(s));
export const runStatusName = (s: RunStatus): string => RunStatus[s] ?? String(s);

/** The run's message and each step's status and reason, for assertion messages. */
export async function explain(k: StepsKaon, run: Run): Promise<string> {
  const { steps } = await k.runs.listSteps({
    runId: run.id,
    statuses: [],
    pathPrefix: "",
    pageSize: 100,
    pageToken: "",
  });
  return [
    `run ${runStatusName(run.status)}: ${run.message}`,
    ...steps.map((s) => `${s.path}: ${statusName(s.status)} ${s.reason}`),
  ].join("\n");
}
