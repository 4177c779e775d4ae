import { resolve } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { ErrorCode, isLarsError, StoreError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import { WorkerPool } from '../net/worker-pool.js';
import type { Database } from '../store/schema.js';
import { SQLITE_BUSY_TIMEOUT_MS } from '../store/store-sqlite.js';
import { openStore, type Store } from '../store/store.js';
import { parseStoreUrl, type StoreKind } from '../store/url.js';
import type { RowBatch } from './row-batch.js';
import type { SqliteWriterWorkerData } from './sqlite-writer-worker.js';
import type { StatusSql, StatusWriter } from './status-writer.js';
import { KyselyStatusWriter, pruneHistory } from './status-writer-kysely.js';
import { mysqlStatusSql } from './status-writer-mysql.js';
import { postgresStatusSql } from './status-writer-postgres.js';
import { sqliteStatusSql } from './status-writer-sqlite.js';

/**
 * The reporter's database: one StatusWriter per writer lane, history pruning, and close().
 *
 * How much parallelism each backend gets, and why:
 * - MySQL/MariaDB and PostgreSQL: every writer opens a store of its own (its own pool, so its own
 *   connection); N writers keep N transactions in flight at once, and the server spreads them over
 *   its cores. Writers own disjoint routes (hash ring), so they never wait on each other's rows.
 * - SQLite file: SQLite has one writer at a time per database, so one write connection is the
 *   honest limit. It lives on a worker thread (sqlite-writer-worker.ts): writes and lock waits
 *   leave the event loop free for the agents' connections, and the encoding/decoding (main thread)
 *   overlaps with the writing (the thread) on two cores. The N lanes keep their own queues and
 *   order; their batches take turns on the thread.
 * - SQLite in memory (`sqlite::memory:`, tests and demos): the database is private to one handle,
 *   so the lanes share the main thread's store.
 */
export interface StatusDb {
  readonly kind: StoreKind;
  /** One per lane; lanes may share one writer (SQLite). */
  readonly writers: readonly StatusWriter[];
  /** Database URL with any password hidden, for logs. */
  readonly url: string;
  /** Most rows one upsert statement may carry (the backend's bind-parameter limit / 9). */
  readonly maxRowsPerStatement: number;
  /** Deletes history samples with `minute < beforeMinute`; returns how many. */
  pruneHistory(beforeMinute: number): Promise<number>;
  /** Waits for writes in flight, then releases every connection (or the thread). Idempotent. */
  close(): Promise<void>;
}

export interface OpenStatusDbOptions {
  /** Writer lanes (`[reporter] db_thread_cnt`). */
  writers: number;
  logger?: Logger;
  /**
   * Script of the SQLite writer thread. Default: the compiled sqlite-writer-worker.js next to this
   * file. Tests running the TypeScript sources pass a bootstrap that loads the .ts file.
   */
  sqliteWorkerScript?: URL;
  /** How long the SQLite thread waits for another process's write lock (default 5000 ms). */
  sqliteBusyTimeoutMs?: number;
}

/** Opens the connections (or the SQLite thread) and checks that the reporter's tables exist. */
export async function openStatusDb(url: string, options: OpenStatusDbOptions): Promise<StatusDb> {
  const parsed = parseStoreUrl(url);
  const logger = options.logger ?? silentLogger;
  if (parsed.kind === 'sqlite' && !parsed.memory) {
    return SqliteThreadStatusDb.open(resolve(parsed.path), parsed.display, options, logger);
  }
  const count = parsed.kind === 'sqlite' ? 1 : options.writers;
  const stores: Store[] = [];
  try {
    for (let i = 0; i < count; i++) {
      stores.push(await openStore(url, { logger, createIfMissing: false }));
    }
    await checkTables(stores[0]!.db, parsed.display);
  } catch (err) {
    await Promise.all(stores.map((s) => s.close()));
    throw err;
  }
  const statements = statusSqlFor(parsed.kind);
  const isolation = parsed.kind === 'mysql' ? 'read committed' : undefined;
  const own = stores.map((s) => new KyselyStatusWriter(s.db, statements, isolation));
  const writers = Array.from({ length: options.writers }, (_, i) => own[i % own.length]!);
  let closing: Promise<void> | undefined;
  return {
    kind: parsed.kind,
    url: parsed.display,
    maxRowsPerStatement: statements.maxRowsPerStatement,
    writers,
    // On the servers the first writer's pool has spare connections: pruning does not wait for its
    // writes, and the other writers do not notice it at all.
    pruneHistory: (beforeMinute) => pruneHistory(stores[0]!.db, beforeMinute),
    close() {
      closing ??= Promise.all(stores.map((s) => s.close())).then(() => undefined);
      return closing;
    },
  };
}

function statusSqlFor(kind: StoreKind): StatusSql {
  switch (kind) {
    case 'mysql':
      return mysqlStatusSql();
    case 'postgres':
      return postgresStatusSql();
    case 'sqlite':
      return sqliteStatusSql();
  }
}

async function checkTables(db: Kysely<Database>, display: string): Promise<void> {
  try {
    await sql`select 1 from ${sql.table('ServerCallStatus')} where 1 = 0`.execute(db);
    await sql`select 1 from ${sql.table('lars_call_history')} where 1 = 0`.execute(db);
  } catch (err) {
    throw notInitialised(display, err);
  }
}

function notInitialised(display: string, cause: unknown): StoreError {
  if (isLarsError(cause) && cause instanceof StoreError) return cause;
  const message = cause instanceof Error ? cause.message : String(cause);
  return new StoreError(
    ErrorCode.STORE,
    `reporter: cannot use ServerCallStatus and lars_call_history on ${display}: ${message} (is the database initialised? run \`lars db init\`)`,
    { cause },
  );
}

/** Batches one lane may have in flight (one) times lanes, plus check/prune/close. */
const EXTRA_THREAD_TASKS = 4;

/** SQLite file: every write goes through one worker thread holding the one write connection. */
class SqliteThreadStatusDb implements StatusDb {
  readonly kind = 'sqlite' as const;
  readonly maxRowsPerStatement = sqliteStatusSql().maxRowsPerStatement;
  readonly writers: readonly StatusWriter[];
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly pool: WorkerPool,
    readonly url: string,
    writers: number,
  ) {
    // The batch is copied to the thread, not transferred: the lane keeps it to retry after a failure.
    const writer: StatusWriter = {
      write: (batch: RowBatch) => this.pool.run<void>('write', batch),
    };
    this.writers = Array.from({ length: writers }, () => writer);
  }

  static async open(
    path: string,
    display: string,
    options: OpenStatusDbOptions,
    logger: Logger,
  ): Promise<SqliteThreadStatusDb> {
    const workerData: SqliteWriterWorkerData = {
      path,
      busyTimeoutMs: options.sqliteBusyTimeoutMs ?? SQLITE_BUSY_TIMEOUT_MS,
    };
    const pool = new WorkerPool({
      script: options.sqliteWorkerScript ?? new URL('./sqlite-writer-worker.js', import.meta.url),
      size: 1,
      maxQueue: options.writers + EXTRA_THREAD_TASKS,
      workerData,
      logger: logger.child({ thread: 'sqlite-writer' }),
    });
    try {
      await pool.run('check');
    } catch (err) {
      await pool.destroy();
      throw notInitialised(display, (err as Error).cause ?? err);
    }
    return new SqliteThreadStatusDb(pool, display, options.writers);
  }

  pruneHistory(beforeMinute: number): Promise<number> {
    return this.pool.run<number>('prune', beforeMinute);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      // Queued writes finish first (FIFO), then the handle is closed, then the thread ends.
      await this.pool.run('close').catch(() => undefined);
      await this.pool.close();
    })();
    return this.closing;
  }
}
