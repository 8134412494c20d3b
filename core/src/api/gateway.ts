// The HTTP JSON gateway: every RPC of every registered service, for the web UI and for curl,
// with no hand-written routes. Routes, request/response types and field shapes all come from
// the service definitions and the descriptor set, and calls go straight to the same
// implementation objects the gRPC server uses (no loopback hop), under the same auth and the
// same closed error contract.
//
//   POST /v1/<Service>/<Method>            body: the request in proto3 JSON; reply: the response
//   POST /kaon.v1.<Service>/<Method>       same, by the gRPC path
//   GET  …same paths…?field=value          read-only methods (NO_SIDE_EFFECTS) and streams only
//   server-streaming methods               Server-Sent Events (`data: <json>` per message, then
//                                          `event: end`; a failure is `event: error`), or
//                                          newline-delimited JSON with `?format=ndjson`
//   GET  /healthz                          200 "ok" while serving (no auth)
//
// Auth: `authorization: Bearer <token>`, or `?access_token=` on GET (EventSource cannot set
// headers). Errors: `{code, message, violations?}` with the HTTP status mapped from the gRPC code.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescMessage } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import { type BinaryCodec, messageFromJson, messageToJson } from "@kaon/proto";
import { type CallContext, Metadata, ServerError, Status } from "nice-grpc";
import type { Logger } from "../log.js";
import type { AuthContext, Authenticator, CallContextExt } from "./auth.js";
import { methodDescriptor } from "./descriptors.js";
import { httpErrorBody, httpStatusOf, toServerError } from "./error-handling.js";
import type { ServiceRegistration } from "./registration.js";

/** Serves a request the gateway does not route (the UI's static files). True if handled. */
export type FallbackHandler = (
  req: IncomingMessage,
  res: ServerResponse,
) => boolean | Promise<boolean>;

export interface GatewayOptions {
  services: readonly ServiceRegistration[];
  authenticator: Authenticator;
  log: Logger;
  /** Larger request bodies get 413. */
  maxBodyBytes: number;
  /** Aborted when the server shuts down: streams end, new calls get 503. */
  shutdown: AbortSignal;
  /** Whether `/healthz` reports serving. */
  isServing?: () => boolean;
  /** Tried for requests outside the API (reserved for the web UI). */
  fallback?: FallbackHandler;
  /** Interval of SSE keep-alive comments. Default 15 s. */
  keepAliveMs?: number;
}

/** One RPC as the gateway exposes it. */
export interface GatewayRoute {
  /** `kaon.v1.RunService` */
  service: string;
  /** `GetRun` */
  method: string;
  /** `/v1/RunService/GetRun` */
  httpPath: string;
  /** `/kaon.v1.RunService/GetRun` */
  grpcPath: string;
  requestType: string;
  responseType: string;
  serverStreaming: boolean;
  /** GET allowed (the method has no side effects). */
  readOnly: boolean;
}

interface RouteEntry extends GatewayRoute {
  requestCodec: BinaryCodec<unknown>;
  responseCodec: BinaryCodec<unknown>;
  handler: (request: unknown, context: CallContext & CallContextExt) => unknown;
  requestSchema: DescMessage;
}

export interface Gateway {
  /** The node:http request listener. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  routes: readonly GatewayRoute[];
  /** Resolves when no call is in flight. */
  idle(): Promise<void>;
}

const RESERVED_QUERY = new Set(["access_token", "format"]);

