// The schema's history, listed in code. knex would otherwise scan a directory for migration
// files, which breaks between src (vitest, .ts) and dist (.js) and in bundles; an explicit
// list works everywhere and makes the order a reviewed decision.
//
// To add tables: write `NNN_name.ts` exporting `migration: Migration` and append it below.
// Never edit or reorder a migration that has shipped; add a new one instead.
import type { Knex } from "knex";
import { migration as m001Workflows } from "./001_workflows.js";
import { migration as m002Runs } from "./002_runs.js";
import { migration as m003Triggers } from "./003_triggers.js";
import { migration as m004Quotas } from "./004_quotas.js";
import { migration as m005TriggerErrors } from "./005_trigger_errors.js";

export interface Migration {
  /** Stable name recorded in the `kaon_migrations` table, e.g. "001_workflows". */
  readonly name: string;
  up(db: Knex): Promise<void>;
  down(db: Knex): Promise<void>;
}

/** Every migration, oldest first. */
export const migrations: readonly Migration[] = [
  m001Workflows,
  m002Runs,
  m003Triggers,
  m004Quotas,
  m005TriggerErrors,
];

export const MIGRATIONS_TABLE = "kaon_migrations";

class ListedMigrationSource implements Knex.MigrationSource<Migration> {
  constructor(private readonly list: readonly Migration[]) {}
  getMigrations(): Promise<Migration[]> {
    return Promise.resolve([...this.list]);
  }
  getMigrationName(migration: Migration): string {
    return migration.name;
  }
  getMigration(migration: Migration): Promise<Knex.Migration> {
    return Promise.resolve({ up: (db) => migration.up(db), down: (db) => migration.down(db) });
  }
}

function config(list: readonly Migration[]): Knex.MigratorConfig {
  return { migrationSource: new ListedMigrationSource(list), tableName: MIGRATIONS_TABLE };
}

/** Applies every pending migration; returns the names applied. Safe to call concurrently. */
export async function migrateToLatest(
  db: Knex,
  list: readonly Migration[] = migrations,
): Promise<string[]> {
  const [, applied] = (await db.migrate.latest(config(list))) as [number, string[]];
  return applied;
}

/** Rolls back every migration (tests and `kaon db reset`-style tooling only). */
export async function rollbackAll(
  db: Knex,
  list: readonly Migration[] = migrations,
): Promise<void> {
  await db.migrate.rollback(config(list), true);
}

/** Names of the migrations already applied, oldest first. */
export async function appliedMigrations(db: Knex): Promise<string[]> {
  if (!(await db.schema.hasTable(MIGRATIONS_TABLE))) return [];
  const rows = (await db(MIGRATIONS_TABLE).select("name").orderBy("id")) as Array<{
    name: string;
  }>;
  return rows.map((r) => r.name);
}
