// Triggers through the real composition root (createKaon: SQLite, the local backend, gRPC with
// auth): a cron trigger fires every second with RUN_TS on the planned second and never fires
// a planned time twice across a restart of core; artifact triggers with partition filters
// started by ArtifactService.Announce; signals with params; enable/disable overrides that
// survive a restart; NOT_FOUND for unknown workflows and triggers. Waits are on run-ended
// notifications with deadlines, never on sleeps.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ArtifactServiceDefinition,
  InitiatorKind,
  type Run,
  RunServiceDefinition,
  RunStatus,
  TriggerServiceDefinition,
  WorkflowServiceDefinition,
} from "@kaon/proto";
import {
  type Channel,
  ClientError,
  createChannel,
  createClient,
  Metadata,
  Status,
} from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../core/src/cli/main.js";
import { resolveServerConfig } from "../../core/src/config.js";
import { RUN_ENDED } from "../../core/src/engine/notifier.js";
import { silentLogger } from "../../core/src/log.js";
import { parseDefinitionText } from "../../core/src/model/files.js";
import { createKaon, type Kaon } from "../../core/src/server-main.js";
import { cronSchedule } from "../../core/src/triggers/cron.js";

const dataDir = mkdtempSync(join(tmpdir(), "kaon-triggers-"));
let kaon: Kaon;
let channel: Channel;

