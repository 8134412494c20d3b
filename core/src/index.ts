// The public surface of @kaon/core for embedders and tests: start a server, configure it, and
// the types a service implementation needs. Internals stay behind their modules.
export {
  type AuthContext,
  Authenticator,
  type CallContextExt,
  type StepIdentity,
  StepTokens,
} from "./api/auth.js";
export {
  failedPrecondition,
  InvalidArgumentError,
  notFound,
  ServerError,
  Status,
  violation,
} from "./api/errors.js";
export type { GatewayRoute } from "./api/gateway.js";
export { registerService, type ServiceRegistration } from "./api/registration.js";
export { type KaonServer, type StartServerOptions, startServer } from "./api/server.js";
export {
  ConfigError,
  readServerInfo,
  resolveDataDir,
  resolveServerConfig,
  type ServerConfig,
  type ServerFlags,
  type ServerInfo,
} from "./config.js";
export { createLogger, type Logger, type LogLevel, silentLogger } from "./log.js";
export { type CreateKaonOptions, createKaon, type Kaon } from "./server-main.js";
