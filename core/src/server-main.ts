// The composition root: the one place that knows every part of core and wires them into a
// running server — data dir and secrets, the store, the step types and their settings, the
// compute backend, the engine, and the kaon.v1 services. Everything else talks to its
// neighbours through small interfaces (ComputeBackend, StepType, the store's repos).
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ClusterServiceDefinition,
  RunStatus,
  TriggerServiceDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import { Authenticator, type AuthFiles, loadOrCreateAuthFiles, StepTokens } from "./api/auth.js";
import { createClusterService } from "./api/cluster-service.js";
import { registerService, type ServiceRegistration } from "./api/registration.js";
import { engineCall, engineServices } from "./api/run-service.js";
import { type KaonServer, startServer } from "./api/server.js";
import { createTriggerService } from "./api/trigger-service.js";
import { createWorkflowService } from "./api/workflow-service.js";
import type { ComputeBackend } from "./backends/backend.js";
import { LocalBackend } from "./backends/local/index.js";
import { ensureDataDir, type ServerConfig } from "./config.js";
import { workflowRepoDefinitions } from "./engine/definitions.js";
import { Engine } from "./engine/engine.js";
import { createLogger, type Logger } from "./log.js";
import { defaultStepTypeSettings, StepTypeRegistry } from "./steps/registry.js";
import type { StepTypeSettings } from "./steps/step-type.js";
import { detectSparkVersions } from "./steps/types/spark.js";
import { closeSqlConnections } from "./steps/types/sql.js";
import { type Db, openDatabase } from "./store/db.js";
import { WorkflowRepo } from "./store/workflow-repo.js";
import { TriggerManager } from "./triggers/trigger-manager.js";
import { refreshTriggersOnChange } from "./triggers/workflow-changes.js";

export interface CreateKaonOptions {
  config: ServerConfig;
  log?: Logger;
  /** Services served in addition to the built-in ones; one with a built-in's name replaces it. */
  services?: readonly ServiceRegistration[];
  /** Shut down on SIGINT/SIGTERM (`kaon server` does). Default false. */
  handleSignals?: boolean;
  /** The compute backend; default the local backend over this machine. */
  backend?: ComputeBackend;
}

/** A running kaon: the server plus the parts callers may need (e.g. to issue step tokens). */
export interface Kaon extends KaonServer {
  readonly config: ServerConfig;
  readonly stepTokens: StepTokens;
  readonly authFiles: AuthFiles;
  readonly engine: Engine;
  readonly triggers: TriggerManager;
  readonly settings: StepTypeSettings;
}

/** Builds every part of core from `config` and starts serving. */
export async function createKaon(options: CreateKaonOptions): Promise<Kaon> {
  const { config } = options;
  const log = options.log ?? createLogger();
  ensureDataDir(config.dataDir);
  const authFiles = loadOrCreateAuthFiles(config.dataDir, log);
  const stepTokens = new StepTokens(authFiles.secret);
  const authenticator = new Authenticator({
    adminToken: authFiles.adminToken,
    adminTokenPath: authFiles.adminTokenPath,
    stepTokens,
  });

  const [db, settings] = await Promise.all([
    openDatabase({
      url: config.db.kind === "postgres" ? config.db.url : `sqlite:${config.db.file}`,
    }),
    resolveStepTypeSettings(config),
  ]);
  const stepTypes = new StepTypeRegistry();
  const repo = new WorkflowRepo(db);
  const backend = options.backend ?? new LocalBackend({ dataDir: config.dataDir, logger: log });
  let grpcAddress = "";
  const definitions = workflowRepoDefinitions(repo);
  const engine = new Engine({
    db,
    definitions,
    stepTypes,
    backend,
    tokens: stepTokens,
    dataDir: config.dataDir,
    endpoint: () => grpcAddress,
    settings,
    log,
  });
  stepTokens.isAttemptLive = (id) => engine.isAttemptLive(id);
  const triggers = new TriggerManager({ db, engine, repo, definitions, log });

  let server: KaonServer;
  try {
    await engine.start();
    await triggers.start();
    const builtins: ServiceRegistration[] = [
      registerService(
        WorkflowServiceDefinition,
        refreshTriggersOnChange(
          createWorkflowService({
            db,
            stepTypes,
            settings,
            log,
            whileNoRuns: (workflowId, deleteIt) =>
              engineCall(() =>
                engine.whileNoRuns(workflowId, () => hasUnfinishedRuns(db, workflowId), deleteIt),
              ),
          }),
          (workflowId) => triggers.refreshWorkflow(workflowId),
        ),
      ),
      ...engineServices(engine, config.dataDir),
      registerService(TriggerServiceDefinition, createTriggerService({ triggers, engine })),
      registerService(ClusterServiceDefinition, createClusterService({ engine, backend, db })),
    ];
    const extra = options.services ?? [];
    const replaced = new Set(extra.map((s) => s.definition.fullName));
    const services = [...builtins.filter((s) => !replaced.has(s.definition.fullName)), ...extra];

    server = await startServer({
      config,
      services,
      authenticator,
      log,
      handleSignals: options.handleSignals ?? false,
      onShutdown: async () => {
        await triggers.stop();
        await engine.shutdown();
        // sql steps keep a pool per named connection; its idle timers would hold the process.
        await closeSqlConnections();
        await db.destroy();
      },
    });
  } catch (err) {
    // A server that cannot start (port in use, bad TLS file) must not leave the pool or the
    // engine's timers holding the process open.
    await triggers.stop().catch(() => undefined);
    await engine.shutdown().catch(() => undefined);
    await db.destroy().catch(() => undefined);
    throw err;
  }
  grpcAddress = server.grpcAddress;
  log.info("clients authenticate with the admin token file", {
    file: authFiles.adminTokenPath,
  });
  return { ...server, config, stepTokens, authFiles, engine, triggers, settings };
}

/**
 * Step-type settings: configured values first, then defaults that make the embedded server
 * useful on this machine — the repo's virtual environment as the python interpreter (it has
 * the SDK, cloudpickle and pyspark), and the Spark versions found in that interpreter.
 */
async function resolveStepTypeSettings(config: ServerConfig): Promise<StepTypeSettings> {
  const given = config.stepTypeSettings ?? {};
  const defaults = defaultStepTypeSettings();
  const pythonInterpreter =
    given.pythonInterpreter ??
    process.env.KAON_PYTHON ??
    repoVenvPython() ??
    defaults.pythonInterpreter;
  const sparkVersions = given.sparkVersions ?? (await detectSparkVersions(pythonInterpreter));
  return {
    ...defaults,
    ...given,
    pythonInterpreter,
    sparkVersions,
  };
}

/** `.venv/bin/python` of the checkout this core runs from, when `scripts/setup.sh` made one. */
function repoVenvPython(): string | undefined {
  // core/src/server-main.ts (vitest, tsx) or core/dist/server-main.js: the repo is two up.
  const repo = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const python = join(repo, ".venv", "bin", "python");
  return existsSync(python) ? python : undefined;
}

async function hasUnfinishedRuns(db: Db, workflowId: string): Promise<boolean> {
  const row = await db("runs")
    .where({ workflow_id: workflowId })
    .whereIn("status", [RunStatus.RUN_STATUS_QUEUED, RunStatus.RUN_STATUS_RUNNING])
    .first("id");
  return row !== undefined;
}
