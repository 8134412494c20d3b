// kaon.v1.WorkflowService: validates definitions, deploys them as immutable versions, and
// serves them back (get, list, versions, activate, delete). The rules live in model/ and the
// rows in store/; this module is the translation between the wire and those two, and the one
// place that decides which gRPC status each outcome gets.
import { createHash } from "node:crypto";
import type {
  ClientInfo,
  DeployResponse,
  FieldViolation,
  ScmInfo,
  Workflow,
  WorkflowDefinition,
  WorkflowServiceDefinition,
  WorkflowVersion,
} from "@kaon/proto";
import type { ServiceImplementation } from "nice-grpc";
import { createLogger, type Logger } from "../log.js";
import { canonicalize, definitionFromCanonicalJson } from "../model/canonical.js";
import {
  DEFINITION_LIMITS,
  NAMESPACE_PATTERN,
  type StepTypeCatalog,
  validateDefinition,
  WORKFLOW_ID_PATTERN,
} from "../model/validate.js";
import { stepTypeRegistry } from "../steps/registry.js";
import type { StepTypeSettings } from "../steps/step-type.js";
import type { Db } from "../store/db.js";
import {
  NamespaceConflictError,
  type VersionRecord,
  type WorkflowCursor,
  type WorkflowRecord,
  WorkflowRepo,
} from "../store/workflow-repo.js";
import type { CallContextExt } from "./auth.js";
import {
  failedPrecondition,
  InvalidArgumentError,
  notFound,
  ServerError,
  Status,
  violation,
} from "./errors.js";

