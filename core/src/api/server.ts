// The network edge of core: one gRPC server (nice-grpc) and one HTTP server (the JSON gateway)
// in front of the same service implementations. It knows services only as
// {definition, implementation} pairs; it adds what every call needs (the error contract, auth),
// plus gRPC health and server reflection, publishes its bound addresses in server.json, and
// shuts down gracefully: stop accepting, end streams, let unary calls finish within a grace
// period, then run the owner's `onShutdown` (the engine flushes there).
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { ServerCredentials } from "@grpc/grpc-js";
import { createServer } from "nice-grpc";
import { HealthDefinition, HealthServiceImpl, HealthState } from "nice-grpc-server-health";
import { ServerReflection, ServerReflectionService } from "nice-grpc-server-reflection";
import {
  dialableHost,
  formatAddress,
  type ListenAddress,
  removeServerInfo,
  type ServerConfig,
  type ServerInfo,
  writeServerInfo,
} from "../config.js";
import { createLogger, type Logger } from "../log.js";
import { type Authenticator, authMiddleware } from "./auth.js";
import { serverProtoset } from "./descriptors.js";
import { errorMiddleware } from "./error-handling.js";
import { createGateway, type FallbackHandler, type GatewayRoute } from "./gateway.js";
import { leanMethods, leanUnaryInterceptor } from "./lean-unary.js";
import type { ServiceRegistration } from "./registration.js";

export interface StartServerOptions {
  /** Listen addresses, TLS, grace period, body limit, and the data dir for server.json. */
  config: Pick<
    ServerConfig,
    "dataDir" | "grpcListen" | "httpListen" | "shutdownGraceMs" | "maxHttpBodyBytes"
  > & { tls?: ServerConfig["tls"] };
  /** The kaon services to serve (over gRPC and the gateway). */
  services: readonly ServiceRegistration[];
  authenticator: Authenticator;
  log?: Logger;
  /** Runs once after in-flight calls ended (or the grace period ran out) on shutdown. */
  onShutdown?: () => void | Promise<void>;
  /** Serves non-API HTTP requests (reserved for the web UI's static files). */
  httpFallback?: FallbackHandler;
  /** Write `<data-dir>/server.json` once listening (default true). */
  publishServerInfo?: boolean;
  /** Shut down on SIGINT/SIGTERM (default false; `kaon server` turns it on). */
  handleSignals?: boolean;
}

export interface KaonServer {
  /** Dialable gRPC address, `host:port` with the bound port. */
  readonly grpcAddress: string;
  /** Dialable HTTP address, `host:port` with the bound port. */
  readonly httpAddress: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly tls: boolean;
  /** Every route of the HTTP gateway. */
  readonly routes: readonly GatewayRoute[];
  /** Serving status reported by gRPC health and /healthz. */
  readonly health: ReturnType<typeof HealthState>;
  /** Graceful shutdown; safe to call more than once (later calls await the first). */
  shutdown(reason?: string): Promise<void>;
  /** Resolves when the server has shut down. */
  readonly closed: Promise<void>;
}

/** Full names of the services every server exposes without auth. */
export const UNAUTHENTICATED_SERVICES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
] as const;

