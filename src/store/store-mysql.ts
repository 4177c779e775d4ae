import { createPool } from 'mysql2';
import { MysqlDialect, sql, type Kysely } from 'kysely';
import { ErrorCode, StoreError } from '../errors.js';
import { errorProp, type DdlDialect, type StoreBackend } from './backend.js';
import type { Database, LarsDnsInstanceTable } from './schema.js';
import type { ServerStoreUrl } from './url.js';

/**
 * MySQL / MariaDB backend (mysql2 pool). Column types follow the original Lars schema (unsigned ints,
 * InnoDB) so tables we create look like the ones an original installation has.
 */

/** Connections per store: the CLI needs one, a dns or console a few; writers serialise on RouteVersion anyway. */
export const MYSQL_CONNECTION_LIMIT = 4;
export const MYSQL_CONNECT_TIMEOUT_MS = 5000;
/** How long `migrate()` waits for another process that is migrating the same database. */
export const MYSQL_MIGRATION_LOCK_TIMEOUT_S = 60;

const ddl: DdlDialect = {
  int32: 'integer',
  uint32: sql`int unsigned`,
  int64: 'bigint',
  uint64: sql`bigint unsigned`,
  char1: sql`char(1)`,
  varchar: (length) => sql`varchar(${sql.raw(String(length))})`,
  autoId: (wide) => [wide ? sql`bigint unsigned` : sql`int unsigned`, (c) => c.primaryKey().autoIncrement()],
  tableOptions: (builder) => builder.modifyEnd(sql`engine=InnoDB default charset=utf8mb4`),
  async ensureIndex(db: Kysely<Database>, table: string, name: string, columns: string[]): Promise<void> {
    // MySQL (unlike MariaDB) has no CREATE INDEX IF NOT EXISTS; callers hold the migration lock.
    const found = await sql<{ n: number }>`
      select count(*) as n from information_schema.statistics
      where table_schema = database() and table_name = ${table} and index_name = ${name}`.execute(db);
    if (Number(found.rows[0]?.n ?? 0) > 0) return;
    await db.schema.createIndex(name).on(table).columns(columns).execute();
  },
};

export function createMysqlBackend(url: ServerStoreUrl): StoreBackend {
  const pool = createPool({
    host: url.host,
    port: url.port,
    user: url.user,
    password: url.password,
    database: url.database,
    connectionLimit: MYSQL_CONNECTION_LIMIT,
    connectTimeout: MYSQL_CONNECT_TIMEOUT_MS,
    // BIGINT values below 2^53 come back as numbers, larger ones as strings (never silently rounded);
    // DECIMAL results (SUM) as numbers. Row mappers Number() everything anyway.
    supportBigNumbers: true,
    bigNumberStrings: false,
    decimalNumbers: true,
    dateStrings: true,
    timezone: 'Z',
    charset: 'utf8mb4',
  });
  const lockName = `lars_migrate:${url.database}`.slice(0, 64);

  return {
    kind: 'mysql',
    dialect: new MysqlDialect({ pool }),
    ddl,
    returning: false,
    mutationIsolation: 'read committed',
    async withMigrationLock(db, fn) {
      return db.connection().execute(async (conn) => {
        const got = await sql<{
          l: number | null;
        }>`select get_lock(${lockName}, ${MYSQL_MIGRATION_LOCK_TIMEOUT_S}) as l`.execute(conn);
        if (Number(got.rows[0]?.l) !== 1) {
          throw new StoreError(
            ErrorCode.STORE,
            `migrate: another process held the migration lock for ${MYSQL_MIGRATION_LOCK_TIMEOUT_S} s; try again`,
          );
        }
        try {
          return await fn(conn);
        } finally {
          await sql`select release_lock(${lockName})`.execute(conn).catch(() => undefined);
        }
      });
    },
    migrationTransaction: (conn, fn) => conn.transaction().execute(fn),
    async upsertDnsInstance(db: Kysely<Database>, row: LarsDnsInstanceTable): Promise<void> {
      const { id: _id, ...rest } = row;
      await db.insertInto('lars_dns_instance').values(row).onDuplicateKeyUpdate(rest).execute();
    },
    isMissingTable: (err) =>
      errorProp(err, 'code') === 'ER_NO_SUCH_TABLE' || errorProp(err, 'errno') === 1146,
  };
}
