import { Gauge, Histogram, Registry } from 'prom-client';
import {
  DEFAULT_DB_THREAD_CNT,
  DEFAULT_HISTORY_RETENTION_DAYS,
  DEFAULT_QUEUE_MAX_ROWS,
} from '../config/schema.js';
import { ClosedError, InvalidArgumentError } from '../errors.js';
import { silentLogger, type Logger } from '../log/silent.js';
import type { BackoffOptions } from '../net/backoff.js';
import { Dispatcher } from '../net/dispatcher.js';
import type { TcpConnection } from '../net/tcp-connection.js';
import { TcpServer, type TcpServerStats } from '../net/tcp-server.js';
import { MsgId, type ReportStatusRequest } from '../protocol/index.js';
import { liveMetrics, tcpServerMetrics } from '../service/metrics.js';
import { AdminHttp, type Health } from '../service/admin-http.js';
import { HashRing } from './hash-ring.js';
import { openStatusDb, type StatusDb } from './status-db.js';
import { WriterLane, type LaneObserver } from './writer-lane.js';

/** Rows read per batch (before keeping the latest of each key); also capped by the backend's parameter limit. */
export const DEFAULT_BATCH_MAX_ROWS = 2_000;
/** How often old history samples are pruned. */
export const DEFAULT_PRUNE_INTERVAL_MS = 10 * 60_000;
/** close()'s budget when none is given; the CLI gives `[supervisor] drain_timeout` (see drainBudgetMs). */
export const DEFAULT_CLOSE_GRACE_MS = 5_000;
/** Kept back from drain_timeout for what follows the deadline: batches in flight, closing, exiting. */
const EXIT_MARGIN_MS = 1_000;

/**
 * The drain budget of a reporter that must be gone `drainTimeoutS` after SIGTERM (the supervisor
 * SIGKILLs it then): the timeout minus a margin of up to 1 s (a fifth of short timeouts).
 */
export function drainBudgetMs(drainTimeoutS: number): number {
  const total = drainTimeoutS * 1000;
  return Math.max(1, total - Math.min(EXIT_MARGIN_MS, total / 5));
}

const SECONDS_PER_DAY = 86_400;

export interface ReporterServiceOptions {
  /** Database URL (`--db`). The service opens its own connections (see status-db.ts). */
  dbUrl: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Health/metrics HTTP; default host = `host`, port 0 = any free port. */
  httpHost?: string;
  httpPort?: number;
  /** `[reactor] maxConn`. */
  maxConnections: number;
  /** `[reactor] maxOutboundKb` * 1024 (the reporter sends nothing; kept for the server's contract). */
  maxOutboundBytes: number;
  /** Hostile connections (`[reactor]` header_timeout, handshake_timeout, max_conn_per_ip); see TcpServer. */
  headerTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  maxConnectionsPerIp?: number;
  /** Writer lanes, `[reporter] db_thread_cnt` (default 3). */
  writers?: number;
  /** Pending rows per lane before the oldest are dropped, `[reporter] queue_max_rows` (default 100000). */
  queueMaxRows?: number;
  /** `[reporter] history_retention_days` (default 7). */
  historyRetentionDays?: number;
  /** Rows per batch (default 2000). */
  batchMaxRows?: number;
  /** Period of history pruning (default 10 min); one prune also runs at start. */
  pruneIntervalMs?: number;
  /** Retry delays after a failed write (default 200 ms doubling to 5 s, 20% jitter). */
  retryBackoff?: BackoffOptions;
  /** Wall clock in ms for history minutes, reports without ts, and pruning. Tests inject a fake. */
  now?: () => number;
  logger?: Logger;
  /** See OpenStatusDbOptions: SQLite writer-thread script (tests) and lock wait. */
  sqliteWorkerScript?: URL;
  sqliteBusyTimeoutMs?: number;
}

/** Every host row received is written or dropped, exactly once (issue 11). */
export interface RowAccounting {
  received: number;
  /** Rows whose batch was committed. */
  written: number;
  /** Rows dropped: oldest out of a full queue, not written by the drain deadline, or of a failed last batch. */
  dropped: number;
  /** Rows received and not yet written or dropped (0 once closed). */
  pending: number;
}

