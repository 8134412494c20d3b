// In-job JobService calls through the real server (and its lean gRPC path): the per-step
// bounds of Report (review finding C1), a repeated Report answered only once durable (J4), the
// artifact checks of a job's AnnounceArtifact (C2), GetContext's applied sequence, and the
// error contract (codes, messages, the kaon-error-details-bin trailer) of the lean path.
import { writeFileSync } from "node:fs";
import { ErrorDetails, type MessageLevel, type ReportItem, StepStatus } from "@kaon/proto";
import { ClientError, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { attemptDir } from "../../core/src/engine/attempt-layout.js";
import { REPORT_LIMITS } from "../../core/src/engine/engine.js";
import type { WriteBatch } from "../../core/src/store/runs/rows.js";
import {
  type EngineKaon,
  readJobToken,
  startEngineKaon,
  waitForStepStatus,
} from "./support/harness.js";

let k: EngineKaon;
beforeAll(async () => {
  k = await startEngineKaon();
});
afterAll(async () => {
  await k?.stop();
});

let jobs = 0;

/** Starts a one-step run whose job waits; returns its token and a way to let it finish. */
async function runningJob() {
  const id = `report-${++jobs}`;
  await k.deploy({
    id,
    steps: [
      {
        id: "job",
        type: "command",
        config: {
          shell:
            'echo "$KAON_TOKEN" > token; i=0; while [ ! -f go ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done',
        },
      },
    ],
  });
  const { run } = await k.runs.startRun({ workflowId: id });
  const runId = run?.id as string;
  await waitForStepStatus(k.runs, runId, "job", StepStatus.STEP_STATUS_RUNNING);
  const dir = attemptDir(k.dataDir, runId, "job", 1);
  const token = await readJobToken(dir);
  const job = k.jobClient(token);
  return {
    runId,
    job,
    step: async () => (await k.runs.getStep({ runId, path: "job" })).step,
    finish: async () => {
      writeFileSync(`${dir}/go`, "");
      return k.watch(runId);
    },
  };
}

const output = (name: string, value: unknown): ReportItem => ({
  kind: { $case: "output", value: { name, value } },
});
const counter = (name: string, delta = 1): ReportItem => ({
  kind: { $case: "counter", value: { name, delta } },
});
const milestone = (name: string): ReportItem => ({ kind: { $case: "milestone", value: name } });
const link = (name: string, url = "https://example.com/x"): ReportItem => ({
  kind: { $case: "link", value: { name, url } },
});
const image = (name: string): ReportItem => ({
  kind: {
    $case: "image",
    value: { name, mimeType: "image/svg+xml", data: Buffer.from("<svg/>") },
  },
});

async function rejection(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ClientError) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

describe("JobService.Report bounds (C1)", () => {
  it("caps a step's outputs, milestones, links, counters and images, naming the item and the limit; a rejected batch is not applied", async () => {
    const { job, step, finish } = await runningJob();
    let seq = 0;
    const report = (items: ReportItem[]) => job.report({ sequence: ++seq, items });

    // Outputs: up to the limit in one batch, then one more fails and nothing of its batch lands.
    await report(Array.from({ length: REPORT_LIMITS.outputs }, (_, i) => output(`o${i}`, i)));
    let err = await rejection(report([output("o0", "replaced"), output("one_too_many", 1)]));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain("items[1]");
    expect(err.details).toContain("one_too_many");
    expect(err.details).toContain(`at most ${REPORT_LIMITS.outputs} outputs`);
    // Replacing an existing output is not a new one.
    seq--;
    await report([output("o0", "replaced")]);

    await report(Array.from({ length: REPORT_LIMITS.milestones }, (_, i) => milestone(`m${i}`)));
    err = await rejection(report([milestone("m-extra")]));
    expect(err.details).toMatch(/items\[0\].*m-extra.*at most 1000 milestones/);
    seq--;

    await report(Array.from({ length: REPORT_LIMITS.links }, (_, i) => link(`l${i}`)));
    await report([link("l0", "https://example.com/replaced")]); // same name: replaced
    err = await rejection(report([link("l-extra")]));
    expect(err.details).toMatch(/items\[0\].*l-extra.*at most 100 links/);
    seq--;

    await report(Array.from({ length: REPORT_LIMITS.counters }, (_, i) => counter(`c${i}`)));
    err = await rejection(report([counter("c0", 5), counter("c-extra")]));
    expect(err.details).toMatch(/items\[1\].*c-extra.*at most 1000 counters/);
    seq--;

    await report(Array.from({ length: REPORT_LIMITS.images }, (_, i) => image(`i${i}`)));
    err = await rejection(report([image("i-extra")]));
    expect(err.details).toMatch(/items\[0\].*i-extra.*at most 50 images/);
    seq--;

    const s = await step();
    expect(Object.keys(s?.outputs ?? {})).toHaveLength(REPORT_LIMITS.outputs);
    expect(s?.outputs?.o0).toBe("replaced");
    expect(s?.reports?.milestones).toHaveLength(REPORT_LIMITS.milestones);
    expect(s?.reports?.links).toHaveLength(REPORT_LIMITS.links);
    expect(s?.reports?.counters.c0).toBe(1); // the rejected batch's +5 was not applied
    expect(Object.keys(s?.reports?.counters ?? {})).toHaveLength(REPORT_LIMITS.counters);
    expect(s?.reports?.images).toHaveLength(REPORT_LIMITS.images);
    await finish();
  });

  it("caps the total size of a step's outputs", async () => {
    const { job, step, finish } = await runningJob();
    const big = "x".repeat(60 * 1024);
    let seq = 0;
    // 10 outputs of 60 KiB per call: the 7th call would pass 4 MiB.
    for (let call = 0; call < 6; call++) {
      await job.report({
        sequence: ++seq,
        items: Array.from({ length: 10 }, (_, i) => output(`v${call}_${i}`, big)),
      });
    }
    const err = await rejection(
      job.report({
        sequence: ++seq,
        items: Array.from({ length: 10 }, (_, i) => output(`v6_${i}`, big)),
      }),
    );
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toMatch(
      /items\[\d\]: output 'v6_\d' would make this step's outputs \d+ bytes/,
    );
    expect(err.details).toContain(`at most ${REPORT_LIMITS.outputsBytes} bytes`);
    expect(Object.keys((await step())?.outputs ?? {})).toHaveLength(60);
    await finish();
  });

  it("rejects long names, non-finite counter deltas, unknown message levels and long progress messages", async () => {
    const { job, finish } = await runningJob();
    const long = "n".repeat(REPORT_LIMITS.nameChars + 1);
    const cases: Array<[ReportItem, RegExp]> = [
      [counter(long), /counter name 'n+…' is 257 characters long, more than 256/],
      [milestone(long), /milestone name .* more than 256/],
      [link(long), /link name .* more than 256/],
      [image(long), /image name .* more than 256/],
      [output(`o${long}`, 1), /output name .* more than 256/],
      [counter("c", Number.NaN), /counter 'c' delta NaN is not a finite number/],
      [counter("c", Number.POSITIVE_INFINITY), /counter 'c' delta Infinity is not a finite number/],
      [
        {
          kind: {
            $case: "message",
            value: { level: 7 as MessageLevel, text: "hi", time: undefined },
          },
        },
        /message level 7 is not a MessageLevel/,
      ],
      [
        { kind: { $case: "progress", value: { percent: 5, message: "m".repeat(5000) } } },
        /progress message is 5000 bytes, more than 4 KiB/,
      ],
      [
        link("docs", `https://example.com/${"p".repeat(9000)}`),
        /link 'docs' URL is \d+ characters long, more than 8192/,
      ],
    ];
    for (const [item, pattern] of cases) {
      const err = await rejection(job.report({ sequence: 1, items: [counter("ok"), item] }));
      expect(err.code).toBe(Status.INVALID_ARGUMENT);
      expect(err.details).toMatch(/^items\[1\]: /);
      expect(err.details).toMatch(pattern);
    }
    // Nothing of those batches was applied: sequence 1 is still free.
    expect((await job.report({ sequence: 1, items: [counter("ok")] })).appliedSequence).toBe(1);
    await finish();
  });
});

describe("JobService over the lean gRPC path", () => {
  it("sends the same error details trailer, codes and messages as the other services", async () => {
    const { job, finish } = await runningJob();
    const err = await rejection(job.report({ sequence: 1, items: [output("bad name", 1)] }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toBe(
      "items[0]: output name 'bad name' must be letters, digits and _\n  items[0]: output name 'bad name' must be letters, digits and _",
    );
    // The trailer is read by the SDKs to show field violations.
    let trailer: Uint8Array | undefined;
    await rejection(
      job.report(
        { sequence: 0, items: [] },
        {
          onTrailer: (md) => {
            trailer = md.get("kaon-error-details-bin") as Uint8Array | undefined;
          },
        },
      ),
    );
    expect(ErrorDetails.decode(trailer as Uint8Array).violations[0]?.field).toBe("sequence");

    const noToken = k.jobClient("");
    expect((await rejection(noToken.getContext({}))).code).toBe(Status.UNAUTHENTICATED);
    const admin = await rejection(k.jobClient(k.adminToken).getContext({}));
    expect(admin.code).toBe(Status.PERMISSION_DENIED);
    expect(admin.details).toContain("not with an admin token");
    const forged = await rejection(k.jobClient("kst_e30.AAAA").getContext({}));
    expect(forged.code).toBe(Status.UNAUTHENTICATED);
    expect(forged.details).toContain("invalid step token");
    await finish();
  });

  it("GetContext returns the applied sequence, so a second reporter of the attempt continues the numbering", async () => {
    const { job, finish } = await runningJob();
    expect((await job.getContext({})).appliedSequence).toBe(0);
    await job.report({ sequence: 1, items: [counter("c")] });
    await job.report({ sequence: 2, items: [counter("c")] });
    expect((await job.getContext({})).appliedSequence).toBe(2);
    await finish();
  });
});

describe("JobService.Report durability (J4)", () => {
  it("answers a repeated batch only once the batch that applied it is committed", async () => {
    const { job, finish } = await runningJob();
    // Hold the journal's commits at a gate (the writer awaits it; the event loop keeps running)
    // and keep the engine's answers to Report to see when each one settles.
    type Writer = { write(b: WriteBatch): Promise<void> };
    const journal = (k.engine as unknown as { journal: { writer: Writer } }).journal;
    const write = journal.writer.write;
    const report = k.engine.report;
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let held = 0;
    journal.writer.write = async function (this: Writer, batch) {
      if (batch.attempts.length + batch.attemptUpdates.length > 0) held++;
      await gate;
      return write.call(this, batch);
    };
    const answers: Array<{ settled: boolean }> = [];
    k.engine.report = function (this: typeof k.engine, ...args) {
      const answer = { settled: false };
      answers.push(answer);
      const p = report.apply(this, args);
      void p.finally(() => {
        answer.settled = true;
      });
      return p;
    };
    try {
      const first = job.report({ sequence: 1, items: [counter("c")] });
      const deadline = Date.now() + 10_000;
      while (held === 0) {
        if (Date.now() > deadline) throw new Error("the first batch never reached the writer");
        await new Promise((r) => setImmediate(r));
      }
      // The first batch is applied and its commit is held. Now the client repeats it.
      const repeat = job.report({ sequence: 1, items: [counter("c")] });
      while (answers.length < 2) {
        if (Date.now() > deadline) throw new Error("the repeat never reached the engine");
        await new Promise((r) => setImmediate(r));
      }
      await new Promise((r) => setImmediate(r));
      expect(answers[1]?.settled).toBe(false); // not acknowledged while not durable
      open();
      expect((await repeat).appliedSequence).toBe(1);
      expect((await first).appliedSequence).toBe(1);
    } finally {
      journal.writer.write = write;
      k.engine.report = report;
      open();
    }
    await finish();
  });
});

describe("JobService.AnnounceArtifact checks (C2)", () => {
  it("runs the same name and partition checks as ArtifactService.Announce", async () => {
    const { job, finish } = await runningJob();
    const announce = (name: string, partitions: Record<string, string>) =>
      job.announceArtifact({
        artifact: {
          namespace: "",
          name,
          partitions,
          uri: "file:///tmp/x",
          metadata: {},
          producerRunId: "",
          producerPath: "",
          announcedAt: undefined,
          revision: 0,
        },
      });
    let err = await rejection(announce("models.regional", { day: "2024-01-01,2024-01-02" }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain("artifact.partitions.day");
    expect(err.details).toContain("no commas");
    err = await rejection(announce("has spaces", { day: "1" }));
    expect(err.code).toBe(Status.INVALID_ARGUMENT);
    expect(err.details).toContain("'has spaces' is not a valid artifact name");
    err = await rejection(announce("m".repeat(300), {}));
    expect(err.details).toContain("is not a valid artifact name");
    err = await rejection(announce("ok.name", { "bad key": "1" }));
    expect(err.details).toContain("partition key 'bad key' is not valid");
    const ok = await announce("ok.name", { day: "20240101" });
    expect(ok.artifact?.producerPath).toBe("job");
    await finish();
  });
});
