// Per-namespace quotas (ClusterService.SetQuota). One row per namespace that ever had a quota
// set; every limit 0 means unlimited, so "no row" and "all zeros" mean the same. Portable on
// SQLite and PostgreSQL like 001/002: numbers as DOUBLE/INTEGER, epoch-ms BIGINT timestamps.
import type { Knex } from "knex";
import type { Migration } from "./index.js";

export const migration: Migration = {
  name: "004_quotas",

  async up(db: Knex) {
    await db.schema.createTable("namespace_quotas", (t) => {
      t.string("namespace", 128).primary();
      t.integer("max_tasks").notNullable();
      t.double("cpus").notNullable();
      t.double("mem_mb").notNullable();
      t.double("gpus").notNullable();
      t.double("disk_mb").notNullable();
      t.bigInteger("updated_at").notNullable();
    });
  },

  async down(db: Knex) {
    await db.schema.dropTableIfExists("namespace_quotas");
  },
};
