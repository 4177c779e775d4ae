import type { StoreKind } from '../store/url.js';
import type { BatchRows, RowBatch } from './row-batch.js';

/**
 * The database side of one reporter writer: multi-row upserts of the latest statistics into the
 * original `ServerCallStatus` table and of per-minute samples into our `lars_call_history`.
 * Backends differ only in SQL text (status-writer-mysql.ts, -postgres.ts, -sqlite.ts) and in how
 * the statements reach the database (status-writer-kysely.ts on a connection of the writer's own;
 * status-writer-sqlite-thread.ts on the SQLite writer thread).
 */
export interface StatusWriter {
  /**
   * Writes both halves of `batch` in one transaction: all of it or none of it. Rejects on any
   * failure; the caller retries with the rows still pending. Never called again before the
   * previous call settled (one batch in flight per writer keeps a route's rows in order).
   */
  write(batch: RowBatch): Promise<void>;
}

/** Columns of ServerCallStatus in the order the upsert binds them; the first five are the key. */
export const STATUS_COLUMNS = [
  'modid',
  'cmdid',
  'ip',
  'port',
  'caller',
  'succ_cnt',
  'err_cnt',
  'ts',
  'overload',
] as const;
/** Columns of lars_call_history in bind order; the first six are the key. */
export const HISTORY_COLUMNS = [
  'modid',
  'cmdid',
  'ip',
  'port',
  'caller',
  'minute',
  'succ_cnt',
  'err_cnt',
  'overload',
  // Issue 16: the agent's cumulative counters as of its latest report in the minute (NULL from an
  // original agent). Calls per minute are the differences between consecutive minutes.
  'total_succ',
  'total_err',
] as const;
const STATUS_KEY = STATUS_COLUMNS.slice(0, 5);
const HISTORY_KEY = HISTORY_COLUMNS.slice(0, 6);
const STATUS_UPDATE = STATUS_COLUMNS.slice(5);
const HISTORY_UPDATE = HISTORY_COLUMNS.slice(6);
/** History samples deleted per statement: an hour of minutes, so one prune never holds a huge transaction. */
export const PRUNE_STEP_S = 3600;

/** Bound parameters per row of each table. */
export const STATUS_PARAMS_PER_ROW = STATUS_COLUMNS.length;
export const HISTORY_PARAMS_PER_ROW = HISTORY_COLUMNS.length;
/** The wider of the two: statement sizes are computed with it so both tables share one row limit. */
export const PARAMS_PER_ROW = Math.max(STATUS_PARAMS_PER_ROW, HISTORY_PARAMS_PER_ROW);

/** A statement and its parameters. */
export interface Statement {
  readonly sql: string;
  readonly parameters: readonly unknown[];
}

/** How one backend spells the upserts. */
export interface StatusSqlDialect {
  readonly kind: StoreKind;
  /** The backend's bind-parameter limit per statement. */
  readonly maxParams: number;
  quote(name: string): string;
  /** Placeholder of the parameter at 0-based position `i`. */
  placeholder(i: number): string;
  /** `on duplicate key update ...` / `on conflict (...) do update set ...`. */
  conflictClause(key: readonly string[], update: readonly string[]): string;
}

/** Statement texts by row count; batches under load are all full-size, so this stays tiny. */
const MAX_CACHED_TEXTS = 32;

/**
 * Builds the multi-row upserts of one dialect. A statement carries at most `maxRowsPerStatement`
 * rows (9 parameters a row, under the backend's limit: SQLite 32766, PostgreSQL and MySQL 65535).
 */
export class StatusSql {
  readonly maxRowsPerStatement: number;
  private readonly statusHead: string;
  private readonly historyHead: string;
  private readonly statusTail: string;
  private readonly historyTail: string;
  private readonly texts = new Map<string, string>();

  constructor(readonly dialect: StatusSqlDialect) {
    this.maxRowsPerStatement = Math.floor(dialect.maxParams / PARAMS_PER_ROW);
    const q = (names: readonly string[]): string => names.map((n) => dialect.quote(n)).join(', ');
    this.statusHead = `insert into ${dialect.quote('ServerCallStatus')} (${q(STATUS_COLUMNS)}) values `;
    this.historyHead = `insert into ${dialect.quote('lars_call_history')} (${q(HISTORY_COLUMNS)}) values `;
    this.statusTail = dialect.conflictClause(STATUS_KEY, STATUS_UPDATE);
    this.historyTail = dialect.conflictClause(HISTORY_KEY, HISTORY_UPDATE);
  }