export interface WorkflowServiceDeps {
  /** The database (a WorkflowRepo is built on it unless `workflows` is given). */
  db?: Db;
  workflows?: WorkflowRepo;
  /** Step types for validation. Default: the server's registry. */
  stepTypes?: StepTypeCatalog;
  settings?: StepTypeSettings;
  log?: Logger;
  /**
   * From the engine: runs `deleteIt` only while the workflow has no unfinished run, and keeps
   * new runs from starting until it ends; refuses (FAILED_PRECONDITION) otherwise. Absent means
   * no engine is wired, so there can be no runs.
   */
  whileNoRuns?: <T>(workflowId: string, deleteIt: () => Promise<T>) => Promise<T>;
  /** Clock (epoch ms), for tests. */
  now?: () => number;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
/** Longest string accepted in ScmInfo/ClientInfo fields. */
const MAX_METADATA_CHARS = 1024;

export type WorkflowServiceImpl = ServiceImplementation<
  typeof WorkflowServiceDefinition,
  CallContextExt
>;

export function createWorkflowService(deps: WorkflowServiceDeps): WorkflowServiceImpl {
  const repo =
    deps.workflows ??
    (deps.db
      ? new WorkflowRepo(deps.db)
      : (() => {
          throw new Error("createWorkflowService needs `db` or `workflows`");
        })());
  const log = (deps.log ?? createLogger()).child({ component: "workflows" });
  const now = deps.now ?? Date.now;
  const validationOptions = {
    stepTypes: deps.stepTypes ?? stepTypeRegistry(),
    ...(deps.settings ? { settings: deps.settings } : {}),
  };

  const check = (definition: WorkflowDefinition | undefined): FieldViolation[] =>
    definition
      ? validateDefinition(definition, validationOptions)
      : [violation("definition", "the request has no definition", "send a WorkflowDefinition")];

  return {
    async validate(request) {
      const violations = check(request.definition);
      if (violations.length > 0 || !request.definition) {
        return { violations, canonical: undefined, contentHash: "" };
      }
      const canonical = canonicalize(request.definition);
      return { violations: [], canonical: canonical.definition, contentHash: canonical.hash };
    },

    async deploy(request, context): Promise<DeployResponse> {
      const violations = check(request.definition);
      violations.push(...metadataViolations("scm", request.scm));
      violations.push(...metadataViolations("client", request.client));
      if (violations.length > 0 || !request.definition) {
        const id = request.definition?.id;
        throw new InvalidArgumentError(
          `workflow definition${id ? ` '${id}'` : ""} is invalid (${violations.length} problem${violations.length === 1 ? "" : "s"})`,
          violations,
        );
      }
      const canonical = canonicalize(request.definition);
      const def = canonical.definition;
      context.signal.throwIfAborted();
      let result: Awaited<ReturnType<WorkflowRepo["deploy"]>>;
      try {
        result = await repo.deploy({
          workflowId: def.id,
          namespace: def.namespace,
          description: def.description,
          owner: def.owner,
          tags: def.tags,
          definitionJson: canonical.json,
          contentHash: canonical.hash,
          scm: request.scm,
          client: request.client,
          activate: request.activate ?? true,
          now: now(),
        });
      } catch (err) {
        if (err instanceof NamespaceConflictError) {
          throw failedPrecondition(
            `${err.message}; a deploy cannot move a workflow to another namespace (delete it first, or keep namespace '${err.existingNamespace}')`,
          );
        }
        throw err;
      }
      const { version, created } = result;
      log.info(created ? "deployed a new workflow version" : "deployed unchanged content", {
        workflow: version.workflowId,
        version: version.version,
        active: version.active,
        hash: version.contentHash,
        client: request.client?.name,
        commit: request.scm?.commit,
      });
      return {
        version: toVersionProto(version, created ? def : undefined),
        created,
      };
    },

    async getWorkflow(request) {
      const id = requireId(request.workflowId);
      if (!Number.isInteger(request.version) || request.version < -1) {
        throw new InvalidArgumentError("bad version selector", [
          violation(
            "version",
            `version ${request.version} is not valid`,
            "use 0 (active), -1 (latest) or a version number",
          ),
        ]);
      }
      const found = await repo.getVersion(id, request.version);
      if (!found) throw notFound(`workflow '${id}' not found`);
      if (!found.version) {
        throw notFound(
          `workflow '${id}' has no version ${request.version} (versions are 1-${found.workflow.latestVersion})`,
        );
      }
      return {
        workflow: toWorkflowProto(found.workflow),
        version: toVersionProto(found.version),
      };
    },

    async listWorkflows(request) {
      const limit = pageSize(request.pageSize, "page_size");
      if (matchesNothing(request)) return { workflows: [], nextPageToken: "" };
      const filter = {
        ...(request.namespace ? { namespace: request.namespace } : {}),
        ...(request.idContains ? { idContains: request.idContains } : {}),
        ...(Object.keys(request.tags).length > 0 ? { tags: request.tags } : {}),
      };
      const scope = fingerprint([
        "workflows",
        filter.namespace ?? "",
        filter.idContains ?? "",
        sortedEntries(request.tags),
      ]);
      const cursor = request.pageToken
        ? decodeToken<WorkflowCursor>(request.pageToken, scope, isWorkflowCursor)
        : undefined;
      const page = await repo.listWorkflows(filter, limit, cursor);
      return {
        workflows: page.items.map(toWorkflowProto),
        nextPageToken: page.next ? encodeToken(page.next, scope) : "",
      };
    },

    async listVersions(request) {
      const id = requireId(request.workflowId);
      const limit = pageSize(request.pageSize, "page_size");
      const scope = fingerprint(["versions", id]);
      const before = request.pageToken
        ? decodeToken<number>(request.pageToken, scope, (v): v is number => Number.isInteger(v))
        : undefined;
      const page = await repo.listVersions(id, limit, before);
      if (!page) throw notFound(`workflow '${id}' not found`);
      return {
        versions: page.items.map((v) => toVersionProto(v)),
        nextPageToken: page.next !== undefined ? encodeToken(page.next, scope) : "",
      };
    },

    async activate(request, context) {
      const id = requireId(request.workflowId);
      if (!Number.isInteger(request.version) || request.version < 1) {
        throw new InvalidArgumentError("bad version", [
          violation(
            "version",
            `version ${request.version} is not valid`,
            "versions are numbered from 1",
          ),
        ]);
      }
      context.signal.throwIfAborted();
      const result = await repo.activate(id, request.version, now());
      if (!result.ok) {
        if (result.missing === "workflow") throw notFound(`workflow '${id}' not found`);
        const wf = await repo.getWorkflow(id);
        throw notFound(
          `workflow '${id}' has no version ${request.version}${wf ? ` (versions are 1-${wf.latestVersion})` : ""}`,
        );
      }
      if (result.changed) {
        log.info("activated a workflow version", { workflow: id, version: request.version });
      }
      return { workflow: toWorkflowProto(result.workflow) };
    },

    async deleteWorkflow(request, context) {
      const id = requireId(request.workflowId);
      if (!(await repo.getWorkflow(id))) throw notFound(`workflow '${id}' not found`);
      context.signal.throwIfAborted();
      const deleteIt = () => repo.delete(id);
      const deleted = deps.whileNoRuns ? await deps.whileNoRuns(id, deleteIt) : await deleteIt();
      if (!deleted) throw notFound(`workflow '${id}' not found`);
      log.info("deleted a workflow", { workflow: id });
      return {};
    },
  };
}

// ---------------------------------------------------------------------------------------
// Request checks

/**
 * The id of a workflow the request names. An id no deploy could have stored (NUL bytes, which
 * PostgreSQL refuses in text, or any other illegal character or length) is NOT_FOUND at once.
 */
function requireId(id: string): string {
  if (!id) {
    throw new InvalidArgumentError("workflow_id is required", [
      violation("workflow_id", "the request names no workflow", "set workflow_id"),
    ]);
  }
  if (!WORKFLOW_ID_PATTERN.test(id)) {
    const shown = id.length > 80 ? `${id.slice(0, 80)}…` : id;
    throw notFound(
      `workflow ${JSON.stringify(shown)} not found: workflow ids are 1-128 lowercase letters, digits, '_', '-' or '.', starting with a letter`,
    );
  }
  return id;
}

/** True when a list filter names values no stored workflow can have (so the DB is not asked). */
function matchesNothing(request: {
  namespace: string;
  idContains: string;
  tags: Record<string, string>;
}): boolean {
  if (request.namespace && !NAMESPACE_PATTERN.test(request.namespace)) return true;
  if (request.idContains && !/^[a-z0-9_.-]{1,128}$/.test(request.idContains.toLowerCase())) {
    return true;
  }
  return Object.entries(request.tags).some(
    ([key, value]) =>
      key.length > DEFINITION_LIMITS.maxTagKeyLength ||
      value.length > DEFINITION_LIMITS.maxTagValueLength ||
      key.includes("\u0000") ||
      value.includes("\u0000"),
  );
}

function pageSize(requested: number, field: string): number {
  if (requested === 0) return DEFAULT_PAGE_SIZE;
  if (!Number.isInteger(requested) || requested < 1 || requested > MAX_PAGE_SIZE) {
    throw new InvalidArgumentError("bad page size", [
      violation(
        field,
        `page_size ${requested} is out of range`,
        `use 1-${MAX_PAGE_SIZE} (0 means ${DEFAULT_PAGE_SIZE})`,
      ),
    ]);
  }
  return requested;
}

function metadataViolations(
  field: "scm" | "client",
  info: ScmInfo | ClientInfo | undefined,
): FieldViolation[] {
  if (!info) return [];
  const out: FieldViolation[] = [];
  for (const [key, value] of Object.entries(info)) {
    if (typeof value === "string" && value.length > MAX_METADATA_CHARS) {
      out.push(
        violation(
          `${field}.${key}`,
          `${field}.${key} is ${value.length} characters long; the limit is ${MAX_METADATA_CHARS}`,
        ),
      );
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Page tokens: opaque to clients, bound to the query they continue (a token from one filter
// used with another is rejected instead of silently skipping items).

interface TokenBody<T> {
  v: 1;
  s: string;
  c: T;
}

function fingerprint(parts: unknown): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("base64url").slice(0, 12);
}

function sortedEntries(tags: Record<string, string>): Array<[string, string]> {
  return Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function encodeToken<T>(cursor: T, scope: string): string {
  const body: TokenBody<T> = { v: 1, s: scope, c: cursor };
  return Buffer.from(JSON.stringify(body)).toString("base64url");
}

function decodeToken<T>(token: string, scope: string, valid: (c: unknown) => c is T): T {
  const bad = (why: string) =>
    new InvalidArgumentError("bad page token", [
      violation(
        "page_token",
        `page_token ${why}`,
        "pass next_page_token from the previous response unchanged, with the same filters",
      ),
    ]);
  let body: Partial<TokenBody<unknown>>;
  try {
    body = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as Partial<
      TokenBody<unknown>
    >;
  } catch {
    throw bad("is not a token this server issued");
  }
  if (body?.v !== 1 || typeof body.s !== "string" || !valid(body.c)) {
    throw bad("is not a token this server issued");
  }
  if (body.s !== scope) throw bad("was issued for a different query (filters or workflow changed)");
  return body.c;
}

function isWorkflowCursor(c: unknown): c is WorkflowCursor {
  const x = c as WorkflowCursor | null;
  return !!x && Number.isFinite(x.lastDeployedAt) && typeof x.id === "string";
}

// ---------------------------------------------------------------------------------------
// Records → API messages

export function toWorkflowProto(w: WorkflowRecord): Workflow {
  return {
    id: w.id,
    namespace: w.namespace,
    description: w.description,
    owner: w.owner,
    tags: w.tags,
    activeVersion: w.activeVersion,
    latestVersion: w.latestVersion,
    createdAt: new Date(w.createdAt),
    updatedAt: new Date(w.updatedAt),
  };
}

/** `definition`: already decoded; otherwise decoded from the record's JSON when it has one. */
export function toVersionProto(v: VersionRecord, definition?: WorkflowDefinition): WorkflowVersion {
  let def = definition;
  if (!def && v.definitionJson !== undefined) {
    try {
      def = definitionFromCanonicalJson(v.definitionJson);
    } catch (err) {
      throw new ServerError(
        Status.DATA_LOSS,
        `stored definition of '${v.workflowId}' version ${v.version} cannot be read: ${(err as Error).message}`,
      );
    }
  }
  return {
    workflowId: v.workflowId,
    version: v.version,
    definition: def,
    contentHash: v.contentHash,
    createdAt: new Date(v.createdAt),
    scm: v.scm,
    client: v.client,
    active: v.active,
  };
}
