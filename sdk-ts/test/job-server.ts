// A test JobService: applies Report batches with the server's rule (a sequence at or below
// the high-water mark is acknowledged and ignored, a sequence below 1 is refused, GetContext
// tells the mark) and records what it applied, so tests can count exactly-once delivery. State lives outside the server so a test can stop the server
// and start another one on the same port with the same state (a core restart).
import { type Artifact, ErrorDetails, JobServiceDefinition, type ReportItem } from "@kaon/proto";
import { type CallContext, ServerError, Status } from "nice-grpc";
import { partialImpl, startTestServer, type TestServer } from "./support.js";

export const JOB_TOKEN = "step-token";

export class JobState {
  highWater = 0;
  /** Sequences applied, in order. */
  applied: number[] = [];
  /** Every Report call received (duplicates included). */
  received: number[] = [];
  /** GetContext calls received. */
  contextCalls = 0;
  items: ReportItem[] = [];
  artifacts: Artifact[] = [];
  /** Sequences whose acknowledgement is "lost" once (applied, then UNAVAILABLE). */
  loseAckOnce = new Set<number>();
  private waiters: Array<{ count: number; resolve: () => void }> = [];

  /** Resolves once at least `count` items were applied. */
  itemsApplied(count: number): Promise<void> {
    if (this.items.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  apply(sequence: number, items: ReportItem[]): void {
    this.received.push(sequence);
    if (sequence <= this.highWater) return;
    this.highWater = sequence;
    this.applied.push(sequence);
    this.items.push(...items);
    this.waiters = this.waiters.filter((w) => {
      if (this.items.length < w.count) return true;
      w.resolve();
      return false;
    });
  }
}

function checkToken(context: CallContext) {
  if (context.metadata.get("authorization") !== `Bearer ${JOB_TOKEN}`) {
    throw new ServerError(Status.UNAUTHENTICATED, "bad step token");
  }
}

export function startJobServer(state: JobState, port = 0): Promise<TestServer> {
  return startTestServer((server) => {
    server.add(
      JobServiceDefinition,
      partialImpl(JobServiceDefinition, {
        async getContext(_req, context) {
          checkToken(context);
          state.contextCalls++;
          return {
            runId: "r1",
            workflowId: "wf",
            path: "regional[2]/train",
            stepId: "train",
            attempt: 1,
            params: { region: "US", n: 3 },
            runTs: 1_700_000_000_000,
            appliedSequence: state.highWater,
          };
        },
        async report(req, context) {
          checkToken(context);
          if (req.sequence < 1) {
            throw new ServerError(
              Status.INVALID_ARGUMENT,
              `sequence ${req.sequence} must be 1 or more`,
            );
          }
          // Like core: the whole batch is refused, naming the item in the error details.
          for (const [i, item] of req.items.entries()) {
            if (item.kind?.$case === "output" && item.kind.value.name === "bad name") {
              const description = "'bad name' is not a valid output name";
              context.trailer.set(
                "kaon-error-details-bin",
                ErrorDetails.encode({
                  violations: [{ field: `items[${i}]`, description, hint: "" }],
                }).finish(),
              );
              throw new ServerError(Status.INVALID_ARGUMENT, `items[${i}]: ${description}`);
            }
          }
          state.apply(req.sequence, req.items);
          if (state.loseAckOnce.delete(req.sequence)) {
            throw new ServerError(Status.UNAVAILABLE, "connection reset before the ack");
          }
          return { appliedSequence: state.highWater };
        },
        async announceArtifact(req, context) {
          checkToken(context);
          const artifact = { ...req.artifact!, revision: 1, producerRunId: "r1" };
          state.artifacts.push(artifact);
          return { artifact };
        },
      }),
    );
  }, port);
}
