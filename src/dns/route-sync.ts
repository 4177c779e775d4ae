import { EventEmitter } from 'node:events';
import { ErrorCode, StoreError, TimeoutError } from '../errors.js';
import type { HostInfo } from '../protocol/index.js';
import type { Logger } from '../log/logger.js';
import { silentLogger } from '../log/silent.js';
import { tracer } from '../log/trace.js';
import { Backoff } from '../net/backoff.js';
import { routeKey, type RouteKey } from './route-key.js';
import { hostKeyOf, RouteSnapshot, type RouteHostRow, type RouteWeightRow } from './route-snapshot.js';
import { SnapshotBuilder } from './route-snapshot-builder.js';

/** What the route service needs from the store (src/store's Store satisfies it). */
export interface RouteSource {
  getVersion(): Promise<number>;
  loadRoutes(options?: { chunkSize?: number }): AsyncIterable<RouteHostRow[]>;
  getRoute(modid: number, cmdid: number): Promise<RouteHostRow[]>;
  lastChangeId(): Promise<number>;
  changesAfter(
    id: number,
    limit?: number,
  ): Promise<Array<{ id: number; modid: number; cmdid: number; version: number }>>;
  /** Hosts whose weight is not 1 (issue 15); a source without weights serves every host at 1. */
  loadWeights?(): Promise<RouteWeightRow[]>;
  getRouteWeights?(modid: number, cmdid: number): Promise<RouteWeightRow[]>;
}

export interface RouteSyncOptions {
  source: RouteSource;
  pollIntervalMs: number;
  reloadIntervalMs: number;
  /** Rows per chunk of a full load; the loop yields between chunks so queries keep being served. */
  chunkSize?: number;
  /** More changed routes than this in one poll triggers a full reload instead of per-route reads. */
  incrementalLimit?: number;
  logger?: Logger;
  /** Backoff between failed database attempts (defaults: 500 ms doubling to 10 s). */
  retry?: { initialMs: number; maxMs: number };
  /** A sync (poll or reload) taking longer than this counts as a database failure. Default 60 s. */
  syncTimeoutMs?: number;
}

export type DbState = 'starting' | 'ok' | 'degraded';

export interface SyncEvents {
  /** A new snapshot was swapped in; `changed` lists routes whose hosts may differ (to be pushed). */
  swapped: [snapshot: RouteSnapshot, changed: RouteKey[], kind: 'full' | 'incremental'];
  /** The database state changed. */
  state: [state: DbState, error: Error | undefined];
}

/**
 * Rows per query of a full reload. Small enough that a chunk of driver row objects (~120 bytes a
 * row) dies in the young generation under `lars up`'s 1 MB semi-space instead of being promoted:
 * 10,000 kept dns's old generation grown after every reload (issue 17: `lars dns` on 10k routes
 * x 10 hosts averaged ~3 MB more RSS). 100 keyset queries for 100k rows cost little on any store.
 */
const DEFAULT_CHUNK_SIZE = 1_000;
const DEFAULT_INCREMENTAL_LIMIT = 1_000;
const DEFAULT_SYNC_TIMEOUT_MS = 60_000;

/**
 * Keeps the route snapshot in step with the database (DESIGN §4):
 * - every poll interval reads RouteVersion; when it changed, reads the RouteChange rows after the
 *   last one seen and re-reads just those routes (or everything when there are many), swaps a new
 *   snapshot in and reports the changed routes for pushing;
 * - every reload interval rebuilds the whole snapshot and reports the routes that differ (so edits
 *   made without RouteChange rows, as the original console's deletes were, still reach agents);
 * - a failed or partial read never replaces the current snapshot; the state becomes `degraded` and
 *   attempts continue with backoff until the database answers again.
 *
 * Only one sync runs at a time; a `pollNow()` during a sync runs another one right after it.
 */
