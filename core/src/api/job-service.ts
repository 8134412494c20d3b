// JobService (job_service.proto): what a running job calls with its step-scoped token
// (KAON_TOKEN). The auth middleware has already verified the token and put the attempt's
// identity on `context.auth`; the engine checks that the attempt is still live, applies
// reports (idempotent by per-attempt sequence) and answers only after they are durable.
// Every method is `leanUnary`: over gRPC it is served by the lean path (lean-unary.ts), so it
// may use only `context.auth`.
import type {
  AnnounceArtifactRequest,
  GetContextRequest,
  JobServiceDefinition,
  ReportRequest,
} from "@kaon/proto";
import type { ServiceImplementation } from "nice-grpc";
import type { Engine, StepIdentity } from "../engine/engine.js";
import { checkName, checkPartitions } from "./artifact-service.js";
import type { CallContextExt } from "./auth.js";
import { InvalidArgumentError, ServerError, Status } from "./errors.js";
import { type LeanContext, leanUnary } from "./lean-unary.js";
import { engineCall } from "./run-service.js";

function identityOf(context: LeanContext): StepIdentity {
  const auth = context.auth;
  if (auth.kind !== "step") {
    throw new ServerError(
      Status.PERMISSION_DENIED,
      "JobService is called from inside a job with its step token (KAON_TOKEN), not with an admin token",
    );
  }
  return { runId: auth.runId, path: auth.path, attempt: auth.attempt };
}

export function createJobService(options: {
  engine: Engine;
}): ServiceImplementation<typeof JobServiceDefinition, CallContextExt> {
  const { engine } = options;
  return {
    getContext: leanUnary(async (_req: GetContextRequest, context) => {
      const id = identityOf(context);
      return engineCall(() => engine.jobContext(id));
    }),

    report: leanUnary(async (req: ReportRequest, context) => {
      const id = identityOf(context);
      const sequence = Number(req.sequence);
      if (!Number.isInteger(sequence) || sequence < 1) {
        throw new InvalidArgumentError("invalid sequence", [
          {
            field: "sequence",
            description: `sequence ${req.sequence} must be 1 or more`,
            hint: "number batches 1, 2, 3, ... per attempt",
          },
        ]);
      }
      if (req.items.length > 1000) {
        throw new InvalidArgumentError("too many items", [
          {
            field: "items",
            description: `${req.items.length} items in one batch`,
            hint: "send at most 1000 items per Report",
          },
        ]);
      }
      const applied = await engineCall(() => engine.report(id, sequence, req.items));
      return { appliedSequence: applied };
    }),

    announceArtifact: leanUnary(async (req: AnnounceArtifactRequest, context) => {
      const id = identityOf(context);
      const ctx = await engineCall(() => engine.jobContext(id));
      const a = req.artifact;
      if (!a?.name) {
        throw new InvalidArgumentError("artifact.name is required", [
          {
            field: "artifact.name",
            description: "empty artifact name",
            hint: "e.g. models.regional",
          },
        ]);
      }
      // The same checks as ArtifactService.Announce: a job's announcement is stored alike.
      checkName(a.name, "artifact.name");
      checkPartitions(a.partitions, "artifact.partitions");
      const namespace = engine.runNamespace(ctx.runId) ?? "default";
      const [stored] = await engine.announce([
        {
          namespace,
          name: a.name,
          partitions: a.partitions,
          uri: a.uri,
          metadata: a.metadata ?? {},
          producerRunId: ctx.runId,
          producerPath: ctx.path,
        },
      ]);
      return {
        artifact: {
          ...a,
          namespace,
          producerRunId: ctx.runId,
          producerPath: ctx.path,
          announcedAt: new Date(stored?.announcedAt ?? Date.now()),
          revision: stored?.revision ?? 1,
        },
      };
    }),
  };
}
