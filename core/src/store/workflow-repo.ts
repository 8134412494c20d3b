// Storage of workflows and their immutable versions. The repository knows rows, not protos:
// the definition arrives as canonical JSON text with its hash (model/canonical.ts), and the
// service turns records back into API messages. Deploys are serialized per workflow (a row
// lock on PostgreSQL, the single connection on SQLite) and the (workflow_id, version) primary
// key backs that up, so concurrent deploys never share a version number.
import type { ClientInfo, ScmInfo } from "@kaon/proto";
import type { Knex } from "knex";
import { type Db, dialectOf, isTransientConflict, isUniqueViolation } from "./db.js";

export interface WorkflowRecord {
  id: string;
  namespace: string;
  /** Description, owner and tags of the active version. */
  description: string;
  owner: string;
  tags: Record<string, string>;
  activeVersion: number;
  latestVersion: number;
  /** Epoch milliseconds. */
  createdAt: number;
  /** Last deploy or activation. */
  updatedAt: number;
  /** Last deploy that made a new version; listing order. */
  lastDeployedAt: number;
}

export interface VersionRecord {
  workflowId: string;
  version: number;
  contentHash: string;
  /** Canonical JSON text; omitted by listVersions. */
  definitionJson?: string;
  namespace: string;
  description: string;
  owner: string;
  tags: Record<string, string>;
  scm?: ScmInfo;
  client?: ClientInfo;
  createdAt: number;
  active: boolean;
}

export interface NewVersion {
  workflowId: string;
  namespace: string;
  description: string;
  owner: string;
  tags: Record<string, string>;
  definitionJson: string;
  contentHash: string;
  scm?: ScmInfo | undefined;
  client?: ClientInfo | undefined;
  /** Make the version active. The first version of a workflow is active regardless. */
  activate: boolean;
  /** Epoch ms; defaults to Date.now(). */
  now?: number;
}

export interface DeployResult {
  /** False when a version with identical content already existed and was returned. */
  created: boolean;
  version: VersionRecord;
  workflow: WorkflowRecord;
}

/** A deploy tried to move a workflow to another namespace. */
export class NamespaceConflictError extends Error {
  constructor(
    readonly workflowId: string,
    readonly existingNamespace: string,
    readonly requestedNamespace: string,
  ) {
    super(
      `workflow '${workflowId}' belongs to namespace '${existingNamespace}', not '${requestedNamespace}'`,
    );
    this.name = "NamespaceConflictError";
  }
}

export interface WorkflowListFilter {
  namespace?: string;
  /** Substring of the id (ids are lowercase, so this is matched lowercase). */
  idContains?: string;
  /** Every tag must match exactly (tags of the active version). */
  tags?: Record<string, string>;
}

/** Position after the last item of a page of workflows (newest deploy first). */
export interface WorkflowCursor {
  lastDeployedAt: number;
  id: string;
}

export interface Page<T, C> {
  items: T[];
  /** Present when more items follow. */
  next?: C;
}

export type ActivateResult =
  | { ok: true; workflow: WorkflowRecord; changed: boolean }
  | { ok: false; missing: "workflow" | "version" };

/** Version selectors understood by getVersion. */
export const ACTIVE_VERSION = 0;
export const LATEST_VERSION = -1;

const DEPLOY_ATTEMPTS = 8;

interface WorkflowRow {
  id: string;
  namespace: string;
  description: string;
  owner: string;
  tags_json: string;
  active_version: number;
  latest_version: number;
  created_at: number;
  updated_at: number;
  last_deployed_at: number;
}

interface VersionRow {
  workflow_id: string;
  version: number;
  content_hash: string;
  definition_json?: string;
  namespace: string;
  description: string;
  owner: string;
  tags_json: string;
  scm_json: string | null;
  client_json: string | null;
  created_at: number;
}

const VERSION_SUMMARY_COLUMNS = [
  "workflow_id",
  "version",
  "content_hash",
  "namespace",
  "description",
  "owner",
  "tags_json",
  "scm_json",
  "client_json",
  "created_at",
] as const;

export class WorkflowRepo {
  constructor(private readonly db: Db) {}

