// The client against a real nice-grpc server with test implementations of WorkflowService and
// RunService: error mapping (trailer violations included), auth metadata, retries of
// idempotent calls, discovery, wait() driven by WatchRun (with a resumed stream), and logs.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ErrorDetails,
  type Run as RunMessage,
  RunServiceDefinition,
  RunStatus,
  StepStatus,
  type WatchRunResponse,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import { type CallContext, ClientError, ServerError, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { partialImpl, startTestServer, type TestServer } from "../../test/support.js";
import { noop } from "../dsl/steps.js";
import { workflow } from "../dsl/workflow.js";
import {
  ConnectionError,
  FailedPreconditionError,
  InvalidArgumentError,
  InvalidDefinitionError,
  NotFoundError,
  ResourceExhaustedError,
  UnauthenticatedError,
} from "../errors.js";
import { connect, type KaonClient } from "./client.js";
import { discoverServer } from "./discovery.js";
import { toKaonError } from "./raw.js";

const TOKEN = "test-token";

function requireToken(context: CallContext) {
  if (context.metadata.get("authorization") !== `Bearer ${TOKEN}`) {
    throw new ServerError(Status.UNAUTHENTICATED, "missing credentials: send a bearer token");
  }
}

function runMessage(status: RunStatus, extra: Partial<RunMessage> = {}): RunMessage {
  return {
    id: "r1",
    workflowId: "wf",
    version: 1,
    namespace: "",
    status,
    params: {},
    tags: {},
    message: "",
    stepCounts: {},
    runTs: 0,
    outputs: {},
    restartCount: 0,
    ...extra,
  };
}

function event(seq: number, status: RunStatus) {
  return {
    seq,
    runId: "r1",
    path: "",
    message: "",
    kind: { $case: "runStatus" as const, value: status },
  };
}

let server: TestServer;
let client: KaonClient;
const calls = { getWorkflow: 0, watch: [] as number[], deploy: [] as string[] };

beforeAll(async () => {
  server = await startTestServer((s) => {
    s.add(
      WorkflowServiceDefinition,
      partialImpl(WorkflowServiceDefinition, {
        async validate(req, context) {
          requireToken(context);
          if (req.definition?.id === "bad") {
            return {
              violations: [
                {
                  field: "steps[0].next[0].to",
                  description: "unknown step 'valdate'",
                  hint: "did you mean 'validate'?",
                },
              ],
              contentHash: "",
            };
          }
          return { violations: [], canonical: req.definition, contentHash: "abc" };
        },
        async deploy(req, context) {
          requireToken(context);
          calls.deploy.push(`${req.client?.name}:${req.definition?.id}`);
          if (req.definition?.id === "invalid") {
            context.trailer.set(
              "kaon-error-details-bin",
              ErrorDetails.encode({
                violations: [
                  { field: "steps[1].id", description: "duplicate step id 'a'", hint: "" },
                ],
              }).finish(),
            );
            throw new ServerError(
              Status.INVALID_ARGUMENT,
              "invalid definition\n  steps[1].id: duplicate step id 'a'",
            );
          }
          return {
            version: {
              workflowId: req.definition?.id ?? "",
              version: 2,
              contentHash: "h",
              active: true,
            },
            created: true,
          };
        },
        async getWorkflow(req, context) {
          requireToken(context);
          calls.getWorkflow++;
          if (req.workflowId === "flaky" && calls.getWorkflow < 3) {
            throw new ServerError(Status.UNAVAILABLE, "restarting");
          }
          if (req.workflowId !== "flaky")
            throw new ServerError(Status.NOT_FOUND, `workflow '${req.workflowId}' does not exist`);
          return {};
        },
        async activate() {
          throw new ServerError(Status.FAILED_PRECONDITION, "version 9 does not exist yet");
        },
      }),
    );
    s.add(
      RunServiceDefinition,
      partialImpl(RunServiceDefinition, {
        async startRun(req, context) {
          requireToken(context);
          return {
            run: runMessage(RunStatus.RUN_STATUS_QUEUED, {
              workflowId: req.workflowId,
              version: req.version?.selector?.$case === "number" ? req.version.selector.value : 1,
              params: req.params,
            }),
            created: true,
          };
        },
        async getRun() {
          return {
            run: runMessage(RunStatus.RUN_STATUS_SUCCEEDED, { outputs: { "train.auc": 0.9 } }),
          };
        },
        async *watchRun(req): AsyncGenerator<WatchRunResponse> {
          calls.watch.push(req.afterSeq);
          if (req.afterSeq === 0) {
            yield {
              events: [event(1, RunStatus.RUN_STATUS_RUNNING)],
              run: runMessage(RunStatus.RUN_STATUS_RUNNING, { stepCounts: { RUNNING: 1 } }),
            };
            // The server goes away mid-stream; the client must resume after seq 1.
            throw new ServerError(Status.UNAVAILABLE, "server shutting down");
          }
          yield {
            events: [
              {
                ...event(2, RunStatus.RUN_STATUS_RUNNING),
                path: "train",
                kind: { $case: "stepStatus", value: StepStatus.STEP_STATUS_SUCCEEDED },
              },
              event(3, RunStatus.RUN_STATUS_SUCCEEDED),
            ],
            run: runMessage(RunStatus.RUN_STATUS_SUCCEEDED, { stepCounts: { SUCCEEDED: 1 } }),
          };
        },
        async *tailLogs(req) {
          const text = new TextEncoder().encode("héllo\nwörld\n");
          // Split inside a multi-byte character to prove the decoder streams.
          yield { data: text.slice(0, 2), nextOffset: 2 };
          yield { data: text.slice(2), nextOffset: text.length + Number(req.offset) };
        },
      }),
    );
  });
  client = await connect({ address: server.address, token: TOKEN, env: {} });
});

afterAll(async () => {
  client?.close();
  await server?.stop();
});

describe("error mapping", () => {
  test("Validate violations become InvalidDefinitionError with core's field paths", async () => {
    const wf = workflow({ id: "bad" }, () => {
      noop("a");
    });
    const err = await client.validate(wf).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidDefinitionError);
    expect((err as InvalidDefinitionError).violations).toEqual([
      {
        field: "steps[0].next[0].to",
        description: "unknown step 'valdate'",
        hint: "did you mean 'validate'?",
      },
    ]);
    expect((err as Error).message).toContain(
      "steps[0].next[0].to: unknown step 'valdate' (did you mean 'validate'?)",
    );
  });

  test("a valid definition returns the canonical form and hash", async () => {
    const wf = workflow({ id: "good" }, () => {
      noop("a");
    });
    const res = await client.validate(wf);
    expect(res.contentHash).toBe("abc");
    expect(res.canonical?.steps[0]?.id).toBe("a");
  });

  test("INVALID_ARGUMENT with the trailer decodes ErrorDetails", async () => {
    const wf = workflow({ id: "invalid" }, () => {
      noop("a");
    });
    const err = await client.deploy(wf).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidDefinitionError);
    expect((err as InvalidDefinitionError).violations).toEqual([
      { field: "steps[1].id", description: "duplicate step id 'a'", hint: "" },
    ]);
    expect((err as Error).message).toBe("invalid definition\n  steps[1].id: duplicate step id 'a'");
  });

  test("the same classes as the Python SDK: INVALID_ARGUMENT outside a definition call is InvalidArgumentError", () => {
    const map = (path: string, code: Status) =>
      toKaonError(new ClientError(path, code, "nope"), path, { address: "a:1" });
    const runParams = map("/kaon.v1.RunService/StartRun", Status.INVALID_ARGUMENT);
    expect(runParams).toBeInstanceOf(InvalidArgumentError);
    expect(runParams).not.toBeInstanceOf(InvalidDefinitionError);
    expect(map("/kaon.v1.WorkflowService/Deploy", Status.INVALID_ARGUMENT)).toBeInstanceOf(
      InvalidDefinitionError,
    );
    // A definition error is still an InvalidArgumentError, as in Python.
    expect(map("/kaon.v1.WorkflowService/Validate", Status.INVALID_ARGUMENT)).toBeInstanceOf(
      InvalidArgumentError,
    );
    expect(map("/kaon.v1.JobService/Report", Status.RESOURCE_EXHAUSTED)).toBeInstanceOf(
      ResourceExhaustedError,
    );
  });

  test("NOT_FOUND, FAILED_PRECONDITION map to their classes", async () => {
    await expect(client.workflow("nope")).rejects.toBeInstanceOf(NotFoundError);
    await expect(
      client.raw.workflows.activate({ workflowId: "x", version: 9 }),
    ).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  test("a missing token is UnauthenticatedError", async () => {
    const anonymous = await connect({
      address: server.address,
      env: { KAON_HOME: "/nonexistent" },
    });
    try {
      await expect(anonymous.workflow("x")).rejects.toBeInstanceOf(UnauthenticatedError);
    } finally {
      anonymous.close();
    }
  });

  test("idempotent calls are retried while the server is unavailable", async () => {
    calls.getWorkflow = 0;
    await client.workflow("flaky");
    expect(calls.getWorkflow).toBe(3);
  });

  test("no server: ConnectionError names the address and how to start one", async () => {
    const err = await connect({ address: "127.0.0.1:1", env: {}, connectTimeoutMs: 1_000 }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConnectionError);
    expect((err as Error).message).toContain("127.0.0.1:1");
    expect((err as Error).message).toContain("kaon server");
  });

  test("a lazy client maps UNAVAILABLE to ConnectionError too", async () => {
    const lazy = await connect({ address: "127.0.0.1:1", env: {}, lazy: true, maxAttempts: 1 });
    try {
      const err = await lazy.workflow("x").catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect((err as Error).message).toMatch(/127\.0\.0\.1:1.*kaon server/s);
    } finally {
      lazy.close();
    }
  });
});

describe("deploy and runs", () => {
  test("deploy sends the client name and returns the version", async () => {
    const wf = workflow({ id: "hello" }, () => {
      noop("a");
    });
    const { version, created } = await client.deploy(wf);
    expect(created).toBe(true);
    expect(version.version).toBe(2);
    expect(calls.deploy).toContain("kaon-ts:hello");
  });

  test("run(wf) deploys and starts the deployed version; wait() follows WatchRun and resumes", async () => {
    const wf = workflow({ id: "hello" }, () => {
      noop("a");
    });
    const run = await client.run(wf, { params: { n: 1 } });
    expect(run.version).toBe(2);
    expect(run.status).toBe("QUEUED");
    calls.watch = [];
    const seen: string[] = [];
    const final = await run.wait({
      onProgress: (p) => seen.push(`${p.status}:${JSON.stringify(p.stepCounts)}`),
    });
    expect(final.status).toBe(RunStatus.RUN_STATUS_SUCCEEDED);
    expect(run.done).toBe(true);
    expect(seen).toEqual(['RUNNING:{"RUNNING":1}', 'SUCCEEDED:{"SUCCEEDED":1}']);
    expect(calls.watch).toEqual([0, 1]);
  });

  test("watch() yields every event once across the resumed stream", async () => {
    const run = await client.run("wf");
    const seqs: number[] = [];
    for await (const e of run.watch()) seqs.push(e.seq);
    expect(seqs).toEqual([1, 2, 3]);
  });

  test("outputs() and logs()", async () => {
    const run = await client.getRun("r1");
    expect(await run.outputs()).toEqual({ "train.auc": 0.9 });
    let text = "";
    for await (const chunk of run.logs("train")) text += chunk;
    expect(text).toBe("héllo\nwörld\n");
  });
});

describe("discovery", () => {
  test("KAON_ADDRESS/KAON_TOKEN win over the data directory; server.json and admin.token otherwise", () => {
    const home = mkdtempSync(join(tmpdir(), "kaon-sdk-"));
    try {
      writeFileSync(
        join(home, "server.json"),
        JSON.stringify({ grpc: "127.0.0.1:9999", http: "127.0.0.1:9998", pid: 1 }),
      );
      writeFileSync(join(home, "admin.token"), "file-token\n");
      expect(discoverServer({ env: { KAON_HOME: home } })).toMatchObject({
        address: "127.0.0.1:9999",
        token: "file-token",
      });
      expect(
        discoverServer({
          env: { KAON_HOME: home, KAON_ADDRESS: "10.0.0.1:7070", KAON_TOKEN: "env" },
        }),
      ).toMatchObject({ address: "10.0.0.1:7070", token: "env", source: "KAON_ADDRESS" });
      expect(discoverServer({ env: { KAON_HOME: join(home, "none") } })).toMatchObject({
        address: "127.0.0.1:7070",
        token: undefined,
      });
      // The data directory's admin token goes to local servers only.
      for (const local of ["localhost:1", "[::1]:7070", "0.0.0.0:7070", "unix:/x"]) {
        expect(discoverServer({ address: local, env: { KAON_HOME: home } }).token).toBe(
          "file-token",
        );
      }
      for (const remote of ["10.0.0.1:7070", "kaon.example.com:443", "localhost.evil.com:1"]) {
        expect(discoverServer({ address: remote, env: { KAON_HOME: home } }).token).toBeUndefined();
        expect(discoverServer({ env: { KAON_HOME: home, KAON_ADDRESS: remote } }).token).toBe(
          undefined,
        );
        expect(
          discoverServer({ address: remote, token: "t", env: { KAON_HOME: home } }).token,
        ).toBe("t");
      }
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
