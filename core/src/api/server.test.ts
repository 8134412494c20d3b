// The network edge against the real thing: a server on 127.0.0.1:0 with a temp data dir,
// real kaon.v1 service definitions with small test implementations, called over gRPC and HTTP.
import { existsSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import {
  ClusterServiceDefinition,
  JobServiceDefinition,
  type ListAgentsResponse,
  Run,
  RunServiceDefinition,
  RunStatus,
  type WatchRunResponse,
} from "@kaon/proto";
import {
  ClientError,
  createChannel,
  createClient,
  ServerError,
  Status,
  type TsProtoServiceDefinition,
} from "nice-grpc";
import {
  HealthCheckResponse_ServingStatus,
  HealthDefinition,
} from "nice-grpc-server-health/lib/proto/grpc/health/v1/health.js";
import { ServerReflectionService } from "nice-grpc-server-reflection";
import { ServerReflectionRequest } from "nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CliContext, KaonClientError } from "../cli/client.js";
import { createLogger } from "../log.js";
import { Authenticator, type CallContextExt, StepTokens } from "./auth.js";
import { InvalidArgumentError, violation } from "./errors.js";
import { leanUnary } from "./lean-unary.js";
import { registerService, type ServiceRegistration } from "./registration.js";
import { startServer } from "./server.js";
import { startTestKaon, type TestKaon } from "./testing.js";

/** Every method of `definition` answers UNIMPLEMENTED, except those in `overrides`. */
function implement<D extends TsProtoServiceDefinition>(
  definition: D,
  overrides: Record<string, unknown>,
): ServiceRegistration {
  const impl: Record<string, unknown> = {};
  for (const [key, method] of Object.entries(definition.methods)) {
    const fail = () => new ServerError(Status.UNIMPLEMENTED, `${method.name}: not in this test`);
    impl[key] =
      overrides[key] ??
      (method.responseStream
        ? // biome-ignore lint/correctness/useYield: it only fails
          async function* () {
            throw fail();
          }
        : async () => {
            throw fail();
          });
  }
  return registerService(definition, impl as never);
}

const agent = {
  id: "agent-1",
  hostname: "box",
  backend: "local",
  attributes: { zone: "a" },
  total: { cpus: 4, memMb: 8192, gpus: 0, diskMb: 0 },
  used: { cpus: 1.5, memMb: 512, gpus: 0, diskMb: 0 },
  runningTasks: 2,
  lastSeenAt: new Date("2024-05-01T12:00:00Z"),
};

/** Resolves once the watch stream for run "forever" saw its signal abort. */
let foreverAborted: () => void = () => {};
const foreverAbortedPromise = new Promise<void>((resolve) => {
  foreverAborted = resolve;
});

const cluster = implement(ClusterServiceDefinition, {
  listAgents: async (): Promise<ListAgentsResponse> => ({ agents: [agent] }),
  setQuota: async (request: { namespace: string; quota?: { maxTasks: number } }) => {
    if ((request.quota?.maxTasks ?? 0) < 0) {
      throw new InvalidArgumentError("bad quota", [
        violation(
          "quota.max_tasks",
          `must be >= 0, got ${request.quota?.maxTasks}`,
          "use 0 for no limit",
        ),
      ]);
    }
    return {};
  },
});

const runs = implement(RunServiceDefinition, {
  getRun: async (request: { runId: string }) => {
    if (request.runId === "boom") throw new Error("secret detail of a bug");
    throw new ServerError(Status.NOT_FOUND, `run '${request.runId}' does not exist`);
  },
  watchRun: async function* (
    request: { runId: string },
    context: CallContextExt & { signal: AbortSignal },
  ): AsyncGenerator<WatchRunResponse> {
    const message = (seq: number): WatchRunResponse => ({
      events: [],
      run: Run.fromPartial({
        id: request.runId,
        workflowId: "wf",
        version: seq,
        status: RunStatus.RUN_STATUS_RUNNING,
      }),
    });
    if (request.runId === "forever") {
      yield message(1);
      await new Promise<void>((resolve) =>
        context.signal.addEventListener("abort", () => resolve(), { once: true }),
      );
      foreverAborted();
      return;
    }
    for (let seq = 1; seq <= 3; seq++) yield message(seq);
    if (request.runId === "fails")
      throw new ServerError(Status.FAILED_PRECONDITION, "run went away");
  },
});

/** What the stand-in's lean Report saw of its call context, by sequence. */
const leanContexts = new Map<number, string[]>();

const jobs = implement(JobServiceDefinition, {
  getContext: async (_request: unknown, context: CallContextExt) => {
    if (context.auth.kind !== "step") throw new ServerError(Status.PERMISSION_DENIED, "not a step");
    return { runId: context.auth.runId, path: context.auth.path, attempt: context.auth.attempt };
  },
  // Served by the lean path over gRPC (lean-unary.ts), by the gateway over HTTP.
  report: leanUnary(async (request: { sequence: number }, context) => {
    leanContexts.set(request.sequence, Object.keys(context).sort());
    if (request.sequence === 2) {
      throw new InvalidArgumentError("bad batch", [
        violation("items[0]", "lean violation", "a hint"),
      ]);
    }
    if (request.sequence === 3) throw new Error("secret detail of a lean bug");
    if (request.sequence === 4) throw new ServerError(Status.NOT_FOUND, "lean not found");
    return { appliedSequence: request.sequence };
  }),
});

let t: TestKaon;

beforeAll(async () => {
  t = await startTestKaon({ services: [cluster, runs, jobs], config: { maxHttpBodyBytes: 4096 } });
});

afterAll(async () => {
  await t?.stop();
});

describe("secrets in the data directory", () => {
  it("writes admin.token and secret.key with mode 0600", () => {
    for (const file of ["admin.token", "secret.key"]) {
      const path = join(t.dataDir, file);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(readFileSync(path, "utf8").trim()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
    expect(readFileSync(join(t.dataDir, "admin.token"), "utf8").trim()).toBe(t.adminToken);
  });

  it("publishes the bound addresses in server.json", () => {
    const info = JSON.parse(readFileSync(join(t.dataDir, "server.json"), "utf8"));
    expect(info).toMatchObject({
      grpc: t.kaon.grpcAddress,
      http: t.kaon.httpAddress,
      pid: process.pid,
    });
    expect(t.kaon.grpcPort).toBeGreaterThan(0);
    expect(t.kaon.httpPort).toBeGreaterThan(0);
  });
});

describe("gRPC", () => {
  it("refuses a call without a token, naming the token file and KAON_TOKEN", async () => {
    const error = await t
      .client(ClusterServiceDefinition, null)
      .listAgents({})
      .catch((e) => e);
    expect(error).toBeInstanceOf(ClientError);
    expect(error.code).toBe(Status.UNAUTHENTICATED);
    expect(error.details).toContain(join(t.dataDir, "admin.token"));
    expect(error.details).toContain("KAON_TOKEN");
  });

  it("refuses a wrong token", async () => {
    const error = await t
      .client(ClusterServiceDefinition, "nope")
      .listAgents({})
      .catch((e) => e);
    expect(error.code).toBe(Status.UNAUTHENTICATED);
    expect(error.details).toMatch(/invalid token/);
  });

  it("serves an admin call", async () => {
    const response = await t.client(ClusterServiceDefinition).listAgents({});
    expect(response.agents).toEqual([agent]);
  });

  it("reports health SERVING without a token", async () => {
    const channel = createChannel(t.kaon.grpcAddress);
    try {
      const health = createClient(HealthDefinition, channel);
      const response = await health.check({ service: "" });
      expect(response.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    } finally {
      channel.close();
    }
  });

  it("answers server reflection without a token (what grpcurl uses)", async () => {
    const channel = createChannel(t.kaon.grpcAddress);
    try {
      const reflection = createClient(ServerReflectionService, channel);
      const list = new ServerReflectionRequest();
      list.setListServices("*");
      const file = new ServerReflectionRequest();
      file.setFileContainingSymbol("kaon.v1.ClusterService");
      const health = new ServerReflectionRequest();
      health.setFileContainingSymbol("grpc.health.v1.Health");
      const responses = [];
      for await (const response of reflection.serverReflectionInfo(
        (async function* () {
          yield list;
          yield file;
          yield health;
        })(),
      )) {
        responses.push(response);
      }
      const names = responses[0]
        ?.getListServicesResponse()
        ?.getServiceList()
        .map((s) => s.getName());
      expect(names).toEqual(
        expect.arrayContaining([
          "kaon.v1.ClusterService",
          "kaon.v1.RunService",
          "kaon.v1.JobService",
          "grpc.health.v1.Health",
        ]),
      );
      expect(
        responses[1]?.getFileDescriptorResponse()?.getFileDescriptorProtoList().length,
      ).toBeGreaterThan(0);
      expect(responses[1]?.hasErrorResponse()).toBe(false);
      expect(responses[2]?.hasErrorResponse()).toBe(false);
    } finally {
      channel.close();
    }
  });

  it("sends InvalidArgumentError violations in the trailer (decoded by the CLI client)", async () => {
    const ctx = new CliContext(() => ({ address: t.kaon.grpcAddress, token: t.adminToken }));
    try {
      const error = await ctx
        .client(ClusterServiceDefinition)
        .setQuota({ namespace: "ml", quota: { maxTasks: -1 } })
        .catch((e) => e);
      expect(error).toBeInstanceOf(KaonClientError);
      expect(error.code).toBe(Status.INVALID_ARGUMENT);
      expect(error.violations).toEqual([
        {
          field: "quota.max_tasks",
          description: "must be >= 0, got -1",
          hint: "use 0 for no limit",
        },
      ]);
      const described = ctx.describeError(error);
      expect(described.exitCode).toBe(1);
      expect(described.message).toBe(
        "bad quota\n  quota.max_tasks: must be >= 0, got -1 (use 0 for no limit)",
      );
    } finally {
      ctx.close();
    }
  });

  it("answers an unexpected exception with INTERNAL, no stack, and logs the stack", async () => {
    const error = await t
      .client(RunServiceDefinition)
      .getRun({ runId: "boom" })
      .catch((e) => e);
    expect(error.code).toBe(Status.INTERNAL);
    expect(error.details).toBe("internal error (see server log)");
    const logged = t.logs.find((l) => l.msg === "unexpected error in handler");
    expect(logged?.method).toBe("/kaon.v1.RunService/GetRun");
    expect(JSON.stringify(logged?.err)).toContain("secret detail of a bug");
    expect((logged?.err as { stack?: string } | undefined)?.stack).toContain("server.test.ts");
  });

  it("passes ServerErrors through", async () => {
    const error = await t
      .client(RunServiceDefinition)
      .getRun({ runId: "r1" })
      .catch((e) => e);
    expect(error.code).toBe(Status.NOT_FOUND);
    expect(error.details).toBe("run 'r1' does not exist");
  });
});

describe("step tokens", () => {
  it("lets a step token call JobService for its own identity only", async () => {
    // The attempt is a fiction of this test (its JobService is a stand-in), so tell the token
    // check it is live; the engine answers that question in a real server.
    const live = t.kaon.stepTokens.isAttemptLive;
    t.kaon.stepTokens.isAttemptLive = (id) => id.runId === "run-7" || live(id);
    const token = t.kaon.stepTokens.issue({ runId: "run-7", path: "sweep[2].train", attempt: 3 });
    expect(token.startsWith("kst_")).toBe(true);
    const context = await t.client(JobServiceDefinition, token).getContext({});
    expect(context).toMatchObject({ runId: "run-7", path: "sweep[2].train", attempt: 3 });

    const denied = await t
      .client(ClusterServiceDefinition, token)
      .listAgents({})
      .catch((e) => e);
    expect(denied.code).toBe(Status.PERMISSION_DENIED);
    expect(denied.details).toContain("kaon.v1.JobService");

    const http = await t.http("/v1/ClusterService/ListAgents", { method: "POST", token });
    expect(http.status).toBe(403);
  });

  it("stops working when the attempt ends, and rejects tampered tokens", async () => {
    const tokens = t.kaon.stepTokens;
    const token = tokens.issue({ runId: "run-8", path: "train", attempt: 1 });
    const tampered = token.replace(
      /^kst_[^.]+/,
      `kst_${Buffer.from('{"r":"run-9","p":"train","a":1}').toString("base64url")}`,
    );
    expect(tokens.verify(tampered)).toBeNull();
    const bad = await t
      .client(JobServiceDefinition, tampered)
      .getContext({})
      .catch((e) => e);
    expect(bad.code).toBe(Status.UNAUTHENTICATED);

    const previous = tokens.isAttemptLive;
    tokens.isAttemptLive = (id) => id.runId !== "run-8";
    try {
      expect(tokens.verify(token)).toBeNull();
      expect(tokens.decode(token)).toEqual({ runId: "run-8", path: "train", attempt: 1 });
      const ended = await t
        .client(JobServiceDefinition, token)
        .getContext({})
        .catch((e) => e);
      expect(ended.code).toBe(Status.UNAUTHENTICATED);
      expect(ended.details).toContain("attempt has ended");
    } finally {
      tokens.isAttemptLive = previous;
    }
  });

  it("does not accept tokens signed with another secret", () => {
    const other = new StepTokens(Buffer.alloc(32, 7));
    const token = other.issue({ runId: "r", path: "p", attempt: 1 });
    expect(other.verify(token)).toEqual({ runId: "r", path: "p", attempt: 1 });
    expect(t.kaon.stepTokens.verify(token)).toBeNull();
  });
});

describe("lean unary path (JobService)", () => {
  it("answers leanUnary methods without nice-grpc's call context, with the same auth and error contract", async () => {
    const admin = t.client(JobServiceDefinition);
    expect((await admin.report({ sequence: 1, items: [] })).appliedSequence).toBe(1);
    // The lean path hands the method only the caller's identity.
    expect(leanContexts.get(1)).toEqual(["auth"]);

    const ctx = new CliContext(() => ({ address: t.kaon.grpcAddress, token: t.adminToken }));
    try {
      const error = await ctx
        .client(JobServiceDefinition)
        .report({ sequence: 2, items: [] })
        .catch((e) => e);
      expect(error).toBeInstanceOf(KaonClientError);
      expect(error.code).toBe(Status.INVALID_ARGUMENT);
      expect(error.violations).toEqual([
        { field: "items[0]", description: "lean violation", hint: "a hint" },
      ]);
      expect(ctx.describeError(error).message).toBe(
        "bad batch\n  items[0]: lean violation (a hint)",
      );
    } finally {
      ctx.close();
    }

    const internal = await admin.report({ sequence: 3, items: [] }).catch((e) => e);
    expect(internal.code).toBe(Status.INTERNAL);
    expect(internal.details).toBe("internal error (see server log)");
    const logged = t.logs.find(
      (l) => l.msg === "unexpected error in handler" && l.method === "/kaon.v1.JobService/Report",
    );
    expect(JSON.stringify(logged?.err)).toContain("secret detail of a lean bug");

    const notFound = await admin.report({ sequence: 4, items: [] }).catch((e) => e);
    expect(notFound.code).toBe(Status.NOT_FOUND);
    expect(notFound.details).toBe("lean not found");

    // Authentication runs first, as for every other method.
    const anonymous = await t
      .client(JobServiceDefinition, null)
      .report({ sequence: 5, items: [] })
      .catch((e) => e);
    expect(anonymous.code).toBe(Status.UNAUTHENTICATED);
    expect(anonymous.details).toContain("missing credentials");
    expect(leanContexts.has(5)).toBe(false);

    // The gateway calls the same implementation, with its full context.
    const http = await t.http("/v1/JobService/Report", {
      method: "POST",
      body: JSON.stringify({ sequence: 6, items: [] }),
      headers: { "content-type": "application/json" },
    });
    expect(http.status).toBe(200);
    expect(await http.json()).toEqual({ appliedSequence: "6" });
  });
});

describe("HTTP JSON gateway", () => {
  it("derives a route for every method of every registered service", () => {
    for (const definition of [
      ClusterServiceDefinition,
      RunServiceDefinition,
      JobServiceDefinition,
    ]) {
      const expected = Object.values(definition.methods).map(
        (m) => `/v1/${definition.name}/${m.name}`,
      );
      const actual = t.kaon.routes
        .filter((r) => r.service === definition.fullName)
        .map((r) => r.httpPath);
      expect(actual.sort()).toEqual(expected.sort());
    }
    const watch = t.kaon.routes.find((r) => r.method === "WatchRun");
    expect(watch).toMatchObject({
      requestType: "kaon.v1.WatchRunRequest",
      responseType: "kaon.v1.WatchRunResponse",
      serverStreaming: true,
      grpcPath: "/kaon.v1.RunService/WatchRun",
    });
  });

  it("refuses a call without a token with 401 naming the token file", async () => {
    const response = await t.http("/v1/ClusterService/ListAgents", { method: "POST", token: null });
    expect(response.status).toBe(401);
    const body = await errorBody(response);
    expect(body.code).toBe("UNAUTHENTICATED");
    expect(body.message).toContain(join(t.dataDir, "admin.token"));
    expect(body.message).toContain("KAON_TOKEN");
  });

  it("answers in proto3 JSON, by short and by gRPC path, POST and (read-only) GET", async () => {
    const expected = {
      agents: [
        {
          id: "agent-1",
          hostname: "box",
          backend: "local",
          attributes: { zone: "a" },
          total: { cpus: 4, memMb: 8192 },
          used: { cpus: 1.5, memMb: 512 },
          runningTasks: 2,
          lastSeenAt: "2024-05-01T12:00:00Z",
        },
      ],
    };
    for (const [path, method] of [
      ["/v1/ClusterService/ListAgents", "POST"],
      ["/kaon.v1.ClusterService/ListAgents", "POST"],
      ["/v1/ClusterService/ListAgents", "GET"],
    ] as const) {
      const response = await t.http(path, { method, ...(method === "POST" ? { body: "{}" } : {}) });
      expect(response.status, `${method} ${path}`).toBe(200);
      expect(response.headers.get("content-type")).toContain("application/json");
      expect(await response.json()).toEqual(expected);
    }
  });

  it("rejects GET on a method with side effects", async () => {
    const response = await t.http("/v1/ClusterService/SetQuota");
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("POST");
  });

  it("maps errors to HTTP statuses with a JSON body, violations included", async () => {
    const invalid = await t.http("/v1/ClusterService/SetQuota", {
      method: "POST",
      body: JSON.stringify({ namespace: "ml", quota: { maxTasks: -1 } }),
    });
    expect(invalid.status).toBe(400);
    expect(await invalid.json()).toEqual({
      code: "INVALID_ARGUMENT",
      message: "bad quota\n  quota.max_tasks: must be >= 0, got -1 (use 0 for no limit)",
      violations: [
        {
          field: "quota.max_tasks",
          description: "must be >= 0, got -1",
          hint: "use 0 for no limit",
        },
      ],
    });

    const notFound = await t.http("/v1/RunService/GetRun", {
      method: "POST",
      body: '{"runId":"r2"}',
    });
    expect(notFound.status).toBe(404);
    expect(await notFound.json()).toEqual({
      code: "NOT_FOUND",
      message: "run 'r2' does not exist",
    });

    const internal = await t.http("/v1/RunService/GetRun?run_id=boom");
    expect(internal.status).toBe(500);
    expect(await internal.json()).toEqual({
      code: "INTERNAL",
      message: "internal error (see server log)",
    });

    const unimplemented = await t.http("/v1/ClusterService/ListQueue", { method: "POST" });
    expect(unimplemented.status).toBe(501);
  });

  it("explains unknown routes", async () => {
    const unknown = await t.http("/v1/NoService/Foo", { method: "POST" });
    expect(unknown.status).toBe(404);
    const body = await errorBody(unknown);
    expect(body.message).toContain("POST /v1/<Service>/<Method>");
    expect(body.message).toContain("ClusterService");

    const method = await t.http("/v1/RunService/GetRunz", { method: "POST" });
    expect(method.status).toBe(404);
    expect((await errorBody(method)).message).toContain("GetRun, ListRuns");
  });

  it("rejects bad JSON, unknown fields and oversized bodies with a reason", async () => {
    const badJson = await t.http("/v1/RunService/GetRun", { method: "POST", body: '{"runId": ' });
    expect(badJson.status).toBe(400);
    expect((await errorBody(badJson)).message).toMatch(/^request body is not valid JSON: /);

    const unknownField = await t.http("/v1/RunService/GetRun", {
      method: "POST",
      body: '{"rnuId":"x"}',
    });
    expect(unknownField.status).toBe(400);
    const body = await errorBody(unknownField);
    expect(body.message).toContain("kaon.v1.GetRunRequest");
    expect(body.message).toContain("rnuId");

    const notObject = await t.http("/v1/RunService/GetRun", { method: "POST", body: "[1]" });
    expect(notObject.status).toBe(400);

    const big = await t.http("/v1/RunService/GetRun", {
      method: "POST",
      body: JSON.stringify({ runId: "x".repeat(5000) }),
    });
    expect(big.status).toBe(413);
  });

  it("streams a server-streaming method as Server-Sent Events, token in the query", async () => {
    const response = await fetch(
      `http://${t.kaon.httpAddress}/v1/RunService/WatchRun?run_id=r5&access_token=${t.adminToken}`,
    );
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/event-stream");
    const frames = (await response.text()).split("\n\n").filter((f) => f !== "");
    expect(frames).toHaveLength(4);
    for (const [i, frame] of frames.slice(0, 3).entries()) {
      const data = JSON.parse(frame.replace(/^data: /, ""));
      expect(data.run).toMatchObject({ id: "r5", version: i + 1, status: "RUN_STATUS_RUNNING" });
    }
    expect(frames[3]).toBe("event: end\ndata: {}");
  });

  it("streams newline-delimited JSON with ?format=ndjson, errors in-band", async () => {
    const response = await t.http("/v1/RunService/WatchRun?format=ndjson", {
      method: "POST",
      body: JSON.stringify({ runId: "fails" }),
    });
    expect(response.headers.get("content-type")).toBe("application/x-ndjson");
    const lines = (await response.text())
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(4);
    expect(lines[2].run.version).toBe(3);
    expect(lines[3]).toEqual({ error: { code: "FAILED_PRECONDITION", message: "run went away" } });

    const sse = await t.http("/v1/RunService/WatchRun?run_id=fails");
    const text = await sse.text();
    expect(text).toContain(
      'event: error\ndata: {"code":"FAILED_PRECONDITION","message":"run went away"}',
    );
  });

  it("aborts the handler's signal when the HTTP client goes away", async () => {
    const controller = new AbortController();
    const response = await t.http("/v1/RunService/WatchRun?run_id=forever", {
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('"id":"forever"');
    controller.abort();
    await foreverAbortedPromise; // the test times out if the signal never aborts
  });

  it("answers an unparsable request target with 400 and keeps its token out of the log", async () => {
    const [host, port] = t.kaon.httpAddress.split(":") as [string, string];
    const secret = `${t.adminToken}`;
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), host, () => {
        socket.write(
          `GET http://[/v1/RunService/GetRun?access_token=${secret} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
        );
      });
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        text += chunk;
      });
      socket.on("end", () => resolve(text));
      socket.on("error", reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.1 400 /);
    expect(reply).toContain("the request target is not a valid URL");
    expect(JSON.stringify(t.logs)).not.toContain(secret);
  });

  it("serves /healthz without a token", async () => {
    const response = await t.http("/healthz", { token: null });
    expect(response.status).toBe(200);
  });
});

describe("graceful shutdown", () => {
  it("finishes in-flight calls, cancels streams, then runs onShutdown and removes server.json", async () => {
    const order: string[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered: () => void = () => {};
    const inHandler = new Promise<void>((resolve) => {
      entered = resolve;
    });
    let streamStarted: () => void = () => {};
    const streaming = new Promise<void>((resolve) => {
      streamStarted = resolve;
    });
    const slowCluster = implement(ClusterServiceDefinition, {
      listAgents: async () => {
        entered();
        await gate;
        order.push("call finished");
        return { agents: [] };
      },
    });
    const endlessRuns = implement(RunServiceDefinition, {
      watchRun: async function* (_r: unknown, context: { signal: AbortSignal }) {
        yield { events: [] };
        streamStarted();
        await new Promise((resolve) => context.signal.addEventListener("abort", resolve));
        order.push("stream cancelled");
      },
    });
    const { mkdtempSync } = await import("node:fs");
    const { tmpdir } = await import("node:os");
    const dataDir = mkdtempSync(join(tmpdir(), "kaon-shutdown-"));
    const token = "a".repeat(43);
    const server = await startServer({
      config: {
        dataDir,
        grpcListen: { host: "127.0.0.1", port: 0 },
        httpListen: { host: "127.0.0.1", port: 0 },
        shutdownGraceMs: 30_000,
        maxHttpBodyBytes: 1 << 20,
      },
      services: [slowCluster, endlessRuns],
      authenticator: new Authenticator({
        adminToken: token,
        adminTokenPath: join(dataDir, "admin.token"),
        stepTokens: new StepTokens(Buffer.alloc(32, 1)),
      }),
      log: createLogger({ write: () => {} }),
      onShutdown: () => {
        order.push("onShutdown");
      },
    });
    expect(existsSync(join(dataDir, "server.json"))).toBe(true);
    const channel = createChannel(server.grpcAddress);
    const metadata = { authorization: `Bearer ${token}` };
    const { Metadata } = await import("nice-grpc");
    const options = { "*": { metadata: Metadata(metadata) } };
    const clusterClient = createClient(ClusterServiceDefinition, channel, options);
    const runClient = createClient(RunServiceDefinition, channel, options);

    const call = clusterClient.listAgents({});
    const stream = (async () => {
      for await (const _ of runClient.watchRun({ runId: "x" })) {
        // drain until the server ends the stream
      }
    })().catch((e) => e);
    await Promise.all([inHandler, streaming]);

    const stopped = server.shutdown("test");
    release();
    await expect(call).resolves.toEqual({ agents: [] });
    await stopped;
    await stream;
    expect(order).toEqual(["stream cancelled", "call finished", "onShutdown"]);
    expect(existsSync(join(dataDir, "server.json"))).toBe(false);
    const refused = await fetch(`http://${server.httpAddress}/healthz`).catch((e) => e);
    expect(refused).toBeInstanceOf(Error);
    channel.close();
  });
});

/** The JSON error body of a failed gateway call. */
async function errorBody(response: Response): Promise<{ code: string; message: string }> {
  return (await response.json()) as { code: string; message: string };
}