export async function startServer(options: StartServerOptions): Promise<KaonServer> {
  const { config, services, authenticator } = options;
  const log = options.log ?? createLogger();
  const shutdownController = new AbortController();

  const health = HealthState();
  const grpcLog = log.child({ component: "grpc" });
  const grpc = createServer({
    "grpc.max_receive_message_length": config.maxHttpBodyBytes,
    // Channelz keeps per-call statistics nobody here reads; it cost ~4 % of a Report call.
    "grpc.enable_channelz": 0,
    // Methods marked leanUnary (JobService) are answered here, without nice-grpc's per-call
    // machinery; same auth, implementation and error contract (see lean-unary.ts).
    interceptors: [
      leanUnaryInterceptor({ methods: leanMethods(services), authenticator, log: grpcLog }),
    ],
  }).use(errorMiddleware(grpcLog, shutdownController.signal));
  grpc.add(HealthDefinition, HealthServiceImpl(health));
  grpc.add(
    ServerReflectionService,
    ServerReflection(serverProtoset(), [
      ...services.map((s) => s.definition.fullName),
      HealthDefinition.fullName,
    ]),
  );
  const authenticated = grpc.with(authMiddleware(authenticator));
  for (const { definition, implementation } of services) {
    authenticated.add(definition, implementation);
  }

  const gateway = createGateway({
    services,
    authenticator,
    log: log.child({ component: "gateway" }),
    maxBodyBytes: config.maxHttpBodyBytes,
    shutdown: shutdownController.signal,
    ...(options.httpFallback ? { fallback: options.httpFallback } : {}),
  });

  const tlsFiles = config.tls
    ? { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile) }
    : undefined;
  const credentials = tlsFiles
    ? ServerCredentials.createSsl(null, [{ cert_chain: tlsFiles.cert, private_key: tlsFiles.key }])
    : ServerCredentials.createInsecure();

  let grpcPort: number;
  try {
    grpcPort = await grpc.listen(formatAddress(config.grpcListen), credentials);
  } catch (err) {
    grpc.forceShutdown();
    throw listenError("gRPC", "--grpc-listen", config.grpcListen, config.dataDir, err);
  }

  const http: HttpServer = tlsFiles
    ? createHttpsServer({ cert: tlsFiles.cert, key: tlsFiles.key }, gateway.handle)
    : createHttpServer(gateway.handle);
  let httpPort: number;
  try {
    httpPort = await listenHttp(http, config.httpListen);
  } catch (err) {
    grpc.forceShutdown();
    throw listenError("HTTP", "--http-listen", config.httpListen, config.dataDir, err);
  }

  const grpcAddress = formatAddress({ host: dialableHost(config.grpcListen.host), port: grpcPort });
  const httpAddress = formatAddress({ host: dialableHost(config.httpListen.host), port: httpPort });
  const publish = options.publishServerInfo ?? true;
  if (publish) {
    const info: ServerInfo = {
      grpc: grpcAddress,
      http: httpAddress,
      pid: process.pid,
      tls: config.tls !== undefined,
      startedAt: new Date().toISOString(),
    };
    if (config.tls) info.tlsCert = config.tls.certFile;
    writeServerInfo(config.dataDir, info);
  }

  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  let shuttingDown: Promise<void> | undefined;
  const removeSignalHandlers = options.handleSignals ? installSignalHandlers() : () => {};

  async function shutdown(reason = "requested"): Promise<void> {
    if (shuttingDown) return shuttingDown;
    shuttingDown = (async () => {
      log.info("shutting down", { reason, graceMs: config.shutdownGraceMs });
      health.setStatus("unhealthy");
      shutdownController.abort();
      const grace = deadline(config.shutdownGraceMs);
      const httpClosed = new Promise<void>((resolve) => http.close(() => resolve()));
      http.closeIdleConnections();
      const drained = await Promise.race([
        Promise.all([grpc.shutdown(), gateway.idle()]).then(() => true),
        grace.expired.then(() => false),
      ]);
      grace.cancel();
      if (!drained) {
        log.warn("grace period over; cancelling calls still in flight");
        grpc.forceShutdown();
      }
      http.closeAllConnections();
      await httpClosed;
      try {
        await options.onShutdown?.();
      } catch (err) {
        log.error("shutdown hook failed", { err });
      }
      if (publish) removeServerInfo(config.dataDir);
      removeSignalHandlers();
      log.info("stopped");
      resolveClosed();
    })();
    return shuttingDown;
  }

  function installSignalHandlers(): () => void {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn("second signal: exiting without waiting", { signal });
        process.exit(130);
      }
      void shutdown(signal);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    return () => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    };
  }

  log.info("kaon server listening", {
    grpc: grpcAddress,
    http: httpAddress,
    tls: config.tls !== undefined,
    services: services.map((s) => s.definition.fullName),
  });

  return {
    grpcAddress,
    httpAddress,
    grpcPort,
    httpPort,
    tls: config.tls !== undefined,
    routes: gateway.routes,
    health,
    shutdown,
    closed,
  };
}

function listenHttp(server: HttpServer, address: ListenAddress): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once("error", onError);
    server.listen(address.port, address.host, () => {
      server.off("error", onError);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function listenError(
  what: string,
  flag: string,
  address: ListenAddress,
  dataDir: string,
  cause: unknown,
): Error {
  const detail = cause instanceof Error ? cause.message : String(cause);
  return new Error(
    `cannot listen for ${what} on ${formatAddress(address)} (${detail}); is another kaon server running (see ${dataDir}/server.json)? Choose another address with ${flag} host:port`,
    { cause },
  );
}

function deadline(ms: number): { expired: Promise<void>; cancel(): void } {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
    timer.unref();
  });
  return { expired, cancel: () => clearTimeout(timer) };
}