export class RouteSync extends EventEmitter<SyncEvents> {
  private readonly source: RouteSource;
  private readonly opts: Required<Omit<RouteSyncOptions, 'logger' | 'source' | 'retry'>>;
  private readonly log: Logger;
  private readonly trace = tracer('dns');
  private readonly backoff: Backoff;
  private _snapshot = RouteSnapshot.empty();
  private _state: DbState = 'starting';
  private _lastError: Error | undefined;
  private lastChangeId = -1;
  private lastFullAt = 0;
  private generation = 0;
  private running: Promise<void> | undefined;
  private again = false;
  private forceFull = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats = {
    polls: 0,
    fullReloads: 0,
    incrementalReloads: 0,
    failures: 0,
    lastReloadMs: 0,
    lastFullReloadMs: 0,
  };

  constructor(options: RouteSyncOptions) {
    super();
    this.source = options.source;
    this.opts = {
      pollIntervalMs: options.pollIntervalMs,
      reloadIntervalMs: options.reloadIntervalMs,
      chunkSize: options.chunkSize ?? DEFAULT_CHUNK_SIZE,
      incrementalLimit: options.incrementalLimit ?? DEFAULT_INCREMENTAL_LIMIT,
      syncTimeoutMs: options.syncTimeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS,
    };
    this.log = options.logger ?? silentLogger;
    const retry = options.retry ?? { initialMs: 500, maxMs: 10_000 };
    this.backoff = new Backoff({ initialMs: retry.initialMs, maxMs: retry.maxMs, jitter: 0.2 });
  }

  get snapshot(): RouteSnapshot {
    return this._snapshot;
  }

  get state(): DbState {
    return this._state;
  }

  get lastError(): Error | undefined {
    return this._lastError;
  }

  /** Loads the first snapshot (rejects if the database cannot be read) and starts polling. */
  async start(): Promise<void> {
    await this.sync();
    if (this._state !== 'ok') {
      throw new StoreError(
        ErrorCode.STORE,
        `initial route load failed: ${this._lastError?.message ?? 'unknown error'}`,
        {
          cause: this._lastError,
        },
      );
    }
    this.schedule(this.opts.pollIntervalMs);
  }

  /** Starts polling without requiring a first successful load (serve empty until the DB answers). */
  startDegraded(): void {
    void this.sync().finally(() =>
      this.schedule(this._state === 'ok' ? this.opts.pollIntervalMs : this.backoff.next()),
    );
  }

