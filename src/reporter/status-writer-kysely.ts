import { CompiledQuery, type IsolationLevel, type Kysely } from 'kysely';
import type { Database } from '../store/schema.js';
import type { RowBatch } from './row-batch.js';
import { PRUNE_STEP_S, type StatusSql, type StatusWriter } from './status-writer.js';

/**
 * A StatusWriter over a kysely instance: MySQL/MariaDB and PostgreSQL, where each writer has a
 * store (connection pool) of its own so writers really run in parallel, and in-memory SQLite
 * (`sqlite::memory:`, a private database only the main thread's handle can see).
 *
 * Both statements of a batch run in one transaction: one commit (one log flush) per batch, and a
 * retry after a failure never finds ServerCallStatus and the history out of step.
 */
export class KyselyStatusWriter implements StatusWriter {
  constructor(
    private readonly db: Kysely<Database>,
    private readonly statements: StatusSql,
    /** MySQL: READ COMMITTED, so the upserts take no gap locks beyond duplicate-key checks. */
    private readonly isolation: IsolationLevel | undefined,
  ) {}

  async write(batch: RowBatch): Promise<void> {
    const all = [
      ...this.statements.statusStatements(batch.status),
      ...this.statements.historyStatements(batch.history),
    ];
    if (all.length === 0) return;
    const builder = this.db.transaction();
    await (this.isolation ? builder.setIsolationLevel(this.isolation) : builder).execute(async (trx) => {
      for (const s of all) await trx.executeQuery(CompiledQuery.raw(s.sql, s.parameters as unknown[]));
    });
  }
}

/** Deletes history rows with `minute < beforeMinute`, oldest hour first; returns rows deleted. */
export async function pruneHistory(db: Kysely<Database>, beforeMinute: number): Promise<number> {
  let total = 0;
  for (;;) {
    const row = await db
      .selectFrom('lars_call_history')
      .select((eb) => eb.fn.min('minute').as('oldest'))
      .executeTakeFirst();
    const oldest = row?.oldest === null || row?.oldest === undefined ? undefined : Number(row.oldest);
    if (oldest === undefined || oldest >= beforeMinute) return total;
    const cut = Math.min(beforeMinute, oldest + PRUNE_STEP_S);
    const res = await db.deleteFrom('lars_call_history').where('minute', '<', cut).executeTakeFirst();
    total += Number(res.numDeletedRows);
  }
}