export function createGateway(options: GatewayOptions): Gateway {
  const log = options.log;
  const table = buildRoutes(options.services);
  const keepAliveMs = options.keepAliveMs ?? 15_000;
  let inFlight = 0;
  let idleWaiters: (() => void)[] = [];

  const finished = () => {
    inFlight--;
    if (inFlight === 0) {
      for (const wake of idleWaiters) wake();
      idleWaiters = [];
    }
  };

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = parseRequestUrl(req.url);
    if (url === undefined) {
      sendError(
        res,
        new ServerError(
          Status.INVALID_ARGUMENT,
          "the request target is not a valid URL; send a path such as /v1/RunService/GetRun",
        ),
      );
      return;
    }
    if (url.pathname === "/healthz") {
      const serving = !options.shutdown.aborted && (options.isServing?.() ?? true);
      res.writeHead(serving ? 200 : 503, { "content-type": "text/plain" });
      res.end(serving ? "ok\n" : "shutting down\n");
      return;
    }
    const route = table.byPath.get(url.pathname);
    if (route === undefined) {
      if (!looksLikeApiPath(url.pathname)) {
        if (options.fallback && (await options.fallback(req, res))) return;
      } else {
        // Callers without credentials learn nothing about the API, not even what is missing.
        try {
          options.authenticator.identify(authorizationOf(req, url));
        } catch (err) {
          sendError(res, toServerError(err, log, url.pathname));
          return;
        }
      }
      sendError(res, notFoundError(req.method ?? "GET", url.pathname, table));
      return;
    }
    if (req.method !== "POST" && !(req.method === "GET" && route.readOnly)) {
      res.setHeader("allow", route.readOnly ? "GET, POST" : "POST");
      sendError(
        res,
        new ServerError(
          Status.UNIMPLEMENTED,
          `${req.method} is not allowed on ${url.pathname}; use POST with a JSON body${route.readOnly ? " (or GET with query parameters)" : ""}`,
        ),
        405,
      );
      return;
    }
    if (options.shutdown.aborted) {
      sendError(res, new ServerError(Status.UNAVAILABLE, "server is shutting down"));
      return;
    }
    let auth: AuthContext;
    let request: unknown;
    try {
      auth = options.authenticator.authenticate(authorizationOf(req, url), route.grpcPath);
      const json =
        req.method === "GET"
          ? queryToJson(url.searchParams, route.requestSchema)
          : await readJsonBody(req, options.maxBodyBytes);
      request = decodeRequest(route, json);
    } catch (err) {
      if (err instanceof HttpError) sendError(res, err.error, err.status);
      else sendError(res, toServerError(err, log, route.grpcPath));
      return;
    }

    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on("close", onClose);
    const signals = route.serverStreaming ? [abort.signal, options.shutdown] : [abort.signal];
    const context: CallContext & CallContextExt = {
      metadata: requestMetadata(req),
      peer: `${req.socket.remoteAddress ?? "unknown"}:${req.socket.remotePort ?? 0}`,
      header: Metadata(),
      trailer: Metadata(),
      sendHeader() {},
      signal: AbortSignal.any(signals),
      auth,
    };
    try {
      if (route.serverStreaming) await streamResponse(route, request, context, url, req, res);
      else await unaryResponse(route, request, context, res);
    } finally {
      res.off("close", onClose);
    }
  }

  async function unaryResponse(
    route: RouteEntry,
    request: unknown,
    context: CallContext & CallContextExt,
    res: ServerResponse,
  ): Promise<void> {
    let body: string;
    try {
      const response = await route.handler(request, context);
      body = JSON.stringify(messageToJson(route.responseCodec, route.responseType, response));
    } catch (err) {
      sendError(res, toServerError(err, log, route.grpcPath, context.signal));
      return;
    }
    if (res.destroyed) return;
    res.writeHead(200, {
      "content-type": "application/json; charset=utf-8",
      "content-length": Buffer.byteLength(body),
    });
    res.end(body);
  }

  async function streamResponse(
    route: RouteEntry,
    request: unknown,
    context: CallContext & CallContextExt,
    url: URL,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const ndjson =
      url.searchParams.get("format") === "ndjson" ||
      (url.searchParams.get("format") !== "sse" &&
        (req.headers.accept ?? "").includes("application/x-ndjson"));
    const frame = (event: string | undefined, data: unknown): string =>
      ndjson
        ? `${JSON.stringify(event === "error" ? { error: data } : data)}\n`
        : `${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(data)}\n\n`;

    // Headers go out at once: a watch may be quiet for minutes and the client should know it is
    // subscribed. Failures after this point travel in the stream (`event: error`).
    res.writeHead(200, {
      "content-type": ndjson ? "application/x-ndjson" : "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      "x-accel-buffering": "no",
    });
    res.flushHeaders();
    const keepAlive = ndjson
      ? undefined
      : setInterval(() => res.write(": keep-alive\n\n"), keepAliveMs).unref();
    const stopped = new Promise<"stopped">((resolve) => {
      if (context.signal.aborted) resolve("stopped");
      context.signal.addEventListener("abort", () => resolve("stopped"), { once: true });
    });
    let iterator: AsyncIterator<unknown> | undefined;
    try {
      iterator = (route.handler(request, context) as AsyncIterable<unknown>)[
        Symbol.asyncIterator
      ]();
      for (;;) {
        const next = await Promise.race([iterator.next(), stopped]);
        if (next === "stopped") {
          void iterator.return?.()?.catch(() => {});
          break;
        }
        if (next.done) {
          if (!ndjson) res.write(frame("end", {}));
          break;
        }
        const json = messageToJson(route.responseCodec, route.responseType, next.value);
        if (!res.write(frame(undefined, json))) {
          await Promise.race([new Promise((resolve) => res.once("drain", resolve)), stopped]);
        }
      }
    } catch (err) {
      const error = toServerError(err, log, route.grpcPath, context.signal);
      if (!res.destroyed) res.write(frame("error", httpErrorBody(error)));
    } finally {
      if (keepAlive) clearInterval(keepAlive);
      res.end();
    }
  }

  return {
    routes: table.routes,
    handle(req, res) {
      inFlight++;
      serve(req, res)
        .catch((err: unknown) => {
          // The path only: the query may hold an access_token.
          const path = (req.url ?? "").replace(/\?.*$/s, "");
          if (!res.headersSent) sendError(res, toServerError(err, log, path));
          else {
            log.error("gateway failed to answer", { path, err });
            res.destroy();
          }
        })
        .finally(finished);
    },
    idle() {
      if (inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
  };
}

interface RouteTable {
  routes: GatewayRoute[];
  byPath: Map<string, RouteEntry>;
  services: Map<string, string[]>;
}

function buildRoutes(services: readonly ServiceRegistration[]): RouteTable {
  const routes: GatewayRoute[] = [];
  const byPath = new Map<string, RouteEntry>();
  const serviceMethods = new Map<string, string[]>();
  const shortNameCount = new Map<string, number>();
  for (const { definition } of services) {
    shortNameCount.set(definition.name, (shortNameCount.get(definition.name) ?? 0) + 1);
  }
  for (const { definition, implementation } of services) {
    const methods: string[] = [];
    for (const [key, method] of Object.entries(definition.methods)) {
      const descriptor = methodDescriptor(definition.fullName, method.name);
      if (descriptor === undefined) {
        throw new Error(
          `gateway: ${definition.fullName}/${method.name} is not in the descriptor set; regenerate the protos (npm run gen)`,
        );
      }
      const fn = (implementation as Record<string, unknown>)[key];
      if (typeof fn !== "function") {
        throw new Error(`gateway: ${definition.fullName} implementation lacks method '${key}'`);
      }
      const unique = shortNameCount.get(definition.name) === 1;
      const entry: RouteEntry = {
        service: definition.fullName,
        method: method.name,
        httpPath: `/v1/${unique ? definition.name : definition.fullName}/${method.name}`,
        grpcPath: `/${definition.fullName}/${method.name}`,
        requestType: descriptor.input.typeName,
        responseType: descriptor.output.typeName,
        serverStreaming: method.responseStream,
        readOnly: method.responseStream || method.options.idempotencyLevel === "NO_SIDE_EFFECTS",
        // ts-proto message consts are full codecs; nice-grpc's type only names what it uses.
        requestCodec: method.requestType as unknown as BinaryCodec<unknown>,
        responseCodec: method.responseType as unknown as BinaryCodec<unknown>,
        handler: (fn as RouteEntry["handler"]).bind(implementation),
        requestSchema: descriptor.input,
      };
      if (method.requestStream) continue; // no client-streaming RPCs over HTTP/1 JSON
      const route: GatewayRoute = {
        service: entry.service,
        method: entry.method,
        httpPath: entry.httpPath,
        grpcPath: entry.grpcPath,
        requestType: entry.requestType,
        responseType: entry.responseType,
        serverStreaming: entry.serverStreaming,
        readOnly: entry.readOnly,
      };
      routes.push(route);
      byPath.set(entry.httpPath, entry);
      byPath.set(entry.grpcPath, entry);
      methods.push(method.name);
    }
    serviceMethods.set(definition.fullName, methods);
  }
  return { routes, byPath, services: serviceMethods };
}

/** The request target as a URL; undefined when it does not parse (e.g. `http://[`). */
function parseRequestUrl(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? "/", "http://gateway");
  } catch {
    return undefined;
  }
}

