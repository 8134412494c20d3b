// @kaon/sdk: the TypeScript DSL, client and in-job API over the generated kaon.v1 stubs.
// This file is the whole public surface (STYLE.md §3); users never import generated modules.
export {
  type ConnectOptions,
  connect,
  KaonClient,
  type RunOptions,
} from "./client/client.js";
export {
  DEFAULT_ADDRESS,
  type DiscoveryOptions,
  discoverServer,
  type ServerTarget,
} from "./client/discovery.js";
export { createRawClients, type RawClientOptions, type RawClients } from "./client/raw.js";
export {
  isTerminal,
  type RestartFromInput,
  Run,
  type RunProgress,
  type RunStatusName,
  runStatusName,
  type StepStatusName,
  stepStatusName,
  type WaitOptions,
} from "./client/run.js";
export { CLIENT_NAME, CLIENT_VERSION } from "./client/scm.js";
export * from "./dsl/index.js";
export * from "./errors.js";
export {
  Job,
  type JobContext,
  type JobEnvironment,
  type JobOptions,
  job,
  jobEnvironment,
  jsonProblem,
  type MessageLevelName,
} from "./job/job.js";
export { Reporter, type ReporterOptions } from "./job/reporter.js";
