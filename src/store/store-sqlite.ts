import BetterSqlite3 from 'better-sqlite3';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  sql,
  SqliteAdapter,
  SqliteDriver,
  SqliteIntrospector,
  SqliteQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryCompiler,
  type TransactionSettings,
} from 'kysely';
import { ErrorCode, StoreError } from '../errors.js';
import { errorProp, type DdlDialect, type StoreBackend } from './backend.js';
import type { Database, LarsDnsInstanceTable } from './schema.js';
import type { SqliteStoreUrl } from './url.js';

/**
 * SQLite backend (better-sqlite3). kysely drives it through a single connection guarded by a mutex,
 * so within one process every transaction runs alone. Across processes (a `lars route add` next to a
 * running console) SQLite's own write lock serialises writers: WAL lets readers go on while one
 * writer works, and busy_timeout makes a second writer wait instead of failing at once.
 *
 * Several stores on the same file in one process share one handle and one kysely driver (and so one
 * mutex). They must: better-sqlite3 is synchronous, so with two handles a writer waiting on the
 * other's lock would block the very thread that has to finish the other transaction, stalling for
 * the whole busy_timeout and then failing with SQLITE_BUSY.
 */

/** How long a writer waits for another process's write lock before SQLITE_BUSY. */
export const SQLITE_BUSY_TIMEOUT_MS = 5000;

const ddl: DdlDialect = {
  int32: 'integer',
  uint32: 'integer',
  int64: 'integer',
  uint64: 'integer',
  char1: 'text',
  varchar: () => 'text',
  // AUTOINCREMENT: without it SQLite reuses the largest id once that row is deleted.
  autoId: () => ['integer', (c) => c.primaryKey().autoIncrement()],
  tableOptions: (builder) => builder,
  async ensureIndex(db: Kysely<Database>, table: string, name: string, columns: string[]): Promise<void> {
    await db.schema.createIndex(name).ifNotExists().on(table).columns(columns).execute();
  },
};

interface SharedFile {
  readonly key: string | undefined;
  readonly driver: SqliteDriver;
  refs: number;
  init: Promise<void> | undefined;
}

/** Open files by absolute path; in-memory databases are private and never listed here. */
const openFiles = new Map<string, SharedFile>();

function openHandle(path: string, memory: boolean, busyTimeoutMs: number): BetterSqlite3.Database {
  const handle = new BetterSqlite3(path);
  try {
    if (!memory) {
      handle.pragma('journal_mode = WAL');
      // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
      // last transactions, which is the usual trade for a route table edited by hand.
      handle.pragma('synchronous = NORMAL');
    }
    handle.pragma(`busy_timeout = ${busyTimeoutMs}`);
  } catch (err) {
    handle.close();
    throw err;
  }
  return handle;
}

function acquireFile(url: SqliteStoreUrl, createIfMissing: boolean, busyTimeoutMs: number): SharedFile {
  if (url.memory) {
    return {
      key: undefined,
      driver: new SqliteDriver({ database: openHandle(':memory:', true, busyTimeoutMs) }),
      refs: 1,
      init: undefined,
    };
  }
  const path = resolve(url.path);
  let file = openFiles.get(path);
  if (!file) {
    if (!createIfMissing && !existsSync(path)) {
      throw new StoreError(
        ErrorCode.STORE,
        `database file ${url.path} does not exist (create it with \`lars db init --db ${url.display}\`)`,
      );
    }
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    makePrivate(path);
    file = {
      key: path,
      driver: new SqliteDriver({ database: openHandle(path, false, busyTimeoutMs) }),
      refs: 0,
      init: undefined,
    };
    openFiles.set(path, file);
  }
  file.refs++;
  return file;
}

/**
 * The database holds the console's password and session hashes (issue 11): a new file is created
 * 0600, and an existing one of ours loses any group/other access. SQLite gives the -wal and -shm
 * files the permissions of the database file. Failures are left to SQLite to report.
 */
function makePrivate(path: string): void {
  try {
    closeSync(openSync(path, 'a', 0o600));
    const st = statSync(path);
    if ((st.mode & 0o077) !== 0 && st.uid === process.getuid?.()) chmodSync(path, st.mode & 0o600);
  } catch {
    // A read-only or foreign file: opening it says what is wrong.
  }
}

/** Delegates to the file's shared driver; destroying the last user closes the file. */
class SharedSqliteDriver implements Driver {
  #released = false;

  constructor(private readonly file: SharedFile) {}

  init(): Promise<void> {
    this.file.init ??= this.file.driver.init();
    return this.file.init;
  }
  acquireConnection(): Promise<DatabaseConnection> {
    return this.file.driver.acquireConnection();
  }
  beginTransaction(connection: DatabaseConnection, _settings: TransactionSettings): Promise<void> {
    return this.file.driver.beginTransaction(connection);
  }
  commitTransaction(connection: DatabaseConnection): Promise<void> {
    return this.file.driver.commitTransaction(connection);
  }
  rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    return this.file.driver.rollbackTransaction(connection);
  }
  savepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    return this.file.driver.savepoint(connection, name, compile);
  }
  rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    return this.file.driver.rollbackToSavepoint(connection, name, compile);
  }
  releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compile: QueryCompiler['compileQuery'],
  ): Promise<void> {
    return this.file.driver.releaseSavepoint(connection, name, compile);
  }
  releaseConnection(): Promise<void> {
    return this.file.driver.releaseConnection();
  }
  async destroy(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (--this.file.refs > 0) return;
    if (this.file.key !== undefined) openFiles.delete(this.file.key);
    await this.file.driver.destroy();
  }
}

/**
 * Opens the database file now, so a bad path fails in openStore. With `createIfMissing` (the default)
 * a missing file and its directory are created; without it a missing file is a StoreError, so a
 * read-only command run in the wrong directory does not leave an empty database behind.
 */
export function createSqliteBackend(
  url: SqliteStoreUrl,
  createIfMissing = true,
  busyTimeoutMs = SQLITE_BUSY_TIMEOUT_MS,
): StoreBackend {
  const file = acquireFile(url, createIfMissing, busyTimeoutMs);
  const dialect: Dialect = {
    createDriver: () => new SharedSqliteDriver(file),
    createQueryCompiler: () => new SqliteQueryCompiler(),
    createAdapter: () => new SqliteAdapter(),
    createIntrospector: (db) => new SqliteIntrospector(db),
  };

  return {
    kind: 'sqlite',
    dialect,
    ddl,
    returning: false,
    mutationIsolation: undefined,
    withMigrationLock: (db, fn) => db.connection().execute(fn),
    async migrationTransaction(conn, fn) {
      // IMMEDIATE takes the write lock up front: the "already applied?" check inside the step then
      // cannot race another process, and no deferred read-to-write upgrade can hit SQLITE_BUSY.
      await sql`begin immediate`.execute(conn);
      try {
        const result = await fn(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (err) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw err;
      }
    },
    async upsertDnsInstance(db: Kysely<Database>, row: LarsDnsInstanceTable): Promise<void> {
      const { id: _id, ...rest } = row;
      await db
        .insertInto('lars_dns_instance')
        .values(row)
        .onConflict((oc) => oc.column('id').doUpdateSet(rest))
        .execute();
    },
    isMissingTable: (err) => /no such table/i.test(String(errorProp(err, 'message') ?? '')),
  };
}