  /** SQL text of a status upsert of `rows` rows. */
  statusText(rows: number): string {
    return this.text('s', rows, this.statusHead, this.statusTail, STATUS_PARAMS_PER_ROW);
  }

  /** SQL text of a history upsert of `rows` rows. */
  historyText(rows: number): string {
    return this.text('h', rows, this.historyHead, this.historyTail, HISTORY_PARAMS_PER_ROW);
  }

  /** Status upserts of rows [0, rows.count), split to respect the parameter limit. */
  statusStatements(rows: BatchRows): Statement[] {
    return this.split(rows, (from, to) => ({
      sql: this.statusText(to - from),
      parameters: statusParams(rows, from, to),
    }));
  }

  historyStatements(rows: BatchRows): Statement[] {
    return this.split(rows, (from, to) => ({
      sql: this.historyText(to - from),
      parameters: historyParams(rows, from, to),
    }));
  }

  private split(rows: BatchRows, make: (from: number, to: number) => Statement): Statement[] {
    const out: Statement[] = [];
    for (let from = 0; from < rows.count; from += this.maxRowsPerStatement) {
      out.push(make(from, Math.min(rows.count, from + this.maxRowsPerStatement)));
    }
    return out;
  }

  private text(table: string, rows: number, head: string, tail: string, perRow: number): string {
    const cacheKey = `${table}${rows}`;
    const cached = this.texts.get(cacheKey);
    if (cached !== undefined) return cached;
    const tuples: string[] = new Array<string>(rows);
    const ph = this.dialect.placeholder;
    let p = 0;
    for (let r = 0; r < rows; r++) {
      const cells: string[] = new Array<string>(perRow);
      for (let c = 0; c < perRow; c++) cells[c] = ph(p++);
      tuples[r] = `(${cells.join(',')})`;
    }
    const text = head + tuples.join(',') + tail;
    if (this.texts.size >= MAX_CACHED_TEXTS) this.texts.clear();
    this.texts.set(cacheKey, text);
    return text;
  }
}

/**
 * Parameters of status rows [from, to) in STATUS_COLUMNS order. `overload` is char(1) '1'/'0', as
 * the original reporter wrote it.
 */
export function statusParams(rows: BatchRows, from: number, to: number): unknown[] {
  const out: unknown[] = new Array<unknown>((to - from) * STATUS_PARAMS_PER_ROW);
  let p = 0;
  for (let i = from; i < to; i++) {
    out[p++] = rows.modid[i];
    out[p++] = rows.cmdid[i];
    out[p++] = rows.ip[i];
    out[p++] = rows.port[i];
    out[p++] = rows.caller[i];
    out[p++] = rows.succ[i];
    out[p++] = rows.err[i];
    out[p++] = rows.time[i];
    out[p++] = rows.overload[i] === 1 ? '1' : '0';
  }
  return out;
}

/** Parameters of history rows [from, to) in HISTORY_COLUMNS order; `overload` is 1/0, no total NULL. */
export function historyParams(rows: BatchRows, from: number, to: number): unknown[] {
  const out: unknown[] = new Array<unknown>((to - from) * HISTORY_PARAMS_PER_ROW);
  let p = 0;
  for (let i = from; i < to; i++) {
    out[p++] = rows.modid[i];
    out[p++] = rows.cmdid[i];
    out[p++] = rows.ip[i];
    out[p++] = rows.port[i];
    out[p++] = rows.caller[i];
    out[p++] = rows.time[i];
    out[p++] = rows.succ[i];
    out[p++] = rows.err[i];
    out[p++] = rows.overload[i];
    out[p++] = rows.totalSucc[i]! < 0 ? null : rows.totalSucc[i];
    out[p++] = rows.totalErr[i]! < 0 ? null : rows.totalErr[i];
  }
  return out;
}
