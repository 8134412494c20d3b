// Runs, step instances, attempts, the per-run event log, job images and data artifacts.
// Portable on SQLite and PostgreSQL like 001: epoch-ms BIGINT timestamps, JSON as TEXT, enum
// values as their proto numbers. Step instances are keyed by (run, path) and sorted by a
// `sort_key` that encodes graph order with zero-padded iteration numbers, so ListSteps can
// page through tens of thousands of foreach iterations with an index range scan.
import type { Knex } from "knex";
import type { Migration } from "./index.js";

export const migration: Migration = {
  name: "002_runs",

  async up(db: Knex) {
    await db.schema.createTable("runs", (t) => {
      t.string("id", 32).primary();
      t.string("workflow_id", 128).notNullable();
      t.integer("version").notNullable();
      t.string("namespace", 128).notNullable();
      t.integer("status").notNullable();
      t.text("params_json").notNullable();
      t.text("initiator_json").notNullable();
      t.text("tags_json").notNullable();
      t.bigInteger("created_at").notNullable();
      t.bigInteger("started_at").nullable();
      t.bigInteger("ended_at").nullable();
      t.text("message").notNullable();
      t.text("step_counts_json").notNullable();
      t.bigInteger("run_ts").notNullable();
      t.text("outputs_json").notNullable();
      t.integer("restart_count").notNullable();
      t.string("request_id", 256).nullable();
      t.string("parent_run_id", 32).nullable();
      t.integer("priority").notNullable();
      t.unique(["workflow_id", "request_id"], { indexName: "runs_request_id" });
      t.index(["created_at", "id"], "runs_by_created");
      t.index(["workflow_id", "created_at", "id"], "runs_by_workflow");
      t.index(["status"], "runs_by_status");
    });

    await db.schema.createTable("step_instances", (t) => {
      t.string("run_id", 32).notNullable();
      t.string("path", 1024).notNullable();
      t.string("sort_key", 1024).notNullable();
      t.string("step_id", 64).notNullable();
      t.string("type", 64).notNullable();
      t.integer("status").notNullable();
      t.text("reason").notNullable();
      t.text("params_json").notNullable();
      t.text("outputs_json").notNullable();
      t.integer("attempt_count").notNullable();
      t.double("progress").notNullable();
      t.text("message").notNullable();
      t.bigInteger("ready_at").nullable();
      t.bigInteger("started_at").nullable();
      t.bigInteger("ended_at").nullable();
      t.text("child_counts_json").notNullable();
      t.integer("loop_iteration").notNullable();
      t.text("reports_json").notNullable();
      // Engine bookkeeping that recovery needs: edges taken, foreach values, loop state.
      t.text("state_json").notNullable();
      t.primary(["run_id", "path"]);
      t.index(["run_id", "sort_key"], "steps_by_order");
      t.index(["run_id", "status", "sort_key"], "steps_by_status");
    });

    await db.schema.createTable("attempts", (t) => {
      t.string("run_id", 32).notNullable();
      t.string("path", 1024).notNullable();
      t.integer("number").notNullable();
      t.integer("status").notNullable();
      t.string("task_id", 1200).notNullable();
      t.string("agent_id", 256).notNullable();
      t.text("resources_json").notNullable();
      t.integer("exit_code").notNullable();
      t.bigInteger("started_at").nullable();
      t.bigInteger("ended_at").nullable();
      t.text("message").notNullable();
      // Highest in-job Report sequence applied for this attempt.
      t.bigInteger("report_seq").notNullable();
      t.primary(["run_id", "path", "number"]);
    });

    await db.schema.createTable("run_events", (t) => {
      t.string("run_id", 32).notNullable();
      t.bigInteger("seq").notNullable();
      t.bigInteger("time").notNullable();
      t.string("path", 1024).notNullable();
      t.integer("kind").notNullable();
      t.integer("status").notNullable();
      t.text("message").notNullable();
      t.text("data_json").nullable();
      t.primary(["run_id", "seq"]);
    });

    await db.schema.createTable("step_images", (t) => {
      t.string("run_id", 32).notNullable();
      t.string("path", 1024).notNullable();
      t.string("name", 256).notNullable();
      t.string("mime_type", 64).notNullable();
      t.binary("data").notNullable();
      t.primary(["run_id", "path", "name"]);
    });

    await db.schema.createTable("artifacts", (t) => {
      t.increments("id").primary();
      t.string("namespace", 128).notNullable();
      t.string("name", 256).notNullable();
      // Canonical `k=v,k=v` (sorted keys) for exact partition lookups.
      t.string("partition_key", 2048).notNullable();
      t.text("partitions_json").notNullable();
      t.text("uri").notNullable();
      t.text("metadata_json").notNullable();
      t.string("producer_run_id", 32).notNullable();
      t.string("producer_path", 1024).notNullable();
      t.bigInteger("announced_at").notNullable();
      t.bigInteger("revision").notNullable();
      t.index(["namespace", "name", "partition_key", "revision"], "artifacts_by_partition");
      t.index(["announced_at"], "artifacts_by_time");
    });

    // Idempotency keys of mutating calls other than StartRun (restart, backfill, announce).
    await db.schema.createTable("request_keys", (t) => {
      t.string("key", 512).primary();
      t.text("result_json").notNullable();
      t.bigInteger("created_at").notNullable();
    });
  },

  async down(db: Knex) {
    for (const table of [
      "request_keys",
      "artifacts",
      "step_images",
      "run_events",
      "attempts",
      "step_instances",
      "runs",
    ]) {
      await db.schema.dropTableIfExists(table);
    }
  },
};
