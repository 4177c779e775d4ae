import pg from 'pg';
import { PostgresDialect, sql, type Kysely } from 'kysely';
import type { Logger } from '../log/logger.js';
import { errorProp, type DdlDialect, type StoreBackend } from './backend.js';
import type { Database, LarsDnsInstanceTable } from './schema.js';
import type { ServerStoreUrl } from './url.js';

/**
 * PostgreSQL backend (pg Pool). PostgreSQL has no unsigned types: unsigned 32-bit columns (IPv4
 * numbers) are bigint, so 255.255.255.255 = 4294967295 fits.
 */

export const PG_POOL_MAX = 4;
export const PG_CONNECT_TIMEOUT_MS = 5000;
export const PG_IDLE_TIMEOUT_MS = 10_000;
/** pg_advisory_lock key that serialises migrators of one database ("Lars" in ASCII). */
export const PG_MIGRATION_LOCK_KEY = 0x4c617273;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/**
 * pg returns int8 and numeric as strings because they can exceed 2^53. Ours never do (ids, unix
 * seconds, unsigned 32-bit ips, counts), so parse them as numbers on this pool only; the global
 * pg.types registry is left alone for other users of pg in the process.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID || oid === NUMERIC_OID) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

const ddl: DdlDialect = {
  int32: 'integer',
  uint32: 'bigint',
  int64: 'bigint',
  uint64: 'bigint',
  char1: 'char(1)',
  varchar: (length) => `varchar(${length})`,
  autoId: (wide) => [wide ? 'bigserial' : 'serial', (c) => c.primaryKey()],
  tableOptions: (builder) => builder,
  async ensureIndex(db: Kysely<Database>, table: string, name: string, columns: string[]): Promise<void> {
    await db.schema.createIndex(name).ifNotExists().on(table).columns(columns).execute();
  },
};

export function createPostgresBackend(url: ServerStoreUrl, logger: Logger): StoreBackend {
  const pool = new pg.Pool({
    host: url.host,
    port: url.port,
    user: url.user,
    password: url.password,
    database: url.database,
    max: PG_POOL_MAX,
    connectionTimeoutMillis: PG_CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: PG_IDLE_TIMEOUT_MS,
    // Idle pooled connections must not keep a CLI process alive if someone forgets close().
    allowExitOnIdle: true,
    types,
  });
  // An idle client that loses its server emits 'error' on the pool; unhandled it would crash the
  // process. The pool drops that client and the next query reconnects, so a log line is enough.
  pool.on('error', (err) => logger.warn({ err }, 'postgres: idle connection failed'));
  // A client checked out of the pool (mid-query or mid-transaction) has no pool listener: when its
  // server goes away it emits 'error' after failing its queries, and unhandled that would crash the
  // process. The failed query already reports the error; the pool discards the client on release.
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.debug({ err }, 'postgres: connection in use failed'));
  });

  return {
    kind: 'postgres',
    dialect: new PostgresDialect({ pool }),
    ddl,
    returning: true,
    mutationIsolation: 'read committed',
    async withMigrationLock(db, fn) {
      return db.connection().execute(async (conn) => {
        await sql`select pg_advisory_lock(${PG_MIGRATION_LOCK_KEY})`.execute(conn);
        try {
          return await fn(conn);
        } finally {
          await sql`select pg_advisory_unlock(${PG_MIGRATION_LOCK_KEY})`.execute(conn).catch(() => undefined);
        }
      });
    },
    migrationTransaction: (conn, fn) => conn.transaction().execute(fn),
    async upsertDnsInstance(db: Kysely<Database>, row: LarsDnsInstanceTable): Promise<void> {
      const { id: _id, ...rest } = row;
      await db
        .insertInto('lars_dns_instance')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet(rest))
        .execute();
    },
    isMissingTable: (err) => errorProp(err, 'code') === '42P01',
  };
}
