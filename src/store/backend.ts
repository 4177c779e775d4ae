import type {
  ColumnDefinitionBuilderCallback,
  CreateTableBuilder,
  Dialect,
  IsolationLevel,
  Kysely,
} from 'kysely';
import type { Database, LarsDnsInstanceTable } from './schema.js';
import type { StoreKind } from './url.js';

/**
 * What differs between SQLite, MySQL/MariaDB and PostgreSQL, behind one small interface so the query
 * layer (store.ts) and the migrations are written once. Each backend lives in its own file
 * (store-sqlite.ts, store-mysql.ts, store-postgres.ts).
 */

/** A column type accepted by kysely's `addColumn`. */
export type ColumnType = Parameters<CreateTableBuilder<string, never>['addColumn']>[1];

/** DDL vocabulary for migrations. */
export interface DdlDialect {
  /** Signed 32-bit (modid, cmdid, ports). */
  readonly int32: ColumnType;
  /** Unsigned 32-bit (IPv4 numbers): `int unsigned` on MySQL, bigint on PostgreSQL. */
  readonly uint32: ColumnType;
  readonly int64: ColumnType;
  /** Unsigned 64-bit (versions): `bigint unsigned` on MySQL. */
  readonly uint64: ColumnType;
  /** char(1) (ServerCallStatus.overload). */
  readonly char1: ColumnType;
  varchar(length: number): ColumnType;
  /**
   * An auto-increment integer primary key, as `[type, builder]` for `addColumn(name, ...autoId(wide))`.
   * Ids are never reused after deletes (SQLite AUTOINCREMENT, sequences, InnoDB's counter): readers
   * remember the last RouteChange id they saw, so a reused id would hide changes.
   */
  autoId(wide: boolean): [ColumnType, ColumnDefinitionBuilderCallback];
  /** Appends table options (MySQL: InnoDB, utf8mb4). */
  tableOptions<TB extends string, C extends string>(
    builder: CreateTableBuilder<TB, C>,
  ): CreateTableBuilder<TB, C>;
  /** Creates a non-unique index unless one of that name exists on the table (MySQL has no IF NOT EXISTS). */
  ensureIndex(db: Kysely<Database>, table: string, name: string, columns: string[]): Promise<void>;
}

export interface StoreBackend {
  readonly kind: StoreKind;
  readonly dialect: Dialect;
  readonly ddl: DdlDialect;
  /** INSERT ... RETURNING is available (PostgreSQL); otherwise the driver's insertId is used. */
  readonly returning: boolean;
  /**
   * Isolation for mutation transactions. READ COMMITTED on the servers so that, once the
   * RouteVersion row lock is held, every later statement of the transaction sees what the previous
   * lock holder committed (InnoDB's default REPEATABLE READ could read an older snapshot). SQLite has a
   * single writer and needs none.
   */
  readonly mutationIsolation: IsolationLevel | undefined;
  /**
   * Runs `fn` with a db bound to one connection while holding a lock that serialises migrators
   * across processes (two `lars db init` at once must not both apply a migration).
   */
  withMigrationLock<T>(db: Kysely<Database>, fn: (conn: Kysely<Database>) => Promise<T>): Promise<T>;
  /**
   * Runs one migration step in a transaction on `conn` (from withMigrationLock). On MySQL DDL commits
   * implicitly, so a step that fails halfway is not rolled back: migrations must be re-runnable.
   */
  migrationTransaction<T>(conn: Kysely<Database>, fn: (tx: Kysely<Database>) => Promise<T>): Promise<T>;
  /** Inserts the row or replaces the one with the same id. */
  upsertDnsInstance(db: Kysely<Database>, row: LarsDnsInstanceTable): Promise<void>;
  /** The driver error says a table does not exist (database not initialised). */
  isMissingTable(err: unknown): boolean;
}

/** Reads a driver error's `code` / `errno` without trusting its shape. */
export function errorProp(err: unknown, prop: 'code' | 'errno' | 'message' | 'cause'): unknown {
  return typeof err === 'object' && err !== null ? (err as Record<string, unknown>)[prop] : undefined;
}