  /**
   * Stores a version unless one with the same content hash exists, in which case that one is
   * returned (and activated when `activate` is set). Throws NamespaceConflictError when the
   * workflow exists in another namespace.
   */
  async deploy(input: NewVersion): Promise<DeployResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction((trx) => this.deployOnce(trx, input));
      } catch (err) {
        const retryable = isUniqueViolation(err) || isTransientConflict(err);
        if (!retryable || attempt >= DEPLOY_ATTEMPTS) throw err;
      }
    }
  }

  private async deployOnce(trx: Knex.Transaction, input: NewVersion): Promise<DeployResult> {
    const now = input.now ?? Date.now();
    await trx("workflows")
      .insert({
        id: input.workflowId,
        namespace: input.namespace,
        description: input.description,
        owner: input.owner,
        tags_json: JSON.stringify(input.tags),
        active_version: 0,
        latest_version: 0,
        created_at: now,
        updated_at: now,
        last_deployed_at: now,
      })
      .onConflict("id")
      .ignore();
    const wf = await this.lockWorkflow(trx, input.workflowId);
    if (!wf) throw new Error(`workflow row '${input.workflowId}' vanished during deploy`);
    if (wf.latest_version > 0 && wf.namespace !== input.namespace) {
      throw new NamespaceConflictError(input.workflowId, wf.namespace, input.namespace);
    }

    const existing = (await trx("workflow_versions")
      .select(VERSION_SUMMARY_COLUMNS)
      .select("definition_json")
      .where({ workflow_id: input.workflowId, content_hash: input.contentHash })
      .first()) as VersionRow | undefined;
    if (existing) {
      let row = wf;
      if (input.activate && wf.active_version !== existing.version) {
        row = await this.setActive(trx, wf, existing, now);
      }
      return {
        created: false,
        version: toVersion(existing, row.active_version),
        workflow: toWorkflow(row),
      };
    }

    const version = wf.latest_version + 1;
    const versionRow: VersionRow = {
      workflow_id: input.workflowId,
      version,
      content_hash: input.contentHash,
      definition_json: input.definitionJson,
      namespace: input.namespace,
      description: input.description,
      owner: input.owner,
      tags_json: JSON.stringify(input.tags),
      scm_json: input.scm ? JSON.stringify(input.scm) : null,
      client_json: input.client ? JSON.stringify(input.client) : null,
      created_at: now,
    };
    await trx("workflow_versions").insert(versionRow);
    await trx("workflows")
      .where({ id: input.workflowId })
      .update({ latest_version: version, last_deployed_at: now, updated_at: now });
    let row: WorkflowRow = {
      ...wf,
      latest_version: version,
      last_deployed_at: now,
      updated_at: now,
    };
    if (input.activate || wf.active_version === 0) {
      row = await this.setActive(trx, row, versionRow, now);
    }
    return {
      created: true,
      version: toVersion(versionRow, row.active_version),
      workflow: toWorkflow(row),
    };
  }

  async getWorkflow(id: string): Promise<WorkflowRecord | undefined> {
    const row = (await this.db("workflows").where({ id }).first()) as WorkflowRow | undefined;
    return row && row.latest_version > 0 ? toWorkflow(row) : undefined;
  }

  /** `selector`: a version number, ACTIVE_VERSION (0) or LATEST_VERSION (-1). */
  async getVersion(
    workflowId: string,
    selector: number,
  ): Promise<{ workflow: WorkflowRecord; version: VersionRecord | undefined } | undefined> {
    const wf = (await this.db("workflows").where({ id: workflowId }).first()) as
      | WorkflowRow
      | undefined;
    if (!wf || wf.latest_version === 0) return undefined;
    const number =
      selector === ACTIVE_VERSION
        ? wf.active_version
        : selector === LATEST_VERSION
          ? wf.latest_version
          : selector;
    const row = (await this.db("workflow_versions")
      .where({ workflow_id: workflowId, version: number })
      .first()) as VersionRow | undefined;
    return { workflow: toWorkflow(wf), version: row && toVersion(row, wf.active_version) };
  }

  /** Workflows, newest deploy first, then by id. */
  async listWorkflows(
    filter: WorkflowListFilter,
    limit: number,
    after?: WorkflowCursor,
  ): Promise<Page<WorkflowRecord, WorkflowCursor>> {
    const q = this.db("workflows").where("latest_version", ">", 0);
    if (filter.namespace) q.andWhere("namespace", filter.namespace);
    if (filter.idContains) {
      q.andWhereRaw("id like ? escape '\\'", [`%${escapeLike(filter.idContains.toLowerCase())}%`]);
    }
    for (const [key, value] of Object.entries(filter.tags ?? {})) {
      q.whereExists((sub) => {
        sub
          .select(this.db.raw("1"))
          .from("workflow_tags")
          .whereRaw("workflow_tags.workflow_id = workflows.id")
          .andWhere({ key, value });
      });
    }
    if (after) {
      q.andWhere((w) => {
        w.where("last_deployed_at", "<", after.lastDeployedAt).orWhere((w2) => {
          w2.where("last_deployed_at", after.lastDeployedAt).andWhere("id", ">", after.id);
        });
      });
    }
    const rows = (await q
      .orderBy([
        { column: "last_deployed_at", order: "desc" },
        { column: "id", order: "asc" },
      ])
      .limit(limit + 1)) as WorkflowRow[];
    const items = rows.slice(0, limit).map(toWorkflow);
    const last = items[items.length - 1];
    return rows.length > limit && last
      ? { items, next: { lastDeployedAt: last.lastDeployedAt, id: last.id } }
      : { items };
  }

  /** Versions newest first, without definitions; `beforeVersion` continues a previous page. */
  async listVersions(
    workflowId: string,
    limit: number,
    beforeVersion?: number,
  ): Promise<Page<VersionRecord, number> | undefined> {
    const wf = (await this.db("workflows").where({ id: workflowId }).first()) as
      | WorkflowRow
      | undefined;
    if (!wf || wf.latest_version === 0) return undefined;
    const q = this.db("workflow_versions")
      .select(VERSION_SUMMARY_COLUMNS)
      .where({ workflow_id: workflowId });
    if (beforeVersion !== undefined) q.andWhere("version", "<", beforeVersion);
    const rows = (await q.orderBy("version", "desc").limit(limit + 1)) as VersionRow[];
    const items = rows.slice(0, limit).map((r) => toVersion(r, wf.active_version));
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: last.version } : { items };
  }

  /** Makes `version` the active one (rollback or roll forward). */
  async activate(workflowId: string, version: number, now = Date.now()): Promise<ActivateResult> {
    return this.db.transaction(async (trx) => {
      const wf = await this.lockWorkflow(trx, workflowId);
      if (!wf || wf.latest_version === 0) return { ok: false, missing: "workflow" } as const;
      const row = (await trx("workflow_versions")
        .select(VERSION_SUMMARY_COLUMNS)
        .where({ workflow_id: workflowId, version })
        .first()) as VersionRow | undefined;
      if (!row) return { ok: false, missing: "version" } as const;
      if (wf.active_version === version) {
        return { ok: true, workflow: toWorkflow(wf), changed: false } as const;
      }
      const updated = await this.setActive(trx, wf, row, now);
      return { ok: true, workflow: toWorkflow(updated), changed: true } as const;
    });
  }

  /** Deletes a workflow with all its versions. False when it did not exist. */
  async delete(workflowId: string): Promise<boolean> {
    return this.db.transaction(async (trx) => {
      await trx("workflow_tags").where({ workflow_id: workflowId }).delete();
      await trx("workflow_versions").where({ workflow_id: workflowId }).delete();
      const n = await trx("workflows").where({ id: workflowId }).delete();
      return n > 0;
    });
  }

  private async lockWorkflow(trx: Knex.Transaction, id: string): Promise<WorkflowRow | undefined> {
    const q = trx("workflows").where({ id });
    // SQLite has no row locks; its single writer already serializes the transaction.
    if (dialectOf(this.db) === "postgres") q.forUpdate();
    return (await q.first()) as WorkflowRow | undefined;
  }

  private async setActive(
    trx: Knex.Transaction,
    wf: WorkflowRow,
    version: VersionRow,
    now: number,
  ): Promise<WorkflowRow> {
    const changes = {
      active_version: version.version,
      namespace: version.namespace,
      description: version.description,
      owner: version.owner,
      tags_json: version.tags_json,
      updated_at: now,
    };
    await trx("workflows").where({ id: wf.id }).update(changes);
    await trx("workflow_tags").where({ workflow_id: wf.id }).delete();
    const tags = Object.entries(parseJson<Record<string, string>>(version.tags_json, {}));
    if (tags.length > 0) {
      await trx("workflow_tags").insert(
        tags.map(([key, value]) => ({ workflow_id: wf.id, key, value })),
      );
    }
    return { ...wf, ...changes };
  }
}