  /** Requests an immediate poll (the console's and CLI's edits reach agents right away). */
  pollNow(options: { full?: boolean } = {}): Promise<void> {
    if (options.full) this.forceFull = true;
    return this.sync();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.sync().finally(() =>
        this.schedule(this._state === 'ok' ? this.opts.pollIntervalMs : this.backoff.next()),
      );
    }, ms);
    this.timer.unref();
  }

  /** Runs one sync, or queues exactly one more after the running one. */
  private sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running.then(() => this.running ?? Promise.resolve());
    }
    const run = (async () => {
      try {
        do {
          this.again = false;
          await this.syncOnce();
        } while (this.again && !this.closed);
      } finally {
        // Cleared in the same microtask as the last `again` check: a sync() requested after it
        // starts a new run instead of being lost.
        this.running = undefined;
      }
    })();
    this.running = run;
    return run;
  }

  /**
   * One sync, bounded by syncTimeoutMs: a query that hangs (a black-holed database connection)
   * marks the database degraded instead of stopping every later poll. The abandoned attempt may
   * still finish later; its generation no longer matches, so it changes nothing.
   */
  private async syncOnce(): Promise<void> {
    const generation = ++this.generation;
    const force = this.forceFull;
    this.forceFull = false;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new TimeoutError(`route sync did not finish within ${this.opts.syncTimeoutMs} ms`)),
        this.opts.syncTimeoutMs,
      );
      timer.unref();
    });
    try {
      await Promise.race([this.syncBody(generation, force), deadline]);
    } catch (err) {
      if (force) this.forceFull = true;
      this.stats.failures++;
      this.setState('degraded', err as Error);
    } finally {
      clearTimeout(timer);
    }
  }

  private async syncBody(generation: number, force: boolean): Promise<void> {
    this.stats.polls++;
    const started = performance.now();
    const current = () => generation === this.generation && !this.closed;
    const now = Date.now();
    const dueFull = force || this.lastChangeId < 0 || now - this.lastFullAt >= this.opts.reloadIntervalMs;
    const version = await this.source.getVersion();
    if (!dueFull && version === this._snapshot.version) {
      if (current()) this.setState('ok', undefined);
      return;
    }
    // Read the change rows first: everything they name is committed, so the reads below see it.
    const changes = await this.source.changesAfter(
      Math.max(this.lastChangeId, 0),
      this.opts.incrementalLimit + 1,
    );
    const changeIds = changes.map((c) => c.id);
    let lastChangeId = changeIds.length ? Math.max(...changeIds, this.lastChangeId) : this.lastChangeId;
    if (this.lastChangeId < 0) {
      // First load: pushes start from now; older change rows are history.
      lastChangeId = Math.max(lastChangeId, await this.source.lastChangeId());
    }
    const changedKeys = [...new Set(changes.map((c) => routeKey(c.modid, c.cmdid)))];

    if (dueFull || changes.length > this.opts.incrementalLimit) {
      const next = await this.loadFull(version);
      if (!current()) return;
      // The first load pushes nothing: no connection has asked yet.
      const push =
        this.lastChangeId < 0 ? [] : [...new Set([...changedKeys, ...(await this._snapshot.diff(next))])];
      if (!current()) return;
      this._snapshot = next;
      this.lastChangeId = lastChangeId;
      this.lastFullAt = now;
      this.stats.fullReloads++;
      this.stats.lastFullReloadMs = performance.now() - started;
      this.trace?.(
        `full reload v${version}: ${next.routeCount} routes, ${next.hostCount} hosts, push ${push.length}`,
      );
      this.setState('ok', undefined);
      this.emit('swapped', next, push, 'full');
    } else {
      const changed = new Map<RouteKey, readonly HostInfo[]>();
      for (const key of changedKeys) {
        const c = changes.find((x) => routeKey(x.modid, x.cmdid) === key)!;
        const rows = await this.source.getRoute(c.modid, c.cmdid);
        const weights = (await this.source.getRouteWeights?.(c.modid, c.cmdid)) ?? [];
        changed.set(key, toHosts(rows, weights));
      }
      if (!current()) return;
      const next = this._snapshot.withRoutes(version, changed);
      this._snapshot = next;
      this.lastChangeId = lastChangeId;
      this.stats.incrementalReloads++;
      this.trace?.(`incremental v${version}: ${changedKeys.length} routes changed`);
      this.setState('ok', undefined);
      this.emit('swapped', next, changedKeys, 'incremental');
    }
    this.stats.lastReloadMs = performance.now() - started;
  }

  private async loadFull(version: number): Promise<RouteSnapshot> {
    const builder = new SnapshotBuilder();
    for await (const chunk of this.source.loadRoutes({ chunkSize: this.opts.chunkSize })) {
      builder.add(chunk);
      // Yield between chunks even on synchronous drivers (SQLite) so queries are answered.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (this.source.loadWeights) builder.setWeights(await this.source.loadWeights());
    return builder.build(version, this._snapshot);
  }

  private setState(state: DbState, error: Error | undefined): void {
    this._lastError = error;
    if (state === 'ok') this.backoff.reset();
    if (state === this._state) return;
    const prev = this._state;
    this._state = state;
    if (state === 'degraded') {
      this.log.error(
        { err: error, prev },
        'route database unreachable: serving the last snapshot, retrying with backoff',
      );
    } else if (prev === 'degraded') {
      this.log.info({}, 'route database reachable again');
    }
    this.emit('state', state, error);
  }
}

function toHosts(rows: RouteHostRow[], weights: readonly RouteWeightRow[]): HostInfo[] {
  if (weights.length === 0) return rows.map((r) => ({ ip: r.ip | 0, port: r.port }));
  const w = new Map(weights.map((x) => [hostKeyOf(x.ip, x.port), x.weight]));
  return rows.map((r) => {
    const weight = w.get(hostKeyOf(r.ip, r.port));
    return weight !== undefined && weight !== 1
      ? { ip: r.ip | 0, port: r.port, weight }
      : { ip: r.ip | 0, port: r.port };
  });
}
