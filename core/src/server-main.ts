// The composition root: the one place that knows every part of core and wires them into a
// running server (data dir, secrets, store, engine, backends, services). Everything else talks
// to its neighbours through small interfaces. Today it wires auth and the network edge; the
// store, engine and kaon.v1 services are added here as they land.

import { WorkflowServiceDefinition } from "@kaon/proto";
import { Authenticator, type AuthFiles, loadOrCreateAuthFiles, StepTokens } from "./api/auth.js";
import type { ServiceRegistration } from "./api/registration.js";
import { registerService } from "./api/registration.js";
import { type KaonServer, startServer } from "./api/server.js";
import { createWorkflowService } from "./api/workflow-service.js";
import { ensureDataDir, type ServerConfig } from "./config.js";
import { createLogger, type Logger } from "./log.js";
import { openDatabase } from "./store/db.js";

export interface CreateKaonOptions {
  config: ServerConfig;
  log?: Logger;
  /** Services served in addition to the built-in ones (tests, embedders). */
  services?: readonly ServiceRegistration[];
  /** Shut down on SIGINT/SIGTERM (`kaon server` does). Default false. */
  handleSignals?: boolean;
}

/** A running kaon: the server plus the parts callers may need (e.g. to issue step tokens). */
export interface Kaon extends KaonServer {
  readonly config: ServerConfig;
  readonly stepTokens: StepTokens;
  readonly authFiles: AuthFiles;
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

  const db = await openDatabase({
    url: config.db.kind === "postgres" ? config.db.url : `sqlite:${config.db.file}`,
  });
  const builtins: ServiceRegistration[] = [
    registerService(WorkflowServiceDefinition, createWorkflowService({ db, log })),
  ];
  // Services passed in (tests, embedders) replace a built-in one of the same name.
  const extra = options.services ?? [];
  const replaced = new Set(extra.map((s) => s.definition.fullName));
  const services = [...builtins.filter((s) => !replaced.has(s.definition.fullName)), ...extra];

  const server = await startServer({
    config,
    services,
    authenticator,
    log,
    handleSignals: options.handleSignals ?? false,
    onShutdown: async () => {
      await db.destroy();
    },
  });
  log.info("clients authenticate with the admin token file", {
    file: authFiles.adminTokenPath,
  });
  return { ...server, config, stepTokens, authFiles };
}