function toWorkflow(row: WorkflowRow): WorkflowRecord {
  return {
    id: row.id,
    namespace: row.namespace,
    description: row.description,
    owner: row.owner,
    tags: parseJson(row.tags_json, {}),
    activeVersion: Number(row.active_version),
    latestVersion: Number(row.latest_version),
    createdAt: Number(row.created_at),
    updatedAt: Number(row.updated_at),
    lastDeployedAt: Number(row.last_deployed_at),
  };
}

function toVersion(row: VersionRow, activeVersion: number): VersionRecord {
  const record: VersionRecord = {
    workflowId: row.workflow_id,
    version: Number(row.version),
    contentHash: row.content_hash,
    namespace: row.namespace,
    description: row.description,
    owner: row.owner,
    tags: parseJson(row.tags_json, {}),
    createdAt: Number(row.created_at),
    active: Number(row.version) === Number(activeVersion),
  };
  if (row.definition_json !== undefined) record.definitionJson = row.definition_json;
  const scm = row.scm_json ? parseJson<ScmInfo | undefined>(row.scm_json, undefined) : undefined;
  if (scm) record.scm = scm;
  const client = row.client_json
    ? parseJson<ClientInfo | undefined>(row.client_json, undefined)
    : undefined;
  if (client) record.client = client;
  return record;
}

function parseJson<T>(text: string, fallback: T): T {
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
