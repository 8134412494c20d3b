// The in-job API against a real nice-grpc JobService test implementation: batching, flush at
// exit, exactly-once delivery by sequence number (lost acks, a server restart mid-way), params,
// artifacts, and the errors a job author sees.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, test } from "vitest";
import { JOB_TOKEN, JobState, startJobServer } from "../../test/job-server.js";
import type { TestServer } from "../../test/support.js";
import { EncodeError, KaonError, NotInJobError } from "../errors.js";
import { Job, jobEnvironment } from "./job.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function setup(options: ConstructorParameters<typeof Job>[0] = {}) {
  const state = new JobState();
  const server = await startJobServer(state);
  cleanups.push(() => server.stop());
  const job = new Job({
    env: { KAON_ENDPOINT: server.address, KAON_TOKEN: JOB_TOKEN },
    flushOnExit: false,
    ...options,
  });
  cleanups.push(() => job.close().catch(() => undefined));
  return { state, server, job };
}

const outputs = (state: JobState) =>
  state.items.flatMap((i) =>
    i.kind?.$case === "output" ? [[i.kind.value.name, i.kind.value.value]] : [],
  );

describe("batching", () => {
  test("a full queue goes out at once; flush sends the rest; sequences increase by one", async () => {
    const { state, job } = await setup({ maxBatchItems: 100, flushIntervalMs: 60_000 });
    for (let i = 0; i < 250; i++) job.counter("rows", i);
    await state.itemsApplied(200);
    expect(state.applied).toEqual([1, 2]);
    await job.flush();
    expect(state.applied).toEqual([1, 2, 3]);
    expect(state.items).toHaveLength(250);
    expect(state.items.map((i) => (i.kind?.$case === "counter" ? i.kind.value.delta : -1))).toEqual(
      Array.from({ length: 250 }, (_, i) => i),
    );
  });

  test("a lone report goes out after the interval without a flush", async () => {
    const { state, job } = await setup({ flushIntervalMs: 20 });
    job.progress(10, "warming up");
    await state.itemsApplied(1);
    expect(state.items[0]?.kind).toEqual({
      $case: "progress",
      value: { percent: 10, message: "warming up" },
    });
  });

  test("every report kind reaches the server in order", async () => {
    const { state, job } = await setup();
    job.output("auc", 0.91);
    job.output("regions", ["US", "BR"]);
    job.progress(50, "half");
    job.milestone("trained");
    job.link("dashboard", "http://dash/1");
    job.counter("rows");
    job.image("curve", new Uint8Array([137, 80, 78, 71]));
    job.message("careful", "warning");
    job.heartbeat();
    await job.flush();
    expect(state.items.map((i) => i.kind?.$case)).toEqual([
      "output",
      "output",
      "progress",
      "milestone",
      "link",
      "counter",
      "image",
      "message",
      "heartbeat",
    ]);
    expect(outputs(state)).toEqual([
      ["auc", 0.91],
      ["regions", ["US", "BR"]],
    ]);
    const msg = state.items[7]?.kind;
    expect(msg?.$case === "message" && msg.value.level).toBe(3);
  });
});

describe("exactly once", () => {
  test("a batch whose ack was lost is resent with the same sequence and applied once", async () => {
    const { state, job } = await setup();
    state.loseAckOnce.add(1);
    job.output("a", 1);
    await job.flush();
    job.output("b", 2);
    await job.flush();
    expect(state.received).toEqual([1, 1, 2]);
    expect(state.applied).toEqual([1, 2]);
    expect(outputs(state)).toEqual([
      ["a", 1],
      ["b", 2],
    ]);
  });

  test("core restarts mid-way: reports are retried until it is back, none lost or doubled", async () => {
    const state = new JobState();
    let server: TestServer = await startJobServer(state);
    const port = server.port;
    cleanups.push(() => server.stop());
    let firstFailure!: () => void;
    const failed = new Promise<void>((resolve) => {
      firstFailure = resolve;
    });
    const job = new Job({
      env: { KAON_ENDPOINT: server.address, KAON_TOKEN: JOB_TOKEN },
      flushOnExit: false,
      onRetry: () => firstFailure(),
    });
    cleanups.push(() => job.close().catch(() => undefined));

    for (let i = 0; i < 10; i++) job.counter("before", 1);
    await job.flush();
    await server.stop();

    for (let i = 0; i < 10; i++) job.counter("during", 1);
    const flushed = job.flush();
    await failed; // a delivery attempt failed while core was away
    server = await startJobServer(state, port);
    await flushed;

    expect(state.applied).toEqual([1, 2]);
    expect(state.items).toHaveLength(20);
  });

  test("numbering starts after the attempt's applied sequence (GetContext), asked once", async () => {
    const { state, job } = await setup();
    state.highWater = 5;
    job.output("a", 1);
    await job.flush();
    job.output("b", 2);
    await job.flush();
    expect(state.applied).toEqual([6, 7]);
    expect(state.contextCalls).toBe(1);
  });

  test("reporters one after another in one attempt all count (kaon job output twice)", async () => {
    const { state, server } = await setup();
    for (const name of ["first", "second", "third"]) {
      const job = new Job({
        env: { KAON_ENDPOINT: server.address, KAON_TOKEN: JOB_TOKEN },
        flushOnExit: false,
      });
      job.output(name, 1);
      await job.close();
    }
    expect(outputs(state).map(([name]) => name)).toEqual(["first", "second", "third"]);
    expect(state.applied).toEqual([1, 2, 3]);
  });

  test("a report the server refuses fails flush with the server's message; the rest of its batch arrives", async () => {
    const { state, job } = await setup();
    job.output("before", 1);
    job.output("bad name", 1);
    job.output("after", 2);
    await expect(job.flush()).rejects.toThrow(/'bad name' is not a valid output name/);
    expect(outputs(state)).toEqual([
      ["before", 1],
      ["after", 2],
    ]);
    // The next flush starts clean.
    job.output("good", 1);
    await job.flush();
  });
});