/** The Authorization header, or on GET the `access_token` query parameter as a bearer token. */
function authorizationOf(req: IncomingMessage, url: URL): string | undefined {
  if (req.headers.authorization !== undefined) return req.headers.authorization;
  const token = req.method === "GET" ? url.searchParams.get("access_token") : null;
  return token === null ? undefined : `Bearer ${token}`;
}

function looksLikeApiPath(path: string): boolean {
  return path.startsWith("/v1/") || /^\/[a-z][\w]*(\.[\w]+)+\//i.test(path);
}

function notFoundError(method: string, path: string, table: RouteTable): ServerError {
  const parts = path.split("/").filter((p) => p !== "");
  const serviceName = parts[0] === "v1" ? parts[1] : parts[0];
  const service = [...table.services.keys()].find(
    (full) => full === serviceName || full.split(".").pop() === serviceName,
  );
  if (service !== undefined) {
    const methods = table.services.get(service) ?? [];
    return new ServerError(
      Status.NOT_FOUND,
      `no route ${method} ${path}: ${service} has no such method; its methods are ${methods.join(", ")}`,
    );
  }
  const names = [...table.services.keys()].map((s) => s.split(".").pop());
  return new ServerError(
    Status.NOT_FOUND,
    `no route ${method} ${path}; API routes look like POST /v1/<Service>/<Method> (e.g. /v1/RunService/GetRun) or POST /<package>.<Service>/<Method>, with the request as a JSON body; services: ${names.length > 0 ? names.join(", ") : "(none registered)"}`,
  );
}

