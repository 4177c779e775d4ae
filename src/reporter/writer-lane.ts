import { ClosedError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import { tracer } from '../log/trace.js';
import { Backoff, type BackoffOptions } from '../net/backoff.js';
import { takeBatch, type RowBatch } from './row-batch.js';
import { RowQueue } from './row-queue.js';
import type { StatusWriter } from './status-writer.js';

const trace = tracer('reporter');

/** Retry delays after a failed write: 200 ms doubling to 5 s, jittered so lanes do not retry in step. */
export const DEFAULT_RETRY_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 5_000, jitter: 0.2 };
/** Immediate retries of a batch that lost a deadlock or serialization conflict before it counts as a failure. */
const CONFLICT_RETRIES = 3;

/**
 * The lane's view of the database: `ok` until a write fails, `failing` until one succeeds again.
 * Transitions are logged once each (STYLE §13).
 */
export type LaneDbState = 'ok' | 'failing';

/** What a lane reports to the service's metrics (called synchronously, after the fact). */
export interface LaneObserver {
  batchWritten(lane: WriterLane, batch: RowBatch, seconds: number): void;
  writeFailed(lane: WriterLane, err: unknown, seconds: number): void;
}

export interface WriterLaneOptions {
  index: number;
  writer: StatusWriter;
  /** Pending rows before the oldest are dropped (`[reporter] queue_max_rows`). */
  queueMaxRows: number;
  /** Rows read per batch (before de-duplication). */
  batchMaxRows: number;
  backoff?: BackoffOptions;
  logger: Logger;
  observer?: LaneObserver;
}

export interface WriterLaneStats {
  rowsIn: number;
  /** Rows read from the queue into batches that were committed. */
  rowsCommitted: number;
  /** ServerCallStatus rows upserted (after keeping the latest of each key in a batch). */
  statusRows: number;
  /** lars_call_history rows upserted. */
  historyRows: number;
  batches: number;
  failures: number;
  conflictRetries: number;
  /** Rows dropped because the queue was full (the oldest), or discarded when the lane was destroyed. */
  dropped: number;
}

type LaneState = 'idle' | 'scheduled' | 'writing' | 'backoff' | 'closed';

/**
 * One writer: a bounded queue of rows and a loop that writes them in arrival order, one batch in
 * flight at a time (DESIGN §6). The service sends every row of a route to the same lane, so a
 * route's rows reach the database in the order they arrived and a host's counters never go back.
 *
 * - Batching: the loop takes up to `batchMaxRows` of the oldest queued rows out of the queue, keeps
 *   the latest values of each key (row-batch.ts) and writes them as multi-row upserts in one
 *   transaction. While a batch is in flight new rows queue up, so batches grow with the load.
 * - Database down: a failed batch is kept and retried, ahead of everything queued after it (order
 *   holds), after a jittered exponential backoff; rows keep queueing meanwhile. The outage and the
 *   recovery are logged once each.
 * - Bounded: the queue drops its oldest row when full (counted in `dropped`). The first drop logs a
 *   warning; the next warning comes only after the queue has drained below half (one log line per
 *   threshold crossing, never one per row). A lane holds at most `queueMaxRows` queued rows plus the
 *   one batch in flight, and every received row is counted exactly once: committed or dropped.
 *
 * Lifecycle: drain() resolves once nothing is pending (for a graceful close); stop() ends the lane
 * at a drain deadline: queued rows are discarded and the batch in flight is let finish, each row
 * counted exactly once as committed or dropped; destroy() stops the loop and discards what is
 * pending at once. After stop() or destroy(), enqueue() is a no-op counted as a drop.
 */
export class WriterLane {
  readonly index: number;
  readonly stats: WriterLaneStats = {
    rowsIn: 0,
    rowsCommitted: 0,
    statusRows: 0,
    historyRows: 0,
    batches: 0,
    failures: 0,
    conflictRetries: 0,
    dropped: 0,
  };
  private readonly queue: RowQueue;
  private readonly writer: StatusWriter;
  private readonly batchMaxRows: number;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly observer: LaneObserver | undefined;
  private state: LaneState = 'idle';
  private _dbState: LaneDbState = 'ok';
  private _lastError: Error | undefined;
  private failingSince = 0;
  private overflowing = false;
  private droppedAtOverflow = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** The batch taken from the queue and not yet committed (in flight, or failed and waiting to retry). */
  private batch: RowBatch | undefined;
  private drainWaiters: Array<() => void> = [];
  /** stop() was called: no retry, no new batch; the loop ends after the batch in flight. */
  private stopping = false;