describe("context and artifacts", () => {
  test("params() and context() come from GetContext", async () => {
    const { job } = await setup();
    expect(await job.params()).toEqual({ region: "US", n: 3 });
    const ctx = await job.context();
    expect(ctx).toMatchObject({
      runId: "r1",
      stepId: "train",
      path: "regional[2]/train",
      attempt: 1,
    });
    expect(ctx.runTs.getTime()).toBe(1_700_000_000_000);
  });

  test("artifact() flushes earlier reports first, then announces", async () => {
    const { state, job } = await setup({ flushIntervalMs: 60_000 });
    job.output("rows", 1200);
    const artifact = await job.artifact("cohort", { dateint: "20261121" }, "s3://b/cohort", {
      rows: 1200,
    });
    expect(state.items).toHaveLength(1);
    expect(artifact).toMatchObject({ name: "cohort", revision: 1, metadata: { rows: 1200 } });
    expect(state.artifacts[0]?.partitions).toEqual({ dateint: "20261121" });
  });
});

describe("errors a job author sees", () => {
  test("outside a job", () => {
    expect(() => jobEnvironment({})).toThrow(KaonError);
    expect(() => jobEnvironment({})).toThrow(NotInJobError); // the Python SDK's name
    expect(() => jobEnvironment({})).toThrow(
      /not inside a kaon job: KAON_ENDPOINT and KAON_TOKEN are not set/,
    );
    expect(() => jobEnvironment({ KAON_TOKEN: "t" })).toThrow(/KAON_ENDPOINT is not set/);
  });

  test("an output value that is not JSON names the output and why", async () => {
    const { job } = await setup();
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => job.output("when", new Date(0))).toThrow(
      /output "when" cannot be encoded as JSON: the value is a Date, not a plain object; use date.toISOString/,
    );
    expect(() => job.output("n", { a: [1, 10n] })).toThrow(
      /output "n" cannot be encoded as JSON: a\[1\] is a bigint/,
    );
    expect(() => job.output("x", { v: undefined })).toThrow(
      /output "x" .* v is undefined; use null/,
    );
    expect(() => job.output("c", cyclic)).toThrow(/output "c" .* self refers back to itself/);
    expect(() => job.output("nan", Number.NaN)).toThrow(/output "nan" .* NaN/);
    expect(() => job.output("nan", Number.NaN)).toThrow(EncodeError); // as kaon.EncodeError
  });
});

describe("flush at exit", () => {
  test("a job process that exits without flushing still delivers its reports", async () => {
    const state = new JobState();
    const server = await startJobServer(state);
    cleanups.push(() => server.stop());
    const script = [
      `import { job } from ${JSON.stringify(fileURLToPath(new URL("../index.ts", import.meta.url)))};`,
      `job.output("auc", 0.5);`,
      `job.progress(100, "done");`,
    ].join("\n");
    const root = fileURLToPath(new URL("../../../", import.meta.url));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", "--input-type=module", "-e", script],
      {
        cwd: root,
        env: { ...process.env, KAON_ENDPOINT: server.address, KAON_TOKEN: JOB_TOKEN },
        stdio: ["ignore", "inherit", "inherit"],
      },
    );
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
    expect(outputs(state)).toEqual([["auc", 0.5]]);
    expect(state.items).toHaveLength(2);
  });
});
