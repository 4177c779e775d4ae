/**
 * The SQLite writer thread (started by status-writer-sqlite-thread.ts through WorkerPool).
 *
 * It owns the reporter's one SQLite write connection. better-sqlite3 is synchronous: on the main
 * thread every batch, and worse every wait on another process's write lock (busy_timeout, up to
 * seconds), would stop the event loop and with it the agents' connections. Here only this thread
 * waits, while the main thread keeps receiving (and, if it must, dropping the oldest rows).
 *
 * Tasks: check() (tables exist), write(batch) (one IMMEDIATE transaction: both upserts), prune(minute),
 * close().
 */
import BetterSqlite3 from 'better-sqlite3';
import { workerData } from 'node:worker_threads';
import { ClosedError } from '../errors.js';
import { serveTasks } from '../net/worker-serve.js';
import type { BatchRows, RowBatch } from './row-batch.js';
import { historyParams, PRUNE_STEP_S, statusParams } from './status-writer.js';
import { sqliteStatusSql } from './status-writer-sqlite.js';

/** What the main thread passes as workerData. */
export interface SqliteWriterWorkerData {
  /** Absolute path of the database file (it must exist: `lars db init` creates it). */
  path: string;
  busyTimeoutMs: number;
}

/**
 * Rows per prepared statement. Statements are prepared once per shape and reused (a batch is
 * CHUNK-row statements plus single-row ones for the rest), so SQLite never re-parses a
 * thousand-tuple statement per batch.
 */
const CHUNK_ROWS = 64;

const { path, busyTimeoutMs } = workerData as SqliteWriterWorkerData;

interface Prepared {
  readonly db: BetterSqlite3.Database;
  readonly statusChunk: BetterSqlite3.Statement;
  readonly statusOne: BetterSqlite3.Statement;
  readonly historyChunk: BetterSqlite3.Statement;
  readonly historyOne: BetterSqlite3.Statement;
  readonly oldestMinute: BetterSqlite3.Statement;
  readonly deleteBefore: BetterSqlite3.Statement;
  readonly write: BetterSqlite3.Transaction<(batch: RowBatch) => void>;
}

let prepared: Prepared | undefined;
let closed = false;

/**
 * Opens the file and prepares the statements on first use, so a missing file or table is the
 * failure of a task (reported to the caller) rather than a worker that dies while starting.
 */
function open(): Prepared {
  if (closed) throw new ClosedError('the SQLite writer thread is closed');
  if (prepared) return prepared;
  const db = new BetterSqlite3(path, { fileMustExist: true });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    const text = sqliteStatusSql();
    const p = {
      db,
      statusChunk: db.prepare(text.statusText(CHUNK_ROWS)),
      statusOne: db.prepare(text.statusText(1)),
      historyChunk: db.prepare(text.historyText(CHUNK_ROWS)),
      historyOne: db.prepare(text.historyText(1)),
      oldestMinute: db.prepare('select min("minute") as oldest from "lars_call_history"'),
      deleteBefore: db.prepare('delete from "lars_call_history" where "minute" < ?'),
    };
    const write = db.transaction((batch: RowBatch) => {
      upsert(batch.status, p.statusChunk, p.statusOne, statusParams);
      upsert(batch.history, p.historyChunk, p.historyOne, historyParams);
    });
    prepared = { ...p, write };
    return prepared;
  } catch (err) {
    db.close();
    throw err;
  }
}

function upsert(
  rows: BatchRows,
  chunk: BetterSqlite3.Statement,
  one: BetterSqlite3.Statement,
  params: (rows: BatchRows, from: number, to: number) => unknown[],
): void {
  let i = 0;
  for (; i + CHUNK_ROWS <= rows.count; i += CHUNK_ROWS) chunk.run(params(rows, i, i + CHUNK_ROWS));
  for (; i < rows.count; i++) one.run(params(rows, i, i + 1));
}

serveTasks({
  check(): boolean {
    open();
    return true;
  },
  write(batch: RowBatch): void {
    // IMMEDIATE takes the write lock up front: no deferred read-to-write upgrade that could fail
    // with SQLITE_BUSY without waiting.
    open().write.immediate(batch);
  },
  prune(beforeMinute: number): number {
    const p = open();
    let total = 0;
    for (;;) {
      const row = p.oldestMinute.get() as { oldest: number | null } | undefined;
      const oldest = row?.oldest ?? undefined;
      if (oldest === undefined || oldest >= beforeMinute) return total;
      total += p.deleteBefore.run(Math.min(beforeMinute, oldest + PRUNE_STEP_S)).changes;
    }
  },
  close(): void {
    closed = true;
    prepared?.db.close();
    prepared = undefined;
  },
});
