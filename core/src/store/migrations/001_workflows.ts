// Workflows and their immutable versions. Portable on SQLite and PostgreSQL: timestamps are
// BIGINT epoch milliseconds, JSON is TEXT (parsed by the repository), no booleans and no
// dialect-specific types. Tag filtering uses a side table instead of JSON operators, which
// differ between the two databases.
import type { Knex } from "knex";
import type { Migration } from "./index.js";

export const migration: Migration = {
  name: "001_workflows",

  async up(db: Knex) {
    await db.schema.createTable("workflows", (t) => {
      t.string("id", 128).primary();
      t.string("namespace", 128).notNullable();
      // Summary of the active version, copied so listing never parses definitions.
      t.text("description").notNullable();
      t.string("owner", 256).notNullable();
      t.text("tags_json").notNullable();
      t.integer("active_version").notNullable();
      t.integer("latest_version").notNullable();
      t.bigInteger("created_at").notNullable();
      t.bigInteger("updated_at").notNullable();
      t.bigInteger("last_deployed_at").notNullable();
      t.index(["last_deployed_at", "id"], "workflows_by_deploy");
      t.index(["namespace", "last_deployed_at", "id"], "workflows_by_namespace");
    });

    // Tags of each workflow's active version, one row per tag, for `tags` filters.
    await db.schema.createTable("workflow_tags", (t) => {
      t.string("workflow_id", 128)
        .notNullable()
        .references("id")
        .inTable("workflows")
        .onDelete("CASCADE");
      t.string("key", 128).notNullable();
      t.string("value", 256).notNullable();
      t.primary(["workflow_id", "key"]);
      t.index(["key", "value"], "workflow_tags_by_tag");
    });

    await db.schema.createTable("workflow_versions", (t) => {
      t.string("workflow_id", 128)
        .notNullable()
        .references("id")
        .inTable("workflows")
        .onDelete("CASCADE");
      t.integer("version").notNullable();
      // SHA-256 hex of definition_json; identical content maps to the existing version.
      t.string("content_hash", 64).notNullable();
      // The canonical proto3 JSON text of the definition (see model/canonical.ts).
      t.text("definition_json").notNullable();
      t.string("namespace", 128).notNullable();
      t.text("description").notNullable();
      t.string("owner", 256).notNullable();
      t.text("tags_json").notNullable();
      t.text("scm_json");
      t.text("client_json");
      t.bigInteger("created_at").notNullable();
      // The primary key is what stops two concurrent deploys from taking the same number.
      t.primary(["workflow_id", "version"]);
      t.unique(["workflow_id", "content_hash"], { indexName: "workflow_versions_by_hash" });
    });
  },

  async down(db: Knex) {
    await db.schema.dropTableIfExists("workflow_versions");
    await db.schema.dropTableIfExists("workflow_tags");
    await db.schema.dropTableIfExists("workflows");
  },
};
