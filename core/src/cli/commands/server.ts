// `kaon server`: runs the server in the foreground with structured logs until SIGINT/SIGTERM,
// then shuts down gracefully. All settings and defaults are documented in config.ts.
import type { Command } from "commander";
import {
  ConfigError,
  DEFAULT_GRPC_LISTEN,
  DEFAULT_HTTP_LISTEN,
  resolveServerConfig,
} from "../../config.js";
import { createLogger, isLogLevel } from "../../log.js";
import { createKaon } from "../../server-main.js";
import { type CliContext, CliError, EXIT } from "../client.js";

interface ServerOptions {
  grpcListen?: string;
  httpListen?: string;
  db?: string;
  tlsCert?: string;
  tlsKey?: string;
  logLevel?: string;
  shutdownGrace?: string;
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command("server")
    .description("run the kaon server in the foreground (Ctrl-C stops it gracefully)")
    .option(
      "--grpc-listen <host:port>",
      `gRPC listen address, port 0 = any free port (env KAON_GRPC_LISTEN; default ${DEFAULT_GRPC_LISTEN})`,
    )
    .option(
      "--http-listen <host:port>",
      `HTTP gateway listen address (env KAON_HTTP_LISTEN; default ${DEFAULT_HTTP_LISTEN})`,
    )
    .option(
      "--db <url>",
      "database: postgres://user:pass@host/db, or a SQLite file (env KAON_DB; default <data-dir>/kaon.db)",
    )
    .option(
      "--tls-cert <file>",
      "PEM certificate; serve gRPC and HTTP over TLS (env KAON_TLS_CERT)",
    )
    .option("--tls-key <file>", "PEM private key for --tls-cert (env KAON_TLS_KEY)")
    .option("--log-level <level>", "debug, info, warn or error (env KAON_LOG_LEVEL; default info)")
    .option(
      "--shutdown-grace <ms>",
      "time in-flight calls get to finish on shutdown (default 10000)",
    )
    .action(async (options: ServerOptions) => {
      if (options.logLevel !== undefined && !isLogLevel(options.logLevel)) {
        throw new CliError(
          `--log-level: '${options.logLevel}' is not a level; use debug, info, warn or error`,
          EXIT.usage,
        );
      }
      const grace = options.shutdownGrace === undefined ? undefined : Number(options.shutdownGrace);
      if (grace !== undefined && !(Number.isInteger(grace) && grace >= 0)) {
        throw new CliError(
          `--shutdown-grace: '${options.shutdownGrace}' is not a number of milliseconds`,
          EXIT.usage,
        );
      }
      let config: ReturnType<typeof resolveServerConfig>;
      try {
        config = resolveServerConfig({
          dataDir: ctx.globals().dataDir,
          grpcListen: options.grpcListen,
          httpListen: options.httpListen,
          db: options.db,
          tlsCert: options.tlsCert,
          tlsKey: options.tlsKey,
          shutdownGraceMs: grace,
        });
      } catch (error) {
        if (error instanceof ConfigError) throw new CliError(error.message, EXIT.usage);
        throw error;
      }
      const log = createLogger(options.logLevel ? { level: options.logLevel as "info" } : {});
      const kaon = await createKaon({ config, log, handleSignals: true });
      await kaon.closed;
    });
}
