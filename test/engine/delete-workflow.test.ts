// DeleteWorkflow against runs, through the real composition root: it refuses while a run is
// unfinished, no run can start while a delete is deciding (the check and the delete are one
// guarded step, not two racing calls), and once deleted the workflow starts nothing.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RunServiceDefinition, RunStatus, WorkflowServiceDefinition } from "@kaon/proto";
import {
  type Channel,
  ClientError,
  createChannel,
  createClient,
  Metadata,
  Status,
} from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveServerConfig } from "../../core/src/config.js";
import { silentLogger } from "../../core/src/log.js";
import { parseDefinitionText } from "../../core/src/model/files.js";
import { createKaon, type Kaon } from "../../core/src/server-main.js";

const dataDir = mkdtempSync(join(tmpdir(), "kaon-delete-"));
let kaon: Kaon;
let channel: Channel;

function client<D extends Parameters<typeof createClient>[0]>(definition: D) {
  const metadata = Metadata();
  metadata.set("authorization", `Bearer ${kaon.authFiles.adminToken}`);
  return createClient(definition, channel, { "*": { metadata } });
}
const workflows = () => client(WorkflowServiceDefinition);
const runs = () => client(RunServiceDefinition);

async function deploy(yaml: string): Promise<void> {
  const file = parseDefinitionText(yaml, "w.yaml");
  if (!file.definition) throw new Error(JSON.stringify(file.violations));
  await workflows().deploy({ definition: file.definition, activate: true });
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
  kaon = await createKaon({
    config: resolveServerConfig(
      { dataDir, grpcListen: "127.0.0.1:0", httpListen: "127.0.0.1:0", shutdownGraceMs: 2_000 },
      {},
    ),
    log: silentLogger,
  });
  channel = createChannel(kaon.grpcAddress);
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

describe("DeleteWorkflow", () => {
  it("refuses while a run is unfinished, and deletes once it has ended", async () => {
    await deploy(`
id: doomed
steps:
  - { id: wait, type: command, config: { shell: "sleep 30" } }
`);
    const runId = (await runs().startRun({ workflowId: "doomed" })).run?.id as string;
    const refused = await rpcError(workflows().deleteWorkflow({ workflowId: "doomed" }));
    expect(refused.code).toBe(Status.FAILED_PRECONDITION);
    expect(refused.details).toContain("workflow 'doomed' has unfinished runs; stop them first");
    await runs().stopRun({ runId, reason: "test" });
    for await (const _ of runs().watchRun({ runId, afterSeq: 0 })) {
      // drain until the run has ended (the stream ends with it)
    }
    expect((await runs().getRun({ runId })).run?.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    await workflows().deleteWorkflow({ workflowId: "doomed" });
    const gone = await rpcError(runs().startRun({ workflowId: "doomed" }));
    expect(gone.code).toBe(Status.NOT_FOUND);
  });

  it("starts no run of the workflow while a delete is deciding", async () => {
    await deploy(`
id: racing
steps:
  - { id: a, type: noop }
`);
    let startedMeanwhile: ClientError | undefined;
    await kaon.engine.whileNoRuns(
      "racing",
      async () => false,
      async () => {
        // A start that arrives between the check and the delete is refused, not orphaned.
        startedMeanwhile = await rpcError(runs().startRun({ workflowId: "racing" }));
        const second = await rpcError(workflows().deleteWorkflow({ workflowId: "racing" }));
        expect(second.code).toBe(Status.FAILED_PRECONDITION);
        expect(second.details).toContain("is being deleted");
        return true;
      },
    );
    expect(startedMeanwhile?.code).toBe(Status.FAILED_PRECONDITION);
    expect(startedMeanwhile?.details).toContain(
      "workflow 'racing' is being deleted; no run of it can start",
    );
    // The guard is gone with the delete decision: the (still deployed) workflow runs again.
    const run = (await runs().startRun({ workflowId: "racing" })).run;
    expect(run?.workflowId).toBe("racing");
  });
});