export interface ReporterStats {
  /** ReportStatusRequest frames received. */
  reports: number;
  /** Host rows received (HostCallResult entries). */
  rowsReceived: number;
  /** History samples deleted by pruning. */
  historyPruned: number;
}

type ConnState = Record<string, never>;
type ServiceState = 'new' | 'starting' | 'running' | 'closing' | 'closed';

/**
 * The reporter (DESIGN §6, issue 5): receives ReportStatusRequest frames from agents (no reply),
 * and stores each host's latest statistics in ServerCallStatus plus one sample per minute in
 * lars_call_history.
 *
 * Rows go to one of N writer lanes chosen by a consistent-hash ring over (modid, cmdid): one
 * route's rows are written by one lane in arrival order. Each lane has a bounded queue (oldest
 * dropped when full) and writes multi-row upserts, one batch in flight. The database being slow or
 * away never slows the agents' connections: the lanes queue, drop, retry and log once per crossing.
 *
 * Lifecycle: start() opens the database (fails if it cannot: wrong URL, tables missing) and
 * listens; close(budgetMs) drains without loss (see close()); destroy() drops everything now.
 * Both idempotent; start() after either rejects with ClosedError.
 */
export class ReporterService {
  readonly registry = new Registry();
  readonly stats: ReporterStats = { reports: 0, rowsReceived: 0, historyPruned: 0 };
  private readonly opts: ReporterServiceOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly writers: number;
  private readonly ring: HashRing;
  private readonly server: TcpServer<ConnState>;
  private readonly http: AdminHttp;
  private readonly timers = new Set<NodeJS.Timeout>();
  private lanes: WriterLane[] = [];
  private db: StatusDb | undefined;
  private state: ServiceState = 'new';
  private closing: Promise<void> | undefined;
  private pruning: Promise<number> | undefined;
  private address: { host: string; port: number } | undefined;
  private httpAddress: { host: string; port: number } | undefined;
  private readonly batchRows: Histogram;
  private readonly writeSeconds: Histogram;

