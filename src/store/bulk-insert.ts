import type { Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { StoreKind } from './url.js';

/**
 * Bulk-loads RouteData rows with multi-row INSERTs in one transaction: for imports, benchmarks and
 * tests. It writes RouteData only — no version bump, no RouteChange rows — so a caller importing into
 * a live database must bump the version afterwards (any addHost/removeHost does).
 */

/**
 * Rows per INSERT. 4 parameters a row: SQLite allows 32766 bound parameters, PostgreSQL 65535;
 * mysql2 inlines values, where the limit is max_allowed_packet (16 MB+), so MySQL takes bigger batches.
 */
export function defaultBulkBatchSize(kind: StoreKind): number {
  return kind === 'mysql' ? 5000 : 2000;
}

export interface BulkRouteRow {
  modid: number;
  cmdid: number;
  ip: number;
  port: number;
}

export async function insertRouteRows(
  db: Kysely<Database>,
  kind: StoreKind,
  rows: Iterable<BulkRouteRow>,
  batchSize = defaultBulkBatchSize(kind),
): Promise<number> {
  let count = 0;
  await db.transaction().execute(async (trx) => {
    let batch: Array<{ modid: number; cmdid: number; serverip: number; serverport: number }> = [];
    const flush = async (): Promise<void> => {
      if (batch.length === 0) return;
      await trx.insertInto('RouteData').values(batch).execute();
      count += batch.length;
      batch = [];
    };
    for (const r of rows) {
      batch.push({ modid: r.modid, cmdid: r.cmdid, serverip: r.ip, serverport: r.port });
      if (batch.length >= batchSize) await flush();
    }
    await flush();
  });
  return count;
}