/** An error whose HTTP status is not the usual mapping of its gRPC code (413, 405). */
class HttpError extends Error {
  constructor(
    readonly error: ServerError,
    readonly status: number,
  ) {
    super(error.details);
  }
}

function sendError(res: ServerResponse, error: ServerError, status = httpStatusOf(error.code)) {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(httpErrorBody(error));
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(maxBytes);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ServerError(
      Status.INVALID_ARGUMENT,
      `request body is not valid JSON: ${(err as Error).message}`,
    );
  }
}

function tooLarge(maxBytes: number): HttpError {
  return new HttpError(
    new ServerError(
      Status.RESOURCE_EXHAUSTED,
      `request body is larger than ${maxBytes} bytes; send less data per call`,
    ),
    413,
  );
}

function decodeRequest(route: RouteEntry, json: unknown): unknown {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new ServerError(
      Status.INVALID_ARGUMENT,
      `request body must be a JSON object (${route.requestType}), got ${Array.isArray(json) ? "an array" : json === null ? "null" : typeof json}`,
    );
  }
  try {
    return messageFromJson(route.requestCodec, route.requestType, json);
  } catch (err) {
    throw new ServerError(
      Status.INVALID_ARGUMENT,
      `request body does not match ${route.requestType}: ${(err as Error).message}`,
    );
  }
}

/**
 * Query parameters → proto3 JSON, guided by the request's fields: repeated parameters make
 * lists, booleans parse, message and map fields take JSON text, everything else stays a string
 * (proto3 JSON accepts numbers and enum names as strings).
 */
function queryToJson(params: URLSearchParams, schema: DescMessage): Record<string, unknown> {
  const json: Record<string, unknown> = {};
  for (const key of new Set(params.keys())) {
    if (RESERVED_QUERY.has(key)) continue;
    const values = params.getAll(key);
    const field = schema.fields.find((f) => f.jsonName === key || f.name === key);
    if (field === undefined) {
      json[key] = values[0];
      continue;
    }
    const parse = (value: string, kind: "scalar-bool" | "json" | "text"): unknown => {
      if (kind === "scalar-bool") {
        if (value === "" || value === "true" || value === "1") return true;
        if (value === "false" || value === "0") return false;
        throw new ServerError(
          Status.INVALID_ARGUMENT,
          `query parameter ${key}: '${value}' is not a boolean; use true or false`,
        );
      }
      if (kind === "json") {
        try {
          return JSON.parse(value);
        } catch {
          throw new ServerError(
            Status.INVALID_ARGUMENT,
            `query parameter ${key}: expected JSON for a ${field.fieldKind} field, got '${value}'`,
          );
        }
      }
      return value;
    };
    switch (field.fieldKind) {
      case "scalar":
        json[key] = parse(
          values.at(-1) ?? "",
          field.scalar === ScalarType.BOOL ? "scalar-bool" : "text",
        );
        break;
      case "enum":
        json[key] = values.at(-1);
        break;
      case "list":
        json[key] = values.map((v) =>
          parse(
            v,
            field.listKind === "message"
              ? "json"
              : field.listKind === "scalar" && field.scalar === ScalarType.BOOL
                ? "scalar-bool"
                : "text",
          ),
        );
        break;
      default:
        json[key] = parse(values.at(-1) ?? "", "json");
    }
  }
  return json;
}

/**
 * The HTTP request headers as call metadata, like gRPC's (authorization included), minus
 * cookies (the gateway never authenticates by cookie), `connection`, and `-bin` names, which
 * gRPC reserves for binary values.
 */
function requestMetadata(req: IncomingMessage): Metadata {
  const metadata = Metadata();
  for (const [key, value] of Object.entries(req.headers)) {
    if (value === undefined || key === "cookie" || key === "connection") continue;
    if (key.endsWith("-bin")) continue;
    metadata.set(key, Array.isArray(value) ? value : [value]);
  }
  return metadata;
}
