// DeleteWorkflow against runs, through the real composition root: it refuses while a run is
// unfinished, no run can start while a delete is deciding (the check and the delete are one
// guarded step, not two racing calls), and once deleted the workflow starts nothing.
import { RunStatus } from "@kaon/proto";
import { ClientError, Status } from "nice-grpc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClusterKaon, startClusterKaon } from "../cluster/support.js";

let k: ClusterKaon;
const workflows = () => k.workflows;
const runs = () => k.runs;

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
  k = await startClusterKaon();
});

afterAll(async () => {
  await k?.stop();
});

describe("DeleteWorkflow", () => {
  it("refuses while a run is unfinished, and deletes once it has ended", async () => {
    await k.deploy({
      id: "doomed",
      steps: [{ id: "wait", type: "command", config: { shell: "sleep 30" } }],
    });
    const runId = (await runs().startRun({ workflowId: "doomed" })).run?.id as string;
    const refused = await rpcError(workflows().deleteWorkflow({ workflowId: "doomed" }));
    expect(refused.code).toBe(Status.FAILED_PRECONDITION);
    expect(refused.details).toContain("workflow 'doomed' has unfinished runs; stop them first");
    await runs().stopRun({ runId, reason: "test" });
    expect((await k.finish(runId)).run.status).toBe(RunStatus.RUN_STATUS_STOPPED);
    await workflows().deleteWorkflow({ workflowId: "doomed" });
    const gone = await rpcError(runs().startRun({ workflowId: "doomed" }));
    expect(gone.code).toBe(Status.NOT_FOUND);
  });

  it("starts no run of the workflow while a delete is deciding", async () => {
    await k.deploy({ id: "racing", steps: [{ id: "a", type: "noop" }] });
    let startedMeanwhile: ClientError | undefined;
    await k.kaon.engine.whileNoRuns(
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