async function start(): Promise<void> {
  kaon = await createKaon({
    config: resolveServerConfig(
      { dataDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", shutdownGraceMs: 2_000 },
      {},
    ),
    log: silentLogger,
  });
  channel = createChannel(kaon.grpcAddress);
}

async function restart(): Promise<void> {
  channel.close();
  await kaon.shutdown("restart");
  await start();
}

function client<D extends Parameters<typeof createClient>[0]>(definition: D) {
  const metadata = Metadata();
  metadata.set("authorization", `Bearer ${kaon.authFiles.adminToken}`);
  return createClient(definition, channel, { "*": { metadata } });
}
const workflows = () => client(WorkflowServiceDefinition);
const runs = () => client(RunServiceDefinition);
const triggers = () => client(TriggerServiceDefinition);
const artifacts = () => client(ArtifactServiceDefinition);

async function deploy(yaml: string): Promise<void> {
  const file = parseDefinitionText(yaml, "t.yaml");
  if (!file.definition) throw new Error(JSON.stringify(file.violations));
  await workflows().deploy({ definition: file.definition, activate: true });
}

async function allRuns(workflowId: string): Promise<Run[]> {
  const out: Run[] = [];
  let pageToken = "";
  do {
    const res = await runs().listRuns({
      workflowId,
      namespace: "",
      statuses: [],
      pageSize: 1000,
      pageToken,
    });
    out.push(...res.runs);
    pageToken = res.nextPageToken;
  } while (pageToken);
  return out;
}

/** Resolves with the workflow's runs once `done` holds for them; woken by run ends. */
async function waitForRuns(
  workflowId: string,
  done: (runs: Run[]) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<Run[]> {
  const deadline = AbortSignal.timeout(timeoutMs);
  let last: Run[] = [];
  for (;;) {
    // Subscribe before reading, so a run that ends in between still wakes us.
    const woke = kaon.engine.notifier.next(RUN_ENDED, deadline);
    last = await allRuns(workflowId);
    if (done(last)) return last;
    await woke;
    if (deadline.aborted) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; runs of ${workflowId}: ${last.length}`,
      );
    }
  }
}

async function rpcError(p: Promise<unknown>): Promise<ClientError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ClientError) return err;
    throw err;
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  await start();
});

afterAll(async () => {
  channel?.close();
  await kaon?.shutdown("test finished");
  try {
    const pid = Number(readFileSync(join(dataDir, "agent", "agent.pid"), "utf8").trim());
    if (pid > 0) process.kill(pid, "SIGKILL");
  } catch {
    // no agent, or already gone
  }
  rmSync(dataDir, { recursive: true, force: true });
});

const TICK = `
id: tick
params:
  - { name: planned, type: PARAM_TYPE_INT, required: true }
  - { name: fired_by, type: PARAM_TYPE_STRING, value: "" }
steps:
  - { id: done, type: noop }
triggers:
  - id: every-second
    cron: { expression: "* * * * * *", timezone: Europe/Paris }
    params:
      - { name: planned, expr: "trigger.scheduled_ts" }
      - { name: fired_by, expr: "trigger.id" }
  - id: nightly
    cron: { expression: "0 3 * * *", timezone: America/Los_Angeles }
    params:
      - { name: planned, expr: "RUN_TS" }
`;

describe("cron triggers", () => {
  it("fire every second with RUN_TS = the planned second, and never twice across a restart", async () => {
    await deploy(TICK);
    const first = await waitForRuns("tick", (r) => r.length >= 2, "two cron runs");
    for (const run of first) {
      expect(run.initiator?.kind).toBe(InitiatorKind.INITIATOR_KIND_CRON);
      expect(run.initiator?.detail).toBe("every-second");
      expect(run.tags["kaon.trigger"]).toBe("every-second");
      expect(run.runTs % 1000).toBe(0);
      expect(run.params.planned).toBe(run.runTs);
      expect(run.params.fired_by).toBe("every-second");
    }

    await restart();
    const before = (await allRuns("tick")).length;
    const after = await waitForRuns(
      "tick",
      (r) => r.length >= before + 2 && r.every((x) => x.status !== RunStatus.RUN_STATUS_QUEUED),
      "two more cron runs after the restart",
    );
    const planned = after.map((r) => r.runTs);
    expect(new Set(planned).size).toBe(planned.length);
    for (const run of after) expect(run.runTs % 1000).toBe(0);

    // Listed with the next fire time of each schedule in its own timezone.
    const listed = await triggers().listTriggers({
      workflowId: "tick",
      pageSize: 0,
      pageToken: "",
    });
    expect(listed.triggers.map((t) => t.trigger?.id)).toEqual(["every-second", "nightly"]);
    const nightly = listed.triggers[1];
    const next = nightly?.nextFireAt?.getTime() as number;
    expect(next).toBe(cronSchedule("0 3 * * *", "America/Los_Angeles").next(Date.now()));
    const laHour = new Intl.DateTimeFormat("en-US", {
      timeZone: "America/Los_Angeles",
      hour: "numeric",
      minute: "numeric",
      hourCycle: "h23",
    }).format(new Date(next));
    expect(laHour).toBe("03:00");
    expect(listed.triggers[0]?.lastFiredAt).toBeInstanceOf(Date);

    // Disabled: it stops firing; the override survives a restart.
    const off = await triggers().disableTrigger({ workflowId: "tick", triggerId: "every-second" });
    expect(off.trigger?.enabled).toBe(false);
    expect(off.trigger?.nextFireAt).toBeUndefined();
    await restart();
    const relisted = await triggers().listTriggers({
      workflowId: "tick",
      pageSize: 1,
      pageToken: "",
    });
    expect(relisted.triggers[0]?.trigger?.id).toBe("every-second");
    expect(relisted.triggers[0]?.enabled).toBe(false);
    expect(relisted.nextPageToken).not.toBe("");
    const page2 = await triggers().listTriggers({
      workflowId: "tick",
      pageSize: 1,
      pageToken: relisted.nextPageToken,
    });
    expect(page2.triggers.map((t) => t.trigger?.id)).toEqual(["nightly"]);
    expect(page2.nextPageToken).toBe("");

    // Enabled again: it fires again, from now on.
    const count = (await allRuns("tick")).length;
    const on = await triggers().enableTrigger({ workflowId: "tick", triggerId: "every-second" });
    expect(on.trigger?.enabled).toBe(true);
    expect(on.trigger?.nextFireAt).toBeInstanceOf(Date);
    await waitForRuns("tick", (r) => r.length > count, "a cron run after enabling");
    await triggers().disableTrigger({ workflowId: "tick", triggerId: "every-second" });
  });
});

describe("artifact triggers", () => {
  it("start a run when a matching partition is announced, with trigger.artifact in scope", async () => {
    await deploy(`
id: consume
params:
  - { name: day, type: PARAM_TYPE_INT, required: true }
  - { name: source_uri, type: PARAM_TYPE_STRING, required: true }
  - { name: rows, type: PARAM_TYPE_INT, value: 0 }
steps:
  - { id: use, type: noop }
triggers:
  - id: on-web-events
    artifact: { name: events.daily, partitions: { source: web } }
    params:
      - { name: day, expr: "int(trigger.artifact.partitions.day)" }
      - { name: source_uri, expr: "trigger.artifact.uri" }
      - { name: rows, expr: "trigger.artifact.metadata.rows" }
`);
    const announce = (partitions: Record<string, string>, uri: string, requestId = "") =>
      artifacts().announce({
        artifact: {
          name: "events.daily",
          namespace: "",
          partitions,
          uri,
          metadata: { rows: 42 },
          producerRunId: "",
          producerPath: "",
          revision: 0,
        },
        requestId,
      });
    // The filter does not match: another source; and another artifact name.
    await announce({ source: "app", day: "20261120" }, "s3://events/app/20261120");
    await artifacts().announce({
      artifact: {
        name: "events.hourly",
        namespace: "",
        partitions: { source: "web", day: "20261120" },
        uri: "x",
        metadata: {},
        producerRunId: "",
        producerPath: "",
        revision: 0,
      },
      requestId: "",
    });
    // Matches (the filter is a subset of the partitions).
    await announce({ source: "web", day: "20261121" }, "s3://events/web/20261121", "ann-1");
    // The same announcement retried is not a new revision, so no second run.
    await announce({ source: "web", day: "20261121" }, "s3://events/web/20261121", "ann-1");

    const done = await waitForRuns(
      "consume",
      (r) => r.some((x) => x.status === RunStatus.RUN_STATUS_SUCCEEDED),
      "the artifact-triggered run",
    );
    expect(done).toHaveLength(1);
    const run = done[0] as Run;
    expect(run.initiator?.kind).toBe(InitiatorKind.INITIATOR_KIND_ARTIFACT);
    expect(run.initiator?.detail).toBe("events.daily{day=20261121,source=web}");
    expect(run.params).toMatchObject({
      day: 20261121,
      source_uri: "s3://events/web/20261121",
      rows: 42,
    });

    // A new revision of the same partition is a new announcement: a second run.
    await announce({ source: "web", day: "20261121" }, "s3://events/web/20261121-v2");
    const twice = await waitForRuns(
      "consume",
      (r) => r.filter((x) => x.status === RunStatus.RUN_STATUS_SUCCEEDED).length >= 2,
      "the run of the second revision",
    );
    expect(twice.map((r) => r.params.source_uri).sort()).toEqual([
      "s3://events/web/20261121",
      "s3://events/web/20261121-v2",
    ]);
  });
});

describe("fires that cannot start a run", () => {
  it("record the error (kept across a restart) without retrying it, and clear it on the next run", async () => {
    await deploy(`
id: sized
params:
  - { name: rows, type: PARAM_TYPE_INT, required: true }
steps:
  - { id: use, type: noop }
triggers:
  - id: on-table
    artifact: { name: table.sized }
    params:
      - { name: rows, expr: "trigger.artifact.metadata.rows" }
`);
    const announce = (metadata: Record<string, unknown>) =>
      artifacts().announce({
        artifact: {
          name: "table.sized",
          namespace: "",
          partitions: { day: String(Object.keys(metadata).length) },
          uri: "file:///tmp/t",
          metadata,
          producerRunId: "",
          producerPath: "",
          revision: 0,
        },
        requestId: "",
      });
    const state = async () =>
      (await triggers().listTriggers({ workflowId: "sized", pageSize: 10, pageToken: "" }))
        .triggers[0];

    // The announcement lacks `rows`: the params cannot be evaluated, which no retry mends.
    await announce({});
    await kaon.triggers.idle();
    const failed = await state();
    expect(failed?.lastError).toContain("rows");
    expect(failed?.lastError).not.toContain("retrying");
    expect(failed?.lastErrorAt).toBeInstanceOf(Date);
    expect(await allRuns("sized")).toHaveLength(0);

    // The CLI lists it under the table.
    const lines: string[] = [];
    const code = await main(["node", "kaon", "triggers", "--workflow", "sized"], {
      out: (t) => {
        lines.push(t);
      },
      err: (t) => {
        lines.push(t);
      },
      env: { KAON_ADDRESS: kaon.grpcAddress, KAON_TOKEN: kaon.authFiles.adminToken },
    });
    expect(code).toBe(0);
    expect(lines.join("")).toMatch(/sized\/on-table could not start a run at .*rows/);

    await restart();
    expect((await state())?.lastError).toBe(failed?.lastError);

    // The next announcement is good: a run starts and the error is gone.
    await announce({ rows: 7 });
    await waitForRuns("sized", (r) => r.length === 1, "the run of the good announcement");
    await kaon.triggers.idle();
    const healed = await state();
    expect(healed?.lastError).toBe("");
    expect(healed?.lastErrorAt).toBeUndefined();
    await restart();
    expect((await state())?.lastError).toBe("");
  });
});

describe("signals", () => {
  it("start a run per enabled signal trigger with signal.params, idempotent by request_id", async () => {
    await deploy(`
id: on-signal
params:
  - { name: cohort, type: PARAM_TYPE_INT, required: true }
  - { name: label, type: PARAM_TYPE_STRING, value: "" }
steps:
  - { id: go, type: noop }
triggers:
  - id: go
    signal: { name: recs.go }
    params:
      - { name: cohort, expr: "signal.params.cohort * 2" }
      - { name: label, expr: "signal.params.label + '@' + trigger.id" }
  - id: off
    signal: { name: recs.go }
    disabled: true
    params:
      - { name: cohort, value: 1 }
`);
    const res = await triggers().signal({
      name: "recs.go",
      params: { cohort: 21, label: "hello" },
      requestId: "sig-1",
    });
    expect(res.runs).toHaveLength(1);
    const run = res.runs[0] as Run;
    expect(run.workflowId).toBe("on-signal");
    expect(run.params).toEqual({ cohort: 42, label: "hello@go" });
    expect(run.initiator?.kind).toBe(InitiatorKind.INITIATOR_KIND_SIGNAL);
    expect(run.initiator?.detail).toBe("recs.go");

    const again = await triggers().signal({
      name: "recs.go",
      params: { cohort: 21, label: "hello" },
      requestId: "sig-1",
    });
    expect(again.runs.map((r) => r.id)).toEqual([run.id]);

    // A signal no trigger listens to starts nothing.
    expect(
      (await triggers().signal({ name: "nobody.listens", params: {}, requestId: "" })).runs,
    ).toEqual([]);

    // Params the trigger cannot use: INVALID_ARGUMENT naming the trigger.
    const bad = await rpcError(
      triggers().signal({ name: "recs.go", params: { label: "x" }, requestId: "sig-2" }),
    );
    expect(bad.code).toBe(Status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/triggers\.on-signal\.go/);

    const badName = await rpcError(
      triggers().signal({ name: "not a name", params: {}, requestId: "" }),
    );
    expect(badName.code).toBe(Status.INVALID_ARGUMENT);
    expect(badName.details).toMatch(/name: 'not a name' is not a valid signal name/);

    // Enabling the disabled one: both fire.
    await triggers().enableTrigger({ workflowId: "on-signal", triggerId: "off" });
    const both = await triggers().signal({
      name: "recs.go",
      params: { cohort: 1, label: "" },
      requestId: "sig-3",
    });
    expect(both.runs.map((r) => r.params.cohort).sort()).toEqual([1, 2]);
  });
});

describe("trigger administration", () => {
  it("is NOT_FOUND for an unknown workflow or trigger", async () => {
    const noWorkflow = await rpcError(
      triggers().enableTrigger({ workflowId: "no-such-workflow", triggerId: "x" }),
    );
    expect(noWorkflow.code).toBe(Status.NOT_FOUND);
    expect(noWorkflow.details).toMatch(/workflow 'no-such-workflow' not found/);
    const noTrigger = await rpcError(
      triggers().disableTrigger({ workflowId: "tick", triggerId: "hourly" }),
    );
    expect(noTrigger.code).toBe(Status.NOT_FOUND);
    expect(noTrigger.details).toMatch(/has no trigger 'hourly'.*triggers: every-second, nightly/);
    const listUnknown = await rpcError(
      triggers().listTriggers({ workflowId: "no-such-workflow", pageSize: 0, pageToken: "" }),
    );
    expect(listUnknown.code).toBe(Status.NOT_FOUND);
  });

  it("follows the active version: deploying and activating re-reads the triggers", async () => {
    await deploy(`
id: versioned
steps:
  - { id: a, type: noop }
triggers:
  - { id: first, signal: { name: v.one } }
`);
    await deploy(`
id: versioned
steps:
  - { id: a, type: noop }
triggers:
  - { id: second, signal: { name: v.two } }
`);
    const ids = async () =>
      (
        await triggers().listTriggers({ workflowId: "versioned", pageSize: 0, pageToken: "" })
      ).triggers.map((t) => t.trigger?.id);
    expect(await ids()).toEqual(["second"]);
    expect((await triggers().signal({ name: "v.one", params: {}, requestId: "" })).runs).toEqual(
      [],
    );
    await workflows().activate({ workflowId: "versioned", version: 1 });
    expect(await ids()).toEqual(["first"]);
    const res = await triggers().signal({ name: "v.one", params: {}, requestId: "" });
    expect(res.runs.map((r) => r.version)).toEqual([1]);

    const everything = await triggers().listTriggers({
      workflowId: "",
      pageSize: 0,
      pageToken: "",
    });
    expect(everything.triggers.map((t) => `${t.workflowId}/${t.trigger?.id}`)).toEqual([
      "consume/on-web-events",
      "on-signal/go",
      "on-signal/off",
      "sized/on-table",
      "tick/every-second",
      "tick/nightly",
      "versioned/first",
    ]);
  });
});

describe("cli", () => {
  async function kaonCli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const code = await main(["node", "kaon", ...args], {
      out: (t) => {
        out += t;
      },
      err: (t) => {
        err += t;
      },
      env: {
        KAON_ADDRESS: kaon.grpcAddress,
        KAON_TOKEN: kaon.authFiles.adminToken,
        KAON_HOME: dataDir,
      },
    });
    return { code, out, err };
  }

  it("lists triggers, enables and disables them, and sends signals", async () => {
    const list = await kaonCli("triggers", "--workflow", "tick");
    expect(list.code).toBe(0);
    expect(list.out).toMatch(/tick\s+every-second\s+cron \* \* \* \* \* \* \(Europe\/Paris\)\s+no/);
    expect(list.out).toMatch(/tick\s+nightly\s+cron 0 3 \* \* \* \(America\/Los_Angeles\)\s+yes/);

    const json = await kaonCli("--json", "triggers");
    const states = JSON.parse(json.out) as Array<{ workflowId: string; trigger: { id: string } }>;
    expect(states.map((s) => `${s.workflowId}/${s.trigger.id}`)).toContain("consume/on-web-events");

    const disabled = await kaonCli("trigger", "disable", "on-signal", "off");
    expect(disabled).toMatchObject({ code: 0, out: "disabled trigger off of on-signal\n" });
    const signal = await kaonCli("signal", "recs.go", "-p", "cohort=5", "-p", "label=cli");
    expect(signal.code).toBe(0);
    expect(signal.out).toMatch(/^signal recs.go started 1 run\(s\):\n {2}\S+ \(on-signal v1\)\n$/);
    const runId = /\n {2}(\S+) /.exec(signal.out)?.[1] as string;
    const run = (await runs().getRun({ runId })).run;
    expect(run?.params).toEqual({ cohort: 10, label: "cli@go" });

    const missing = await kaonCli("trigger", "enable", "tick", "nope");
    expect(missing.code).not.toBe(0);
    expect(missing.err).toMatch(/has no trigger 'nope'/);
  });
});