  constructor(options: WriterLaneOptions) {
    this.index = options.index;
    this.writer = options.writer;
    this.queue = new RowQueue(options.queueMaxRows);
    this.batchMaxRows = options.batchMaxRows;
    this.backoff = new Backoff(options.backoff ?? DEFAULT_RETRY_BACKOFF);
    this.log = options.logger;
    this.observer = options.observer;
  }

  /** Rows received and not yet committed: queued, plus the batch in flight. */
  get depth(): number {
    return this.queue.length + (this.batch?.taken ?? 0);
  }

  /** Rows in the queue (bounded by `capacity`), not counting the batch in flight. */
  get queued(): number {
    return this.queue.length;
  }

  get capacity(): number {
    return this.queue.capacity;
  }

  get dbState(): LaneDbState {
    return this._dbState;
  }

  get lastError(): Error | undefined {
    return this._lastError;
  }

  /** Queues one host row; never blocks, never throws. */
  enqueue(
    modid: number,
    cmdid: number,
    ip: number,
    port: number,
    caller: number,
    succ: number,
    err: number,
    ts: number,
    minute: number,
    overload: boolean,
    totalSucc = -1,
    totalErr = -1,
  ): void {
    this.stats.rowsIn += 1;
    if (this.state === 'closed' || this.stopping) {
      this.stats.dropped += 1;
      return;
    }
    if (
      this.queue.push(modid, cmdid, ip, port, caller, succ, err, ts, minute, overload, totalSucc, totalErr)
    ) {
      this.stats.dropped += 1;
      if (!this.overflowing) {
        this.overflowing = true;
        this.droppedAtOverflow = this.stats.dropped - 1;
        this.log.warn(
          { writer: this.index, capacity: this.queue.capacity, database: this._dbState },
          'writer queue full: dropping the oldest pending rows (logged again only after it drains below half)',
        );
      }
    }
    if (this.state === 'idle') {
      // Deferred to the next turn of the loop, so every frame of the socket reads in progress joins
      // the first batch.
      this.state = 'scheduled';
      setImmediate(() => void this.run());
    }
  }

