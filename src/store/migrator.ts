import type { Kysely } from 'kysely';
import { InvalidArgumentError } from '../errors.js';
import type { StoreBackend } from './backend.js';
import type { Migration } from './migrations.js';
import type { Database } from './schema.js';

/**
 * Applies pending migrations in order. Idempotent: running it on an up-to-date database applies
 * nothing. Safe against concurrent migrators (the backend's migration lock), and each migration's
 * "already applied?" check runs inside its own transaction so a crash between two migrations leaves
 * a consistent record.
 */

export interface MigrateResult {
  /** Names applied by this call, in order. */
  readonly applied: string[];
  /** Names that were already recorded. */
  readonly alreadyApplied: string[];
  /** Names recorded in the database that this build does not know (a newer Lars migrated it). */
  readonly unknown: string[];
}

/** Throws when a migration list is not append-only material: duplicate or unsorted names. */
export function checkMigrationList(list: readonly Migration[]): void {
  const seen = new Set<string>();
  let previous = '';
  for (const m of list) {
    if (seen.has(m.name)) throw new InvalidArgumentError(`migration ${m.name} is listed twice`);
    if (m.name <= previous)
      throw new InvalidArgumentError(`migration ${m.name} is out of order (after ${previous})`);
    seen.add(m.name);
    previous = m.name;
  }
}

export async function runMigrations(
  db: Kysely<Database>,
  backend: StoreBackend,
  list: readonly Migration[],
  now: () => Date = () => new Date(),
): Promise<MigrateResult> {
  checkMigrationList(list);
  const { ddl, kind } = backend;
  return backend.withMigrationLock(db, async (conn) => {
    await backend.migrationTransaction(conn, (tx) =>
      ddl
        .tableOptions(
          tx.schema
            .createTable('lars_migrations')
            .ifNotExists()
            .addColumn('name', ddl.varchar(128), (c) => c.primaryKey().notNull())
            .addColumn('applied_at', ddl.varchar(32), (c) => c.notNull()),
        )
        .execute(),
    );
    const applied: string[] = [];
    const alreadyApplied: string[] = [];
    for (const migration of list) {
      const ran = await backend.migrationTransaction(conn, async (tx) => {
        const done = await tx
          .selectFrom('lars_migrations')
          .select('name')
          .where('name', '=', migration.name)
          .executeTakeFirst();
        if (done) return false;
        await migration.up({ db: tx, kind, ddl });
        await tx
          .insertInto('lars_migrations')
          .values({ name: migration.name, applied_at: now().toISOString() })
          .execute();
        return true;
      });
      (ran ? applied : alreadyApplied).push(migration.name);
    }
    const known = new Set(list.map((m) => m.name));
    const recorded = await conn.selectFrom('lars_migrations').select('name').orderBy('name').execute();
    const unknown = recorded.map((r) => r.name).filter((name) => !known.has(name));
    return { applied, alreadyApplied, unknown };
  });
}