  constructor(options: ReporterServiceOptions) {
    this.opts = options;
    this.log = options.logger ?? silentLogger;
    this.now = options.now ?? Date.now;
    this.writers = options.writers ?? DEFAULT_DB_THREAD_CNT;
    for (const [name, value] of [
      ['writers', this.writers],
      ['queueMaxRows', options.queueMaxRows ?? 1],
      ['batchMaxRows', options.batchMaxRows ?? 1],
      ['historyRetentionDays', options.historyRetentionDays ?? 1],
    ] as const) {
      if (!Number.isInteger(value) || value < 1) {
        throw new InvalidArgumentError(`reporter: ${name} ${value} must be a positive integer`);
      }
    }
    this.ring = new HashRing(this.writers);
    const dispatcher = new Dispatcher<TcpConnection<ConnState>>().on(MsgId.ReportStatusRequest, (msg) =>
      this.receive(msg),
    );
    this.server = new TcpServer<ConnState>({
      host: options.host,
      port: options.port,
      maxConnections: options.maxConnections,
      maxOutboundBytes: options.maxOutboundBytes,
      headerTimeoutMs: options.headerTimeoutMs,
      handshakeTimeoutMs: options.handshakeTimeoutMs,
      maxConnectionsPerIp: options.maxConnectionsPerIp,
      // Drain without loss (issue 11): what agents already sent is read after close() too.
      readWhileClosing: true,
      logger: this.log,
      dispatcher,
    });
    this.batchRows = new Histogram({
      name: 'lars_reporter_batch_rows',
      help: 'rows read from a writer queue per committed batch (before keeping the latest of each key)',
      registers: [this.registry],
      buckets: [1, 10, 50, 100, 250, 500, 1000, 2000, 4000, 8000],
    });
    this.writeSeconds = new Histogram({
      name: 'lars_reporter_db_write_seconds',
      help: 'duration of one batch transaction (both upserts), successful or not',
      registers: [this.registry],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    this.createMetrics();
    this.http = new AdminHttp({
      host: options.httpHost ?? options.host,
      port: options.httpPort ?? 0,
      registry: this.registry,
      health: () => this.health(),
    });
  }

  /** Opens the database, then listens. Returns the bound addresses. */
  async start(): Promise<{ host: string; port: number; httpPort: number }> {
    if (this.state !== 'new') throw new ClosedError('reporter service already started or closed');
    this.state = 'starting';
    try {
      const db = await openStatusDb(this.opts.dbUrl, {
        writers: this.writers,
        logger: this.log,
        ...(this.opts.sqliteWorkerScript ? { sqliteWorkerScript: this.opts.sqliteWorkerScript } : {}),
        ...(this.opts.sqliteBusyTimeoutMs !== undefined
          ? { sqliteBusyTimeoutMs: this.opts.sqliteBusyTimeoutMs }
          : {}),
      });
      this.db = db;
      const batchMaxRows = Math.min(this.opts.batchMaxRows ?? DEFAULT_BATCH_MAX_ROWS, db.maxRowsPerStatement);
      const observer = this.laneObserver();
      this.lanes = db.writers.map(
        (writer, index) =>
          new WriterLane({
            index,
            writer,
            queueMaxRows: this.opts.queueMaxRows ?? DEFAULT_QUEUE_MAX_ROWS,
            batchMaxRows,
            logger: this.log,
            observer,
            ...(this.opts.retryBackoff ? { backoff: this.opts.retryBackoff } : {}),
          }),
      );
      if (this.state !== 'starting') throw new ClosedError('reporter service closed while starting');
      this.address = await this.server.listen();
      this.httpAddress = await this.http.listen();
    } catch (err) {
      await this.shutdown('abort', () => this.server.destroy());
      throw err;
    }
    this.state = 'running';
    void this.pruneHistory().catch(() => undefined);
    const t = setInterval(
      () => void this.pruneHistory().catch(() => undefined),
      this.opts.pruneIntervalMs ?? DEFAULT_PRUNE_INTERVAL_MS,
    );
    t.unref();
    this.timers.add(t);
    this.log.info(
      {
        ...this.address,
        httpPort: this.httpAddress.port,
        database: this.db?.url,
        writers: this.writers,
        queueMaxRows: this.opts.queueMaxRows ?? DEFAULT_QUEUE_MAX_ROWS,
      },
      'reporter listening',
    );
    return { ...this.address, httpPort: this.httpAddress.port };
  }

  /** The TCP server's counters (connections, cuts by reason, frames). */
  get tcpStats(): Readonly<TcpServerStats> {
    return this.server.stats;
  }

  /** Pending rows of each lane. */
  queueDepths(): number[] {
    return this.lanes.map((l) => l.depth);
  }

  /** Per-lane counters (rows in, committed, written, dropped, failures...). */
  laneStats(): Array<WriterLane['stats']> {
    return this.lanes.map((l) => ({ ...l.stats }));
  }

  /** The lane (writer index) of a route. */
  writerOf(modid: number, cmdid: number): number {
    return this.ring.writerOf(modid, cmdid);
  }

  /** Resolves once every lane's queue is empty (tests, and close()). */
  async drained(): Promise<void> {
    await Promise.all(this.lanes.map((l) => l.drain()));
  }

  /**
   * Deletes history samples older than the retention (by the injected clock). Runs at start and
   * every pruneIntervalMs; callable directly. One prune at a time: a call during a prune joins it.
   */
  pruneHistory(): Promise<number> {
    if (this.pruning) return this.pruning;
    const db = this.db;
    if (!db || this.state === 'closed')
      return Promise.reject(new ClosedError('reporter service is not running'));
    const retentionS = (this.opts.historyRetentionDays ?? DEFAULT_HISTORY_RETENTION_DAYS) * SECONDS_PER_DAY;
    const cutoff = minuteOf(Math.floor(this.now() / 1000) - retentionS);
    this.pruning = (async () => {
      try {
        const n = await db.pruneHistory(cutoff);
        this.stats.historyPruned += n;
        if (n > 0) this.log.info({ deleted: n, beforeMinute: cutoff }, 'pruned old history samples');
        return n;
      } catch (err) {
        this.log.warn({ err }, 'pruning history failed (next attempt at the next interval)');
        throw err;
      } finally {
        this.pruning = undefined;
      }
    })();
    return this.pruning;
  }

  health(): Health {
    const failing = this.lanes.filter((l) => l.dbState === 'failing');
    return {
      status: this.state !== 'running' ? 'failing' : failing.length > 0 ? 'degraded' : 'ok',
      state: this.state,
      database: failing.length > 0 ? 'failing' : 'ok',
      lastError: failing[0]?.lastError?.message,
      writers: this.lanes.map((l) => ({
        queue: l.depth,
        capacity: l.capacity,
        dropped: l.stats.dropped,
        database: l.dbState,
      })),
      connections: this.server.connectionCount,
      reports: this.stats.reports,
      rowsReceived: this.stats.rowsReceived,
      port: this.address?.port,
    };
  }

  /** Rows received, written and dropped so far (`received = written + dropped + pending`). */
  accounting(): RowAccounting {
    let written = 0;
    let dropped = 0;
    let pending = 0;
    for (const l of this.lanes) {
      written += l.stats.rowsCommitted;
      dropped += l.stats.dropped;
      pending += l.depth;
    }
    return { received: this.stats.rowsReceived, written, dropped, pending };
  }

  /**
   * Drain without loss (issue 11), within `budgetMs` (the CLI passes drainBudgetMs of `[supervisor]
   * drain_timeout`): stop accepting; end every connection but keep reading what its agent already
   * sent until the agent closes its side (connections still open at half the budget are cut); let
   * the lanes write every queued row; at the deadline discard what is left and let the batches in
   * flight finish. Then `received = written + dropped` holds exactly; rows that could not be
   * written are counted as dropped and logged. Idempotent: later calls return the same promise.
   */
  close(budgetMs = DEFAULT_CLOSE_GRACE_MS): Promise<void> {
    this.closing ??= this.shutdown('drain', async () => {
      const deadline = Date.now() + budgetMs;
      await this.server.close(Math.max(1, Math.floor(budgetMs / 2)));
      await this.drainUntil(deadline);
    });
    return this.closing;
  }

  /** Abrupt shutdown: connections and pending rows are dropped now. Idempotent. */
  destroy(): Promise<void> {
    this.closing ??= this.shutdown('abort', () => this.server.destroy());
    return this.closing;
  }

  private async shutdown(mode: 'drain' | 'abort', stopReceiving: () => Promise<void>): Promise<void> {
    const started = Date.now();
    this.state = 'closing';
    for (const t of this.timers) clearInterval(t);
    this.timers.clear();
    await stopReceiving();
    let notWritten = 0;
    if (mode === 'drain') {
      for (const n of await Promise.all(this.lanes.map((l) => l.stop()))) notWritten += n;
    } else {
      for (const lane of this.lanes) notWritten += lane.destroy();
    }
    const rows = this.accounting();
    if (notWritten > 0) {
      this.log.warn(
        { notWritten, ...rows },
        mode === 'drain'
          ? 'reporter stopping: rows not written within the drain budget were dropped (counted)'
          : 'reporter destroyed with rows still pending: dropped (counted)',
      );
    }
    await this.pruning?.catch(() => undefined);
    await this.db?.close();
    await this.http.close();
    this.state = 'closed';
    this.log.info(
      { ...rows, ms: Date.now() - started, mode },
      'reporter stopped: received = written + dropped',
    );
  }

  private async drainUntil(deadline: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.drained().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }

  private receive(msg: ReportStatusRequest): void {
    this.stats.reports += 1;
    const n = msg.results.length;
    if (n === 0) return;
    this.stats.rowsReceived += n;
    const nowS = Math.floor(this.now() / 1000);
    const minute = minuteOf(nowS);
    // An agent that sends no ts (0) gets the reporter's clock; the original always sent one.
    const ts = msg.ts !== 0 ? msg.ts : nowS;
    const caller = msg.caller >>> 0;
    const lane = this.lanes[this.ring.writerOf(msg.modid, msg.cmdid)];
    if (lane === undefined) return; // not started or already destroyed
    for (let i = 0; i < n; i++) {
      const r = msg.results[i]!;
      // DESIGN §2: ips travel as int32; the database stores the unsigned number (>>> 0).
      lane.enqueue(
        msg.modid,
        msg.cmdid,
        r.ip >>> 0,
        r.port,
        caller,
        r.succ >>> 0,
        r.err >>> 0,
        ts,
        minute,
        r.overload,
        r.total_succ ?? -1,
        r.total_err ?? -1,
      );
    }
  }

  private laneObserver(): LaneObserver {
    return {
      batchWritten: (_lane, batch, seconds) => {
        this.batchRows.observe(batch.taken);
        this.writeSeconds.observe(seconds);
      },
      writeFailed: (_lane, _err, seconds) => {
        this.writeSeconds.observe(seconds);
      },
    };
  }

  private createMetrics(): void {
    const r = this.registry;
    const s = this.server.stats;
    const sum = (read: (l: WriterLane) => number) => () => this.lanes.reduce((acc, l) => acc + read(l), 0);
    const { gauge, counter } = liveMetrics(r);
    const lanes = () => this.lanes;
    new Gauge({
      name: 'lars_reporter_queue_depth',
      help: 'rows received and not yet committed by each writer: queued plus the batch in flight',
      labelNames: ['writer'],
      registers: [r],
      collect() {
        for (const l of lanes()) this.set({ writer: String(l.index) }, l.depth);
      },
    });
    gauge(
      'lars_reporter_queue_capacity_rows',
      'rows a writer queue holds before dropping the oldest',
      () => lanes()[0]?.capacity ?? 0,
    );
    gauge('lars_reporter_writers', 'writer lanes', () => lanes().length);
    gauge('lars_reporter_database_up', '1 when the last write of every writer succeeded', () =>
      lanes().every((l) => l.dbState === 'ok') ? 1 : 0,
    );
    gauge(
      'lars_reporter_writers_failing',
      'writers whose last write failed (retrying)',
      () => lanes().filter((l) => l.dbState === 'failing').length,
    );
    gauge('lars_reporter_connections', 'open agent connections', () => this.server.connectionCount);
    counter('lars_reporter_reports_total', 'ReportStatusRequest frames received', () => this.stats.reports);
    counter('lars_reporter_rows_received_total', 'host rows received', () => this.stats.rowsReceived);
    counter(
      'lars_reporter_rows_committed_total',
      'received rows whose batch was committed',
      sum((l) => l.stats.rowsCommitted),
    );
    counter(
      'lars_reporter_status_rows_written_total',
      'ServerCallStatus rows upserted',
      sum((l) => l.stats.statusRows),
    );
    counter(
      'lars_reporter_history_rows_written_total',
      'lars_call_history rows upserted',
      sum((l) => l.stats.historyRows),
    );
    counter(
      'lars_reporter_rows_dropped_total',
      'rows dropped (oldest first) because a writer queue was full',
      sum((l) => l.stats.dropped),
    );
    counter(
      'lars_reporter_batches_total',
      'batches committed',
      sum((l) => l.stats.batches),
    );
    counter(
      'lars_reporter_db_write_failures_total',
      'failed batch writes (retried with backoff)',
      sum((l) => l.stats.failures),
    );
    counter(
      'lars_reporter_db_conflict_retries_total',
      'batches retried at once after a deadlock',
      sum((l) => l.stats.conflictRetries),
    );
    counter(
      'lars_reporter_history_pruned_total',
      'history samples deleted by retention',
      () => this.stats.historyPruned,
    );
    tcpServerMetrics(r, 'lars_reporter', s);
  }
}

/** Unix seconds of the start of the minute holding `seconds`. */
export function minuteOf(seconds: number): number {
  return seconds - (((seconds % 60) + 60) % 60);
}
