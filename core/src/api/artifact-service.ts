// ArtifactService (artifact_service.proto): announcements from outside kaon (which wake
// steps WAITING_FOR_DATA and artifact triggers), and reads of partitions and their history.
import type { Artifact, ArtifactServiceDefinition } from "@kaon/proto";
import type { ServiceImplementation } from "nice-grpc";
import type { Engine } from "../engine/engine.js";
import type { CallContextExt } from "./auth.js";
import { InvalidArgumentError, ServerError, Status } from "./errors.js";
import { decodePageToken, encodePageToken, pageSize } from "./run-service.js";

const NAME = /^[A-Za-z0-9_.\-/]{1,256}$/;

/** Artifact names: also checked for announcements from jobs (job-service.ts). */
export function checkName(name: string, field: string): void {
  if (!NAME.test(name)) {
    throw new InvalidArgumentError(`invalid ${field}`, [
      {
        field,
        description: name
          ? `'${name.slice(0, 80)}' is not a valid artifact name`
          : "empty artifact name",
        hint: "use letters, digits and . _ - / (1-256 chars), e.g. models.regional",
      },
    ]);
  }
}

/** Partition keys and values (a comma would break the stored partition key). */
export function checkPartitions(partitions: Record<string, string>, field: string): void {
  for (const [k, v] of Object.entries(partitions)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k)) {
      throw new InvalidArgumentError(`invalid ${field}`, [
        {
          field: `${field}.${k}`,
          description: `partition key '${k}' is not valid`,
          hint: "letters, digits and _",
        },
      ]);
    }
    if (v.includes(",") || v.length > 256) {
      throw new InvalidArgumentError(`invalid ${field}`, [
        {
          field: `${field}.${k}`,
          description: `partition value '${v.slice(0, 40)}' is not valid`,
          hint: "at most 256 chars, no commas",
        },
      ]);
    }
  }
}

export function createArtifactService(options: {
  engine: Engine;
}): ServiceImplementation<typeof ArtifactServiceDefinition, CallContextExt> {
  const { engine } = options;
  const q = engine.queries;
  return {
    async announce(req) {
      const a = req.artifact;
      if (!a) {
        throw new InvalidArgumentError("artifact is required", [
          { field: "artifact", description: "missing", hint: "" },
        ]);
      }
      checkName(a.name, "artifact.name");
      checkPartitions(a.partitions, "artifact.partitions");
      const namespace = a.namespace || "default";
      const key = req.requestId ? `announce:${req.requestId}` : undefined;
      if (key) {
        const done = await q.requestKey(key);
        if (done) return { artifact: JSON.parse(done, reviveDates) as Artifact };
      }
      const [stored] = await engine.announce([
        {
          namespace,
          name: a.name,
          partitions: a.partitions,
          uri: a.uri,
          metadata: a.metadata ?? {},
          producerRunId: "",
          producerPath: "",
        },
      ]);
      const artifact: Artifact = {
        ...a,
        namespace,
        producerRunId: "",
        producerPath: "",
        announcedAt: new Date(stored?.announcedAt ?? Date.now()),
        revision: stored?.revision ?? 1,
      };
      if (key) await engine.recordRequest(key, JSON.stringify(artifact));
      return { artifact };
    },

    async getArtifact(req) {
      checkName(req.name, "name");
      const found = await q.latestArtifact(req.namespace || "default", req.name, req.partitions);
      if (!found) {
        const parts = Object.entries(req.partitions)
          .map(([k, v]) => `${k}=${v}`)
          .join(",");
        throw new ServerError(
          Status.NOT_FOUND,
          `artifact '${req.name}' {${parts}} was never announced`,
        );
      }
      return { artifact: found };
    },

    async listArtifacts(req) {
      const limit = pageSize(req.pageSize);
      const after = decodePageToken<{ id: number }>(req.pageToken, "page_token", { id: "number" });
      const rows = await q.listArtifacts({
        ...(req.name ? { name: req.name } : {}),
        ...(req.namespace ? { namespace: req.namespace } : {}),
        ...(Object.keys(req.partitions).length > 0 ? { partitions: req.partitions } : {}),
        ...(after ? { afterId: after.id } : {}),
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        artifacts: page.map(({ id: _id, ...a }) => a),
        nextPageToken: rows.length > limit && last ? encodePageToken({ id: last.id }) : "",
      };
    },

    async history(req) {
      checkName(req.name, "name");
      const limit = Math.min(Math.max(req.limit || 1000, 1), 10_000);
      const artifacts = await q.artifactHistory({
        name: req.name,
        namespace: req.namespace || "default",
        ...(Object.keys(req.partitions).length > 0 ? { partitions: req.partitions } : {}),
        limit,
      });
      return { artifacts };
    },
  };
}

function reviveDates(key: string, value: unknown): unknown {
  return key === "announcedAt" && typeof value === "string" ? new Date(value) : value;
}