  /** Resolves once nothing is pending (immediately if nothing is). Rejects with ClosedError after destroy(). */
  drain(): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new ClosedError(`writer ${this.index} is destroyed`));
    if (this.depth === 0 && this.state !== 'writing') return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /**
   * Ends the lane at a drain deadline: discards the queued rows and lets the batch in flight finish,
   * so that each row is counted once, as committed (its batch committed) or dropped (discarded, or its
   * batch failed). A failed batch waiting for its retry is dropped. Resolves with the rows dropped
   * here; the lane is closed afterwards. Idempotent (later calls resolve with 0).
   */
  async stop(): Promise<number> {
    if (this.state === 'closed' || this.stopping) return 0;
    this.stopping = true;
    const before = this.stats.dropped;
    const discarded = this.queue.clear();
    this.stats.dropped += discarded;
    if (this.state === 'backoff') {
      if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.stats.dropped += this.batch?.taken ?? 0;
      this.batch = undefined;
    } else if (this.state === 'writing' || this.state === 'scheduled') {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    this.state = 'closed';
    this.drainWaiters = [];
    return this.stats.dropped - before;
  }

  /** Stops the loop and discards pending rows (counted as dropped). Idempotent. */
  destroy(): number {
    if (this.state === 'closed') return 0;
    this.state = 'closed';
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const discarded = this.queue.clear() + (this.batch?.taken ?? 0);
    this.batch = undefined;
    this.stats.dropped += discarded;
    this.drainWaiters = [];
    return discarded;
  }

  /** destroy() may run during an await of run(); reading the state through here keeps TS from narrowing it. */
  private get destroyed(): boolean {
    return this.state === 'closed';
  }

  private async run(): Promise<void> {
    if (this.destroyed) return;
    this.state = 'writing';
    let conflicts = 0;
    while (this.batch !== undefined || (this.queue.length > 0 && !this.stopping)) {
      let batch = this.batch;
      if (batch === undefined) {
        batch = takeBatch(this.queue, this.batchMaxRows);
        this.queue.releaseThrough(batch.firstSeq + batch.taken);
        this.batch = batch;
      }
      const started = performance.now();
      try {
        await this.writer.write(batch);
      } catch (err) {
        if (this.destroyed) return;
        const seconds = (performance.now() - started) / 1000;
        if (isConflict(err) && conflicts < CONFLICT_RETRIES) {
          // Lost a deadlock to another transaction: not an outage; the same batch goes again now.
          conflicts += 1;
          this.stats.conflictRetries += 1;
          trace?.(`writer ${this.index}: conflict, retrying batch at once`);
          continue;
        }
        if (this.stopping) {
          // At the drain deadline a failed batch is not retried: its rows are dropped (counted).
          this.stats.failures += 1;
          this.stats.dropped += batch.taken;
          this.batch = undefined;
          this.observer?.writeFailed(this, err, seconds);
          break;
        }
        this.failed(err, seconds);
        return;
      }
      if (this.destroyed) return;
      conflicts = 0;
      const seconds = (performance.now() - started) / 1000;
      this.batch = undefined;
      this.stats.batches += 1;
      this.stats.rowsCommitted += batch.taken;
      this.stats.statusRows += batch.status.count;
      this.stats.historyRows += batch.history.count;
      this.observer?.batchWritten(this, batch, seconds);
      this.succeeded();
    }
    this.state = 'idle';
    for (const w of this.drainWaiters.splice(0)) w();
  }

  private succeeded(): void {
    this.backoff.reset();
    if (this._dbState === 'failing') {
      this._dbState = 'ok';
      this.log.info(
        { writer: this.index, downMs: Date.now() - this.failingSince, pending: this.depth },
        'database writes resumed',
      );
    }
    if (this.overflowing && this.queue.length <= this.queue.capacity / 2) {
      this.overflowing = false;
      this.log.info(
        { writer: this.index, dropped: this.stats.dropped - this.droppedAtOverflow },
        'writer queue below half capacity again',
      );
    }
  }

  private failed(err: unknown, seconds: number): void {
    this.stats.failures += 1;
    this._lastError = err instanceof Error ? err : new Error(String(err));
    this.observer?.writeFailed(this, err, seconds);
    const delay = this.backoff.next();
    if (this._dbState === 'ok') {
      this._dbState = 'failing';
      this.failingSince = Date.now();
      this.log.warn(
        { writer: this.index, err: describe(err), pending: this.depth, retryMs: delay },
        'database write failed: keeping rows queued and retrying with backoff (logged once until it recovers)',
      );
    } else {
      trace?.(`writer ${this.index}: write failed again (${describe(err)}), retry in ${delay} ms`);
    }
    this.state = 'backoff';
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.state === 'backoff') void this.run();
    }, delay);
    this.retryTimer.unref();
  }
}

/** The message of an error, following `cause` through wrappers (WorkerError, StoreError). */
function describe(err: unknown): string {
  const e = err as { message?: unknown; cause?: unknown; code?: unknown } | undefined;
  if (e?.cause !== undefined && e.cause !== e) {
    const inner = describe(e.cause);
    if (inner !== '') return inner;
  }
  if (typeof e?.message === 'string' && e.message !== '') return e.message;
  if (err instanceof AggregateError && err.errors.length > 0) return describe(err.errors[0]);
  return typeof e?.code === 'string' ? e.code : String(err);
}

/** A deadlock or serialization failure: MySQL ER_LOCK_DEADLOCK (1213), PostgreSQL 40P01 / 40001. */
function isConflict(err: unknown): boolean {
  for (
    let e = err as { code?: unknown; errno?: unknown; cause?: unknown } | undefined, i = 0;
    e && i < 4;
    i++
  ) {
    if (e.errno === 1213 || e.code === 'ER_LOCK_DEADLOCK' || e.code === '40P01' || e.code === '40001')
      return true;
    e = e.cause as typeof e;
  }
  return false;
}
