// Trigger state that must survive a restart of core: an operator's enable/disable override,
// when a trigger last fired, and for cron triggers the planned time up to which fires are
// settled (the catch-up watermark). Keyed by (workflow, trigger id) rather than by version,
// so an override and the watermark carry over when a new version is deployed or activated.
// Portable like 001/002: epoch-ms BIGINT timestamps; the override is a nullable integer
// (NULL = follow the definition's `disabled`, 1 = enabled, 0 = disabled).
import type { Knex } from "knex";
import type { Migration } from "./index.js";

export const migration: Migration = {
  name: "003_triggers",

  async up(db: Knex) {
    await db.schema.createTable("trigger_states", (t) => {
      t.string("workflow_id", 128).notNullable();
      t.string("trigger_id", 64).notNullable();
      t.integer("enabled_override").nullable();
      t.bigInteger("last_fired_at").nullable();
      // Cron only: every planned fire time at or before this is settled (fired or skipped).
      t.bigInteger("cron_settled_until").nullable();
      t.bigInteger("updated_at").notNullable();
      t.primary(["workflow_id", "trigger_id"]);
    });
  },

  async down(db: Knex) {
    await db.schema.dropTableIfExists("trigger_states");
  },
};
