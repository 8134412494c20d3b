// Why a trigger's latest fire could not start a run (TriggerState.last_error): kept beside the
// trigger's other state so `kaon triggers` and ListTriggers show it after a restart, and
// cleared by the next fire that starts a run.
import type { Knex } from "knex";
import type { Migration } from "./index.js";

export const migration: Migration = {
  name: "005_trigger_errors",

  async up(db: Knex) {
    await db.schema.alterTable("trigger_states", (t) => {
      t.text("last_error").nullable();
      t.bigInteger("last_error_at").nullable();
    });
  },

  async down(db: Knex) {
    await db.schema.alterTable("trigger_states", (t) => {
      t.dropColumn("last_error");
      t.dropColumn("last_error_at");
    });
  },
};
